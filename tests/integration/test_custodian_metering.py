"""The custodian's uncharged work is metered: classic setups and replays are bounded per
token, a setup that cannot be sent is refused before any work, one that runs too long is
killed with its process, and no setup is offered unless the index kept its keys."""

from __future__ import annotations

import multiprocessing

import grpc
import pytest

from psi_core import faults
from psi_core.policy import ADMITTED, AuditLog, AuthorizationLedger
from psi_core.protocol import BlindedQuery, RequestDigest
from psi_core.recipes import get_recipe
from psi_custodian.state import CustodianLimits
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from tests.integration.conftest import (
    Deployment,
    evaluate_requests,
    make_deployment,
    tear_down,
)

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 60
TIN = get_recipe("tin_v1")
LIMITS = CustodianLimits(
    max_message_bytes=4096,
    index_chunk_bytes=2048,
    max_classic_setups_per_token=2,
    max_replays_per_token=2,
)


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    created = make_deployment(tmp_path_factory.mktemp("metered"), with_agency=False, limits=LIMITS)
    yield created
    tear_down(created)


def _stub(deployment: Deployment) -> custodian_pb2_grpc.CustodianStub:
    return custodian_pb2_grpc.CustodianStub(
        deployment.channel(deployment.custodian_address, "agency-client")
    )


def _setup(
    stub: custodian_pb2_grpc.CustodianStub, token: bytes, **fields: object
) -> custodian_pb2.ClassicSetup:
    request = {"fpr": 1e-3, "num_client_inputs": 10, "recipe": "tin_v1", **fields}
    return stub.GetClassicSetup(
        custodian_pb2.ClassicSetupRequest(authorization=token, **request),  # type: ignore[arg-type]
        timeout=CALL_TIMEOUT,
    )


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _events(deployment: Deployment) -> list[dict[str, object]]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        return [entry.event_data() for entry in log.entries()]


def test_classic_setup_that_cannot_be_sent_is_refused_before_any_work(metered):
    """All recipes at fpr 1e-9 for 10^4 inputs could be larger than the 4 KiB the custodian
    may send: refused FAILED_PRECONDITION at once, nothing admitted or counted, where the
    old code built it and then failed to send it."""
    stub = _stub(metered)
    token = metered.token(case_id="CASE-UNSENDABLE")
    error = _refusal(lambda: _setup(stub, token, fpr=1e-9, num_client_inputs=10**4, recipe=""))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    assert "max_message_bytes" in error.details()
    events = [e for e in _events(metered) if e.get("case_id") == "CASE-UNSENDABLE"]
    assert [e.get("stage") for e in events] == [None]
    assert events[0]["outcome"] == "FAILED_PRECONDITION"
    with AuthorizationLedger(metered.custodian_state / "custodian.sqlite") as ledger:
        assert ledger.uses(str(events[0]["token_id"]), "classic_setup") == 0

    sendable = _setup(stub, token)
    assert 0 < len(sendable.SerializeToString()) <= LIMITS.max_message_bytes


def test_classic_setups_are_bounded_per_token_and_audited(metered):
    """A token gets max_classic_setups_per_token setups (2 here), each with an admitted
    entry; the third is RESOURCE_EXHAUSTED. Another token is not affected."""
    stub = _stub(metered)
    token = metered.token(case_id="CASE-SETUPS")
    for fpr in (1e-3, 1e-4):
        assert _setup(stub, token, fpr=fpr).server_setup
    error = _refusal(lambda: _setup(stub, token, fpr=1e-5))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "2 classic setups" in error.details()
    assert _setup(stub, metered.token(case_id="CASE-SETUPS-OTHER")).server_setup
    events = [e for e in _events(metered) if e.get("case_id") == "CASE-SETUPS"]
    admitted = [e for e in events if e.get("stage") == ADMITTED]
    outcomes = [e["outcome"] for e in events if e.get("stage") != ADMITTED]
    assert len(admitted) == 2 and all(e["kind"] == "classic_setup" for e in admitted)
    assert outcomes == ["OK", "OK", "RESOURCE_EXHAUSTED"]


