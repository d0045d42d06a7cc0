"""P-256 arithmetic the protocol needs outside openmined-psi, on top of ``cryptography``.

This is the only module that touches ``cryptography``'s elliptic-curve API. It validates
compressed points that arrive from the wire and unblinds the custodian's answers:
given P = b·a·H(x) and the agency's scalar a, the x-coordinate of b·H(x) is the ECDH
shared secret of the private value a⁻¹ mod n with the public point P.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from psi_core.errors import MalformedMessageError

#: Order n of the P-256 group.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: Field prime p of P-256.
P256_PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1
#: Length of a SEC1 compressed P-256 point: one prefix byte (0x02 or 0x03) and x.
COMPRESSED_POINT_BYTES = 33
SCALAR_BYTES = 32

_CURVE = ec.SECP256R1()


def is_valid_scalar(scalar: bytes) -> bool:
    """True when ``scalar`` is 32 big-endian bytes encoding an integer in [1, n-1]."""
    if len(scalar) != SCALAR_BYTES:
        return False
    value = int.from_bytes(scalar, "big")
    return 0 < value < P256_ORDER


def decode_compressed_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """Decode a compressed P-256 point; raise MalformedMessageError if it is not one.

    Checks the length, the prefix, that x is below the field prime, and (through
    ``cryptography``'s decoder) that x is the abscissa of a curve point. P-256 has
    cofactor 1, so every such point is in the prime-order group.
    """
    if len(point) != COMPRESSED_POINT_BYTES or point[0] not in (2, 3):
        raise MalformedMessageError("a point is not a 33-byte compressed P-256 point")
    if int.from_bytes(point[1:], "big") >= P256_PRIME:
        raise MalformedMessageError("a point's x-coordinate is not a field element")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
    except ValueError:
        raise MalformedMessageError("a point is not on the P-256 curve") from None


def check_compressed_point(point: bytes) -> None:
    """Raise MalformedMessageError unless ``point`` is a compressed point on P-256."""
    decode_compressed_point(point)


def check_compressed_points(points: Sequence[bytes]) -> None:
    """Validate every point of ``points`` (see check_compressed_point)."""
    for point in points:
        check_compressed_point(point)


class XMultiplier:
    """x(s·P) for compressed points P and a fixed scalar s, with ``cryptography``'s ECDH.

    The ECDH shared secret of private value s and public point P is exactly x(s·P).
    Each point is decoded (and so validated) exactly once. Safe to share between threads.
    """

    def __init__(self, scalar: bytes) -> None:
        if not is_valid_scalar(scalar):
            raise ValueError("a scalar must be 32 bytes in [1, n-1]")
        self._key = ec.derive_private_key(int.from_bytes(scalar, "big"), _CURVE)

    def multiply_x(self, points: Sequence[bytes]) -> bytes:
        """x(s·P) for every P, 32 bytes each, concatenated in input order.

        Raises MalformedMessageError on a bad point.
        """
        exchange = self._key.exchange
        ecdh = ec.ECDH()
        out = bytearray()
        for point in points:
            out += exchange(ecdh, decode_compressed_point(point))
        return bytes(out)


def inverse_scalar(scalar: bytes) -> bytes:
    """s⁻¹ mod n as 32 big-endian bytes, for a scalar in [1, n-1]."""
    if not is_valid_scalar(scalar):
        raise ValueError("a scalar must be 32 bytes in [1, n-1]")
    return pow(int.from_bytes(scalar, "big"), -1, P256_ORDER).to_bytes(SCALAR_BYTES, "big")


def random_scalar() -> bytes:
    """A uniformly random scalar in [1, n-1], from the operating system's CSPRNG."""
    return (secrets.randbelow(P256_ORDER - 1) + 1).to_bytes(SCALAR_BYTES, "big")


class Unblinder(XMultiplier):
    """Removes the agency's blinding scalar a: x(a⁻¹·P) for the custodian's answers P."""

    def __init__(self, blinding_scalar: bytes) -> None:
        super().__init__(inverse_scalar(blinding_scalar))

    def unblind(self, points: Sequence[bytes]) -> bytes:
        """x(a⁻¹·P) for every P, concatenated; MalformedMessageError on a bad point."""
        return self.multiply_x(points)
