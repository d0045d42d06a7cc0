"""P-256 field arithmetic the ``crypto_mb`` backend does in Python, with gmpy2.

Intel's multi-buffer library multiplies points; everything around it is here:

* ``hash_to_curve``: the same function as openmined-psi's H (private-join-and-compute's
  ``ECGroup::GetPointByHashingToCurveSha256``): x₀ = RO(key), xᵢ₊₁ = RO(bytes(xᵢ)), where
  RO(m) = (SHA-256(0x01‖m) ‖ SHA-256(0x02‖m)) mod p read big-endian and bytes(x) is x
  big-endian without leading zeros; the first xᵢ with x³−3x+b a square gives the point
  (xᵢ, y) with y the *even* square root. Implemented from the algorithm, checked against
  openmined-psi byte for byte in the tests.
* ``decompress``: SEC1 compressed points from the wire, fully validated (length, prefix,
  x < p, x³−3x+b a square), so that no bad point ever reaches the library. P-256 has
  cofactor 1: every point recovered here is in the prime-order group.
* ``compress``: the encoding back, vectorized with numpy.
* ``reference_multiply``: a slow, obviously-written affine double-and-add, used only to
  check the library once when it is loaded.

This is the only module that imports gmpy2, an optional dependency (the ``crypto-mb``
extra): without it this module still imports, ``AVAILABLE`` is False, and the backend
that needs it reports itself unavailable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from psi_core.errors import MalformedMessageError

try:
    import gmpy2
except ImportError:  # the optional extra is not installed
    gmpy2 = None

AVAILABLE = gmpy2 is not None

#: Field prime p of P-256.
PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1
#: Group order n of P-256.
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: Curve coefficient b (a is −3).
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
#: The base point G.
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

COORDINATE_BYTES = 32
COMPRESSED_BYTES = 33

_P = gmpy2.mpz(PRIME) if AVAILABLE else PRIME
_B = gmpy2.mpz(B) if AVAILABLE else B
#: p ≡ 3 (mod 4), so a square a has the root a^((p+1)/4).
_SQRT_EXPONENT = gmpy2.mpz((PRIME + 1) // 4) if AVAILABLE else (PRIME + 1) // 4
_PRIME_BYTES = np.frombuffer(PRIME.to_bytes(COORDINATE_BYTES, "big"), dtype=np.uint8)

#: Big-endian 32-byte coordinates, one row per point.
Coordinates = npt.NDArray[np.uint8]


_FIRST_BLOCK = hashlib.sha256(b"\x01")
_SECOND_BLOCK = hashlib.sha256(b"\x02")


def _random_oracle(message: bytes) -> Any:
    """(SHA-256(0x01‖m) ‖ SHA-256(0x02‖m)) mod p, as an mpz."""
    first, second = _FIRST_BLOCK.copy(), _SECOND_BLOCK.copy()
    first.update(message)
    second.update(message)
    return gmpy2.mpz.from_bytes(first.digest() + second.digest(), "big") % _P


def _curve_rhs(x: Any) -> Any:
    """x³ − 3x + b mod p."""
    return ((x * x - 3) * x + _B) % _P


def hash_to_curve(key: bytes) -> tuple[Any, Any]:
    """H(key) = (x, y), y even; see the module docstring for the exact function."""
    x = _random_oracle(key)
    while True:
        rhs = _curve_rhs(x)
        if gmpy2.jacobi(rhs, _P) == 1:
            y = gmpy2.powmod(rhs, _SQRT_EXPONENT, _P)
            return x, (_P - y if y & 1 else y)
        # rhs is never 0: P-256 has no point of order 2.
        x = _random_oracle(x.to_bytes((x.bit_length() + 7) // 8, "big"))


def hash_to_curve_many(keys: Sequence[str]) -> tuple[Coordinates, Coordinates]:
    """H(k) for each key string (UTF-8, as openmined-psi hashes it): x and y rows."""
    xs = bytearray()
    ys = bytearray()
    for key in keys:
        x, y = hash_to_curve(key.encode("utf-8"))
        xs += x.to_bytes(COORDINATE_BYTES, "big")
        ys += y.to_bytes(COORDINATE_BYTES, "big")
    return _rows(bytes(xs), len(keys)), _rows(bytes(ys), len(keys))


def _rows(blob: bytes, count: int) -> Coordinates:
    return np.frombuffer(blob, dtype=np.uint8).reshape(count, COORDINATE_BYTES)


def below_prime(rows: Coordinates) -> npt.NDArray[np.bool_]:
    """For each big-endian row, whether it is < p (compared at the first differing byte)."""
    differs = rows != _PRIME_BYTES
    first = np.argmax(differs, axis=1)
    picked = rows[np.arange(rows.shape[0]), first]
    return np.asarray(differs.any(axis=1) & (picked < _PRIME_BYTES[first]))


def decompress(points: Sequence[bytes]) -> tuple[Coordinates, Coordinates]:
    """Affine (x, y) rows of SEC1 compressed points; MalformedMessageError if any is not one.

    The message never says which point failed or what it held.
    """
    count = len(points)
    if count == 0:
        empty = np.empty((0, COORDINATE_BYTES), dtype=np.uint8)
        return empty, empty
    blob = b"".join(points)
    if len(blob) != count * COMPRESSED_BYTES or any(len(p) != COMPRESSED_BYTES for p in points):
        raise MalformedMessageError("a point is not a 33-byte compressed P-256 point")
    table = np.frombuffer(blob, dtype=np.uint8).reshape(count, COMPRESSED_BYTES)
    prefixes = table[:, 0]
    if not np.all((prefixes == 2) | (prefixes == 3)):
        raise MalformedMessageError("a point is not a 33-byte compressed P-256 point")
    xs = np.ascontiguousarray(table[:, 1:])
    if not np.all(below_prime(xs)):
        raise MalformedMessageError("a point's x-coordinate is not a field element")
    ys = bytearray()
    x_bytes = xs.tobytes()
    for i, odd in enumerate((prefixes & 1).tolist()):
        x = gmpy2.mpz.from_bytes(x_bytes[i * 32 : i * 32 + 32], "big")
        rhs = _curve_rhs(x)
        y = gmpy2.powmod(rhs, _SQRT_EXPONENT, _P)
        if y * y % _P != rhs:  # rhs is not a square: no point has this x
            raise MalformedMessageError("a point is not on the P-256 curve")
        if (y & 1) != odd:
            y = _P - y
        ys += y.to_bytes(COORDINATE_BYTES, "big")
    return xs, _rows(bytes(ys), count)


def compress(xs: Coordinates, y_odd: npt.NDArray[np.bool_]) -> list[bytes]:
    """SEC1 compressed encodings of points given their x rows and whether y is odd."""
    count = xs.shape[0]
    table = np.empty((count, COMPRESSED_BYTES), dtype=np.uint8)
    table[:, 0] = 2 + y_odd.astype(np.uint8)
    table[:, 1:] = xs
    blob = table.tobytes()
    return [blob[i : i + COMPRESSED_BYTES] for i in range(0, len(blob), COMPRESSED_BYTES)]


def check_scalar(scalar: bytes) -> int:
    """The integer of a 32-byte big-endian scalar in [1, n−1]; ValueError otherwise."""
    if len(scalar) != COORDINATE_BYTES:
        raise ValueError("a scalar must be 32 bytes")
    value = int.from_bytes(scalar, "big")
    if not 0 < value < ORDER:
        raise ValueError("a scalar must encode an integer in [1, n-1]")
    return value


def is_on_curve(x: int, y: int) -> bool:
    return 0 <= x < PRIME and 0 <= y < PRIME and (y * y - (x * x * x - 3 * x + B)) % PRIME == 0


def reference_multiply(scalar: int, x: int, y: int) -> tuple[int, int]:
    """scalar·(x, y) by affine double-and-add with Python integers (slow; for self-tests)."""
    if not (0 < scalar < ORDER and is_on_curve(x, y)):
        raise ValueError("reference_multiply needs a scalar in [1, n-1] and a curve point")
    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = (x, y)
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    if result is None:
        raise ArithmeticError("unreachable: a scalar below n never gives the identity")
    return result


def _add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    if p is None:
        return q
    if q is None:
        return p
    (x1, y1), (x2, y2) = p, q
    if x1 == x2:
        if (y1 + y2) % PRIME == 0:
            return None
        slope = (3 * x1 * x1 - 3) * pow(2 * y1, -1, PRIME)
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, PRIME)
    slope %= PRIME
    x3 = (slope * slope - x1 - x2) % PRIME
    return x3, (slope * (x1 - x3) - y1) % PRIME
