"""The encrypted index: sorted 64-bit fingerprints of b·H(y) for every key y, on disk.

Layout of an index directory::

    fingerprints.u64   little-endian uint64, strictly increasing, 8 bytes a key
    manifest.json      IndexManifest (epoch, recipes, counts, SHA-256 of the file)

The file reveals K (how many keys) and nothing else to anyone without b. Both parties
keep it memory-mapped; lookups are vectorized (``psi_core.protocol.fingerprint.member_mask``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from psi_core.errors import IntegrityError, PreconditionError
from psi_core.io.atomic import write_file_atomically
from psi_core.io.jsonfile import read_json_object
from psi_core.protocol import (
    FINGERPRINT_BITS,
    FINGERPRINT_BYTES,
    INDEX_DTYPE,
    Fingerprints,
    is_strictly_increasing,
    member_mask,
)

INDEX_FILE = "fingerprints.u64"
MANIFEST_FILE = "manifest.json"
FORMAT = "psi-encrypted-index/v1"
_HASH_BLOCK = 1 << 24
BASE, ADD, REMOVE = "base", "add", "remove"
SEGMENT_KINDS = (BASE, ADD, REMOVE)


@dataclass(frozen=True)
class IndexManifest:
    """What an index file holds. ``key_count`` is K; ``record_count`` the records it came from.

    ``kind`` is "base" for an epoch's base index, "add" for a delta segment (fingerprints
    of appended records) and "remove" for a removal segment (fingerprints of removed
    records). ``seq`` orders segments within an epoch (1, 2, ...); for a base it is the
    last segment merged into it by compaction (0 for a fresh build).
    """

    epoch_id: str
    recipes: tuple[str, ...]
    record_count: int
    key_count: int
    size_bytes: int
    sha256: str
    format: str = FORMAT
    fingerprint: str = "first 8 bytes of x(b*H(key)), big-endian, stored as little-endian u64"
    kind: str = "base"
    seq: int = 0
    #: Per recipe, how many plaintext key strings the custodian kept (``keys/``) to serve
    #: openmined-psi's classic setup; None when the index was built without
    #: ``--classic-keys`` (the default), so no plaintext key is kept and classic setups are
    #: refused.
    classic_keys: tuple[tuple[str, int], ...] | None = None

    @property
    def classic_setup_available(self) -> bool:
        return self.classic_keys is not None

    def classic_key_count(self, recipe: str) -> int:
        """Key strings kept for ``recipe`` ("" for every recipe), duplicates included."""
        counts = dict(self.classic_keys or ())
        return sum(counts.values()) if not recipe else counts.get(recipe, 0)

    def to_json(self) -> str:
        data = asdict(self)
        data["recipes"] = list(self.recipes)
        if self.classic_keys is None:
            del data["classic_keys"]
        else:
            data["classic_keys"] = dict(self.classic_keys)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise IntegrityError(f"the index manifest is damaged: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> IndexManifest:
        """The manifest in decoded JSON; IntegrityError saying which field is wrong."""
        if not isinstance(data, dict):
            raise IntegrityError("the index manifest is damaged: not a JSON object")
        try:
            manifest = cls(
                epoch_id=str(data["epoch_id"]),
                recipes=tuple(str(r) for r in data["recipes"]),
                record_count=int(data["record_count"]),
                key_count=int(data["key_count"]),
                size_bytes=int(data["size_bytes"]),
                sha256=str(data["sha256"]),
                format=str(data["format"]),
                kind=str(data.get("kind", "base")),
                seq=int(data.get("seq", 0)),
                classic_keys=_classic_keys(data.get("classic_keys")),
            )
        except KeyError as exc:
            raise IntegrityError(f"the index manifest is damaged: no field {exc}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"the index manifest is damaged: {exc}") from None
        if manifest.kind not in SEGMENT_KINDS or manifest.seq < 0:
            raise IntegrityError("the index manifest names an unknown kind or a negative seq")
        if manifest.format != FORMAT:
            raise IntegrityError(f"unsupported index format {manifest.format!r}")
        if manifest.size_bytes != manifest.key_count * FINGERPRINT_BYTES:
            raise IntegrityError("the index manifest's size and key count disagree")
        return manifest

    def false_positive_bound(self) -> float:
        """Upper bound on one subject key falsely matching: K / 2^64."""
        return self.key_count / 2.0**FINGERPRINT_BITS


def _classic_keys(value: object) -> tuple[tuple[str, int], ...] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("classic_keys must be an object")
    counts = tuple(sorted((str(recipe), int(count)) for recipe, count in value.items()))
    if any(count < 0 for _, count in counts):
        raise ValueError("a classic key count is negative")
    return counts


def _file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_index(
    directory: Path,
    fingerprints: Fingerprints,
    *,
    epoch_id: str,
    recipes: tuple[str, ...],
    record_count: int,
    classic_keys: tuple[tuple[str, int], ...] | None = None,
) -> IndexManifest:
    """Write a sorted, duplicate-free fingerprint array and its manifest, atomically.

    The data file is written and fsynced under a temporary name, then renamed; the
    manifest goes last, so a reader that finds a manifest finds a complete index.
    """
    values = np.ascontiguousarray(fingerprints, dtype=INDEX_DTYPE)
    if not is_strictly_increasing(values):
        raise ValueError("index fingerprints must be sorted and unique")
    raw = values.view(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    write_file_atomically(directory / INDEX_FILE, memoryview(raw), 0o644)
    manifest = IndexManifest(
        epoch_id=epoch_id,
        recipes=tuple(recipes),
        record_count=record_count,
        key_count=int(values.size),
        size_bytes=int(values.size) * FINGERPRINT_BYTES,
        sha256=hashlib.sha256(raw).hexdigest(),
        classic_keys=classic_keys,
    )
    write_manifest(directory, manifest)
    return manifest


def write_manifest(directory: Path, manifest: IndexManifest) -> None:
    """Write ``manifest.json`` atomically."""
    write_file_atomically(directory / MANIFEST_FILE, manifest.to_json().encode("utf-8"), 0o644)


def read_manifest(directory: Path) -> IndexManifest:
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise PreconditionError(f"no encrypted index in {directory}")
    try:
        return IndexManifest.from_dict(read_json_object(path, "index manifest"))
    except IntegrityError as exc:
        message = str(exc)
        raise IntegrityError(
            message if message.startswith(str(path)) else f"{path}: {exc}"
        ) from None


class EncryptedIndex:
    """A memory-mapped, verified index. Use ``open``; lookups never copy the file."""

    def __init__(self, directory: Path, manifest: IndexManifest, values: Fingerprints) -> None:
        self.directory = directory
        self.manifest = manifest
        self._values = values

    @classmethod
    def open(cls, directory: Path, *, verify_digest: bool = True) -> EncryptedIndex:
        """Map the index in ``directory``; raises IntegrityError if it fails its manifest.

        ``verify_digest`` re-hashes the whole file (about 1 s per GB); the size and the
        sort order of the first and last entries are always checked.
        """
        manifest = read_manifest(directory)
        path = directory / INDEX_FILE
        if not path.exists() or path.stat().st_size != manifest.size_bytes:
            raise IntegrityError(f"{path} is missing or its size differs from the manifest")
        if verify_digest and _file_sha256(path) != manifest.sha256:
            raise IntegrityError(f"{path} does not match the SHA-256 in its manifest")
        if manifest.key_count == 0:
            values: Fingerprints = np.empty(0, dtype=INDEX_DTYPE)
        else:
            values = np.memmap(path, dtype=INDEX_DTYPE, mode="r", shape=(manifest.key_count,))
        return cls(directory, manifest, values)

    @property
    def values(self) -> Fingerprints:
        return self._values

    def __len__(self) -> int:
        return int(self._values.size)

    def contains(self, probes: Fingerprints) -> np.ndarray:
        """Boolean mask: which probe fingerprints are in the index."""
        return member_mask(self._values, probes)

    def read_chunks(self, offset: int, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) pieces of the file from ``offset`` on, for streaming downloads."""
        path = self.directory / INDEX_FILE
        with path.open("rb") as handle:
            handle.seek(offset)
            position = offset
            while True:
                block = handle.read(chunk_bytes)
                if not block:
                    return
                yield position, block
                position += len(block)
