"""Our wrapper over openmined-psi validates before the library sees anything."""

from __future__ import annotations

import private_set_intersection.python as stock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psi_core.errors import MalformedMessageError, PreconditionError
from psi_core.protocol import (
    P256_PRIME,
    KeyCipher,
    Unblinder,
    check_compressed_point,
    classic_response,
    classic_setup,
    classic_setup_size_check,
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
        (10**9, 1e-3, 10**6, "64-bit|2 GiB"),
    ],
)
def test_population_scale_classic_setup_is_refused(keys, fpr, clients, message):
    """At population scale the classic format cannot be built; we say why."""
    with pytest.raises(PreconditionError, match=message):
        classic_setup_size_check(keys, fpr, clients)


def test_small_classic_setup_is_allowed():
    """Ordinary sizes pass the size check."""
    classic_setup_size_check(100_000, 1e-9, 1_000)


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
