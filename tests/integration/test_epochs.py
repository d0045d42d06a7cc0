"""Key rotation and incremental updates against the real services on loopback (mTLS).

The custodian's clock is injected and moved by hand: nothing waits for an overlap window.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest

from psi_agency.custodian_client import CustodianClient
from psi_agency.epochs import EpochPoller
from psi_agency.store import RUNNING, AgencyStore
from psi_core.errors import IntegrityError, PeerError
from psi_core.index import (
    INDEX_FILE,
    EncryptedIndex,
    EpochRegistry,
    build_index,
    create_epoch,
    list_segments,
)
from psi_core.policy import AuditLog, load_tls_material
from psi_core.protocol import BlindedQuery
from psi_core.recipes import RECIPES, get_recipe
from psi_custodian.app import start_custodian
from psi_custodian.cli import main as custodian_cli
from psi_custodian.state import CustodianState
from psi_proto.v1 import agency_pb2, common_pb2, custodian_pb2, custodian_pb2_grpc
from psi_rpc.metrics import ServiceMetrics
from psi_rpc.modes import MODE_ENUMS
from psi_rpc.server import create_channel, create_server
from psi_tools.authority import init_authority
from psi_tools.dev_pki import init_pki
from tests.factories import as_subjects, make_records, write_records
from tests.integration.conftest import Deployment, make_deployment, tear_down

pytestmark = pytest.mark.integration

TIN = get_recipe("tin_v1")


class FakeClock:
    """Starts at the real time (so CLI commands and the service agree) and moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def deployment(tmp_path, clock) -> Iterator[Deployment]:
    created = make_deployment(tmp_path, recipes=("tin_v1",), clock=clock)
    yield created
    tear_down(created)


def _stub(deployment: Deployment) -> custodian_pb2_grpc.CustodianStub:
    return custodian_pb2_grpc.CustodianStub(
        deployment.channel(deployment.custodian_address, "agency-client")
    )


def _query(deployment: Deployment, rows: list[dict[str, str]], prefix: str = "S"):
    """Run a membership query through the agency; its final status and matched subject ids."""
    client = deployment.agency_client()
    submitted = client.submit(
        agency_pb2.QueryHeader(
            authorization=deployment.token(),
            mode=common_pb2.QUERY_MODE_MEMBERSHIP,
            recipe="tin_v1",
        ),
        [[agency_pb2.Subject(**s) for s in as_subjects(rows, prefix)]],
    )
    for status in client.watch(submitted.query_id):  # noqa: B007
        pass
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    return status, {m.subject.subject_id for m in client.matches(status.query_id)}


def _audit_events(deployment: Deployment) -> list[dict]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        assert log.verify().ok
        return [entry.event_data() for entry in log.entries()]


def _rotate(deployment: Deployment, overlap: str, clock: FakeClock) -> tuple[str, str]:
    """``epoch new --records`` then ``epoch activate`` (which read the real clock, so the
    fake one is set to it afterwards); returns (old, new) epoch ids."""
    state = str(deployment.custodian_state)
    old = CustodianState(deployment.custodian_state).registry().current().epoch_id
    records = str(deployment.root / "records.parquet")
    new_epoch = ["epoch", "new", "--state", state, "--records", records, "--recipe", "tin_v1"]
    assert custodian_cli(new_epoch) == 0
    new = CustodianState(deployment.custodian_state).registry().records()[-1].epoch_id
    assert custodian_cli(["epoch", "activate", "--state", state, new, "--overlap", overlap]) == 0
    clock.now = datetime.now(UTC)
    return old, new


