"""Receiving an encrypted index in pieces, resumably, and trusting nothing until verified.

The agency downloads the index as a stream of chunks. ``IndexDownload`` appends each
chunk to ``fingerprints.u64.partial`` after checking that it starts where the file ends,
is a whole number of fingerprints and does not run past the announced size. A restart
resumes from the partial file's length, unless the partial file was begun for another
digest (the custodian compacted or rebuilt meanwhile): then it starts over. The SHA-256
and the sort order (an unsorted index would make lookups silently wrong) are checked as
the bytes arrive: each chunk is hashed and compared with the last fingerprint before it
is written, and a resumed partial file is read back once in blocks. No step holds more
than one chunk or one block, so a 64 GiB index needs no more memory than a 64 KiB one.
``finish`` compares the digest with the one the custodian announced, then publishes the
index atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from psi_core import faults
from psi_core.errors import IntegrityError, PeerError
from psi_core.index.encrypted import INDEX_FILE, EncryptedIndex, IndexManifest, write_manifest
from psi_core.protocol import FINGERPRINT_BYTES, INDEX_DTYPE, is_strictly_increasing

PARTIAL_SUFFIX = ".partial"
#: Beside a partial file: the SHA-256 (hex) of the file it is becoming.
TARGET_SUFFIX = ".target"
#: Block size for reading a resumed partial file back (bounded memory whatever its size).
_READ_BLOCK = 1 << 20


class IndexDownload:
    """One resumable download of the index described by ``expected`` into ``directory``."""

    def __init__(self, directory: Path, expected: IndexManifest) -> None:
        if expected.size_bytes != expected.key_count * FINGERPRINT_BYTES:
            raise PeerError("the custodian announced an index size that is not 8 bytes a key")
        if len(expected.sha256) != 64:
            raise PeerError("the custodian announced an index digest that is not SHA-256")
        self.directory = directory
        self.expected = expected
        self.partial = directory / (INDEX_FILE + PARTIAL_SUFFIX)
        self._target = directory / (INDEX_FILE + PARTIAL_SUFFIX + TARGET_SUFFIX)
        directory.mkdir(parents=True, exist_ok=True)
        if self._target.exists() and self._target.read_text().strip() != expected.sha256:
            self.partial.unlink(missing_ok=True)
        self._target.write_text(expected.sha256 + "\n")
        self._truncate_to_whole_fingerprints()
        self._hash = hashlib.sha256()
        self._last: int | None = None
        self._sorted = True
        self._absorb_partial()

    def _truncate_to_whole_fingerprints(self) -> None:
        if not self.partial.exists():
            self.partial.touch()
        size = self.partial.stat().st_size
        usable = min(size - size % FINGERPRINT_BYTES, self.expected.size_bytes)
        if usable != size:
            with self.partial.open("r+b") as handle:
                handle.truncate(usable)

    def _absorb_partial(self) -> None:
        """Hash and order-check what an earlier run left, one block at a time."""
        with self.partial.open("rb") as handle:
            while block := handle.read(_READ_BLOCK):
                self._absorb(block)

    def _absorb(self, data: bytes) -> None:
        values = np.frombuffer(data, dtype=INDEX_DTYPE)
        if self._sorted and values.size:
            follows = self._last is None or values[0] > self._last
            self._sorted = follows and is_strictly_increasing(values)
            self._last = int(values[-1])
        self._hash.update(data)

    @property
    def offset(self) -> int:
        """Bytes already held; the next chunk must start here."""
        return self.partial.stat().st_size

    @property
    def complete(self) -> bool:
        return self.offset == self.expected.size_bytes

    def append(self, offset: int, data: bytes) -> None:
        """Append one chunk; raises PeerError for a chunk that cannot be right."""
        if offset != self.offset:
            raise PeerError(
                f"index chunk at offset {offset} arrived where {self.offset} was expected"
            )
        if not data or len(data) % FINGERPRINT_BYTES:
            raise PeerError("an index chunk is empty or not a whole number of fingerprints")
        if offset + len(data) > self.expected.size_bytes:
            raise PeerError("the index stream runs past the size the custodian announced")
        with self.partial.open("ab") as handle:
            handle.write(data)
        self._absorb(data)
        faults.point("download_chunk")

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)
        self._target.unlink(missing_ok=True)

    def finish(self) -> EncryptedIndex:
        """Verify the whole file and publish it; a failed check discards the download."""
        if not self.complete:
            raise PeerError(
                f"the index stream ended at {self.offset} of {self.expected.size_bytes} bytes"
            )
        if self._hash.hexdigest() != self.expected.sha256:
            self.discard()
            raise IntegrityError("the downloaded index does not match the custodian's SHA-256")
        if not self._sorted:
            self.discard()
            raise IntegrityError("the downloaded index is not sorted; it cannot be used")
        with self.partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.partial, self.directory / INDEX_FILE)
        write_manifest(self.directory, self.expected)
        self._target.unlink(missing_ok=True)
        return EncryptedIndex.open(self.directory, verify_digest=False)
