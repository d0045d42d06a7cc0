"""Incremental updates within a key epoch: delta and removal segments, and compaction.

An epoch's index directory holds a *base* (``fingerprints.u64`` and ``manifest.json``,
as :mod:`psi_core.index.encrypted` describes) and any number of segments::

    index/<epoch>/segments/000001-add/      fingerprints.u64, manifest.json, keys/
    index/<epoch>/segments/000002-remove/   ...

A segment is an index file of its own, built from only the records it names, so an
append costs what its records cost, not what the epoch holds. An *add* segment holds the
fingerprints of appended records; a *remove* segment those of removed records. Segments
apply in ``seq`` order over the base and the last one naming a fingerprint wins, so a
lookup sees base + deltas − removals (``psi_core.protocol.fingerprint.live_mask``).
Each segment is published by renaming a finished directory, so a reader sees it whole or
not at all. ``compact`` merges the base and every segment into a new base whose ``seq``
is the last segment merged, then deletes those segments.

Removal is by key: removing a record removes its keys, also for another live record that
shares one (two records with the same name and address under ``name_address_v1``);
append that record again to restore it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from psi_core.errors import IntegrityError, InvalidInputError, PreconditionError
from psi_core.faults import point as crash_point
from psi_core.index.build import KEYS_DIR, BuildReport, Executor, build_index, iter_index_keys
from psi_core.index.encrypted import (
    ADD,
    BASE,
    INDEX_FILE,
    MANIFEST_FILE,
    REMOVE,
    EncryptedIndex,
    IndexManifest,
    read_manifest,
    write_index,
    write_manifest,
)
from psi_core.index.epoch import EpochKey
from psi_core.io import InputFile, fsync_directory
from psi_core.protocol import FINGERPRINT_BITS, Fingerprints, fingerprint
from psi_core.recipes import get_recipe

SEGMENTS_DIR = "segments"
_COMPACT_DIR = ".compact"
_COMMIT_MARK = "COMMIT"
_LOCK_FILE = "segments.lock"
#: Most segments an epoch may hold before it must be compacted (bounds lookup cost).
MAX_SEGMENTS = 1000


def segment_name(manifest: IndexManifest) -> str:
    return f"{manifest.seq:06d}-{manifest.kind}"


@contextlib.contextmanager
def _locked(epoch_dir: Path) -> Iterator[None]:
    """Serialize appends, removals and compactions of one epoch (across processes)."""
    epoch_dir.mkdir(parents=True, exist_ok=True)
    with (epoch_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def list_segments(epoch_dir: Path) -> list[IndexManifest]:
    """The published segments of an epoch, in ``seq`` order (unfinished ones are hidden)."""
    root = epoch_dir / SEGMENTS_DIR
    if not root.is_dir():
        return []
    found = []
    for directory in root.iterdir():
        if directory.name.startswith(".") or not (directory / MANIFEST_FILE).exists():
            continue
        manifest = read_manifest(directory)
        if directory.name != segment_name(manifest) or manifest.kind == BASE:
            raise IntegrityError(f"{directory} holds a manifest that does not match its name")
        found.append(manifest)
    return sorted(found, key=lambda m: m.seq)


def catalog_signature(epoch_dir: Path) -> tuple[object, ...]:
    """Changes whenever the base is replaced or a segment is published or deleted."""
    try:
        info = (epoch_dir / MANIFEST_FILE).stat()
        base: tuple[int, int] = (info.st_ino, info.st_mtime_ns)
    except FileNotFoundError:
        base = (0, 0)
    root = epoch_dir / SEGMENTS_DIR
    names = tuple(sorted(os.listdir(root))) if root.is_dir() else ()
    return (base, names)


def check_catalog(base: IndexManifest, segments: Sequence[IndexManifest]) -> None:
    """Raise IntegrityError unless the segments can follow ``base`` (same epoch, in order)."""
    previous = base.seq
    if base.kind != BASE:
        raise IntegrityError("an epoch's base index must be of kind 'base'")
    if len(segments) > MAX_SEGMENTS:
        raise IntegrityError(f"more than {MAX_SEGMENTS} segments; compact the index")
    for segment in segments:
        if segment.kind not in (ADD, REMOVE):
            raise IntegrityError("a segment must be of kind 'add' or 'remove'")
        if segment.epoch_id != base.epoch_id:
            raise IntegrityError("a segment belongs to another key epoch than its base")
        if segment.seq <= previous:
            raise IntegrityError("segments must follow the base in strictly increasing seq")
        previous = segment.seq


class SegmentedIndex:
    """An epoch's base index with its segments applied, for lookups.

    ``key_count`` is the base's plus every add segment's: an upper bound on the live
    fingerprints, which is what a false-match bound needs.
    """

    def __init__(self, base: EncryptedIndex, segments: Sequence[EncryptedIndex]) -> None:
        check_catalog(base.manifest, [s.manifest for s in segments])
        self.base = base
        self.segments = tuple(segments)

    @classmethod
    def open(cls, epoch_dir: Path, *, verify_digest: bool = True) -> SegmentedIndex:
        base = EncryptedIndex.open(epoch_dir, verify_digest=verify_digest)
        segments = [
            EncryptedIndex.open(epoch_dir / SEGMENTS_DIR / segment_name(m), verify_digest=True)
            for m in list_segments(epoch_dir)
        ]
        return cls(base, segments)

    @property
    def directory(self) -> Path:
        return self.base.directory

    @property
    def manifest(self) -> IndexManifest:
        """The base's manifest (epoch id and recipes hold for every segment)."""
        return self.base.manifest

    @property
    def epoch_id(self) -> str:
        return self.base.manifest.epoch_id

    @property
    def key_count(self) -> int:
        return self.base.manifest.key_count + sum(
            s.manifest.key_count for s in self.segments if s.manifest.kind == ADD
        )

    @property
    def record_count(self) -> int:
        total = self.base.manifest.record_count
        for segment in self.segments:
            sign = 1 if segment.manifest.kind == ADD else -1
            total += sign * segment.manifest.record_count
        return max(total, 0)

    @property
    def version(self) -> tuple[str, ...]:
        """The digests of the base and every segment: equal versions hold equal sets."""
        return (self.base.manifest.sha256, *(s.manifest.sha256 for s in self.segments))

    def false_positive_bound(self) -> float:
        return self.key_count / 2.0**FINGERPRINT_BITS

    @property
    def classic_setup_available(self) -> bool:
        """Whether plaintext keys were kept (``build-index --classic-keys``) for the base."""
        return self.base.manifest.classic_setup_available

    def classic_key_count(self, recipe: str) -> int:
        """Kept key strings for ``recipe`` ("" for all) in the base and add segments: an
        upper bound on what a classic setup holds (removals only shrink it)."""
        return self.base.manifest.classic_key_count(recipe) + sum(
            s.manifest.classic_key_count(recipe) for s in self.segments if s.manifest.kind == ADD
        )

    def contains(self, probes: Fingerprints) -> object:
        """Boolean mask: which probe fingerprints are live (base + deltas − removals)."""
        layers = [(s.manifest.kind == ADD, s.values) for s in self.segments]
        return fingerprint.live_mask(self.base.values, layers, probes)

    def __len__(self) -> int:
        return self.key_count