def _evaluate(
    stub: custodian_pb2_grpc.CustodianStub,
    token: bytes,
    epoch_id: str,
    query: BlindedQuery,
    keys: list[str],
    replay_of: bytes = b"",
) -> list[bytes]:
    requests = evaluate_requests(token, epoch_id, query.blind(keys), replay_of=replay_of)
    return [p for a in stub.Evaluate(iter(requests), timeout=CALL_TIMEOUT) for p in a.points]


def test_uncharged_replays_are_bounded_per_token_and_audited(metered):
    """An answered request may be replayed uncharged max_replays_per_token times (2 here);
    the third replay is RESOURCE_EXHAUSTED, and each replay has its admitted entry."""
    stub = _stub(metered)
    epoch_id = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=CALL_TIMEOUT).epoch_id
    token = metered.token(case_id="CASE-REPLAYS", max_queries=1)
    keys = [TIN.key(r) for r in metered.records[:3]]
    query = BlindedQuery()
    first = _evaluate(stub, token, epoch_id, query, keys)
    digest = RequestDigest()
    digest.update(query.blind(keys))
    for _ in range(2):
        again = BlindedQuery(query.scalar)
        assert _evaluate(stub, token, epoch_id, again, keys, digest.digest()) == first
    error = _refusal(
        lambda: _evaluate(stub, token, epoch_id, BlindedQuery(query.scalar), keys, digest.digest())
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "2 uncharged replays" in error.details()
    events = [e for e in _events(metered) if e.get("case_id") == "CASE-REPLAYS"]
    admitted = [e["charged"] for e in events if e.get("stage") == ADMITTED]
    assert admitted == [True, False, False]
    outcomes = [e["outcome"] for e in events if e.get("stage") != ADMITTED]
    assert outcomes == ["OK", "OK", "OK", "RESOURCE_EXHAUSTED"]


@pytest.fixture
def one_slot(tmp_path, request):
    """One evaluation slot; classic setups cut off after ``request.param`` seconds."""
    limits = CustodianLimits(max_concurrent_evaluations=1, classic_setup_seconds=request.param)
    created = make_deployment(tmp_path, with_agency=False, limits=limits)
    yield created
    tear_down(created)


@pytest.mark.parametrize(
    ("one_slot", "who"),
    [(1.0, "custodian-deadline"), (600.0, "client-deadline")],
    indirect=["one_slot"],
    ids=["custodian-deadline", "client-deadline"],
)
def test_classic_setup_runs_in_a_child_that_a_cancel_kills(one_slot, monkeypatch, who):
    """A setup that never ends (the child hangs at its fault point) is cut off by the
    custodian's deadline or by the client's, its process killed, and the only evaluation
    slot is free again: the next Evaluate, which needs it, is answered."""
    monkeypatch.setenv(faults.ENV, "classic_setup:hang")
    stub = _stub(one_slot)
    request = custodian_pb2.ClassicSetupRequest(
        authorization=one_slot.token(), fpr=1e-3, num_client_inputs=10, recipe="tin_v1"
    )
    timeout = 600 if who == "custodian-deadline" else 2
    error = _refusal(lambda: stub.GetClassicSetup(request, timeout=timeout))
    expected = {
        "custodian-deadline": grpc.StatusCode.CANCELLED,
        "client-deadline": grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    assert error.code() == expected[who], error.details()

    epoch_id = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=CALL_TIMEOUT).epoch_id
    keys = [TIN.key(one_slot.records[0])]
    query = BlindedQuery()
    answer = _evaluate(stub, one_slot.token(), epoch_id, query, keys)
    assert query.fingerprints(1, answer).size == 1
    assert multiprocessing.active_children() == []


def test_classic_setup_is_refused_for_an_index_without_kept_keys(tmp_path):
    """By default no plaintext key is kept: GetInfo says classic setup is unavailable and a
    setup is refused FAILED_PRECONDITION, saying how the custodian can enable it."""
    deployment = make_deployment(tmp_path, with_agency=False, classic_keys=False)
    try:
        stub = _stub(deployment)
        info = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=CALL_TIMEOUT)
        assert info.classic_setup_available is False
        index_dir = deployment.custodian_state / "index" / info.epoch_id
        assert not (index_dir / "keys").exists()
        error = _refusal(lambda: _setup(stub, deployment.token()))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
        assert "--classic-keys" in error.details()
    finally:
        tear_down(deployment)
