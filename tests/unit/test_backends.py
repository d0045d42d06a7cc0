"""Curve backends: crypto_mb computes exactly what the openmined reference computes.

Every crypto_mb result is compared byte for byte with the reference (openmined-psi and
``cryptography``). Where the crypto_mb backend cannot run (no ``crypto-mb`` extra, no
AVX-512 IFMA, or ``PSI_CRYPTO_MB_LIBRARY`` pointing nowhere) its tests are skipped with
the reason; the reference's own tests and the fallback tests still run.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from psi_core.errors import MalformedMessageError
from psi_core.index import INDEX_FILE, EpochKey, build_index, process_pool
from psi_core.protocol import (
    CRYPTO_MB,
    OPENMINED,
    P256_ORDER,
    SUITE,
    BackendUnavailableError,
    BlindedQuery,
    Reencryptor,
    crypto_mb_unavailable_reason,
    default_backend,
    get_backend,
    p256,
    select_backend,
)
from psi_core.protocol import crypto_mb as mb
from psi_core.recipes import RECIPES
from tests.factories import make_records, off_curve_point, write_records

ROOT = Path(__file__).resolve().parents[2]
UNAVAILABLE = crypto_mb_unavailable_reason()
needs_crypto_mb = pytest.mark.skipif(
    UNAVAILABLE is not None, reason=f"crypto_mb backend unavailable: {UNAVAILABLE}"
)

SECRET = bytes(range(1, 33))
EDGE_SCALARS = [(1).to_bytes(32, "big"), (P256_ORDER - 1).to_bytes(32, "big"), SECRET]
BATCH_SIZES = [0, 1, 7, 8, 9, 16, 17]


@pytest.fixture(scope="module")
def reference():
    return get_backend(OPENMINED)


@pytest.fixture(scope="module")
def fast():
    if UNAVAILABLE is not None:
        pytest.skip(f"crypto_mb backend unavailable: {UNAVAILABLE}")
    return get_backend(CRYPTO_MB)


def _keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"name_address_v1|{rng.getrandbits(64):016x}|ü{i}" for i in range(count)]


def _points(reference, count: int, seed: int) -> list[bytes]:
    """Random valid points with both y parities (openmined's own a·H(x))."""
    return reference.key(SECRET).hash_to_points(_keys(count, seed))


# -- an independent oracle for hash-to-curve attempts (no gmpy2, no library) -------------


def _oracle_x(message: bytes) -> int:
    wide = hashlib.sha256(b"\x01" + message).digest() + hashlib.sha256(b"\x02" + message).digest()
    return int.from_bytes(wide, "big") % p256.PRIME


def _attempts(key: str) -> int:
    """How many x candidates openmined-psi's H tries for ``key`` (Euler's criterion)."""
    x, tries = _oracle_x(key.encode()), 1
    while pow((x**3 - 3 * x + p256.B) % p256.PRIME, (p256.PRIME - 1) // 2, p256.PRIME) != 1:
        x, tries = _oracle_x(x.to_bytes((x.bit_length() + 7) // 8, "big")), tries + 1
    return tries


# -- tests that run everywhere -----------------------------------------------------------


def test_limb_packing_round_trips():
    """Big-endian rows -> 52-bit limbs -> rows is the identity on random field elements."""
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 256, size=(50, 32), dtype=np.uint8)
    rows[:, 0] &= 0x7F
    assert np.array_equal(mb.limbs_to_rows(mb.rows_to_limbs(rows)), rows)
    limbs = mb.rows_to_limbs(rows)
    assert int(limbs.max()) < 2**52
    value = int.from_bytes(rows[3].tobytes(), "big")
    assert sum(int(limb) << (52 * i) for i, limb in enumerate(limbs[3])) == value


def _field_rows(values: list[int]) -> np.ndarray:
    blob = b"".join(v.to_bytes(32, "big") for v in values)
    return np.frombuffer(blob, dtype=np.uint8).reshape(len(values), 32)


#: x = 0, 1, p−1 and values whose limbs or words are all zeros or all ones.
EDGE_XS = [
    0,
    1,
    2,
    3,
    p256.PRIME - 1,
    p256.PRIME - 2,
    2**52 - 1,
    2**52,
    2**64,
    2**255,
    2**256 - 2**224,
]


@pytest.mark.parametrize("count", [1, 15, 16, 17, 33, 200])
def test_with_parity_negates_exactly_the_rows_of_the_other_parity(count):
    rng = random.Random(count)
    values = [rng.randrange(1, p256.PRIME) for _ in range(count)]
    values[: len(EDGE_XS) - 1] = [v for v in EDGE_XS if v][:count]
    odd = np.array([rng.random() < 0.5 for _ in values])
    got = p256.with_parity(_field_rows(values), odd)
    for row, value, want_odd in zip(got, values, odd, strict=True):
        expected = value if value % 2 == want_odd else p256.PRIME - value
        assert int.from_bytes(row.tobytes(), "big") == expected


def _rhs(x: int) -> int:
    return (x**3 - 3 * x + p256.B) % p256.PRIME


def _is_square(value: int) -> bool:
    return pow(value, (p256.PRIME - 1) // 2, p256.PRIME) == 1


@pytest.mark.skipif(not p256.AVAILABLE, reason="gmpy2 (the crypto-mb extra) is not installed")
def test_reference_curve_roots_are_roots():
    xs = [*EDGE_XS, *(random.Random(4).randrange(p256.PRIME) for _ in range(40))]
    ys, exists = p256.curve_roots(_field_rows(xs))
    assert exists.any() and not exists.all()
    for x, y, ok in zip(xs, ys, exists, strict=True):
        assert ok == _is_square(_rhs(x))
        if ok:
            assert pow(int.from_bytes(y.tobytes(), "big"), 2, p256.PRIME) == _rhs(x)


@needs_crypto_mb
@pytest.mark.parametrize("count", [1, 7, 8, 15, 16, 17, 31, 33, 500])
def test_library_square_roots_equal_the_reference(count):
    """Sixteen-lane roots: the same root and the same verdict as gmpy2, for every shape."""
    rng = random.Random(1000 + count)
    xs = [rng.randrange(p256.PRIME) for _ in range(count)]
    xs[: len(EDGE_XS)] = EDGE_XS[:count]
    rows = _field_rows(xs)
    got, got_exists = mb.curve_roots(rows)
    want, want_exists = p256.curve_roots(rows)
    assert np.array_equal(got_exists, want_exists)
    assert np.array_equal(got[want_exists], want[want_exists])


@needs_crypto_mb
def test_library_square_roots_refuse_what_is_not_a_field_element():
    with pytest.raises(ValueError, match="field element"):
        mb.curve_roots(_field_rows([p256.PRIME]))
    with pytest.raises(ValueError, match="rows"):
        mb.curve_roots(np.zeros((2, 31), dtype=np.uint8))
    ys, exists = mb.curve_roots(np.empty((0, 32), dtype=np.uint8))
    assert ys.shape == (0, 32) and exists.shape == (0,)


def test_reference_multiply_agrees_with_the_reference_backend(reference):
    """The slow self-test oracle gives the x that openmined-psi and cryptography give."""
    point = _points(reference, 1, seed=3)[0]
    xs, ys = _decompressed_by_cryptography(point)
    x, _ = p256.reference_multiply(int.from_bytes(SECRET, "big"), xs, ys)
    assert x.to_bytes(32, "big") == reference.key(SECRET).multiply_x([point])


def _decompressed_by_cryptography(point: bytes) -> tuple[int, int]:
    from cryptography.hazmat.primitives.asymmetric import ec

    numbers = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).public_numbers()
    return numbers.x, numbers.y


def test_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match="unknown curve backend"):
        get_backend("fourq")


@pytest.mark.parametrize("name", [OPENMINED, CRYPTO_MB])
def test_bad_scalars_are_refused(name):
    """Zero, n and wrong lengths never become a key, whichever the backend."""
    if name == CRYPTO_MB and UNAVAILABLE is not None:
        pytest.skip(f"crypto_mb backend unavailable: {UNAVAILABLE}")
    backend = get_backend(name)
    for scalar in (bytes(32), P256_ORDER.to_bytes(32, "big"), b"\x01" * 31, b"\x01" * 33):
        with pytest.raises(ValueError, match="scalar"):
            backend.key(scalar)


def test_a_missing_library_falls_back_with_one_line_and_the_suite_passes():
    """With the library pointed nowhere, auto says why once and uses openmined."""
    script = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from psi_core.protocol import select_backend, get_backend, BackendUnavailableError\n"
        "print(select_backend('auto').name, select_backend('auto').name)\n"
        "try:\n    get_backend('crypto_mb')\nexcept BackendUnavailableError as e:\n"
        "    print('refused:', e)\n"
    )
    env = dict(os.environ, PSI_CRYPTO_MB_LIBRARY="/nonexistent/libcrypto_mb.so")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "openmined openmined"
    assert lines[1].startswith("refused: the crypto_mb backend cannot run here")
    warnings = [line for line in result.stderr.splitlines() if "curve backend" in line]
    assert len(warnings) == 1
    assert "using openmined" in warnings[0]
    assert any(why in warnings[0] for why in ("nonexistent", "gmpy2", "avx512ifma"))


def test_reference_backend_announces_the_suite(reference):
    assert (reference.name, reference.suite) == (OPENMINED, SUITE)


# -- crypto_mb against the reference -----------------------------------------------------


@needs_crypto_mb
@pytest.mark.parametrize("size", BATCH_SIZES)
@pytest.mark.parametrize("scalar", EDGE_SCALARS, ids=["one", "n-1", "random"])
def test_hash_to_points_is_byte_identical(reference, fast, size, scalar):
    """s·H(k), compressed, in input order, for every batch shape and the edge scalars."""
    keys = _keys(size, seed=size)
    assert fast.key(scalar).hash_to_points(keys) == reference.key(scalar).hash_to_points(keys)


@needs_crypto_mb
@pytest.mark.parametrize("size", BATCH_SIZES)
def test_hash_to_x_is_byte_identical(reference, fast, size):
    keys = _keys(size, seed=100 + size)
    got = fast.key(SECRET).hash_to_x(keys)
    assert got == reference.key(SECRET).hash_to_x(keys)
    assert len(got) == 32 * size


@needs_crypto_mb
def test_keys_whose_first_attempts_miss_the_curve_hash_identically(reference, fast):
    """Keys needing 2, 3 and more try-and-increment rounds (found by an independent oracle)."""
    candidates = [f"edge|{i}" for i in range(120)]
    rounds = {key: _attempts(key) for key in candidates}
    hard = [key for key in candidates if rounds[key] >= 2]
    assert max(rounds.values()) >= 3
    assert len(hard) >= 30
    for key in hard:
        x, _ = p256.hash_to_curve(key.encode())
        assert int(x) != _oracle_x(key.encode())
    assert fast.key(SECRET).hash_to_points(hard) == reference.key(SECRET).hash_to_points(hard)


@needs_crypto_mb
def test_hash_to_curve_gives_even_y_on_the_curve(fast):
    for key in _keys(20, seed=9):
        x, y = p256.hash_to_curve(key.encode())
        assert int(y) % 2 == 0
        assert p256.is_on_curve(int(x), int(y))


@needs_crypto_mb
@pytest.mark.parametrize("size", BATCH_SIZES)
@pytest.mark.parametrize("scalar", EDGE_SCALARS, ids=["one", "n-1", "random"])
def test_multiply_is_byte_identical(reference, fast, size, scalar):
    """s·P for points of both parities, for every batch shape and the edge scalars."""
    points = _points(reference, size, seed=200 + size)
    got = fast.key(scalar).multiply(points)
    assert got == reference.key(scalar).multiply(points)
    assert fast.key(scalar).multiply_x(points) == reference.key(scalar).multiply_x(points)
    assert b"".join(p[1:] for p in got) == fast.key(scalar).multiply_x(points)


@needs_crypto_mb
def test_both_parities_and_the_edge_scalars_mean_what_they_say(reference, fast):
    """1·P = P and (n−1)·P = −P (same x, other parity), over points of both parities."""
    points = _points(reference, 40, seed=7)
    assert {p[0] for p in points} == {2, 3}
    assert fast.key(EDGE_SCALARS[0]).multiply(points) == points
    negated = [bytes([p[0] ^ 1]) + p[1:] for p in points]
    assert fast.key(EDGE_SCALARS[1]).multiply(points) == negated


@needs_crypto_mb
def test_a_large_batch_matches(reference, fast):
    points = _points(reference, 203, seed=8)
    assert fast.key(SECRET).multiply(points) == reference.key(SECRET).multiply(points)


def _bad_points() -> dict[str, bytes]:
    valid_x = (5).to_bytes(32, "big")
    return {
        "empty": b"",
        "short": b"\x02" + valid_x[:-1],
        "long": b"\x02" + valid_x + b"\x00",
        "uncompressed prefix": b"\x04" + valid_x,
        "zero prefix": b"\x00" + valid_x,
        "x = p": b"\x02" + p256.PRIME.to_bytes(32, "big"),
        "x > p": b"\x03" + b"\xff" * 32,
        "off the curve": off_curve_point(),
    }


@needs_crypto_mb
@pytest.mark.parametrize("name", list(_bad_points()))
@pytest.mark.parametrize("method", ["multiply", "multiply_x"])
def test_bad_points_are_refused_before_the_library(reference, fast, name, method):
    """A bad point anywhere in a batch refuses the batch, like the reference does."""
    batch = [*_points(reference, 9, seed=1), _bad_points()[name], *_points(reference, 3, seed=2)]
    for backend in (fast, reference):
        with pytest.raises(MalformedMessageError):
            getattr(backend.key(SECRET), method)(batch)


@needs_crypto_mb
def test_the_library_itself_refuses_an_off_curve_lane():
    """Defence in depth: the library's on-curve check guards the lane routines too."""
    lanes = mb.LaneMultiplier(SECRET)
    xs = np.frombuffer((5).to_bytes(32, "big") * 8, dtype=np.uint8).reshape(8, 32)
    with pytest.raises(RuntimeError, match="not on P-256"):
        lanes.multiply(xs, xs)
    too_big = np.full((1, 32), 0xFF, dtype=np.uint8)
    with pytest.raises(ValueError, match="field element"):
        lanes.multiply(too_big, too_big)


@needs_crypto_mb
def test_a_product_at_infinity_is_refused_not_spread_over_the_batch():
    """One zero Z would make the shared inversion wrong for every lane: it is caught."""
    lanes = mb.LaneMultiplier(SECRET)
    products = mb._aligned(3 * mb._POINT_WORDS)
    products[:] = 1
    products[mb._POINT_WORDS + 2 * mb._COORD_WORDS : 2 * mb._POINT_WORDS] = 0
    with pytest.raises(RuntimeError, match="infinity"):
        lanes._affine(products, 3, want_y=True)


@needs_crypto_mb
def test_one_key_object_serves_many_threads(reference, fast):
    """Eight threads share one crypto_mb key; every answer equals the reference's."""
    key = fast.key(SECRET)
    batches = [_points(reference, 8 + i, seed=300 + i) for i in range(16)]
    expected = [reference.key(SECRET).multiply(b) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(key.multiply, batches))
        hashed = list(pool.map(key.hash_to_points, [_keys(9, seed=s) for s in range(16)]))
    assert got == expected
    assert hashed == [reference.key(SECRET).hash_to_points(_keys(9, seed=s)) for s in range(16)]


@needs_crypto_mb
@pytest.mark.parametrize(
    ("agency", "custodian"),
    [(OPENMINED, CRYPTO_MB), (CRYPTO_MB, OPENMINED), (CRYPTO_MB, CRYPTO_MB)],
)
def test_protocol_round_trip_across_backends(reference, agency, custodian):
    """Blind on one backend, answer on another: the same fingerprints as the index's."""
    keys = _keys(13, seed=77)
    query = BlindedQuery(SECRET[::-1], get_backend(agency))
    answer = Reencryptor(SECRET, get_backend(custodian)).membership(query.blind(keys))
    fingerprints = query.fingerprints(len(keys), answer)
    expected = np.frombuffer(reference.key(SECRET).hash_to_x(keys), dtype=np.uint8)
    assert [int(f).to_bytes(8, "big") for f in fingerprints] == [
        expected[i * 32 : i * 32 + 8].tobytes() for i in range(len(keys))
    ]


@needs_crypto_mb
def test_auto_picks_crypto_mb_here():
    assert select_backend("auto").name == CRYPTO_MB


# -- the index ---------------------------------------------------------------------------


def _build(tmp_path: Path, name: str, records: Path, backend: str, executor=None) -> bytes:
    epoch = EpochKey(epoch_id="00backend00epoch", created_at="", secret=SECRET)
    report = build_index(
        records,
        tmp_path / name,
        epoch,
        [RECIPES[r] for r in RECIPES],
        batch_rows=37,
        backend=backend,
        executor=executor,
    )
    assert report.backend == backend
    return (tmp_path / name / INDEX_FILE).read_bytes()


@needs_crypto_mb
def test_index_built_with_crypto_mb_is_byte_identical(tmp_path):
    """Same records, same epoch key: the crypto_mb index file equals the reference's."""
    records = write_records(tmp_path / "records.parquet", make_records(150, seed=4))
    reference_index = _build(tmp_path, "reference", records, OPENMINED)
    assert len(reference_index) > 8 * 150
    assert _build(tmp_path, "inline", records, CRYPTO_MB) == reference_index
    with process_pool(2) as pool:
        assert _build(tmp_path, "pool", records, CRYPTO_MB, pool) == reference_index


def test_an_unavailable_backend_fails_the_build_before_any_work(tmp_path, monkeypatch):
    """Asking for a backend that cannot run is a clear error, not a half-built index."""
    import psi_core.protocol.backend as backend_module

    monkeypatch.setattr(backend_module, "crypto_mb_unavailable_reason", lambda: "simulated")
    records = write_records(tmp_path / "records.parquet", make_records(5, seed=4))
    with pytest.raises(BackendUnavailableError, match="simulated"):
        _build(tmp_path, "never", records, CRYPTO_MB)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(("setting", "expected"), [("", OPENMINED), ("openmined", OPENMINED)])
def test_default_backend_follows_the_environment(monkeypatch, setting, expected):
    """PSI_CURVE_BACKEND picks the backend of callers that name none (openmined if unset)."""
    monkeypatch.setenv("PSI_CURVE_BACKEND", setting)
    assert default_backend().name == expected
    assert BlindedQuery().backend.name == expected


@needs_crypto_mb
def test_default_backend_can_be_crypto_mb(monkeypatch):
    monkeypatch.setenv("PSI_CURVE_BACKEND", "crypto_mb")
    assert default_backend().name == CRYPTO_MB
    assert Reencryptor(SECRET).backend.name == CRYPTO_MB
