"""64-bit fingerprints of curve points, and vectorized lookup: the numpy side of the index.

A fingerprint is the first 8 bytes of a point's 32-byte x-coordinate read as a big-endian
unsigned integer. x-coordinates of b·H(y) are indistinguishable from random to anyone
without b, so fingerprints are uniform and a lookup of one key against K fingerprints
falsely matches with probability at most K / 2^64.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
    """Merge fingerprint arrays in memory into one sorted array without duplicates (small
    inputs; the build uses :func:`merge_unique`)."""
    if not parts:
        return np.empty(0, dtype=INDEX_DTYPE)
    return np.unique(np.concatenate([np.asarray(p, dtype=INDEX_DTYPE) for p in parts]))


#: Fingerprints read from one sorted run at a time by :func:`merge_unique` (32 MiB).
MERGE_BLOCK = 1 << 22
#: Fingerprints all runs' blocks may hold together; beyond it blocks shrink (64 MiB).
MERGE_BUDGET = 1 << 23
_MIN_BLOCK = 1 << 12


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_unique` wrote: count, SHA-256 (hex) of the bytes, and the most
    fingerprints it held in memory at once (blocks plus the batch being written)."""

    count: int
    sha256: str
    peak_held: int


class _Run:
    """One sorted ``.npy`` run, read ``block`` fingerprints at a time with positional reads."""

    def __init__(self, path: Path, block: int) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            self._offset = handle.tell()
        if fortran or len(shape) != 1 or np.dtype(dtype) != INDEX_DTYPE:
            os.close(self._fd)
            raise ValueError(f"{path} is not a 1-d little-endian uint64 array")
        self._remaining = int(shape[0])
        self._block = block
        self.values: Fingerprints = np.empty(0, dtype=INDEX_DTYPE)

    def refill(self) -> bool:
        """Read the next block into ``values``; False when the run is exhausted."""
        count = min(self._block, self._remaining)
        if count == 0:
            self.values = np.empty(0, dtype=INDEX_DTYPE)
            return False
        raw = os.pread(self._fd, count * FINGERPRINT_BYTES, self._offset)
        if len(raw) != count * FINGERPRINT_BYTES:
            raise ValueError("a sorted run ended early")
        self._offset += len(raw)
        self._remaining -= count
        self.values = np.frombuffer(raw, dtype=INDEX_DTYPE)
        return True

    def close(self) -> None:
        os.close(self._fd)


def merge_block_size(runs: int, block: int = MERGE_BLOCK, budget: int = MERGE_BUDGET) -> int:
    """Per-run block: at most ``block``, and all runs together at most about ``budget``."""
    return max(_MIN_BLOCK, min(block, budget // max(runs, 1)))


def merge_unique(
    paths: Sequence[Path],
    out: BinaryIO,
    *,
    block: int | None = None,
    on_write: Callable[[int], None] | None = None,
) -> MergeResult:
    """External k-way merge of sorted ``.npy`` runs into ``out``, without duplicates.

    Writes strictly increasing little-endian uint64 (the index format) and hashes it as
    it goes. Memory is bounded by the runs' blocks, never by the total: each run is read
    ``block`` fingerprints at a time (default :func:`merge_block_size`). Each step takes,
    as a threshold, the smallest of the runs' values an eighth of a block ahead (or their last
    buffered value), and writes every buffered value up to it: so the batch written is at
    most an eighth of what is held, the run that gave the threshold advances by an eighth
    of a block or is used up, and nothing after the step can be smaller (only equal, when a run
    repeats a value across two blocks, which is dropped).
    ``on_write`` gets the count written at each step.
    """
    size = block if block is not None else merge_block_size(len(paths))
    window = max(1, size // 8)
    runs = [_Run(Path(p), size) for p in paths]
    digest = hashlib.sha256()
    count = 0
    peak = 0
    last = np.uint64(0)
    try:
        active = [run for run in runs if run.refill()]
        while active:
            held = sum(run.values.size for run in active)
            threshold = min(run.values[min(window, run.values.size) - 1] for run in active)
            parts = []
            for run in active:
                cut = int(np.searchsorted(run.values, threshold, side="right"))
                parts.append(run.values[:cut])
                run.values = run.values[cut:]
            batch = np.unique(np.concatenate(parts))
            if count and batch.size and batch[0] == last:
                batch = batch[1:]
            if batch.size:
                last = batch[-1]
            peak = max(peak, held + batch.size)
            raw = memoryview(np.ascontiguousarray(batch, dtype=INDEX_DTYPE)).cast("B")
            out.write(raw)
            digest.update(raw)
            count += int(batch.size)
            if on_write:
                on_write(int(batch.size))
            active = [run for run in active if run.values.size or run.refill()]
    finally:
        for run in runs:
            run.close()
    return MergeResult(count=count, sha256=digest.hexdigest(), peak_held=peak)


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
