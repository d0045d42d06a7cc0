"""The encrypted index on disk, its manifest, and resumable verified downloads."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from psi_core.errors import IntegrityError, PeerError, PreconditionError
from psi_core.index import (
    EncryptedIndex,
    IndexDownload,
    create_epoch,
    load_epoch,
    read_manifest,
    write_index,
)

VALUES = np.array([3, 10, 2**63 + 5, 2**64 - 1], dtype="<u8")


def _index(tmp_path, values=VALUES):
    return write_index(tmp_path / "src", values, epoch_id="e1", recipes=("tin_v1",), record_count=4)


def test_index_round_trips_and_answers_membership(tmp_path):
    """A written index reopens memory-mapped and finds exactly its own fingerprints."""
    manifest = _index(tmp_path)
    index = EncryptedIndex.open(tmp_path / "src")
    assert index.manifest == manifest
    assert len(index) == 4
    probes = np.array([10, 11, 2**64 - 1, 0], dtype="<u8")
    assert index.contains(probes).tolist() == [True, False, True, False]


def test_empty_index_answers_no(tmp_path):
    """An index of no keys opens and matches nothing."""
    write_index(
        tmp_path / "src",
        np.empty(0, dtype="<u8"),
        epoch_id="e1",
        recipes=("tin_v1",),
        record_count=0,
    )
    assert EncryptedIndex.open(tmp_path / "src").contains(np.array([1], dtype="<u8")).tolist() == [
        False
    ]


def test_unsorted_fingerprints_are_refused_at_write(tmp_path):
    """The writer refuses unsorted or repeated fingerprints (lookups would be wrong)."""
    with pytest.raises(ValueError, match="sorted"):
        _index(tmp_path, np.array([5, 3], dtype="<u8"))
    with pytest.raises(ValueError, match="sorted"):
        _index(tmp_path, np.array([3, 3], dtype="<u8"))


def test_tampered_index_file_is_detected(tmp_path):
    """Changing one byte of the file fails the manifest's SHA-256."""
    _index(tmp_path)
    path = tmp_path / "src" / "fingerprints.u64"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256"):
        EncryptedIndex.open(tmp_path / "src")


def test_truncated_index_file_is_detected(tmp_path):
    """A file shorter than its manifest says is refused even without hashing."""
    _index(tmp_path)
    path = tmp_path / "src" / "fingerprints.u64"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(IntegrityError, match="size"):
        EncryptedIndex.open(tmp_path / "src", verify_digest=False)


def test_damaged_manifest_is_an_integrity_error(tmp_path):
    """A manifest that is not valid JSON is reported, not a crash."""
    _index(tmp_path)
    (tmp_path / "src" / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError):
        read_manifest(tmp_path / "src")


def test_missing_index_is_a_precondition_error(tmp_path):
    """Opening a directory with no index says to build one."""
    with pytest.raises(PreconditionError):
        EncryptedIndex.open(tmp_path / "nothing")


def _download(tmp_path):
    manifest = _index(tmp_path)
    data = (tmp_path / "src" / "fingerprints.u64").read_bytes()
    return manifest, data, IndexDownload(tmp_path / "dst", manifest)


def test_download_resumes_after_interruption(tmp_path):
    """A download cut after one chunk continues from its offset in a new object."""
    manifest, data, download = _download(tmp_path)
    download.append(0, data[:8])
    resumed = IndexDownload(tmp_path / "dst", manifest)
    assert resumed.offset == 8
    resumed.append(8, data[8:])
    index = resumed.finish()
    assert index.values.tolist() == VALUES.tolist()


def test_partial_fingerprint_at_the_end_of_a_partial_file_is_dropped(tmp_path):
    """A crash mid-write leaves a torn fingerprint that the resume truncates away."""
    manifest, data, download = _download(tmp_path)
    download.append(0, data[:16])
    with download.partial.open("ab") as handle:
        handle.write(b"\x01\x02\x03")
    assert IndexDownload(tmp_path / "dst", manifest).offset == 16


@pytest.mark.parametrize(
    ("offset", "chunk", "message"),
    [
        (8, b"\x00" * 8, "offset"),
        (0, b"\x00" * 7, "whole number"),
        (0, b"", "empty"),
        (0, b"\x00" * 40, "past the size"),
    ],
)
def test_bad_chunks_are_refused(tmp_path, offset, chunk, message):
    """Out-of-place, torn, empty and oversized chunks are PeerErrors."""
    _, _, download = _download(tmp_path)
    with pytest.raises(PeerError, match=message):
        download.append(offset, chunk)


def test_download_with_wrong_digest_is_discarded(tmp_path):
    """Bytes that do not hash to the announced digest are thrown away, never published."""
    _, data, download = _download(tmp_path)
    download.append(0, bytes(len(data)))
    with pytest.raises(IntegrityError, match="SHA-256"):
        download.finish()
    assert not download.partial.exists()
    assert not (tmp_path / "dst" / "fingerprints.u64").exists()


def test_unsorted_index_with_matching_digest_is_refused(tmp_path):
    """A custodian that announces the digest of an unsorted file still gets refused."""
    manifest, data, _ = _download(tmp_path)
    reordered = data[8:16] + data[:8] + data[16:]
    import hashlib
    from dataclasses import replace

    forged = replace(manifest, sha256=hashlib.sha256(reordered).hexdigest())
    download = IndexDownload(tmp_path / "dst", forged)
    download.append(0, reordered)
    with pytest.raises(IntegrityError, match="not sorted"):
        download.finish()


def test_incomplete_download_cannot_finish(tmp_path):
    """Finishing before all bytes arrived is a PeerError."""
    _, data, download = _download(tmp_path)
    download.append(0, data[:8])
    with pytest.raises(PeerError, match="ended at 8"):
        download.finish()


def test_epoch_key_is_private_and_never_overwritten(tmp_path):
    """The epoch key file is 0600, loads back, and a second create is refused."""
    key = create_epoch(tmp_path / "epoch")
    mode = stat.S_IMODE((tmp_path / "epoch" / "epoch.key").stat().st_mode)
    assert mode == 0o600
    assert load_epoch(tmp_path / "epoch") == key
    assert "secret" not in repr(key)
    assert key.secret.hex() not in repr(key)
    with pytest.raises(PreconditionError, match="never overwritten"):
        create_epoch(tmp_path / "epoch")


def test_group_readable_epoch_key_is_refused(tmp_path):
    """A key file readable by others is refused at load with a chmod hint."""
    create_epoch(tmp_path / "epoch")
    os.chmod(tmp_path / "epoch" / "epoch.key", 0o644)
    with pytest.raises(PreconditionError, match="chmod 600"):
        load_epoch(tmp_path / "epoch")


def test_damaged_epoch_key_is_an_integrity_error(tmp_path):
    """A key file that is not a valid scalar is reported as damaged."""
    create_epoch(tmp_path / "epoch")
    (tmp_path / "epoch" / "epoch.key").write_text("00" * 32)
    with pytest.raises(IntegrityError):
        load_epoch(tmp_path / "epoch")
