"""P-256 arithmetic around Intel's library for the ``crypto_mb`` backend: gmpy2 and numpy.

Intel's multi-buffer library multiplies points and takes square roots many at a time;
everything around it is here:

* ``hashed_xs`` / ``hash_to_curve_many``: the same function as openmined-psi's H
  (private-join-and-compute's ``ECGroup::GetPointByHashingToCurveSha256``): x₀ = RO(key),
  xᵢ₊₁ = RO(bytes(xᵢ)), where RO(m) = (SHA-256(0x01‖m) ‖ SHA-256(0x02‖m)) mod p read
  big-endian and bytes(x) is x big-endian without leading zeros; the first xᵢ with
  x³−3x+b a square gives the point (xᵢ, y) with y the *even* square root. Implemented
  from the algorithm, checked against openmined-psi byte for byte in the tests. The
  candidates are tested with the Jacobi
  symbol here; the square roots come from a ``CurveRoots`` function, the library's or the
  gmpy2 reference ``curve_roots``.
* ``decompress``: SEC1 compressed points from the wire, fully validated (length, prefix,
  x < p, x³−3x+b a square, by the same ``CurveRoots``), so that no bad point ever
  reaches the library's multiplication. P-256 has cofactor 1: every point recovered here
  is in the prime-order group.
* ``with_parity``: y or p − y, vectorized, to give the root the parity asked for.
* ``compress``: the encoding back, vectorized with numpy.
* ``reference_multiply``: a slow, obviously-written affine double-and-add, used only to
  check the library once when it is loaded.

This is the only module that imports gmpy2, an optional dependency (the ``crypto-mb``
extra): without it this module still imports, ``AVAILABLE`` is False, and the backend
that needs it reports itself unavailable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
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


def _curve_rhs(x: Any) -> Any:
    """x³ − 3x + b mod p."""
    return ((x * x - 3) * x + _B) % _P


def hash_to_x(key: bytes) -> Any:
    """x of H(key), as an mpz (see ``hashed_xs``)."""
    return gmpy2.mpz.from_bytes(hashed_xs([key]), "big")


def hashed_xs(keys: Iterable[bytes]) -> bytes:
    """x of H(k) for each key, 32 bytes each, concatenated.

    x is the first candidate xᵢ whose x³−3x+b is a square: the Jacobi symbol tells (much
    cheaper than a square root, which is taken afterwards, many at once). One loop with
    everything inlined: this runs once or twice for every key of a population.
    """
    first_block, second_block = _FIRST_BLOCK, _SECOND_BLOCK
    from_bytes, jacobi = gmpy2.mpz.from_bytes, gmpy2.jacobi
    prime, b = _P, _B
    out = bytearray()
    for key in keys:
        message = key
        while True:
            first, second = first_block.copy(), second_block.copy()
            first.update(message)
            second.update(message)
            x = from_bytes(first.digest() + second.digest(), "big") % prime
            # x³−3x+b is never 0: P-256 has no point of order 2.
            if jacobi((x * x - 3) * x + b, prime) == 1:
                break
            message = x.to_bytes((x.bit_length() + 7) // 8, "big")
        out += x.to_bytes(COORDINATE_BYTES, "big")
    return bytes(out)


def hash_to_curve(key: bytes) -> tuple[Any, Any]:
    """H(key) = (x, y), y even; see the module docstring for the exact function."""
    x = hash_to_x(key)
    y = gmpy2.powmod(_curve_rhs(x), _SQRT_EXPONENT, _P)
    return x, (_P - y if y & 1 else y)


#: ``roots(xs) -> (ys, exists)``: for each x row a square root of x³−3x+b (either one)
#: and whether there is one. ``curve_roots`` here is the reference; the crypto_mb backend
#: passes the library's (``crypto_mb.curve_roots``), sixteen at a time.
CurveRoots = Callable[[Coordinates], tuple[Coordinates, npt.NDArray[np.bool_]]]


def curve_roots(xs: Coordinates) -> tuple[Coordinates, npt.NDArray[np.bool_]]:
    """The reference ``CurveRoots``, one gmpy2 exponentiation per row."""
    ys = bytearray()
    exists = np.empty(xs.shape[0], dtype=np.bool_)
    blob = xs.tobytes()
    for i in range(xs.shape[0]):
        rhs = _curve_rhs(gmpy2.mpz.from_bytes(blob[i * 32 : i * 32 + 32], "big"))
        y = gmpy2.powmod(rhs, _SQRT_EXPONENT, _P)
        exists[i] = y * y % _P == rhs
        ys += y.to_bytes(COORDINATE_BYTES, "big")
    return _rows(bytes(ys), xs.shape[0]), exists


def hash_to_curve_many(
    keys: Sequence[str], roots: CurveRoots = curve_roots
) -> tuple[Coordinates, Coordinates]:
    """H(k) for each key string (UTF-8, as openmined-psi hashes it): x and y rows."""
    xs = _rows(hashed_xs(key.encode("utf-8") for key in keys), len(keys))
    ys, exists = roots(xs)
    if not np.all(exists):
        raise ArithmeticError("a hashed x-coordinate has no point; the Jacobi test disagrees")
    return xs, with_parity(ys, np.zeros(len(keys), dtype=np.bool_))


def _rows(blob: bytes, count: int) -> Coordinates:
    return np.frombuffer(blob, dtype=np.uint8).reshape(count, COORDINATE_BYTES)


_PRIME_WORDS = np.frombuffer(PRIME.to_bytes(COORDINATE_BYTES, "big"), dtype=">u8").astype(np.uint64)


def with_parity(ys: Coordinates, odd: npt.NDArray[np.bool_]) -> Coordinates:
    """Each root y, or p − y, whichever has the parity asked for (y ≠ 0, never 0 on P-256)."""
    flip = (ys[:, -1] & 1).astype(np.bool_) != odd
    if not flip.any():
        return ys
    words = ys.view(">u8").astype(np.uint64)
    negated = np.empty_like(words)
    borrow = np.zeros(ys.shape[0], dtype=np.bool_)
    for i in range(3, -1, -1):
        prime_word = _PRIME_WORDS[i]
        negated[:, i] = prime_word - words[:, i] - borrow.astype(np.uint64)
        borrow = (words[:, i] > prime_word) | ((words[:, i] == prime_word) & borrow)
    chosen = np.where(flip[:, None], negated, words)
    return np.ascontiguousarray(chosen.astype(">u8").view(np.uint8).reshape(-1, COORDINATE_BYTES))


def below_prime(rows: Coordinates) -> npt.NDArray[np.bool_]:
    """For each big-endian row, whether it is < p (compared at the first differing byte)."""
    differs = rows != _PRIME_BYTES
    first = np.argmax(differs, axis=1)
    picked = rows[np.arange(rows.shape[0]), first]
    return np.asarray(differs.any(axis=1) & (picked < _PRIME_BYTES[first]))


def decompress(
    points: Sequence[bytes], roots: CurveRoots = curve_roots
) -> tuple[Coordinates, Coordinates]:
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
    ys, exists = roots(xs)
    if not np.all(exists):
        raise MalformedMessageError("a point is not on the P-256 curve")
    return xs, with_parity(ys, (prefixes & 1).astype(np.bool_))


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
