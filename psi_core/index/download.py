"""Receiving an encrypted index in pieces, resumably, and trusting nothing until verified.

The agency downloads the index as a stream of chunks. ``IndexDownload`` appends each
chunk to ``fingerprints.u64.partial`` after checking that it starts where the file ends,
is a whole number of fingerprints and does not run past the announced size. A restart
resumes from the partial file's length. ``finish`` checks the SHA-256 against the digest
the custodian announced and that the fingerprints are strictly increasing (an unsorted
index would make lookups silently wrong), then publishes the index atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from psi_core.errors import IntegrityError, PeerError
from psi_core.index.encrypted import INDEX_FILE, EncryptedIndex, IndexManifest, write_manifest
from psi_core.protocol import FINGERPRINT_BYTES, INDEX_DTYPE, is_strictly_increasing

PARTIAL_SUFFIX = ".partial"


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
        directory.mkdir(parents=True, exist_ok=True)
        self._truncate_to_whole_fingerprints()

    def _truncate_to_whole_fingerprints(self) -> None:
        if not self.partial.exists():
            self.partial.touch()
        size = self.partial.stat().st_size
        usable = min(size - size % FINGERPRINT_BYTES, self.expected.size_bytes)
        if usable != size:
            with self.partial.open("r+b") as handle:
                handle.truncate(usable)

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

    def discard(self) -> None:
        self.partial.unlink(missing_ok=True)

    def finish(self) -> EncryptedIndex:
        """Verify the whole file and publish it; a failed check discards the download."""
        if not self.complete:
            raise PeerError(
                f"the index stream ended at {self.offset} of {self.expected.size_bytes} bytes"
            )
        values = np.fromfile(self.partial, dtype=INDEX_DTYPE)
        if hashlib.sha256(values.view(np.uint8)).hexdigest() != self.expected.sha256:
            self.discard()
            raise IntegrityError("the downloaded index does not match the custodian's SHA-256")
        if not is_strictly_increasing(values):
            self.discard()
            raise IntegrityError("the downloaded index is not sorted; it cannot be used")
        with self.partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.partial, self.directory / INDEX_FILE)
        write_manifest(self.directory, self.expected)
        return EncryptedIndex.open(self.directory, verify_digest=False)
