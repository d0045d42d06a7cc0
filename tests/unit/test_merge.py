"""The external k-way merge that turns the build's sorted shards into the index."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest

from psi_core.protocol import fingerprint
from psi_core.protocol.fingerprint import INDEX_DTYPE, merge_block_size, merge_unique


def _runs(tmp_path, arrays):
    paths = []
    for i, values in enumerate(arrays):
        path = tmp_path / f"shard-{i:06d}.npy"
        np.save(path, np.sort(np.asarray(values, dtype=INDEX_DTYPE)))
        paths.append(path)
    return paths


def _random_runs(seed: int, runs: int, high: int, longest: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, high, size=int(rng.integers(0, longest)), dtype=np.uint64)
        for _ in range(runs)
    ]


@pytest.mark.parametrize("block", [1, 3, 64, 1 << 22])
def test_merge_equals_unique_of_everything(tmp_path, block):
    """Duplicates within a run, across runs and across block edges all go; order holds."""
    arrays = _random_runs(5, 9, high=3_000, longest=700)
    arrays += [np.array([], dtype=np.uint64), np.array([7, 7, 7, 7], dtype=np.uint64)]
    out = io.BytesIO()
    result = merge_unique(_runs(tmp_path, arrays), out, block=block)
    expected = np.unique(np.concatenate(arrays)).astype(INDEX_DTYPE)
    written = np.frombuffer(out.getvalue(), dtype=INDEX_DTYPE)
    assert written.tolist() == expected.tolist()
    assert result.count == expected.size
    assert result.sha256 == hashlib.sha256(expected.tobytes()).hexdigest()
    assert fingerprint.is_strictly_increasing(written)


def test_merge_keeps_the_extremes_of_uint64(tmp_path):
    top = np.iinfo(np.uint64).max
    arrays = [np.array([0, top], dtype=np.uint64), np.array([top - 1, top], dtype=np.uint64)]
    out = io.BytesIO()
    merge_unique(_runs(tmp_path, arrays), out, block=1)
    assert np.frombuffer(out.getvalue(), dtype=INDEX_DTYPE).tolist() == [0, top - 1, top]


def test_merge_never_holds_more_than_its_blocks(tmp_path, monkeypatch):
    """Structural bound: every read is one block, and what is held at once (the runs'
    blocks plus the batch being written) never exceeds twice runs x block, however long
    the runs are."""
    arrays = _random_runs(11, 6, high=2**63, longest=20_000)
    block = 100
    reads: list[int] = []
    real_pread = os.pread

    def spy(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", spy)
    result = merge_unique(_runs(tmp_path, arrays), io.BytesIO(), block=block)
    assert reads and max(reads) <= block * fingerprint.FINGERPRINT_BYTES
    assert sum(reads) == sum(a.size for a in arrays) * fingerprint.FINGERPRINT_BYTES
    assert result.peak_held <= 2 * len(arrays) * block
    assert result.count == np.unique(np.concatenate(arrays)).size


def test_block_size_shrinks_with_many_runs():
    assert merge_block_size(1) == fingerprint.MERGE_BLOCK
    many = 100_000
    assert merge_block_size(many) * many <= max(fingerprint.MERGE_BUDGET, 4096 * many)
    assert merge_block_size(many) >= 4096


def test_merge_refuses_a_run_of_another_dtype(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.arange(5, dtype=np.int32))
    with pytest.raises(ValueError, match="uint64"):
        merge_unique([path], io.BytesIO())


def test_merge_of_nothing_is_empty(tmp_path):
    out = io.BytesIO()
    result = merge_unique([], out)
    assert result.count == 0 and out.getvalue() == b""
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