def build_segment(
    records_path: Path,
    epoch_dir: Path,
    epoch: EpochKey,
    kind: str,
    *,
    executor: Executor | None = None,
    max_in_flight: int = 4,
    batch_rows: int = 20_000,
    on_error: str = "refuse",
    progress: Callable[[int], None] | None = None,
    backend: str | None = None,
    source: InputFile | None = None,
) -> BuildReport:
    """Encrypt only the records in ``records_path`` and publish them as the next segment.

    ``kind`` is "add" (append them) or "remove" (remove them). The recipes are the base's.
    The work happens in ``segments/.building-<kind>`` (an interrupted build of the same
    file resumes from its finished shards) and is published by one rename. ``source``
    is ``records_path`` already opened with the caller's reading options (see
    :func:`~psi_core.index.build.build_index`).
    """
    if kind not in (ADD, REMOVE):
        raise InvalidInputError(f"a segment is 'add' or 'remove', not {kind!r}")
    with _locked(epoch_dir):
        recover_compaction(epoch_dir)
        base = read_manifest(epoch_dir)
        if base.epoch_id != epoch.epoch_id:
            raise PreconditionError("the base index was built under another key epoch")
        segments = list_segments(epoch_dir)
        if len(segments) >= MAX_SEGMENTS:
            raise PreconditionError(
                f"the epoch holds {len(segments)} segments; run `psi-custodian compact` first"
            )
        seq = max([base.seq, *(s.seq for s in segments)]) + 1
        work = epoch_dir / SEGMENTS_DIR / f".building-{kind}"
        report = build_index(
            records_path,
            work,
            epoch,
            [get_recipe(r) for r in base.recipes],
            executor=executor,
            max_in_flight=max_in_flight,
            batch_rows=batch_rows,
            on_error=on_error,
            progress=progress,
            classic_keys=base.classic_setup_available,
            backend=backend,
            source=source,
        )
        manifest = replace(report.manifest, kind=kind, seq=seq)
        write_manifest(work, manifest)
        _fsync_tree(work)
        crash_point("segment_before_publish")
        os.replace(work, epoch_dir / SEGMENTS_DIR / segment_name(manifest))
        return replace(report, manifest=manifest)


def _fsync_tree(directory: Path) -> None:
    for path in (directory / INDEX_FILE, directory / MANIFEST_FILE):
        with path.open("rb") as handle:
            os.fsync(handle.fileno())


