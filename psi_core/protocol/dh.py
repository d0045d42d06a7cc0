"""The online DH-PSI step for both parties, without any transport.

Agency (``BlindedQuery``): for distinct key strings x it computes a·H(x) with a fresh
scalar a, and later turns the custodian's b·a·H(x) back into fingerprints of b·H(x),
which it looks up in its copy of the encrypted index. The custodian
(``Reencryptor``) only ever sees a·H(x): uniformly random points that reveal nothing
about x without a.

Each side validates what the other sent before it reaches a library: point encodings,
counts, and (agency) that the answer holds one distinct point per distinct request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from psi_core.errors import InvalidInputError, MalformedMessageError, PeerError
from psi_core.protocol import fingerprint, parallel
from psi_core.protocol.backend import CurveBackend, default_backend
from psi_core.protocol.curve import inverse_scalar, is_valid_scalar, random_scalar
from psi_core.protocol.fingerprint import FINGERPRINT_BITS


@dataclass(frozen=True)
class FalsePositiveBound:
    """Bound on cryptographic false matches: K / 2^64 per subject key, n·K / 2^64 per query."""

    per_subject: float
    expected_false_matches: float
    fingerprint_bits: int = FINGERPRINT_BITS

    @classmethod
    def for_query(cls, key_count: int, subject_keys: int) -> FalsePositiveBound:
        per_subject = key_count / 2.0**FINGERPRINT_BITS
        return cls(per_subject=per_subject, expected_false_matches=per_subject * subject_keys)


class Reencryptor:
    """The custodian's online step: b·P for blinded points P. Safe to call from any thread.

    ``backend`` does the curve work (the reference, openmined, when None).
    """

    def __init__(self, secret: bytes, backend: CurveBackend | None = None) -> None:
        self.backend = backend or default_backend()
        self._key = self.backend.key(secret)

    def membership(self, points: Sequence[bytes]) -> list[bytes]:
        """b·P for each P, in request order (MalformedMessageError on a bad point); slices
        run in parallel on the shared pool (key objects are thread-safe)."""
        return parallel.map_slices(self._key.multiply, points)

    def cardinality(self, points: Sequence[bytes]) -> list[bytes]:
        """b·P for each P, sorted, so no answer can be tied to the request position."""
        return sorted(parallel.map_slices(self._key.multiply, points))


class BlindedQuery:
    """The agency's side of one query: a blinding scalar used for this query only.

    Fresh by default; a query run again after a restart passes the scalar it stored
    (:attr:`scalar`), so that it sends exactly the same points and the custodian can
    recognize a replay (see :class:`RequestDigest`).
    """

    def __init__(self, scalar: bytes | None = None, backend: CurveBackend | None = None) -> None:
        if scalar is not None and not is_valid_scalar(scalar):
            raise ValueError("a blinding key must be 32 bytes encoding a scalar in [1, n-1]")
        self._scalar = bytes(scalar) if scalar is not None else random_scalar()
        self.backend = backend or default_backend()
        self._blinder = self.backend.key(self._scalar)
        self._unblinder = self.backend.key(inverse_scalar(self._scalar))

    @property
    def scalar(self) -> bytes:
        """The blinding scalar a; it never leaves the agency."""
        return self._scalar

    def blind(self, keys: Sequence[str]) -> list[bytes]:
        """a·H(x) for each key, in order. Keys must be distinct (see ``distinct_keys``).

        Slices run in parallel on the shared pool (key objects are thread-safe).
        """
        return parallel.map_slices(self._blinder.hash_to_points, keys)

    def _unblind_slice(self, points: Sequence[bytes]) -> list[bytes]:
        return [self._unblinder.multiply_x(points)]

    def fingerprints(self, sent: int, answer: Sequence[bytes]) -> fingerprint.Fingerprints:
        """Fingerprints of b·H(x) from the custodian's answer to ``sent`` distinct points.

        Raises PeerError when the answer cannot be right: a different count, a point that
        is not on the curve, or repeated points (distinct x give distinct b·a·H(x)).
        """
        if len(answer) != sent:
            raise PeerError(
                f"the custodian answered {len(answer)} points for {sent} sent; the query is void"
            )
        if len(set(answer)) != len(answer):
            raise PeerError("the custodian's answer repeats points; the query is void")
        try:
            xs = b"".join(parallel.map_slices(self._unblind_slice, answer))
            return fingerprint.from_x_coordinates(xs)
        except MalformedMessageError as exc:
            raise PeerError(f"the custodian's answer is malformed: {exc}") from exc


class RequestDigest:
    """SHA-256 over a request's blinded points in order, whatever the chunking.

    Points have a fixed size (33 bytes), so the concatenation is unambiguous. Both parties
    compute it: the agency to declare a replay, the custodian to recognize one and to check
    that the points sent are the ones declared.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, points: Sequence[bytes]) -> None:
        self._hash.update(b"".join(points))

    def digest(self) -> bytes:
        return self._hash.digest()


class ChunkCommitment:
    """An agency's commitment to every chunk of a request before it sends any point.

    One SHA-256 per chunk (over the chunk's 33-byte points concatenated) travels in the
    Evaluate header. The custodian records the request by :meth:`request_sha256` when it
    charges it, and checks each chunk against its digest before answering it; so every
    point it ever answers for this request was committed to, and a re-run with the same
    scalar (the same chunks) can be recognized and left uncharged even if the first run was
    cut off in the middle of the answer.
    """

    DOMAIN = b"psi.v1.ChunkCommitment\x00"

    def __init__(self, digests: Sequence[bytes], point_count: int) -> None:
        if not digests or len(digests) > point_count:
            raise InvalidInputError(
                "a chunk commitment needs one digest per chunk, and at most one per point"
            )
        if any(len(d) != 32 for d in digests):
            raise InvalidInputError("each chunk digest is 32 bytes (SHA-256)")
        self.digests = list(digests)
        self._next = 0

    @staticmethod
    def of(chunks: Sequence[Sequence[bytes]]) -> list[bytes]:
        """The digests an agency declares for ``chunks``."""
        return [hashlib.sha256(b"".join(chunk)).digest() for chunk in chunks]

    def request_sha256(self) -> bytes:
        """What identifies the whole request in the ledger."""
        return hashlib.sha256(self.DOMAIN + b"".join(self.digests)).digest()

    def check(self, chunk: Sequence[bytes]) -> None:
        """Raise InvalidInputError unless ``chunk`` is the next committed chunk."""
        if self._next >= len(self.digests):
            raise InvalidInputError("more chunks were sent than the header committed to")
        if hashlib.sha256(b"".join(chunk)).digest() != self.digests[self._next]:
            raise InvalidInputError(
                f"chunk {self._next + 1} does not match the digest the header committed to"
            )
        self._next += 1

    def check_complete(self) -> None:
        if self._next != len(self.digests):
            raise InvalidInputError(
                f"{self._next} chunks were sent but the header committed to {len(self.digests)}"
            )


def distinct_keys(keys: Sequence[str | None]) -> tuple[list[str], np.ndarray]:
    """The distinct keys, and for each input position the index of its key (-1 for None).

    Two subjects with the same key (the same person submitted twice) cost one point and
    both match or neither does.
    """
    positions: dict[str, int] = {}
    key_index = np.full(len(keys), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        if key is not None:
            key_index[i] = positions.setdefault(key, len(positions))
    return list(positions), key_index
