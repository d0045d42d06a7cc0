"""A custodian that is down or drops the connection costs retries, never a second charge.

Real services on loopback with mTLS. The retry wait is the one place the tests step in:
``QueryRunner._wait_or_stop`` is wrapped so that the custodian comes back, or the CLI's
output is read, exactly while the query waits, instead of racing a timer.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from psi_agency.custodian_client import CustodianClient
from psi_agency.retry import RetryPolicy
from psi_agency.runner import QueryRunner
from psi_core.errors import UnreachableError
from psi_core.policy import ADMITTED, AuditLog
from psi_custodian.app import start_custodian
from psi_proto.v1 import agency_pb2, common_pb2
from tests.factories import as_subjects, make_records, write_subjects
from tests.integration.conftest import Deployment, make_deployment, tear_down

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=4, first_wait=0.05, max_wait=0.2)


@pytest.fixture
def deployment(tmp_path) -> Iterator[Deployment]:
    created = make_deployment(tmp_path, with_agency=False)
    created.agency = _start_agency(created, FAST)
    yield created
    tear_down(created)


def _start_agency(deployment: Deployment, retry: RetryPolicy):
    from psi_agency.app import start_agency

    return start_agency(
        deployment.root / "agency",
        "127.0.0.1:0",
        deployment.custodian_address,
        server_tls=deployment.tls("agency-server"),
        custodian_tls=deployment.tls("agency-client"),
        retry=retry,
    )


def _evaluations(deployment: Deployment) -> list[dict]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        return [
            e.event_data()
            for e in log.entries()
            if e.event_data()["kind"] == "evaluate" and e.event_data().get("stage") != ADMITTED
        ]


def _subjects(deployment: Deployment) -> list[dict[str, str]]:
    strangers = as_subjects(make_records(4, seed=9, prefix="X"), prefix="T")
    return as_subjects(deployment.records[:6]) + strangers


def _submit(deployment: Deployment) -> agency_pb2.QueryStatus:
    """A membership query on a token that allows exactly one charged query."""
    header = agency_pb2.QueryHeader(
        authorization=deployment.token(max_queries=1),
        mode=common_pb2.QUERY_MODE_MEMBERSHIP,
        recipe="tin_v1",
    )
    subjects = [agency_pb2.Subject(**s) for s in _subjects(deployment)]
    return deployment.agency_client().submit(header, [subjects])


def _final(deployment: Deployment, query_id: str) -> agency_pb2.QueryStatus:
    *_, last = deployment.agency_client().watch(query_id, timeout=120)
    return last


def _restart_custodian(deployment: Deployment, port: int) -> None:
    deployment.custodian = start_custodian(
        deployment.custodian_state,
        f"127.0.0.1:{port}",
        tls=deployment.tls("custodian-server"),
        trusted_authorities=[deployment.authority],
    )


def test_custodian_down_then_back_is_retried_and_charged_once(deployment, monkeypatch):
    """The custodian is down when the query runs and comes back on the same port while
    the query waits: the query says why it waits, then succeeds, charged once.

    Before the fix the query could not even be submitted (UNAVAILABLE), and one that met
    the outage while running was FAILED with its scalar deleted.
    """
    port = deployment.custodian.port
    deployment.custodian.stop()
    seen: list[agency_pb2.QueryStatus] = []
    ids: list[str] = []
    submitted = threading.Event()
    original = QueryRunner._wait_or_stop

    def back_during_the_wait(runner: QueryRunner, seconds: float) -> None:
        if not seen:
            assert submitted.wait(60)
            seen.append(deployment.agency_client().get(ids[0]))
            _restart_custodian(deployment, port)
        original(runner, seconds)

    monkeypatch.setattr(QueryRunner, "_wait_or_stop", back_during_the_wait)
    ids.append(_submit(deployment).query_id)
    submitted.set()
    final = _final(deployment, ids[0])

    assert final.state == agency_pb2.QUERY_STATE_SUCCEEDED, final.error_message
    waiting = seen[0]
    assert waiting.state == agency_pb2.QUERY_STATE_QUEUED
    assert waiting.attempts == 1
    assert "UNAVAILABLE" in waiting.waiting_reason
    assert f"attempt 2 of {FAST.attempts}" in waiting.waiting_reason
    assert final.attempts >= 2 and final.waiting_reason == ""
    assert final.match_count == 6
    assert [e["charged"] for e in _evaluations(deployment)] == [True]


def test_connection_broken_after_the_answer_is_retried_as_an_uncharged_replay(
    deployment, monkeypatch
):
    """The custodian answers in full, then the agency loses the connection before it has
    the result: the retry sends the same points as a replay, which the custodian answers
    without a second charge (on a one-query token, a second charge would be refused)."""
    broken: list[bytes] = []
    evaluate = CustodianClient.evaluate

    def answer_then_break(
        client: CustodianClient, header, chunks, *, timeout: float
    ) -> Iterator[list[bytes]]:
        yield from evaluate(client, header, chunks, timeout=timeout)
        if not broken:
            broken.append(header.replay_of_sha256)
            raise UnreachableError(
                "the custodian is unreachable or did not answer in time "
                "(UNAVAILABLE: connection reset by peer)"
            )

    monkeypatch.setattr(CustodianClient, "evaluate", answer_then_break)
    final = _final(deployment, _submit(deployment).query_id)

    assert final.state == agency_pb2.QUERY_STATE_SUCCEEDED, final.error_message
    assert final.attempts == 2 and final.match_count == 6
    assert broken == [b""], "the first attempt was not a replay"
    assert [e["charged"] for e in _evaluations(deployment)] == [True, False]


def test_custodian_that_stays_down_fails_after_its_attempts_and_the_cli_says_why(
    deployment, monkeypatch, tmp_path
):
    """`psi-agency query` prints why the query waits at each wait, then the failure with
    the number of attempts, and exits 1."""
    deployment.custodian.stop()
    subjects = write_subjects(tmp_path / "subjects.csv", _subjects(deployment))
    token = tmp_path / "case.token"
    token.write_bytes(deployment.token())
    printed = threading.Event()
    original = QueryRunner._wait_or_stop

    def wait_until_printed(runner: QueryRunner, seconds: float) -> None:
        assert printed.wait(120), "the CLI never printed why the query waits"
        printed.clear()
        original(runner, seconds)

    monkeypatch.setattr(QueryRunner, "_wait_or_stop", wait_until_printed)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "psi_agency.cli",
            "query",
            "--server",
            deployment.agency_address,
            "--tls-dir",
            str(deployment.pki.root),
            "--subjects",
            str(subjects),
            "--recipe",
            "tin_v1",
            "--authorization",
            str(token),
            "--out",
            str(tmp_path / "matches.csv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as cli:
        lines: list[str] = []
        assert cli.stderr is not None
        for line in cli.stderr:
            lines.append(line)
            if " waits after attempt " in line:
                printed.set()
        assert cli.wait(timeout=120) == 1
    stderr = "".join(lines)
    assert stderr.count(" waits after attempt ") == FAST.attempts - 1, stderr
    assert f"attempt {FAST.attempts} of {FAST.attempts}" in stderr
    assert f"failed (UNAVAILABLE) after {FAST.attempts} attempts" in stderr, stderr
    assert f"gave up after {FAST.attempts} attempts" in stderr
    assert "unreachable" in stderr and "Traceback" not in stderr
