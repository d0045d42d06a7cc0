"""A real deployment on loopback: PKI, authority, custodian and agency services with mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from psi_agency.app import RunningAgency, start_agency
from psi_agency.client import AgencyClient
from psi_core.index import build_index
from psi_core.policy import PkiPaths, TlsMaterial, load_tls_material
from psi_core.recipes import RECIPES
from psi_custodian.app import start_custodian
from psi_custodian.state import CustodianLimits, CustodianState
from psi_rpc.server import RunningServer, create_channel
from psi_tools.authority import init_authority, issue_authorization
from psi_tools.dev_pki import init_pki
from tests.factories import make_records, write_records

POPULATION = 300


@dataclass
class Deployment:
    root: Path
    pki: PkiPaths
    authority: Path
    custodian_state: Path
    records: list[dict[str, str]]
    custodian: RunningServer
    agency: RunningAgency | None = None
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def custodian_address(self) -> str:
        return f"127.0.0.1:{self.custodian.port}"

    @property
    def agency_address(self) -> str:
        assert self.agency is not None
        return f"127.0.0.1:{self.agency.port}"

    def tls(self, role: str) -> TlsMaterial:
        return load_tls_material(self.pki.root, role)

    def token(self, authority: Path | None = None, **overrides: object) -> bytes:
        """A token from this deployment's authority (or ``authority``) with test defaults."""
        claims: dict[str, object] = {
            "agency_id": "agency",
            "custodian_id": "custodian",
            "case_id": "CASE-1",
            "legal_basis": "test",
            "max_subjects": 100_000,
            "max_queries": 100,
            "ttl": timedelta(hours=1),
        }
        claims.update(overrides)
        return issue_authorization(authority or self.authority, **claims)  # type: ignore[arg-type]

    def channel(self, address: str, role: str | None) -> grpc.Channel:
        channel = create_channel(address, tls=self.tls(role) if role else None)
        self.channels.append(channel)
        return channel

    def agency_client(self) -> AgencyClient:
        return AgencyClient(self.channel(self.agency_address, "case-client"), timeout=30)

    def start_agency(self, state: Path) -> RunningAgency:
        return start_agency(
            state,
            "127.0.0.1:0",
            self.custodian_address,
            server_tls=self.tls("agency-server"),
            custodian_tls=self.tls("agency-client"),
        )


def make_deployment(
    root: Path,
    *,
    with_agency: bool = True,
    recipes: tuple[str, ...] | None = None,
    limits: CustodianLimits | None = None,
) -> Deployment:
    pki = init_pki(root / "tls")
    authority = root / "authority"
    init_authority(authority, "test-court")
    state = CustodianState(root / "custodian")
    epoch = state.init("custodian", limits)
    records = make_records(POPULATION, seed=11)
    build_index(
        write_records(root / "records.parquet", records),
        state.index_dir(epoch.epoch_id),
        epoch,
        [RECIPES[r] for r in recipes or RECIPES],
        batch_rows=100,
    )
    custodian = start_custodian(
        state.root,
        "127.0.0.1:0",
        tls=load_tls_material(pki.root, "custodian-server"),
        trusted_authorities=[authority],
    )
    deployment = Deployment(root, pki, authority, state.root, records, custodian)
    if with_agency:
        deployment.agency = deployment.start_agency(root / "agency")
    return deployment


def tear_down(deployment: Deployment) -> None:
    for channel in deployment.channels:
        channel.close()
    if deployment.agency is not None:
        deployment.agency.stop()
    deployment.custodian.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    created = make_deployment(tmp_path_factory.mktemp("deployment"))
    yield created
    tear_down(created)
