"""A custodian killed between the charge and the answer leaves the charge audited.

A real ``psi-custodian serve`` process is killed with SIGKILL at the fault point
``after_charge`` (``PSI_FAULT`` in its own environment): the moment is the code's, right
after the charge and its "admitted" audit entry commit, before any answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from psi_core import faults
from psi_core.policy import ADMITTED, AuditLog, AuthorizationLedger, load_tls_material
from psi_core.protocol import BlindedQuery
from psi_core.recipes import get_recipe
from psi_proto.v1 import custodian_pb2, custodian_pb2_grpc
from psi_rpc.server import create_channel
from psi_tools.authority import issue_authorization
from tests.integration.conftest import PreparedCustodian, evaluate_requests, prepare_custodian
from tests.processes import start_listening

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "psi_custodian.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.fixture
def prepared(tmp_path) -> PreparedCustodian:
    return prepare_custodian(tmp_path, recipes=("tin_v1",))


@pytest.fixture
def doomed(prepared, tmp_path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``psi-custodian serve`` with ``PSI_FAULT=after_charge:kill``, and its port."""
    process, address = start_listening(
        "psi_custodian.cli",
        "serve",
        "--state", prepared.state.root,
        "--listen", "127.0.0.1:0",
        "--trust", prepared.authority,
        "--tls-dir", prepared.pki.root,
        log=tmp_path / "custodian.log",
        env={**os.environ, faults.ENV: "after_charge:kill"},
        cwd=REPO,
        timeout=TIMEOUT,
    )  # fmt: skip
    try:
        yield process, int(address.rsplit(":", 1)[1])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=TIMEOUT)


def test_a_crash_between_charge_and_answer_leaves_an_admitted_entry(prepared, doomed):
    """The process dies by SIGKILL after charging: the ledger has the charge, the audit log
    its admitted entry (same request, no outcome); `audit verify` warns and exits 0 with
    the chain intact, and `audit export` counts one unfinished request."""
    process, port = doomed
    token = issue_authorization(
        prepared.authority,
        agency_id="agency",
        custodian_id="custodian",
        case_id="CASE-CRASH",
        legal_basis="test",
        max_subjects=100,
        max_queries=5,
        ttl=timedelta(hours=1),
    )
    channel = create_channel(
        f"127.0.0.1:{port}", tls=load_tls_material(prepared.pki.root, "agency-client")
    )
    try:
        stub = custodian_pb2_grpc.CustodianStub(channel)
        epoch_id = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=TIMEOUT).epoch_id
        keys = [get_recipe("tin_v1").key(r) for r in prepared.records[:3]]
        requests = evaluate_requests(token, epoch_id, BlindedQuery().blind(keys))
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Evaluate(iter(requests), timeout=TIMEOUT))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
    assert process.wait(timeout=TIMEOUT) == -signal.SIGKILL

    database = prepared.state.database
    with AuditLog(database) as log:
        events = [e.event_data() for e in log.entries()]
        result = log.verify()
    last = events[-1]
    assert last["stage"] == ADMITTED and last["kind"] == "evaluate"
    assert (last["case_id"], last["subjects"], last["charged"]) == ("CASE-CRASH", 3, True)
    assert not [e for e in events if e.get("request") == last["request"] and e is not last]
    assert result.ok and result.unfinished == (len(events),)
    with AuthorizationLedger(database) as ledger:
        usage = ledger.usage(str(last["token_id"]))
    assert usage is not None and (usage.queries_used, usage.subjects_used) == (1, 3)

    verify = _cli("audit", "verify", "--state", prepared.state.root)
    assert verify.returncode == 0, verify.stderr
    assert "intact" in verify.stdout
    assert "warning: 1 admitted request(s) have no outcome entry" in verify.stderr
    out = prepared.state.root.parent / "summary.json"
    export = _cli("audit", "export", "--state", prepared.state.root, "--out", out)
    assert export.returncode == 0, export.stderr
    summary = json.loads(out.read_text())
    assert summary["unfinished"] == 1
    (case,) = [c for c in summary["cases"] if c["case_id"] == "CASE-CRASH"]
    assert case["unfinished"] == 1
