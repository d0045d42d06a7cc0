"""The agency's client of the Custodian service.

Every call has a deadline; every answer is validated before use: the announced index
facts (``CustodianInfo``) and each index chunk here and in ``psi_core.index.download``,
the re-encrypted points in ``psi_core.protocol.dh``. gRPC failures become our own errors
through ``psi_rpc.status``; a message over this agency's own size limit is the
custodian's fault (a PeerError), not a refused budget.

Point chunks are cut to the smaller of both sides' message limits, so neither side's
channel refuses them. Every call in flight can be cancelled (``cancel_calls``), which is
how a stopping agency gives up on a stalled custodian.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from psi_core.errors import (
    IntegrityError,
    PeerError,
    PreconditionError,
    PsiError,
    UnreachableError,
)
from psi_core.index import (
    ADD,
    BASE,
    REMOVE,
    IndexDownload,
    IndexManifest,
    SegmentedIndex,
    check_catalog,
    held,
    prune_segments,
    segment_dir,
)
from psi_core.protocol import SUITE
from psi_core.recipes import recipe_ids
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.server import DEFAULT_MAX_MESSAGE_BYTES
from psi_rpc.status import error_from_rpc

_PEER = "custodian"
#: Largest index the agency accepts to download: 64 GiB (8·10^9 keys).
DEFAULT_MAX_INDEX_BYTES = 64 * 2**30
_MAX_CHUNK_POINTS = 1 << 20
#: Most epochs a custodian may announce at once (current plus those in overlap).
_MAX_EPOCHS = 16
_KINDS = {
    custodian_pb2.SEGMENT_KIND_BASE: BASE,
    custodian_pb2.SEGMENT_KIND_ADD: ADD,
    custodian_pb2.SEGMENT_KIND_REMOVE: REMOVE,
}


@dataclass(frozen=True)
class EpochFacts:
    """One served epoch as announced: its base and segments, checked for sanity.

    ``ends_at`` is when the custodian stops serving it (Unix seconds; 0 for none).
    """

    epoch_id: str
    current: bool
    ends_at: int
    recipes: tuple[str, ...]
    record_count: int
    key_count: int
    base: IndexManifest
    segments: tuple[IndexManifest, ...] = ()

    @property
    def pieces(self) -> tuple[IndexManifest, ...]:
        return (self.base, *self.segments)

    @property
    def size_bytes(self) -> int:
        return sum(piece.size_bytes for piece in self.pieces)

    @property
    def version(self) -> tuple[str, ...]:
        return tuple(piece.sha256 for piece in self.pieces)


#: Smallest message limit a custodian may announce: an EvaluateHeader takes up to about
#: 4.4 KB (a 4096-byte authorization, recipe, epoch id, digest, tags and lengths).
MIN_MESSAGE_BYTES = 8 * 1024
#: One point in a PointChunk on the wire: field tag, length byte, 33 bytes.
_POINT_WIRE_BYTES = 35
#: The EvaluateRequest and PointChunk wrapping around the points (tags and lengths).
_CHUNK_WIRE_OVERHEAD = 16
_TOO_LARGE = "Received message larger than max"


def points_per_message(max_message_bytes: int) -> int:
    """Most points one EvaluateRequest can carry within ``max_message_bytes``."""
    return max(0, (max_message_bytes - _CHUNK_WIRE_OVERHEAD) // _POINT_WIRE_BYTES)


@dataclass(frozen=True)
class CustodianFacts:
    """What the custodian announced, checked for sanity. ``manifest`` is the current
    epoch's base; ``epochs`` every served epoch, current first."""

    custodian_id: str
    manifest: IndexManifest
    max_points_per_chunk: int
    max_subjects_per_query: int
    #: The largest message the custodian announced it accepts or sends.
    max_message_bytes: int
    #: Points per EvaluateRequest: the custodian's chunk limit, cut to what both sides'
    #: message limits carry.
    points_per_request: int
    epochs: tuple[EpochFacts, ...] = field(default=())
    #: The custodian's curve suite ("" from an older custodian is read as P-256's) and
    #: backend name ("" if it did not say; informational only).
    suite: str = SUITE
    backend: str = ""

    @property
    def served(self) -> tuple[EpochFacts, ...]:
        """Every served epoch, current first (the base alone for a custodian without epochs)."""
        if self.epochs:
            return self.epochs
        base = self.manifest
        return (
            EpochFacts(
                base.epoch_id, True, 0, base.recipes, base.record_count, base.key_count, base
            ),
        )

    @property
    def current(self) -> EpochFacts:
        return self.served[0]

    def epoch(self, epoch_id: str) -> EpochFacts | None:
        return next((e for e in self.served if e.epoch_id == epoch_id), None)


def _check_epoch_id(epoch_id: str) -> None:
    # ASCII only: the id names a directory, and 64 non-ASCII letters overflow a file name.
    if not epoch_id or len(epoch_id) > 64 or not (epoch_id.isascii() and epoch_id.isalnum()):
        raise PeerError("the custodian announced an unusable epoch id")