def test_rotation_serves_both_epochs_moves_new_queries_then_retires_the_old_one(deployment, clock):
    """The whole rotation: overlap, background sync, new queries moved, key destroyed."""
    rows = deployment.records[:10] + make_records(5, seed=77, prefix="X")
    first, expected = _query(deployment, rows)
    assert len(expected) == 10
    old, new = _rotate(deployment, "1h", clock)

    info = _stub(deployment).GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
    assert [(e.epoch_id, e.current) for e in info.epochs] == [(new, True), (old, False)]
    assert info.epoch_id == new and info.epochs[0].ends_at_unix_seconds == 0
    assert info.epochs[1].ends_at_unix_seconds == pytest.approx(
        (clock.now + timedelta(hours=1)).timestamp(), abs=5
    )

    during, matches = _query(deployment, rows)
    assert during.epoch_id == old and matches == expected
    deployment.agency.indexes.wait_for_background(60)
    moved, matches = _query(deployment, rows)
    assert moved.epoch_id == new and matches == expected
    assert first.epoch_id == old

    clock.advance(hours=1, seconds=1)
    info = _stub(deployment).GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
    assert [e.epoch_id for e in info.epochs] == [new]
    state = deployment.custodian_state
    assert not (state / "index" / old).exists()
    assert not any(state.glob(f"**/{old}/epoch.key")) and not (state / "epoch").exists()
    after, matches = _query(deployment, rows)
    assert after.epoch_id == new and matches == expected
    assert not (deployment.root / "agency" / "index" / old).exists()

    kinds = [(e["kind"], e.get("epoch_id")) for e in _audit_events(deployment)]
    for event in ("epoch_created", "index_built", "epoch_activated", "epoch_retired"):
        assert (event, new if event != "epoch_retired" else old) in kinds


def test_a_retired_epoch_is_refused_for_fetch_evaluate_and_classic(deployment, clock):
    """Once its window ended, every call naming the old epoch is FAILED_PRECONDITION."""
    old, _ = _rotate(deployment, "10m", clock)
    stub = _stub(deployment)
    assert len(stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=30).epochs) == 2
    clock.advance(minutes=10)

    with pytest.raises(grpc.RpcError) as fetch:
        list(stub.FetchIndex(custodian_pb2.FetchIndexRequest(epoch_id=old), timeout=30))
    assert fetch.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "retired" in fetch.value.details()

    points = BlindedQuery().blind([TIN.key(deployment.records[0])])
    header = custodian_pb2.EvaluateHeader(
        authorization=deployment.token(),
        mode=MODE_ENUMS["membership"],
        recipe="tin_v1",
        epoch_id=old,
        point_count=1,
    )
    requests = [
        custodian_pb2.EvaluateRequest(header=header),
        custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points)),
    ]
    with pytest.raises(grpc.RpcError) as evaluate:
        list(stub.Evaluate(iter(requests), timeout=30))
    assert evaluate.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"key epoch {old} was retired" in evaluate.value.details()

    with pytest.raises(grpc.RpcError) as classic:
        stub.ProcessClassicRequest(
            custodian_pb2.ClassicRequest(
                authorization=deployment.token(), request=b"", epoch_id=old
            ),
            timeout=30,
        )
    assert classic.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    evaluations = [e for e in _audit_events(deployment) if e["kind"] == "evaluate"]
    assert evaluations[-1]["outcome"] == "FAILED_PRECONDITION"
    assert "charged" not in evaluations[-1]


def test_a_query_in_flight_finishes_on_the_epoch_it_started_on(deployment, clock):
    """The window ends between two chunks of one Evaluate: every chunk is still answered
    under the old key, and the answers match."""
    old, _ = _rotate(deployment, "5m", clock)
    old_index = EncryptedIndex.open(deployment.custodian_state / "index" / old)
    stub = _stub(deployment)
    rows = deployment.records[:6]
    keys = [TIN.key(r) for r in rows]
    query = BlindedQuery()
    first, second = query.blind(keys[:3]), query.blind(keys[3:])
    header = custodian_pb2.EvaluateHeader(
        authorization=deployment.token(),
        mode=MODE_ENUMS["membership"],
        recipe="tin_v1",
        epoch_id=old,
        point_count=6,
    )
    retired_between: list[int] = []
    first_answered = threading.Event()

    def requests() -> Iterator[custodian_pb2.EvaluateRequest]:
        yield custodian_pb2.EvaluateRequest(header=header)
        yield custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=first))
        assert first_answered.wait(60)
        clock.advance(minutes=6)
        info = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
        retired_between.append(len(info.epochs))
        yield custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=second))

    answers = []
    for response in stub.Evaluate(requests(), timeout=60):
        answers.append(list(response.points))
        first_answered.set()
    assert retired_between == [1]
    assert not (deployment.custodian_state / "index" / old).exists()
    hits = np.concatenate(
        [
            old_index.contains(query.fingerprints(3, answers[0])),
            old_index.contains(query.fingerprints(3, answers[1])),
        ]
    )
    assert hits.tolist() == [True] * 6


