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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from psi_core.errors import PeerError, PreconditionError, PsiError, UnreachableError
from psi_core.index import EncryptedIndex, IndexDownload, IndexManifest, read_manifest
from psi_core.recipes import recipe_ids
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.server import DEFAULT_MAX_MESSAGE_BYTES
from psi_rpc.status import error_from_rpc

_PEER = "custodian"
#: Largest index the agency accepts to download: 64 GiB (8·10^9 keys).
DEFAULT_MAX_INDEX_BYTES = 64 * 2**30
_MAX_CHUNK_POINTS = 1 << 20
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
    """What the custodian announced, checked for sanity."""

    custodian_id: str
    manifest: IndexManifest
    max_points_per_chunk: int
    max_subjects_per_query: int
    #: The largest message the custodian announced it accepts or sends.
    max_message_bytes: int
    #: Points per EvaluateRequest: the custodian's chunk limit, cut to what both sides'
    #: message limits carry.
    points_per_request: int


def _check_info(
    info: custodian_pb2.CustodianInfo, own_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> CustodianFacts:
    if len(info.index_sha256) != 32:
        raise PeerError("the custodian announced an index digest that is not 32 bytes")
    if info.index_size_bytes != info.key_count * 8:
        raise PeerError("the custodian's index size is not 8 bytes per key")
    # ASCII only: the id names a directory, and 64 non-ASCII letters overflow a file name.
    epoch_id = info.epoch_id
    if not epoch_id or len(epoch_id) > 64 or not (epoch_id.isascii() and epoch_id.isalnum()):
        raise PeerError("the custodian announced an unusable epoch id")
    known = set(recipe_ids())
    recipes = tuple(r for r in info.recipes if r in known)
    if not recipes:
        raise PeerError("the custodian holds no recipe this agency knows")
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
    return CustodianFacts(
        custodian_id=info.custodian_id,
        manifest=manifest,
        max_points_per_chunk=limits.max_points_per_chunk,
        max_subjects_per_query=limits.max_subjects_per_query,
        max_message_bytes=limits.max_message_bytes,
        points_per_request=max(1, min(limits.max_points_per_chunk, fitting)),
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
    ) -> EncryptedIndex:
        """The local copy of the announced index, downloading (or resuming) what is missing."""
        size = facts.manifest.size_bytes
        if size > self._max_index_bytes:
            raise PeerError(
                f"the custodian announced a {size:,}-byte index, over this agency's limit of "
                f"{self._max_index_bytes:,} bytes"
            )
        root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free
        if size > free:
            raise PreconditionError(
                f"the index needs {size:,} bytes but {root} has {free:,} free; free some space"
            )
        directory = root / facts.manifest.epoch_id
        try:
            local = read_manifest(directory)
        except PsiError:
            local = None
        if local is not None and local.sha256 == facts.manifest.sha256:
            return EncryptedIndex.open(directory)
        download = IndexDownload(directory, facts.manifest)
        if progress and download.offset:
            progress(download.offset)
        if not download.complete:
            request = custodian_pb2.FetchIndexRequest(
                epoch_id=facts.manifest.epoch_id, offset=download.offset
            )
            with self._tracked(self._stub.FetchIndex(request, timeout=timeout)) as call:
                for chunk in call:
                    download.append(chunk.offset, chunk.data)
                    if progress:
                        progress(len(chunk.data))
        return download.finish()

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
