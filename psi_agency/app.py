"""Assemble a running agency service: store, custodian client, index copy, runner, server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from psi_agency.custodian_client import CustodianClient, CustodianFacts
from psi_agency.progress import ProgressBoard
from psi_agency.runner import IndexHolder, QueryRunner
from psi_agency.service import AgencyServicer
from psi_agency.store import AgencyStore
from psi_core.audit import AuditLog
from psi_core.index import EncryptedIndex
from psi_core.pki import TlsMaterial
from psi_proto.v1 import agency_pb2, agency_pb2_grpc
from psi_rpc.server import RunningServer, create_channel, create_server

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
    store: AgencyStore
    channel: grpc.Channel
    index: EncryptedIndex

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace)
        self.runner.stop()
        self.channel.close()
        self.store.close()


def start_agency(
    state_dir: Path,
    address: str,
    custodian_address: str,
    *,
    server_tls: TlsMaterial | None,
    custodian_tls: TlsMaterial | None,
    custodian_server_name: str | None = None,
    index_progress: Callable[[int, int], None] | None = None,
    max_workers: int = 8,
) -> RunningAgency:
    """Sync the index copy (resuming a partial download), recover unfinished queries, serve.

    ``index_progress`` is called with (bytes received, total bytes) while syncing.
    """
    state = AgencyState(state_dir)
    state.root.mkdir(parents=True, exist_ok=True)
    channel = create_channel(
        custodian_address, tls=custodian_tls, server_name=custodian_server_name
    )
    custodian = CustodianClient(channel)

    def sync(facts: CustodianFacts) -> EncryptedIndex:
        def step(received: int) -> None:
            if index_progress:
                index_progress(received, facts.manifest.size_bytes)

        return custodian.sync_index(state.index_root, facts, progress=step)

    def custodian_recipes() -> tuple[str, ...]:
        return custodian.info().manifest.recipes

    holder = IndexHolder(sync)
    index = holder.for_epoch(custodian.info())
    store = AgencyStore(state.database)
    store.discard_unsealed()
    board = ProgressBoard()
    runner = QueryRunner(
        store=store, custodian=custodian, index=holder, audit=AuditLog(state.database), board=board
    )
    runner.start()
    servicer = AgencyServicer(
        store=store, runner=runner, board=board, custodian_recipes=custodian_recipes
    )
    server = create_server(
        address,
        lambda s: agency_pb2_grpc.add_AgencyServicer_to_server(servicer, s),
        [SERVICE_NAME],
        tls=server_tls,
        max_workers=max_workers,
    )
    return RunningAgency(server=server, runner=runner, store=store, channel=channel, index=index)