def _known_recipes(announced: Iterable[str]) -> tuple[str, ...]:
    known = set(recipe_ids())
    recipes = tuple(r for r in announced if r in known)
    if not recipes:
        raise PeerError("the custodian holds no recipe this agency knows")
    return recipes


def _piece(
    segment: custodian_pb2.IndexSegment, epoch_id: str, recipes: tuple[str, ...]
) -> IndexManifest:
    if len(segment.sha256) != 32:
        raise PeerError("the custodian announced an index digest that is not 32 bytes")
    if segment.size_bytes != segment.key_count * 8:
        raise PeerError("the custodian's index size is not 8 bytes per key")
    kind = _KINDS.get(segment.kind)
    if kind is None:
        raise PeerError("the custodian announced an index segment of no known kind")
    return IndexManifest(
        epoch_id=epoch_id,
        recipes=recipes,
        record_count=segment.record_count,
        key_count=segment.key_count,
        size_bytes=segment.size_bytes,
        sha256=segment.sha256.hex(),
        kind=kind,
        seq=segment.seq,
    )


def _check_epoch(info: custodian_pb2.EpochInfo) -> EpochFacts:
    _check_epoch_id(info.epoch_id)
    recipes = _known_recipes(info.recipes)
    base = _piece(info.base, info.epoch_id, recipes)
    segments = tuple(_piece(s, info.epoch_id, recipes) for s in info.segments)
    try:
        check_catalog(base, segments)
    except IntegrityError as exc:
        raise PeerError(f"the custodian announced an unusable index: {exc}") from exc
    if info.ends_at_unix_seconds < 0 or (info.current and info.ends_at_unix_seconds):
        raise PeerError("the custodian announced an unusable epoch end time")
    return EpochFacts(
        epoch_id=info.epoch_id,
        current=info.current,
        ends_at=info.ends_at_unix_seconds,
        recipes=recipes,
        record_count=info.record_count,
        key_count=info.key_count,
        base=base,
        segments=segments,
    )


def _check_epochs(info: custodian_pb2.CustodianInfo) -> tuple[EpochFacts, ...]:
    if not info.epochs:
        return ()
    if len(info.epochs) > _MAX_EPOCHS:
        raise PeerError(f"the custodian announced more than {_MAX_EPOCHS} epochs")
    epochs = tuple(_check_epoch(e) for e in info.epochs)
    if not epochs[0].current or any(e.current for e in epochs[1:]):
        raise PeerError("the custodian must announce exactly one current epoch, first")
    if epochs[0].epoch_id != info.epoch_id or len({e.epoch_id for e in epochs}) != len(epochs):
        raise PeerError("the custodian announced inconsistent epoch ids")
    return epochs


