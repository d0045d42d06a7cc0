"""Our wrapper over openmined-psi validates before the library sees anything."""

from __future__ import annotations

import random

import private_set_intersection.python as stock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psi_core.errors import MalformedMessageError, PreconditionError
from psi_core.protocol import (
    P256_PRIME,
    PROTOBUF_MESSAGE_LIMIT,
    KeyCipher,
    Unblinder,
    check_compressed_point,
    classic_hash_range,
    classic_response,
    classic_setup,
    classic_setup_size_bound,
    parse_classic_request,
)

SECRET = bytes(range(1, 33))
VALID_POINT = KeyCipher(SECRET).encrypt_keys(["x"])[0]


@pytest.mark.parametrize(
    "point",
    [
        b"",
        b"\x00",
        VALID_POINT[:-1],
        VALID_POINT + b"\x00",
        b"\x04" + VALID_POINT[1:],
        b"\x02" + P256_PRIME.to_bytes(32, "big"),
        b"\x02" + b"\xff" * 32,
        b"\x02" + (1).to_bytes(32, "big"),  # x = 1 has no y on P-256
    ],
    ids=["empty", "infinity", "short", "long", "uncompressed-prefix", "x=p", "x>p", "off-curve"],
)
def test_bad_points_are_refused_before_the_library(point):
    """Every malformed encoding is a MalformedMessageError, never a library abort."""
    with pytest.raises(MalformedMessageError):
        check_compressed_point(point)
    with pytest.raises(MalformedMessageError):
        KeyCipher(SECRET).reencrypt([VALID_POINT, point])


def test_valid_point_passes():
    """A real b·H(x) passes validation."""
    check_compressed_point(VALID_POINT)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=4))
def test_arbitrary_bytes_never_crash_reencrypt(points):
    """Fuzz: any byte strings either re-encrypt or raise MalformedMessageError."""
    try:
        answer = KeyCipher(SECRET).reencrypt(points)
    except MalformedMessageError:
        return
    assert len(answer) == len(points)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_classic_requests_never_crash(data):
    """Fuzz: any bytes as a classic request parse to valid points or raise our error."""
    try:
        points = parse_classic_request(data, max_points=10)
    except MalformedMessageError:
        return
    for point in points:
        check_compressed_point(point)


def test_unblinder_refuses_bad_scalars():
    """Zero, the group order and wrong lengths are not blinding scalars."""
    for scalar in (bytes(32), b"\x01" * 31, b"\xff" * 32):
        with pytest.raises(ValueError, match="scalar"):
            Unblinder(scalar)


def test_key_cipher_refuses_bad_secret():
    """An epoch key that is not a valid scalar never reaches the library."""
    with pytest.raises(ValueError, match="scalar"):
        KeyCipher(bytes(32))


def test_stock_client_intersects_through_classic_messages():
    """A stock openmined-psi client gets the right intersection from our classic path."""
    server_keys = [f"key-{i}" for i in range(200)]
    client_keys = ["key-3", "key-150", "absent-1", "absent-2"]
    client = stock.client.CreateWithNewKey(True)
    setup = stock.ServerSetup.FromString(classic_setup(SECRET, server_keys, 1e-9, len(client_keys)))
    request = client.CreateRequest(client_keys).SerializeToString()
    points = parse_classic_request(request, max_points=100)
    response = stock.Response.FromString(
        classic_response(points, KeyCipher(SECRET).reencrypt(points))
    )
    found = {client_keys[i] for i in client.GetIntersection(setup, response)}
    assert found == {"key-3", "key-150"}


@pytest.mark.parametrize(
    ("keys", "fpr", "clients", "message"),
    [
        (335_000_000, 1e-9, 10_000_000, "64-bit"),
        (10, 1e-12, 10**6, "64-bit"),
        (1, 1e-6, 10**6, "2\\^52"),
        (3, 1e-9, 10**4, "2\\^52"),
    ],
)
def test_classic_setup_the_library_cannot_build_is_refused(keys, fpr, clients, message):
    """A hash range past int64, or one so sparse that the library's Golomb parameter breaks
    (it raises a C++ length error for (1, 1e-6, 10**6)), is refused before any work."""
    with pytest.raises(PreconditionError, match=message):
        classic_setup_size_bound(keys, fpr, clients)


def test_population_scale_classic_setup_is_bounded_over_2_gib():
    """10^9 keys: the bound says over protobuf's limit, before a single key is read."""
    assert classic_setup_size_bound(10**9, 1e-3, 10**6) > PROTOBUF_MESSAGE_LIMIT


def _setup_cases() -> list[tuple[int, float, int, int]]:
    """(keys, fpr, client inputs, repeats per key) across sparse, dense and mixed sizes."""
    rng = random.Random(7)
    cases = [(0, 1e-9, 10, 1), (1, 0.9, 1, 1), (1, 1e-6, 1000, 1), (500, 0.5, 1, 4)]
    while len(cases) < 24:
        keys = rng.choice([1, 2, 5, 30, 300, 2000])
        fpr = rng.choice([0.9, 0.5, 0.1, 1e-3, 1e-6, 1e-9, 1e-12])
        clients = rng.choice([1, 2, 10, 300, 10**4, 10**6])
        try:
            classic_setup_size_bound(keys, fpr, clients)
        except PreconditionError:
            continue
        cases.append((keys, fpr, clients, rng.choice([1, 1, 3])))
    return cases


@pytest.mark.parametrize(("keys", "fpr", "clients", "repeats"), _setup_cases())
def test_classic_setup_size_bound_holds_for_real_setups(keys, fpr, clients, repeats):
    """The bound, computed before any work, is never below the size of the setup the
    library really builds (repeated keys included: they count in n), nor far above it."""
    elements = [f"recipe|key-{i}" for i in range(keys)] * repeats
    server = stock.server.CreateFromKey(SECRET, True)
    setup = server.CreateSetupMessage(fpr, clients, elements, stock.DataStructure.GCS)
    real = len(setup.SerializeToString())
    bound = classic_setup_size_bound(len(elements), fpr, clients)
    assert setup.gcs.hash_range <= classic_hash_range(len(elements), fpr, clients)
    assert real <= bound
    assert bound <= 2 * repeats * real + 64


def test_classic_request_without_reveal_is_refused():
    """Cardinality-style classic requests are refused (we offer Evaluate for that)."""
    request = stock.client.CreateWithNewKey(False).CreateRequest(["a"]).SerializeToString()
    with pytest.raises(MalformedMessageError, match="reveal_intersection"):
        parse_classic_request(request, max_points=10)


def test_classic_request_over_the_cap_is_refused():
    """More points than the cap is refused before validation work."""
    request = stock.client.CreateWithNewKey(True).CreateRequest(["a", "b", "c"]).SerializeToString()
    with pytest.raises(MalformedMessageError, match="at most 2"):
        parse_classic_request(request, max_points=2)


def test_classic_bad_parameters_are_refused():
    """fpr outside (0,1) and zero client inputs are refused before the library."""
    for fpr, clients in ((0.0, 1), (1.0, 1), (float("nan"), 1), (0.1, 0)):
        with pytest.raises(MalformedMessageError):
            classic_setup(SECRET, ["a"], fpr, clients)
