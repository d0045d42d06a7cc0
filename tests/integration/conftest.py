"""A real deployment on loopback: PKI, authority, custodian and agency services with mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import numpy as np
import private_set_intersection.python as stock
import pytest

from psi_agency.app import RunningAgency, start_agency
from psi_agency.client import AgencyClient
from psi_core.index import Clock, EncryptedIndex, build_index, utc_now, write_index
from psi_core.policy import PkiPaths, TlsMaterial, load_tls_material
from psi_core.protocol import OPENMINED
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES
from psi_custodian.app import start_custodian
from psi_custodian.state import CustodianLimits, CustodianState
from psi_proto.v1 import common_pb2, custodian_pb2, custodian_pb2_grpc
from psi_rpc.metrics import ServiceMetrics
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

    def start_agency(
        self, state: Path, metrics: ServiceMetrics | None = None, backend: str = OPENMINED
    ) -> RunningAgency:
        return start_agency(
            state,
            "127.0.0.1:0",
            self.custodian_address,
            server_tls=self.tls("agency-server"),
            custodian_tls=self.tls("agency-client"),
            backend=backend,
            metrics=metrics,
        )


@dataclass(frozen=True)
class PreparedCustodian:
    """A custodian's state, PKI and authority on disk, not yet serving."""

    pki: PkiPaths
    authority: Path
    state: CustodianState
    records: list[dict[str, str]]


def prepare_custodian(
    root: Path,
    *,
    recipes: tuple[str, ...] | None = None,
    limits: CustodianLimits | None = None,
    classic_keys: bool = True,
    pad_index: int = 0,
    build_backend: str = OPENMINED,
) -> PreparedCustodian:
    """``pad_index`` adds that many random fingerprints to the index (they match no key),
    for tests that need an index larger than what gRPC buffers for a reader.
    ``build_backend`` is the curve backend that builds the index (same bytes either way)."""
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
        [RECIPES[r] for r in recipes or DEFAULT_RECIPE_IDS],
        batch_rows=100,
        classic_keys=classic_keys,
        backend=build_backend,
    )
    if pad_index:
        _pad_index(state.index_dir(epoch.epoch_id), pad_index)
    return PreparedCustodian(pki, authority, state, records)


def _pad_index(index_dir: Path, extra: int) -> None:
    index = EncryptedIndex.open(index_dir)
    manifest = index.manifest
    noise = np.random.default_rng(5).integers(0, 2**64, size=extra, dtype=np.uint64)
    values = np.union1d(np.asarray(index.values), noise)
    del index
    write_index(
        index_dir,
        values,
        epoch_id=manifest.epoch_id,
        recipes=manifest.recipes,
        record_count=manifest.record_count,
        classic_keys=manifest.classic_keys,
    )


def make_deployment(
    root: Path,
    *,
    with_agency: bool = True,
    recipes: tuple[str, ...] | None = None,
    limits: CustodianLimits | None = None,
    classic_keys: bool = True,
    pad_index: int = 0,
    custodian_metrics: ServiceMetrics | None = None,
    agency_metrics: ServiceMetrics | None = None,
    clock: Clock = utc_now,
    build_backend: str = OPENMINED,
    custodian_backend: str = OPENMINED,
    agency_backend: str = OPENMINED,
) -> Deployment:
    prepared = prepare_custodian(
        root,
        recipes=recipes,
        limits=limits,
        classic_keys=classic_keys,
        pad_index=pad_index,
        build_backend=build_backend,
    )
    pki, authority, state, records = (
        prepared.pki,
        prepared.authority,
        prepared.state,
        prepared.records,
    )
    custodian = start_custodian(
        state.root,
        "127.0.0.1:0",
        tls=load_tls_material(pki.root, "custodian-server"),
        trusted_authorities=[authority],
        clock=clock,
        metrics=custodian_metrics,
        backend=custodian_backend,
    )
    deployment = Deployment(root, pki, authority, state.root, records, custodian)
    if with_agency:
        deployment.agency = deployment.start_agency(
            root / "agency", agency_metrics, backend=agency_backend
        )
    return deployment


def evaluate_requests(
    token: bytes, epoch_id: str, points: list[bytes], *, replay_of: bytes = b""
) -> list[custodian_pb2.EvaluateRequest]:
    """A membership Evaluate stream for tin_v1: the header, then ``points`` in one chunk."""
    header = custodian_pb2.EvaluateHeader(
        authorization=token,
        mode=common_pb2.QUERY_MODE_MEMBERSHIP,
        recipe="tin_v1",
        epoch_id=epoch_id,
        point_count=len(points),
        replay_of_sha256=replay_of,
    )
    return [
        custodian_pb2.EvaluateRequest(header=header),
        custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points)),
    ]


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


def stock_classic_intersection(
    stub: custodian_pb2_grpc.CustodianStub, token: bytes, keys: list[str], recipe: str = "tin_v1"
) -> set[str]:
    """The keys a stock openmined-psi client finds through the custodian's classic RPCs."""
    setup = stub.GetClassicSetup(
        custodian_pb2.ClassicSetupRequest(
            authorization=token, fpr=1e-9, num_client_inputs=len(keys), recipe=recipe
        ),
        timeout=60,
    )
    client = stock.client.CreateWithNewKey(True)
    request = client.CreateRequest(keys)
    answer = stub.ProcessClassicRequest(
        custodian_pb2.ClassicRequest(authorization=token, request=request.SerializeToString()),
        timeout=60,
    )
    found = client.GetIntersection(
        stock.ServerSetup.FromString(setup.server_setup), stock.Response.FromString(answer.response)
    )
    return {keys[i] for i in found}
