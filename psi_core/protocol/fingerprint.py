"""64-bit fingerprints of curve points, and vectorized lookup: the numpy side of the index.

A fingerprint is the first 8 bytes of a point's 32-byte x-coordinate read as a big-endian
unsigned integer. x-coordinates of b·H(y) are indistinguishable from random to anyone
without b, so fingerprints are uniform and a lookup of one key against K fingerprints
falsely matches with probability at most K / 2^64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from psi_core.protocol.curve import COMPRESSED_POINT_BYTES

FINGERPRINT_BITS = 64
FINGERPRINT_BYTES = 8
#: On-disk dtype of the index: little-endian uint64, sorted ascending.
INDEX_DTYPE = np.dtype("<u8")
_X_BYTES = 32

Fingerprints = npt.NDArray[np.uint64]


def _leading_be_u64(rows: npt.NDArray[np.uint8], start: int) -> Fingerprints:
    window = np.ascontiguousarray(rows[:, start : start + FINGERPRINT_BYTES])
    return window.view(">u8").ravel().astype(INDEX_DTYPE)


def from_compressed_points(points: Sequence[bytes]) -> Fingerprints:
    """Fingerprints of compressed points (33 bytes each), in input order."""
    if not points:
        return np.empty(0, dtype=INDEX_DTYPE)
    flat = np.frombuffer(b"".join(points), dtype=np.uint8)
    if flat.size != len(points) * COMPRESSED_POINT_BYTES:
        raise ValueError("every point must be 33 bytes")
    return _leading_be_u64(flat.reshape(len(points), COMPRESSED_POINT_BYTES), 1)


def from_x_coordinates(xs: bytes) -> Fingerprints:
    """Fingerprints of concatenated 32-byte x-coordinates, in input order."""
    if len(xs) % _X_BYTES:
        raise ValueError("x-coordinates must be 32 bytes each")
    flat = np.frombuffer(xs, dtype=np.uint8)
    return _leading_be_u64(flat.reshape(len(xs) // _X_BYTES, _X_BYTES), 0)


def sorted_unique(parts: Sequence[Fingerprints]) -> Fingerprints:
    """Merge fingerprint arrays into one sorted array without duplicates."""
    if not parts:
        return np.empty(0, dtype=INDEX_DTYPE)
    return np.unique(np.concatenate([np.asarray(p, dtype=INDEX_DTYPE) for p in parts]))


def member_mask(index: Fingerprints, probes: Fingerprints) -> npt.NDArray[np.bool_]:
    """For each probe, whether it occurs in the sorted array ``index`` (O(n log K))."""
    probes = np.asarray(probes, dtype=INDEX_DTYPE)
    if index.size == 0 or probes.size == 0:
        return np.zeros(probes.shape, dtype=bool)
    positions = np.searchsorted(index, probes)
    positions[positions == index.size] = 0
    return np.asarray(index[positions] == probes)


def is_strictly_increasing(values: Fingerprints) -> bool:
    """True when ``values`` is sorted ascending with no repeats (a well-formed index)."""
    return bool(values.size < 2 or np.all(values[1:] > values[:-1]))


def live_mask(
    base: Fingerprints,
    layers: Sequence[tuple[bool, Fingerprints]],
    probes: Fingerprints,
) -> npt.NDArray[np.bool_]:
    """For each probe, whether it is in ``base`` updated by ``layers`` in order.

    Each layer is ``(added, sorted fingerprints)``: an added layer puts its fingerprints
    in, a removal layer takes them out, and the last layer naming a fingerprint wins (so a
    record removed and appended again is in). O(n log K) per layer.
    """
    probes = np.asarray(probes, dtype=INDEX_DTYPE)
    present = member_mask(base, probes)
    for added, values in layers:
        named = member_mask(values, probes)
        present = (present | named) if added else (present & ~named)
    return np.asarray(present)


def apply_layers(base: Fingerprints, layers: Sequence[tuple[bool, Fingerprints]]) -> Fingerprints:
    """``base`` updated by ``layers`` as in :func:`live_mask`, as one sorted unique array."""
    values = np.asarray(base, dtype=INDEX_DTYPE)
    for added, layer in layers:
        layer = np.asarray(layer, dtype=INDEX_DTYPE)
        if added:
            values = np.union1d(values, layer).astype(INDEX_DTYPE)
        else:
            values = np.setdiff1d(values, layer, assume_unique=True).astype(INDEX_DTYPE)
    return values
