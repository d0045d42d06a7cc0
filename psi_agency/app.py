"""Assemble a running agency service: store, custodian client, index copy, runner, server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psi_agency.custodian_client import DEFAULT_MAX_INDEX_BYTES, CustodianClient, CustodianFacts
from psi_agency.progress import ProgressBoard
from psi_agency.runner import IndexHolder, QueryRunner
from psi_agency.service import AgencyServicer
from psi_agency.store import AgencyStore
from psi_core.index import EncryptedIndex
from psi_core.policy import AuditLog, TlsMaterial
from psi_proto.v1 import agency_pb2, agency_pb2_grpc
from psi_rpc.server import (
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
    index: EncryptedIndex
    closers: tuple[Callable[[], None], ...]

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace)
        self.runner.stop()
        for close in self.closers:
            close()


def default_evaluate_timeout(points: int) -> float:
    """Deadline for one Evaluate call: a minute plus a millisecond per point."""
    return 60.0 + points / 1000.0


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
) -> RunningAgency:
    """Sync the index copy (resuming a partial download), recover unfinished queries, serve.

    ``index_progress`` is called with (bytes received, total bytes) while syncing. Nothing
    is left open when it raises.
    """
    refuse_plaintext_off_loopback(address, server_tls, "serve")
    state = AgencyState(state_dir)
    state.root.mkdir(parents=True, exist_ok=True)
    channel = create_channel(
        custodian_address, tls=custodian_tls, server_name=custodian_server_name
    )
    closers: list[Callable[[], None]] = [channel.close]
    try:
        custodian = CustodianClient(channel, max_index_bytes=max_index_bytes)

        def sync(facts: CustodianFacts) -> EncryptedIndex:
            def step(received: int) -> None:
                if index_progress:
                    index_progress(received, facts.manifest.size_bytes)

            return custodian.sync_index(state.index_root, facts, progress=step)

        holder = IndexHolder(sync)
        index = holder.for_epoch(custodian.info())
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
        )
        servicer = AgencyServicer(
            store=store,
            runner=runner,
            board=board,
            custodian_recipes=lambda: custodian.info().manifest.recipes,
        )
        server = create_server(
            address,
            lambda s: agency_pb2_grpc.add_AgencyServicer_to_server(servicer, s),
            [SERVICE_NAME],
            tls=server_tls,
            max_workers=max_workers,
        )
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    runner.start()
    return RunningAgency(
        server=server, runner=runner, index=index, closers=tuple(reversed(closers))
    )