def iter_live_keys(epoch_dir: Path) -> Iterator[str]:
    """The custodian's live plaintext keys (base + added − removed), each once.

    Holds the removed keys and the keys already yielded in memory: for the classic setup
    and compaction, which are bounded well below population scale anyway.
    """
    segments = list_segments(epoch_dir)
    removed_at: dict[str, int] = {}
    for segment in segments:
        if segment.kind == REMOVE:
            directory = epoch_dir / SEGMENTS_DIR / segment_name(segment)
            for key in iter_index_keys(directory):
                removed_at[key] = segment.seq
    sources = [(read_manifest(epoch_dir).seq, epoch_dir)] + [
        (s.seq, epoch_dir / SEGMENTS_DIR / segment_name(s)) for s in segments if s.kind == ADD
    ]
    seen: set[str] = set()
    for seq, directory in sources:
        for key in iter_index_keys(directory):
            if key in seen or removed_at.get(key, -1) > seq:
                continue
            seen.add(key)
            yield key


def compact(epoch_dir: Path) -> IndexManifest:
    """Merge the base and every segment into a new base; returns its manifest.

    The new base is staged in ``.compact/``, marked committed, then moved into place; a
    crash after the mark is finished by :func:`recover_compaction` (run by every reader
    that changes the epoch and by the custodian when it loads the epoch), before it is
    forgotten.
    """
    with _locked(epoch_dir):
        recover_compaction(epoch_dir)
        index = SegmentedIndex.open(epoch_dir)
        if not index.segments:
            return index.manifest
        layers = [(s.manifest.kind == ADD, s.values) for s in index.segments]
        values = fingerprint.apply_layers(index.base.values, layers)
        stage = epoch_dir / _COMPACT_DIR
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        counts = None
        if index.classic_setup_available:
            live = list(iter_live_keys(epoch_dir))
            counts_by_recipe = dict.fromkeys(index.manifest.recipes, 0)
            for key in live:
                recipe = key.split("|", 1)[0]
                if recipe in counts_by_recipe:
                    counts_by_recipe[recipe] += 1
            counts = tuple(sorted(counts_by_recipe.items()))
            keys_dir = stage / KEYS_DIR
            keys_dir.mkdir()
            (keys_dir / "shard-000000.keys").write_text("\n".join(live), encoding="utf-8")
        manifest = write_index(
            stage,
            values,
            epoch_id=index.epoch_id,
            recipes=index.manifest.recipes,
            record_count=index.record_count,
            classic_keys=counts,
        )
        manifest = replace(manifest, seq=index.segments[-1].manifest.seq)
        write_manifest(stage, manifest)
        _fsync_tree(stage)
        (stage / _COMMIT_MARK).touch()
        fsync_directory(stage)
        crash_point("compact_after_commit")
        del index, values, layers
        recover_compaction(epoch_dir)
        return manifest


def recover_compaction(epoch_dir: Path) -> None:
    """Finish a committed compaction, or drop one that never reached its commit mark."""
    stage = epoch_dir / _COMPACT_DIR
    if not stage.exists():
        return
    if not (stage / _COMMIT_MARK).exists():
        shutil.rmtree(stage)
        return
    if (stage / MANIFEST_FILE).exists():
        shutil.rmtree(epoch_dir / KEYS_DIR, ignore_errors=True)
    if (stage / KEYS_DIR).exists():
        os.replace(stage / KEYS_DIR, epoch_dir / KEYS_DIR)
    if (stage / INDEX_FILE).exists():
        os.replace(stage / INDEX_FILE, epoch_dir / INDEX_FILE)
    if (stage / MANIFEST_FILE).exists():
        os.replace(stage / MANIFEST_FILE, epoch_dir / MANIFEST_FILE)
    merged_through = read_manifest(epoch_dir).seq
    for segment in list_segments(epoch_dir):
        if segment.seq <= merged_through:
            shutil.rmtree(epoch_dir / SEGMENTS_DIR / segment_name(segment))
    shutil.rmtree(stage)


def segment_dir(epoch_dir: Path, manifest: IndexManifest) -> Path:
    """Where a piece of the epoch lives: the epoch directory for the base, else its segment."""
    if manifest.kind == BASE:
        return epoch_dir
    return epoch_dir / SEGMENTS_DIR / segment_name(manifest)


def held(epoch_dir: Path, manifest: IndexManifest) -> bool:
    """Whether a verified copy of the announced piece is already published locally."""
    try:
        local = read_manifest(segment_dir(epoch_dir, manifest))
    except (PreconditionError, IntegrityError):
        return False
    return local.sha256 == manifest.sha256 and local.seq == manifest.seq


def prune_segments(epoch_dir: Path, keep: Sequence[IndexManifest]) -> None:
    """Delete local segments (and unfinished downloads) the custodian no longer announces."""
    root = epoch_dir / SEGMENTS_DIR
    if not root.is_dir():
        return
    wanted = {segment_name(m) for m in keep}
    for directory in root.iterdir():
        if directory.name not in wanted:
            shutil.rmtree(directory, ignore_errors=True)