def test_a_rerun_whose_epoch_was_retired_fails_clearly_and_is_not_charged(tmp_path, clock):
    """A query pinned to its epoch (it kept its blinding scalar) fails after retirement."""
    deployment = make_deployment(tmp_path, recipes=("tin_v1",), clock=clock, with_agency=False)
    try:
        state = tmp_path / "agency"
        deployment.agency = deployment.start_agency(state)
        old = deployment.agency.index.epoch_id
        deployment.agency.stop()
        store = AgencyStore(state / "agency.sqlite")
        store.begin_query(
            "q-pinned",
            mode="membership",
            recipe="tin_v1",
            authorization=deployment.token(),
            case_id="CASE-1",
            requested_by="test",
        )
        store.add_subjects("q-pinned", 0, as_subjects(deployment.records[:4]))
        store.seal_query("q-pinned", 4)
        store.update("q-pinned", state=RUNNING, epoch_id=old)
        store.keep_blinding_key("q-pinned", BlindedQuery().scalar)
        store.close()
        _rotate(deployment, "0", clock)

        deployment.agency = deployment.start_agency(state)
        client = deployment.agency_client()
        for status in client.watch("q-pinned"):  # noqa: B007
            pass
        assert status.state == agency_pb2.QUERY_STATE_FAILED
        assert status.error_code == "FAILED_PRECONDITION"
        assert "retired" in status.error_message and "Submit the query again" in (
            status.error_message
        )
        assert [e for e in _audit_events(deployment) if e["kind"] == "evaluate"] == []
    finally:
        tear_down(deployment)


def test_a_state_directory_from_before_epochs_keeps_working(tmp_path, clock):
    """A state dir with one key in ``epoch/`` and no registry is served and adopted in place."""
    state = CustodianState(tmp_path / "custodian")
    state.root.mkdir()
    (state.root / "custodian.json").write_text('{"custodian_id": "custodian"}\n')
    key = create_epoch(state.root / "epoch")
    records = make_records(30, seed=4)
    build_index(
        write_records(tmp_path / "r.parquet", records),
        state.index_dir(key.epoch_id),
        key,
        [RECIPES["tin_v1"]],
    )
    pki = init_pki(tmp_path / "tls")
    init_authority(tmp_path / "authority", "test-court")
    server = start_custodian(
        state.root,
        "127.0.0.1:0",
        tls=load_tls_material(pki.root, "custodian-server"),
        trusted_authorities=[tmp_path / "authority"],
        clock=clock,
    )
    try:
        channel = create_channel(
            f"127.0.0.1:{server.port}", tls=load_tls_material(pki.root, "agency-client")
        )
        info = CustodianClient(channel).info()
        channel.close()
        assert [e.epoch_id for e in info.served] == [key.epoch_id]
        assert EpochRegistry(state.root).get(key.epoch_id).key_dir == "epoch"
        assert (state.root / "epoch" / "epoch.key").exists()
    finally:
        server.stop()


# -- incremental updates -----------------------------------------------------------------


def _fetches(deployment: Deployment) -> list[tuple[int, int]]:
    return [
        (e.get("segment", 0), e["offset"])
        for e in _audit_events(deployment)
        if e["kind"] == "fetch_index" and e["outcome"] == "OK"
    ]


def test_append_remove_and_compact_reach_the_agency(deployment, tmp_path, capsys):
    """Appended records match after only their segment is fetched; removed ones stop
    matching; compaction changes nothing a query sees."""
    state = str(deployment.custodian_state)
    newcomers = make_records(20, seed=99, prefix="N")
    append = write_records(tmp_path / "append.parquet", newcomers)
    leavers = write_records(tmp_path / "remove.parquet", newcomers[:5] + deployment.records[:5])
    rows = deployment.records[:10] + newcomers
    _, before = _query(deployment, rows)
    assert len(before) == 10

    assert custodian_cli(["build-index", "--state", state, "--append", str(append)]) == 0
    _, matches = _query(deployment, rows)
    assert len(matches) == 30
    assert _fetches(deployment) == [(0, 0), (1, 0)], "only the new segment is fetched"

    assert custodian_cli(["build-index", "--state", state, "--remove", str(leavers)]) == 0
    capsys.readouterr()
    assert custodian_cli(["info", "--state", state]) == 0
    shown = capsys.readouterr().out
    assert "segment 1 (add): 20 records" in shown and "segment 2 (remove): 10 records" in shown
    _, matches = _query(deployment, rows)
    assert len(matches) == 20
    assert _fetches(deployment)[2:] == [(2, 0)]

    assert custodian_cli(["compact", "--state", state]) == 0
    epoch = CustodianState(deployment.custodian_state).registry().current().epoch_id
    assert list_segments(deployment.custodian_state / "index" / epoch) == []
    _, after = _query(deployment, rows)
    assert after == matches
    assert _fetches(deployment)[3:] == [(0, 0)]
    local = deployment.root / "agency" / "index" / epoch
    assert not (local / "segments").exists() or not any((local / "segments").iterdir())
    kinds = [e["kind"] for e in _audit_events(deployment)]
    assert kinds.count("segment_published") == 2 and "index_compacted" in kinds


