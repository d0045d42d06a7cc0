"""The agency's client of the Custodian service.

Every call has a deadline; every answer is validated before use: the announced index
facts (``CustodianInfo``) and each index chunk here and in ``psi_core.index.download``,
the re-encrypted points in ``psi_core.protocol.dh``. gRPC failures become our own errors
through ``psi_rpc.status``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from psi_core.errors import PeerError, PreconditionError, PsiError
from psi_core.index import EncryptedIndex, IndexDownload, IndexManifest, read_manifest
from psi_core.recipes import recipe_ids
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.status import error_from_rpc

_PEER = "custodian"
#: Largest index the agency accepts to download: 64 GiB (8·10^9 keys).
DEFAULT_MAX_INDEX_BYTES = 64 * 2**30
_MAX_CHUNK_POINTS = 1 << 20


@dataclass(frozen=True)
class CustodianFacts:
    """What the custodian announced, checked for sanity."""

    custodian_id: str
    manifest: IndexManifest
    max_points_per_chunk: int
    max_subjects_per_query: int


def _check_info(info: custodian_pb2.CustodianInfo) -> CustodianFacts:
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
    )


class CustodianClient:
    """Calls to one custodian over one channel."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        timeout: float = 30.0,
        max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
    ) -> None:
        self._stub = custodian_pb2_grpc.CustodianStub(channel)
        self._timeout = timeout
        self._max_index_bytes = max_index_bytes

    def info(self) -> CustodianFacts:
        try:
            answer = self._stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=self._timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, _PEER) from exc
        return _check_info(answer)

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
            try:
                for chunk in self._stub.FetchIndex(request, timeout=timeout):
                    download.append(chunk.offset, chunk.data)
                    if progress:
                        progress(len(chunk.data))
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, _PEER) from exc
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

        try:
            for answer in self._stub.Evaluate(requests(), timeout=timeout):
                yield list(answer.points)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, _PEER) from exc