def _check_info(
    info: custodian_pb2.CustodianInfo, own_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> CustodianFacts:
    if len(info.index_sha256) != 32:
        raise PeerError("the custodian announced an index digest that is not 32 bytes")
    if info.index_size_bytes != info.key_count * 8:
        raise PeerError("the custodian's index size is not 8 bytes per key")
    _check_epoch_id(info.epoch_id)
    recipes = _known_recipes(info.recipes)
    limits = info.limits
    if (
        not 1 <= limits.max_points_per_chunk <= _MAX_CHUNK_POINTS
        or limits.max_subjects_per_query < 1
    ):
        raise PeerError("the custodian announced unusable limits")
    if limits.max_message_bytes < MIN_MESSAGE_BYTES:
        raise PeerError(
            f"the custodian announced a message limit of {limits.max_message_bytes} bytes, too "
            f"small to carry an Evaluate header (at least {MIN_MESSAGE_BYTES} bytes); it "
            "cannot be queried until it announces a usable limit"
        )
    fitting = points_per_message(min(limits.max_message_bytes, own_message_bytes))
    manifest = IndexManifest(
        epoch_id=info.epoch_id,
        recipes=recipes,
        record_count=info.record_count,
        key_count=info.key_count,
        size_bytes=info.index_size_bytes,
        sha256=info.index_sha256.hex(),
    )
    epochs = _check_epochs(info)
    if epochs and epochs[0].base.sha256 != manifest.sha256:
        raise PeerError("the custodian's current epoch and index digest disagree")
    return CustodianFacts(
        custodian_id=info.custodian_id,
        manifest=manifest,
        max_points_per_chunk=limits.max_points_per_chunk,
        max_subjects_per_query=limits.max_subjects_per_query,
        max_message_bytes=limits.max_message_bytes,
        points_per_request=max(1, min(limits.max_points_per_chunk, fitting)),
        epochs=epochs,
        suite=info.suite or SUITE,
        backend=info.backend[:32] if info.backend.isascii() and info.backend.isprintable() else "",
    )


class CustodianClient:
    """Calls to one custodian over one channel."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        timeout: float = 30.0,
        max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        """``max_message_bytes`` must be the limit ``channel`` was created with."""
        self._stub = custodian_pb2_grpc.CustodianStub(channel)
        self._timeout = timeout
        self._max_index_bytes = max_index_bytes
        self._max_message_bytes = max_message_bytes
        self._calls: set[Any] = set()
        self._calls_lock = threading.Lock()
        self._last_facts: CustodianFacts | None = None

    def _error(self, exc: grpc.RpcError) -> PsiError:
        details = exc.details() if hasattr(exc, "details") else ""
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE in (details or ""):
            return PeerError(
                f"the custodian sent a message over this agency's limit of "
                f"{self._max_message_bytes:,} bytes ({details})"
            )
        return error_from_rpc(exc, _PEER)

    @contextlib.contextmanager
    def _tracked(self, call: Any) -> Iterator[Any]:
        """Keep ``call`` cancellable by ``cancel_calls`` while it runs; cancel it on exit
        (a no-op once it finished), so an abandoned answer stream is not left open."""
        with self._calls_lock:
            self._calls.add(call)
        try:
            yield call
        except grpc.RpcError as exc:
            raise self._error(exc) from exc
        except grpc.FutureCancelledError as exc:
            raise PeerError("the call to the custodian was cancelled") from exc
        finally:
            call.cancel()
            with self._calls_lock:
                self._calls.discard(call)

    def cancel_calls(self) -> int:
        """Cancel every call in flight (they raise in their callers); returns how many."""
        with self._calls_lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()
        return len(calls)

    def info(self) -> CustodianFacts:
        future = self._stub.GetInfo.future(custodian_pb2.GetInfoRequest(), timeout=self._timeout)
        with self._tracked(future):
            answer = future.result()
        facts = _check_info(answer, self._max_message_bytes)
        self._last_facts = facts
        return facts

    def recipes(self) -> tuple[str, ...]:
        """The recipes the custodian holds; its last announcement while it is unreachable,
        so a query can be accepted (and wait for the custodian) during an outage."""
        try:
            return self.info().manifest.recipes
        except UnreachableError:
            if self._last_facts is None:
                raise
            return self._last_facts.manifest.recipes

    def sync_index(
        self,
        root: Path,
        facts: CustodianFacts,
        *,
        progress: Callable[[int], None] | None = None,
        timeout: float = 3600.0,
    ) -> SegmentedIndex:
        """The local copy of the current epoch's index (see :meth:`sync_epoch`)."""
        return self.sync_epoch(root, facts.current, progress=progress, timeout=timeout)

    def sync_epoch(
        self,
        root: Path,
        epoch: EpochFacts,
        *,
        progress: Callable[[int], None] | None = None,
        timeout: float = 3600.0,
    ) -> SegmentedIndex:
        """The local copy of ``epoch``'s index, downloading (or resuming) only the pieces
        it lacks: the base if its digest changed, then each segment not held. Each piece
        is verified like the base (SHA-256, sort order) before it is published; local
        segments the custodian no longer announces (merged by a compaction) are dropped.
        """
        size = epoch.size_bytes
        if size > self._max_index_bytes:
            raise PeerError(
                f"the custodian announced a {size:,}-byte index, over this agency's limit of "
                f"{self._max_index_bytes:,} bytes"
            )
        directory = root / epoch.epoch_id
        missing = [piece for piece in epoch.pieces if not held(directory, piece)]
        root.mkdir(parents=True, exist_ok=True)
        needed = sum(piece.size_bytes for piece in missing)
        free = shutil.disk_usage(root).free
        if needed > free:
            raise PreconditionError(
                f"the index needs {needed:,} bytes but {root} has {free:,} free; free some space"
            )
        for piece in missing:
            self._download(directory, piece, progress=progress, timeout=timeout)
        prune_segments(directory, epoch.segments)
        index = SegmentedIndex.open(directory, verify_digest=not missing)
        if index.version != epoch.version:
            raise PeerError("the local index copy does not match what the custodian announced")
        return index

    def _download(
        self,
        directory: Path,
        piece: IndexManifest,
        *,
        progress: Callable[[int], None] | None,
        timeout: float,
    ) -> None:
        download = IndexDownload(segment_dir(directory, piece), piece)
        if progress and download.offset:
            progress(download.offset)
        if not download.complete:
            request = custodian_pb2.FetchIndexRequest(
                epoch_id=piece.epoch_id,
                offset=download.offset,
                segment=0 if piece.kind == BASE else piece.seq,
            )
            with self._tracked(self._stub.FetchIndex(request, timeout=timeout)) as call:
                for chunk in call:
                    download.append(chunk.offset, chunk.data)
                    if progress:
                        progress(len(chunk.data))
        download.finish()

    def evaluate(
        self,
        header: custodian_pb2.EvaluateHeader,
        chunks: Iterable[list[bytes]],
        *,
        timeout: float,
    ) -> Iterator[list[bytes]]:
        """Stream the header and point chunks; yield the custodian's answer chunks."""

        def requests() -> Iterator[custodian_pb2.EvaluateRequest]:
            yield custodian_pb2.EvaluateRequest(header=header)
            for points in chunks:
                yield custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points))

        with self._tracked(self._stub.Evaluate(requests(), timeout=timeout)) as call:
            for answer in call:
                yield list(answer.points)