def test_unknown_segment_is_not_found(deployment):
    epoch = _stub(deployment).GetInfo(custodian_pb2.GetInfoRequest(), timeout=30).epoch_id
    with pytest.raises(grpc.RpcError) as caught:
        list(
            _stub(deployment).FetchIndex(
                custodian_pb2.FetchIndexRequest(epoch_id=epoch, segment=7), timeout=30
            )
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# -- a hostile custodian's segments ------------------------------------------------------


class SegmentCustodian(custodian_pb2_grpc.CustodianServicer):
    """Announces a base and one add segment; serves whatever bytes a test sets
    (``stop_after`` cuts segment streams short)."""

    def __init__(self, base: bytes, segment: bytes, announced: bytes | None = None) -> None:
        self.base = base
        self.segment = segment
        self.announced = announced if announced is not None else segment
        self.stop_after: int | None = None
        self.requests: list[tuple[int, int]] = []

    def _piece(self, kind: int, seq: int, data: bytes) -> custodian_pb2.IndexSegment:
        return custodian_pb2.IndexSegment(
            seq=seq,
            kind=kind,
            key_count=len(data) // 8,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).digest(),
        )

    def GetInfo(self, request, context):
        base = self._piece(custodian_pb2.SEGMENT_KIND_BASE, 0, self.base)
        epoch = custodian_pb2.EpochInfo(
            epoch_id="e1",
            current=True,
            recipes=["tin_v1"],
            key_count=(len(self.base) + len(self.announced)) // 8,
            base=base,
            segments=[self._piece(custodian_pb2.SEGMENT_KIND_ADD, 1, self.announced)],
        )
        return custodian_pb2.CustodianInfo(
            custodian_id="custodian",
            epoch_id="e1",
            key_count=len(self.base) // 8,
            recipes=["tin_v1"],
            index_sha256=base.sha256,
            index_size_bytes=len(self.base),
            limits=custodian_pb2.PolicyLimits(
                max_subjects_per_query=100, max_points_per_chunk=8, max_message_bytes=1 << 20
            ),
            epochs=[epoch],
        )

    def FetchIndex(self, request, context):
        self.requests.append((request.segment, request.offset))
        data = self.base if request.segment == 0 else self.segment
        end = len(data) if self.stop_after is None or request.segment == 0 else self.stop_after
        for start in range(request.offset, end, 16):
            yield custodian_pb2.IndexChunk(offset=start, data=data[start : min(start + 16, end)])


def _sorted_bytes(values: list[int]) -> bytes:
    return np.array(sorted(values), dtype="<u8").tobytes()


@pytest.fixture
def segment_world(tmp_path):
    def start(fake: SegmentCustodian):
        server = create_server(
            "127.0.0.1:0",
            lambda s: custodian_pb2_grpc.add_CustodianServicer_to_server(fake, s),
            [],
            tls=None,
        )
        servers.append(server)
        channel = create_channel(f"127.0.0.1:{server.port}", tls=None)
        channels.append(channel)
        return CustodianClient(channel)

    servers: list = []
    channels: list = []
    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop()


BASE = _sorted_bytes([5, 10, 15, 20])
SEGMENT = _sorted_bytes([7, 12, 30, 40])


@pytest.mark.parametrize(
    ("served", "announced", "phrase"),
    [
        (SEGMENT[:-1] + b"\xff", SEGMENT, "does not match the custodian's SHA-256"),
        (SEGMENT[8:] + SEGMENT[:8], SEGMENT[8:] + SEGMENT[:8], "not sorted"),
    ],
    ids=["corrupted", "unsorted-with-matching-digest"],
)
def test_a_segment_that_fails_verification_is_refused(
    segment_world, tmp_path, served, announced, phrase
):
    """A segment failing its digest or sort check is DATA_LOSS and nothing is published;
    the verified base stays."""
    client = segment_world(SegmentCustodian(BASE, served, announced))
    facts = client.info()
    with pytest.raises(IntegrityError, match=phrase):
        client.sync_epoch(tmp_path, facts.current)
    assert (tmp_path / "e1" / INDEX_FILE).read_bytes() == BASE
    assert not list((tmp_path / "e1" / "segments").glob("*/manifest.json"))
    assert not list((tmp_path / "e1" / "segments").glob("*/" + INDEX_FILE))


def test_an_interrupted_segment_download_resumes(segment_world, tmp_path):
    """A segment stream cut short resumes from its offset; the base is not fetched again."""
    fake = SegmentCustodian(BASE, SEGMENT)
    client = segment_world(fake)
    facts = client.info()
    fake.stop_after = 16
    with pytest.raises(PeerError, match="ended at"):
        client.sync_epoch(tmp_path, facts.current)
    fake.stop_after = None
    index = client.sync_epoch(tmp_path, facts.current)
    assert fake.requests == [(0, 0), (1, 0), (1, 16)]
    probes = np.array([5, 7, 12, 13, 40], dtype="<u8")
    assert index.contains(probes).tolist() == [True, True, True, False, True]


def test_a_segment_catalog_out_of_order_is_refused(segment_world):
    """A segment whose seq does not follow the base is a peer error before any download."""

    class Disordered(SegmentCustodian):
        def GetInfo(self, request, context):
            info = super().GetInfo(request, context)
            info.epochs[0].base.seq = 3
            return info

    with pytest.raises(PeerError, match="strictly increasing"):
        segment_world(Disordered(BASE, SEGMENT)).info()


def test_two_current_epochs_are_refused(segment_world):
    class TwoCurrent(SegmentCustodian):
        def GetInfo(self, request, context):
            info = super().GetInfo(request, context)
            second = info.epochs.add()
            second.CopyFrom(info.epochs[0])
            second.epoch_id = "e2"
            return info

    with pytest.raises(PeerError, match="exactly one current"):
        segment_world(TwoCurrent(BASE, SEGMENT)).info()


def test_the_poller_fetches_a_new_epoch_before_any_query_needs_it(deployment, clock):
    """After a rotation, polling GetInfo starts the background sync; the next query runs
    on the new epoch straight away."""
    _, new = _rotate(deployment, "1h", clock)
    custodian = CustodianClient(deployment.channel(deployment.custodian_address, "agency-client"))
    polled = threading.Event()
    calls: list[int] = []

    def info():
        calls.append(1)
        if len(calls) == 2:
            polled.set()
        return custodian.info()

    poller = EpochPoller(0.001, info, deployment.agency.indexes)
    poller.start()
    try:
        assert polled.wait(60), "the poller never asked twice"
    finally:
        poller.stop()
    deployment.agency.indexes.wait_for_background(60)
    assert (deployment.root / "agency" / "index" / new / INDEX_FILE).exists()
    status, matches = _query(deployment, deployment.records[:5])
    assert status.epoch_id == new and len(matches) == 5


def test_the_index_keys_gauge_follows_rotation(tmp_path, clock):
    """psi_index_keys has one series per served epoch; a retired epoch's series goes."""
    metrics = ServiceMetrics("custodian")
    deployment = make_deployment(
        tmp_path, recipes=("tin_v1",), clock=clock, with_agency=False, custodian_metrics=metrics
    )
    try:
        old, new = _rotate(deployment, "1h", clock)
        stub = _stub(deployment)
        stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
        value = metrics.registry.get_sample_value
        assert value("psi_index_keys", {"epoch": old}) == 300
        assert value("psi_index_keys", {"epoch": new}) == 300
        clock.advance(hours=2)
        stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
        assert value("psi_index_keys", {"epoch": old}) is None
        assert value("psi_index_keys", {"epoch": new}) == 300
    finally:
        tear_down(deployment)
