"""A peer that opens an Evaluate call and then goes quiet cannot hold the custodian's slots."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
import pytest

import psi_custodian.app
from psi_agency.custodian_client import CustodianClient
from psi_core.policy import ADMITTED, AuditLog
from psi_core.protocol import BlindedQuery
from psi_core.recipes import get_recipe
from psi_custodian.state import CustodianLimits
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.modes import MODE_ENUMS
from tests.integration.conftest import make_deployment, tear_down

pytestmark = pytest.mark.integration


@pytest.fixture
def one_slot(tmp_path):
    limits = CustodianLimits(
        max_concurrent_evaluations=1, evaluate_base_seconds=1.0, evaluate_seconds_per_point=0.0
    )
    deployment = make_deployment(tmp_path, with_agency=False, limits=limits)
    yield deployment
    tear_down(deployment)


def _header(deployment, facts, count: int) -> custodian_pb2.EvaluateHeader:
    return custodian_pb2.EvaluateHeader(
        authorization=deployment.token(),
        mode=MODE_ENUMS["membership"],
        recipe="tin_v1",
        epoch_id=facts.manifest.epoch_id,
        point_count=count,
    )


@pytest.mark.parametrize("stall", ["before-header", "after-header"])
def test_stalled_evaluation_is_cancelled_and_frees_its_slot(one_slot, stall):
    """A call with no deadline that stops sending is cancelled by the custodian's watchdog;
    the only evaluation slot is free again and the audit entry says CANCELLED."""
    channel = one_slot.channel(one_slot.custodian_address, "agency-client")
    facts = CustodianClient(channel).info()
    release = threading.Event()

    def stalling() -> Iterator[custodian_pb2.EvaluateRequest]:
        if stall == "after-header":
            yield custodian_pb2.EvaluateRequest(header=_header(one_slot, facts, 1))
        release.wait()

    try:
        with pytest.raises(grpc.RpcError) as caught:
            list(custodian_pb2_grpc.CustodianStub(channel).Evaluate(stalling()))
        assert caught.value.code() == grpc.StatusCode.CANCELLED
    finally:
        release.set()

    key = get_recipe("tin_v1").key(one_slot.records[0])
    query = BlindedQuery()
    answers = list(
        CustodianClient(channel).evaluate(
            _header(one_slot, facts, 1), iter([query.blind([key])]), timeout=30
        )
    )
    assert query.fingerprints(1, answers[0]).size == 1
    with AuditLog(one_slot.custodian_state / "custodian.sqlite") as log:
        outcomes = [
            e.event_data()["outcome"]
            for e in log.entries()
            if e.event_data().get("stage") != ADMITTED
        ]
    assert outcomes[-2:] == ["CANCELLED", "OK"]


# -- many stalled peers at once ----------------------------------------------------------

#: 2·10^6 fingerprints (16 MB): far more than gRPC buffers for a reader that stops reading,
#: so a stalled FetchIndex holds its handler in the custodian.
PADDING = 2_000_000


@pytest.fixture(scope="module")
def big_index(tmp_path_factory):
    limits = CustodianLimits(index_chunk_bytes=64 * 1024, max_concurrent_fetches=16)
    deployment = make_deployment(
        tmp_path_factory.mktemp("stalled-many"), with_agency=False, limits=limits, pad_index=PADDING
    )
    yield deployment
    tear_down(deployment)


def _stalled_reader(deployment, epoch_id: str) -> Iterator[custodian_pb2.IndexChunk]:
    """A FetchIndex call on its own connection that takes one chunk and reads no more."""
    channel = deployment.channel(deployment.custodian_address, "agency-client")
    chunks = custodian_pb2_grpc.CustodianStub(channel).FetchIndex(
        custodian_pb2.FetchIndexRequest(epoch_id=epoch_id, offset=0)
    )
    assert next(chunks).offset == 0
    return chunks


def _silent_evaluate(deployment, release: threading.Event) -> Iterator[object]:
    """An Evaluate call on its own connection that never sends its header. A GetInfo sent
    after it on the same connection has been answered, so the custodian has the call."""
    channel = deployment.channel(deployment.custodian_address, "agency-client")
    stub = custodian_pb2_grpc.CustodianStub(channel)

    def nothing() -> Iterator[custodian_pb2.EvaluateRequest]:
        release.wait()
        return
        yield

    call = stub.Evaluate(nothing())
    stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=60)
    return call


def test_an_honest_query_succeeds_while_32_stalled_peers_are_connected(big_index):
    """16 FetchIndex readers that stop reading and 16 Evaluates that never send a header,
    each on its own mTLS connection, hold 32 handlers; an honest GetInfo and Evaluate on
    another connection are still answered (the old pool of 16 threads was exhausted). A
    17th reader is over this custodian's FetchIndex cap (16) and is refused at once."""
    channel = big_index.channel(big_index.custodian_address, "agency-client")
    facts = CustodianClient(channel, timeout=60).info()
    release = threading.Event()
    stalled: list[Iterator[object]] = []
    try:
        stalled += [_stalled_reader(big_index, facts.manifest.epoch_id) for _ in range(16)]
        stalled += [_silent_evaluate(big_index, release) for _ in range(16)]
        honest = big_index.channel(big_index.custodian_address, "agency-client")
        key = get_recipe("tin_v1").key(big_index.records[0])
        query = BlindedQuery()
        answers = list(
            CustodianClient(honest, timeout=60).evaluate(
                _header(big_index, CustodianClient(honest, timeout=60).info(), 1),
                iter([query.blind([key])]),
                timeout=60,
            )
        )
        assert query.fingerprints(1, answers[0]).size == 1
        with pytest.raises(grpc.RpcError) as caught:
            _stalled_reader(big_index, facts.manifest.epoch_id)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "maximum of 16 FetchIndex calls" in caught.value.details()
    finally:
        release.set()
        for call in stalled:
            call.cancel()  # type: ignore[attr-defined]


class _SignallingAuditLog(AuditLog):
    """The real audit log, which also hands each event it appended to the test."""

    appended: queue.Queue[dict[str, object]] = queue.Queue()

    def append(self, event):  # type: ignore[no-untyped-def]
        entry = super().append(event)
        self.appended.put(dict(event))
        return entry


def test_a_reader_that_stops_reading_is_cancelled_by_the_progress_watchdog(tmp_path, monkeypatch):
    """A FetchIndex reader that takes no chunk for fetch_progress_seconds is cancelled and
    audited as such; when it reads again it gets what was in flight, then CANCELLED."""
    monkeypatch.setattr(psi_custodian.app, "AuditLog", _SignallingAuditLog)
    limits = CustodianLimits(index_chunk_bytes=64 * 1024, fetch_progress_seconds=1.0)
    deployment = make_deployment(tmp_path, with_agency=False, limits=limits, pad_index=PADDING)
    try:
        channel = deployment.channel(deployment.custodian_address, "agency-client")
        size = CustodianClient(channel).info().manifest.size_bytes
        epoch_id = CustodianClient(channel).info().manifest.epoch_id
        chunks = _stalled_reader(deployment, epoch_id)
        while (event := _SignallingAuditLog.appended.get(timeout=120))["kind"] != "fetch_index":
            pass
        assert event["outcome"] == "CANCELLED" and event["timed_out"] is True
        received = []
        with pytest.raises(grpc.RpcError) as caught:
            received.extend(chunk.data for chunk in chunks)
        assert caught.value.code() == grpc.StatusCode.CANCELLED
        assert 0 < sum(map(len, received)) < size
    finally:
        tear_down(deployment)
