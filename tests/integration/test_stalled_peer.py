"""A peer that opens an Evaluate call and then goes quiet cannot hold the custodian's slots."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from psi_agency.custodian_client import CustodianClient
from psi_core.policy import AuditLog
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
        outcomes = [e.event_data()["outcome"] for e in log.entries()]
    assert outcomes[-2:] == ["CANCELLED", "OK"]
