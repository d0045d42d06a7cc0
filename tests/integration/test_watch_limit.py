"""Stalled WatchQuery streams cannot take the agency's threads from other calls."""

from __future__ import annotations

import threading

import grpc
import pytest

from psi_agency.service import DEFAULT_MAX_WATCHERS
from psi_agency.store import AgencyStore
from psi_core.errors import BudgetExhaustedError
from psi_proto.v1 import agency_pb2, agency_pb2_grpc, common_pb2
from tests.factories import as_subjects
from tests.integration.conftest import make_deployment, tear_down

pytestmark = pytest.mark.integration

WATCHERS = 2 * DEFAULT_MAX_WATCHERS
CALL_TIMEOUT = 20


def _idle_query(state_db, records) -> str:
    """A query stored QUEUED but never handed to the runner: it stays unfinished."""
    store = AgencyStore(state_db)
    try:
        store.begin_query(
            "q-idle",
            mode="membership",
            recipe="tin_v1",
            authorization=b"",
            case_id="CASE-1",
            requested_by="test",
        )
        store.add_subjects("q-idle", 0, as_subjects(records[:2]))
        store.seal_query("q-idle", 2)
    finally:
        store.close()
    return "q-idle"


def test_stalled_watchers_are_capped_and_do_not_starve_submit_or_get(tmp_path):
    """32 watchers that never read past their first status: 16 are served, 16 refused
    with RESOURCE_EXHAUSTED at once, and SubmitQuery and GetQuery still work. Once the
    watchers hang up, their slots serve new watchers.

    Before the fix every watcher held one of the agency's 8 threads until its query
    ended, so the ninth watcher and every later call waited for a thread.
    """
    deployment = make_deployment(tmp_path)
    try:
        idle = _idle_query(deployment.root / "agency" / "agency.sqlite", deployment.records)
        stub = agency_pb2_grpc.AgencyStub(
            deployment.channel(deployment.agency_address, "case-client")
        )
        calls = [
            stub.WatchQuery(agency_pb2.GetQueryRequest(query_id=idle), timeout=CALL_TIMEOUT)
            for _ in range(WATCHERS)
        ]
        served, refused = 0, []
        for call in calls:
            try:
                assert next(call).state == agency_pb2.QUERY_STATE_QUEUED
                served += 1
            except grpc.RpcError as exc:
                refused.append((exc.code(), exc.details()))
        assert served == DEFAULT_MAX_WATCHERS
        assert len(refused) == WATCHERS - DEFAULT_MAX_WATCHERS
        assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED for code, _ in refused)
        assert "WatchQuery streams are open" in refused[0][1]

        client = deployment.agency_client()
        assert client.get(idle).state == agency_pb2.QUERY_STATE_QUEUED
        header = agency_pb2.QueryHeader(
            authorization=deployment.token(),
            mode=common_pb2.QUERY_MODE_MEMBERSHIP,
            recipe="tin_v1",
        )
        subjects = [agency_pb2.Subject(**s) for s in as_subjects(deployment.records[:5])]
        submitted = client.submit(header, [subjects], timeout=CALL_TIMEOUT)
        assert submitted.state == agency_pb2.QUERY_STATE_QUEUED

        for call in calls:
            call.cancel()
        final = _watch_once_a_slot_is_free(client, submitted.query_id)
        assert final.state == agency_pb2.QUERY_STATE_SUCCEEDED, final.error_message
        assert final.match_count == 5
    finally:
        tear_down(deployment)


def _watch_once_a_slot_is_free(client, query_id: str) -> agency_pb2.QueryStatus:
    """Hung-up watchers free their slots as the server learns of it (asynchronously)."""
    pause = threading.Event()
    for _ in range(100):
        try:
            *_, last = client.watch(query_id, timeout=CALL_TIMEOUT)
            return last
        except BudgetExhaustedError:
            pause.wait(0.1)
    raise AssertionError("no WatchQuery slot was freed after the watchers hung up")
