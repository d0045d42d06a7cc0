"""Assemble a running agency service: store, custodian client, index copy, runner, server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psi_agency.custodian_client import DEFAULT_MAX_INDEX_BYTES, CustodianClient, EpochFacts
from psi_agency.epochs import EpochPoller, IndexHolder
from psi_agency.progress import ProgressBoard
from psi_agency.retry import RetryPolicy
from psi_agency.runner import QueryRunner
from psi_agency.service import DEFAULT_MAX_WATCHERS, AgencyServicer
from psi_agency.store import AgencyStore
from psi_core.index import SegmentedIndex
from psi_core.policy import AuditLog, TlsMaterial
from psi_core.protocol import CurveBackend, default_backend, select_backend
from psi_proto.v1 import agency_pb2, agency_pb2_grpc
from psi_rpc.metrics import ServiceMetrics
from psi_rpc.server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    RunningServer,
    create_channel,
    create_server,
    refuse_plaintext_off_loopback,
)

SERVICE_NAME = agency_pb2.DESCRIPTOR.services_by_name["Agency"].full_name


class AgencyState:
    """STATE/agency.sqlite (queries, subjects, matches, audit) and STATE/index/<epoch>/."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def database(self) -> Path:
        return self.root / "agency.sqlite"

    @property
    def index_root(self) -> Path:
        return self.root / "index"


@dataclass
class RunningAgency:
    server: RunningServer
    runner: QueryRunner
    index: SegmentedIndex
    indexes: IndexHolder
    closers: tuple[Callable[[], None], ...]
    backend: CurveBackend

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float | None = None, drain_seconds: float = 10.0) -> None:
        """Stop serving (``grace`` seconds for calls in progress), then stop the runner:
        the query in flight gets ``drain_seconds`` to finish, then its calls to the
        custodian are cancelled and it is left QUEUED to resume on the next start."""
        self.server.stop(grace)
        self.runner.stop(drain_seconds=drain_seconds)
        for close in self.closers:
            close()


def default_evaluate_timeout(points: int) -> float:
    """Deadline for one Evaluate call: a minute plus a millisecond per point."""
    return 60.0 + points / 1000.0


def _reconnect_backoff(retry: RetryPolicy) -> tuple[float, float]:
    """The channel reconnects at least as often as queries are retried, so a retry after
    the custodian came back finds it (and not a channel still backing off)."""
    return min(retry.first_wait, 1.0), min(retry.first_wait, 10.0)


def start_agency(
    state_dir: Path,
    address: str,
    custodian_address: str,
    *,
    server_tls: TlsMaterial | None,
    custodian_tls: TlsMaterial | None,
    custodian_server_name: str | None = None,
    index_progress: Callable[[int, int], None] | None = None,
    evaluate_timeout: Callable[[int], float] = default_evaluate_timeout,
    max_index_bytes: int = DEFAULT_MAX_INDEX_BYTES,
    max_workers: int = 8,
    epoch_poll_seconds: float | None = None,
    max_watchers: int = DEFAULT_MAX_WATCHERS,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    retry: RetryPolicy | None = None,
    backend: str | None = None,
    metrics: ServiceMetrics | None = None,
) -> RunningAgency:
    """Sync the index copy (resuming a partial download), recover unfinished queries, serve.

    ``index_progress`` is called with (bytes received, total bytes) while syncing. Nothing
    is left open when it raises. The server has ``max_workers`` threads for calls plus one
    for each of at most ``max_watchers`` WatchQuery streams, so watchers never take the
    threads other calls need. ``max_message_bytes`` bounds every message of both the
    agency's server and its channel to the custodian. ``retry`` says how a query is
    tried again when the custodian is unreachable (default :class:`RetryPolicy`). With
    ``epoch_poll_seconds`` the custodian's epochs are polled that often and a new epoch's
    index is fetched in the background; without it, a new epoch is noticed when a query
    starts.
    ``backend`` is a curve backend name or "auto".
    """
    curve = select_backend(backend) if backend else default_backend()
    refuse_plaintext_off_loopback(address, server_tls, "serve")
    state = AgencyState(state_dir)
    state.root.mkdir(parents=True, exist_ok=True)
    channel = create_channel(
        custodian_address,
        tls=custodian_tls,
        server_name=custodian_server_name,
        max_message_bytes=max_message_bytes,
        reconnect_backoff_seconds=_reconnect_backoff(retry or RetryPolicy()),
    )
    closers: list[Callable[[], None]] = [channel.close]
    try:
        custodian = CustodianClient(
            channel, max_index_bytes=max_index_bytes, max_message_bytes=max_message_bytes
        )

        def sync(epoch: EpochFacts) -> SegmentedIndex:
            def step(received: int) -> None:
                if index_progress:
                    index_progress(received, epoch.size_bytes)
                if sync_progress:
                    done[0] += received
                    sync_progress(done[0], epoch.size_bytes)

            done = [0]

            return custodian.sync_epoch(state.index_root, epoch, progress=step)

        sync_progress = metrics.progress_callback("index_sync") if metrics else None
        holder = IndexHolder(sync, state.index_root)
        index = holder.for_new_query(custodian.info())[1]
        store = AgencyStore(state.database)
        closers.append(store.close)
        audit = AuditLog(state.database)
        closers.append(audit.close)
        store.discard_unsealed()
        board = ProgressBoard()
        runner = QueryRunner(
            store=store,
            custodian=custodian,
            index=holder,
            audit=audit,
            board=board,
            evaluate_timeout=evaluate_timeout,
            retry=retry,
            backend=curve,
            metrics=metrics,
        )
        if metrics is not None:
            metrics.index_keys.labels(index.epoch_id).set(index.key_count)
            metrics.report_query_states(store.state_counts)
        servicer = AgencyServicer(
            store=store,
            runner=runner,
            board=board,
            custodian_recipes=custodian.recipes,
            max_watchers=max_watchers,
        )
        server = create_server(
            address,
            lambda s: agency_pb2_grpc.add_AgencyServicer_to_server(servicer, s),
            [SERVICE_NAME],
            tls=server_tls,
            max_workers=max_workers + max_watchers,
            max_message_bytes=max_message_bytes,
            call_listeners=[metrics.record_call] if metrics is not None else [],
        )
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    runner.start()
    if epoch_poll_seconds:
        poller = EpochPoller(epoch_poll_seconds, custodian.info, holder)
        poller.start()
        closers.append(poller.stop)
    return RunningAgency(
        server=server,
        runner=runner,
        index=index,
        indexes=holder,
        closers=tuple(reversed(closers)),
        backend=curve,
    )
