"""The DH-PSI engine agrees with a plain set intersection, in both modes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from psi_core.errors import PeerError
from psi_core.index import encrypt_shard
from psi_core.protocol import (
    BlindedQuery,
    FalsePositiveBound,
    Reencryptor,
    RequestDigest,
    distinct_keys,
    fingerprint,
)

SECRET = bytes(range(1, 33))


def _random_keys(rng: random.Random, n: int) -> list[str]:
    alphabet = "abcXYZ019 |éßŁ語"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def _psi(custodian_keys: list[str], agency_keys: list[str], mode: str) -> set[str] | int:
    index = (
        fingerprint.sorted_unique([encrypt_shard(SECRET, custodian_keys)])
        if custodian_keys
        else (np.empty(0, dtype=fingerprint.INDEX_DTYPE))
    )
    keys, _ = distinct_keys(agency_keys)
    if not keys:
        return set() if mode == "membership" else 0
    query = BlindedQuery()
    points = query.blind(keys)
    reencryptor = Reencryptor(SECRET)
    answer = (
        reencryptor.membership(points) if mode == "membership" else reencryptor.cardinality(points)
    )
    hits = fingerprint.member_mask(index, query.fingerprints(len(points), answer))
    if mode == "membership":
        return {key for key, hit in zip(keys, hits, strict=True) if hit}
    return int(hits.sum())


CASES = {
    "both empty": ([], []),
    "custodian empty": ([], ["a", "b"]),
    "agency empty": (["a", "b"], []),
    "one element each, equal": (["only"], ["only"]),
    "one element each, different": (["only"], ["other"]),
    "duplicates on both sides": (["a", "a", "b", "c"], ["a", "a", "c", "d", "d"]),
    "unicode and separators": (["José|García", "王芳", "ß"], ["Jose|Garcia", "王芳", "SS", "ß"]),
    "empty string key": (["", "x"], ["", "y"]),
}


@pytest.mark.parametrize("mode", ["membership", "cardinality"])
@pytest.mark.parametrize("case", list(CASES))
def test_engine_equals_plain_intersection_on_edge_cases(case, mode):
    """Each edge case yields exactly the plaintext intersection (or its size)."""
    custodian_keys, agency_keys = CASES[case]
    expected = set(custodian_keys) & set(agency_keys)
    got = _psi(custodian_keys, agency_keys, mode)
    assert got == (expected if mode == "membership" else len(expected))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_equals_plain_intersection_on_random_sets(seed):
    """Random overlapping sets with duplicates and unicode intersect exactly."""
    rng = random.Random(seed)
    shared = _random_keys(rng, 60)
    custodian_keys = shared + _random_keys(rng, 300) + shared[:10]
    agency_keys = shared[:40] + _random_keys(rng, 80)
    expected = set(custodian_keys) & set(agency_keys)
    assert _psi(custodian_keys, agency_keys, "membership") == expected
    assert _psi(custodian_keys, agency_keys, "cardinality") == len(expected)


def test_cardinality_answers_the_sorted_membership_answer_of_the_same_points():
    """Cardinality mode answers exactly the points membership mode answers for the same
    request, sorted, so position reveals nothing; membership keeps request order, so the
    two differ in order (a reencryptor that skipped the sort, or answered other points,
    fails here)."""
    keys = [f"k{i}" for i in range(64)]
    points = BlindedQuery().blind(keys)
    reencryptor = Reencryptor(SECRET)
    membership = reencryptor.membership(points)
    assert reencryptor.cardinality(points) == sorted(membership)
    assert membership != sorted(membership)


def test_blinding_is_fresh_per_query():
    """Two queries blind the same key to different points (a is fresh each time)."""
    assert BlindedQuery().blind(["same"]) != BlindedQuery().blind(["same"])


def test_a_stored_scalar_blinds_to_the_same_points_and_unblinds_the_answer():
    """A query re-run with its stored scalar sends exactly what it sent before."""
    first = BlindedQuery()
    again = BlindedQuery(first.scalar)
    keys = ["a", "b", "c"]
    assert again.blind(keys) == first.blind(keys)
    answer = Reencryptor(SECRET).membership(first.blind(keys))
    unblinded = again.fingerprints(3, answer).tolist()
    assert sorted(unblinded) == sorted(encrypt_shard(SECRET, keys).tolist())


@pytest.mark.parametrize("scalar", [b"", b"\x01" * 31, b"\x00" * 32, b"\xff" * 32])
def test_a_stored_scalar_out_of_range_is_refused(scalar):
    with pytest.raises(ValueError, match="scalar in"):
        BlindedQuery(scalar)


def test_request_digest_ignores_chunking_and_sees_order():
    points = BlindedQuery().blind(["a", "b", "c"])
    whole, split, reordered = RequestDigest(), RequestDigest(), RequestDigest()
    whole.update(points)
    split.update(points[:1])
    split.update(points[1:])
    reordered.update(points[::-1])
    assert whole.digest() == split.digest() != reordered.digest()
    assert len(whole.digest()) == 32


def test_unblinded_fingerprint_equals_custodian_fingerprint():
    """a⁻¹·b·a·H(x) gives the same fingerprint as the custodian's b·H(x)."""
    query = BlindedQuery()
    answer = Reencryptor(SECRET).membership(query.blind(["k"]))
    assert query.fingerprints(1, answer).tolist() == encrypt_shard(SECRET, ["k"]).tolist()


def test_answer_with_wrong_count_is_refused():
    """An answer with fewer points than were sent is a PeerError, not a partial result."""
    query = BlindedQuery()
    answer = Reencryptor(SECRET).membership(query.blind(["a", "b"]))
    with pytest.raises(PeerError, match="answered 1 points for 2"):
        query.fingerprints(2, answer[:1])


def test_answer_with_repeated_points_is_refused():
    """Duplicate-stuffed answers cannot inflate a count or fake a match."""
    query = BlindedQuery()
    answer = Reencryptor(SECRET).membership(query.blind(["a", "b"]))
    with pytest.raises(PeerError, match="repeats"):
        query.fingerprints(2, [answer[0], answer[0]])


def test_answer_with_off_curve_point_is_refused():
    """A point not on P-256 in the answer is a PeerError before any ECDH."""
    query = BlindedQuery()
    with pytest.raises(PeerError, match="malformed"):
        query.fingerprints(1, [b"\x02" + b"\xff" * 32])


def test_false_positive_bound_is_k_over_two_to_the_64():
    """The reported bound is K/2^64 per subject and n·K/2^64 per query."""
    bound = FalsePositiveBound.for_query(335_000_000, 1000)
    assert bound.per_subject == pytest.approx(335_000_000 / 2**64)
    assert bound.expected_false_matches == pytest.approx(1000 * 335_000_000 / 2**64)


def test_distinct_keys_maps_each_subject_to_its_key():
    """Duplicate keys share one slot; subjects without a key map to -1."""
    keys, index = distinct_keys(["a", None, "b", "a"])
    assert keys == ["a", "b"]
    assert index.tolist() == [0, -1, 1, 0]
