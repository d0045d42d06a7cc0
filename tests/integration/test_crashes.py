"""Kill -9 at a named moment of each phase, restart, and check nothing was lost or paid twice.

Each case starts the process under test as a real ``psi-custodian``/``psi-agency`` process
with ``PSI_FAULT=point@N:kill`` in its own environment (:mod:`psi_core.faults`): the process
SIGKILLs itself at exactly that moment of the code, with no handler and no cleanup. The test
then starts the process again without the fault and checks: every query ends SUCCEEDED with
exactly the plaintext matches, the authorization is charged once, nothing finished is done
again (shards, index bytes), and both audit chains verify.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from psi_agency.client import AgencyClient
from psi_core import faults
from psi_core.errors import PsiError
from psi_core.index import build_index
from psi_core.policy import (
    AuditLog,
    AuthorizationLedger,
    load_tls_material,
    read_claims_unverified,
)
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES, get_recipe
from psi_custodian.app import start_custodian
from psi_custodian.state import CustodianLimits, CustodianState
from psi_proto.v1 import agency_pb2
from psi_rpc.modes import MODE_ENUMS
from psi_rpc.server import RunningServer, create_channel
from psi_tools.authority import issue_authorization
from tests.factories import as_subjects, make_records, write_records
from tests.integration.conftest import PreparedCustodian, prepare_custodian
from tests.processes import start_listening

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120
#: Small chunks so that a query and an index download each take several messages.
LIMITS = CustodianLimits(max_points_per_chunk=8, index_chunk_bytes=512)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Process:
    popen: subprocess.Popen[str]
    address: str
    log: Path

    def killed(self) -> bool:
        return self.popen.wait(timeout=TIMEOUT) == -signal.SIGKILL

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        self.popen.communicate(timeout=TIMEOUT)


def _spawn(module: str, log: Path, fault: str | None, *args: object) -> Process:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if fault:
        env[faults.ENV] = fault
    try:
        popen, address = start_listening(module, *args, log=log, env=env, cwd=REPO, timeout=TIMEOUT)
    except RuntimeError:
        raise AssertionError(f"{module} did not start: {log.read_text()[-3000:]}") from None
    return Process(popen, address, log)


@dataclass
class World:
    """A prepared custodian, a token, and the processes of one test."""

    root: Path
    prepared: PreparedCustodian
    token: bytes
    processes: list[Process] = field(default_factory=list)
    in_process: list[RunningServer] = field(default_factory=list)

    @property
    def tls(self) -> Path:
        return self.prepared.pki.root

    def custodian_in_process(self) -> str:
        server = start_custodian(
            self.prepared.state.root,
            "127.0.0.1:0",
            tls=_tls(self.tls, "custodian-server"),
            trusted_authorities=[self.prepared.authority],
        )
        self.in_process.append(server)
        return f"127.0.0.1:{server.port}"

    def custodian(self, port: int, fault: str | None = None) -> Process:
        process = _spawn(
            "psi_custodian.cli", self.root / "custodian.log", fault, "serve",
            "--state", self.prepared.state.root, "--listen", f"127.0.0.1:{port}",
            "--tls-dir", self.tls, "--trust", self.prepared.authority,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def agency(self, custodian: str, fault: str | None = None) -> Process:
        process = _spawn(
            "psi_agency.cli", self.root / "agency.log", fault, "serve",
            "--state", self.root / "agency", "--listen", "127.0.0.1:0",
            "--custodian", custodian, "--tls-dir", self.tls,
            "--retry-first-wait", "0.2", "--retry-max-wait", "1",
        )  # fmt: skip
        self.processes.append(process)
        return process

    def client(self, agency: Process) -> AgencyClient:
        channel = create_channel(agency.address, tls=_tls(self.tls, "case-client"))
        return AgencyClient(channel, timeout=TIMEOUT)

    def charges(self) -> tuple[int, int]:
        token_id = read_claims_unverified(self.token).token_id
        with AuthorizationLedger(self.prepared.state.database) as ledger:
            usage = ledger.usage(token_id)
        return (usage.queries_used, usage.subjects_used) if usage else (0, 0)

    def audits_verify(self) -> None:
        for database in (self.prepared.state.database, self.root / "agency" / "agency.sqlite"):
            with AuditLog(database) as log:
                result = log.verify()
            assert result.ok, (database, result)


def _tls(root: Path, role: str):

    return load_tls_material(root, role)


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    prepared = prepare_custodian(tmp_path, recipes=("tin_v1",), limits=LIMITS)
    token = issue_authorization(
        prepared.authority, agency_id="agency", custodian_id="custodian", case_id="CRASH",
        legal_basis="test", max_subjects=10_000, max_queries=10,
        ttl=timedelta(hours=1),
    )  # fmt: skip
    created = World(tmp_path, prepared, token)
    yield created
    for process in created.processes:
        process.stop()
    for server in created.in_process:
        server.stop()


def _subjects(world: World) -> tuple[list[dict[str, str]], set[str]]:
    members = as_subjects(world.prepared.records[:30])
    strangers = as_subjects(make_records(20, seed=41, prefix="X"), prefix="T")
    recipe = get_recipe("tin_v1")
    population = {recipe.key(r) for r in world.prepared.records}
    expected = {s["subject_id"] for s in members + strangers if recipe.key(s) in population}
    return members + strangers, expected


def _submit(client: AgencyClient, token: bytes, subjects: list[dict[str, str]]) -> str:
    header = agency_pb2.QueryHeader(
        authorization=token, mode=MODE_ENUMS["membership"], recipe="tin_v1"
    )
    return client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]]).query_id


def _finished(client: AgencyClient, query_id: str) -> agency_pb2.QueryStatus:
    *_, final = client.watch(query_id, timeout=TIMEOUT)
    return final


def _watch_until_gone(client: AgencyClient, query_id: str) -> None:
    """Follow a query until the agency dies under it (the watch stream breaks)."""
    with pytest.raises(PsiError):
        for _ in client.watch(query_id, timeout=TIMEOUT):
            pass


@pytest.mark.parametrize(
    "fault",
    [
        "query_blinded@1:kill",
        "query_answered@1:kill",
        "query_answered@3:kill",
        "query_collected@1:kill",
        "query_committing@1:kill",
    ],
)
def test_agency_killed_mid_query_resumes_and_is_charged_once(world, fault):
    """Before, during and after the custodian's answer, and mid-commit: after a restart the
    query SUCCEEDS with exactly the plaintext matches, charged once, audits intact."""
    subjects, expected = _subjects(world)
    custodian = world.custodian_in_process()
    doomed = world.agency(custodian, fault)
    query_id = _submit(world.client(doomed), world.token, subjects)
    _watch_until_gone(world.client(doomed), query_id)
    assert doomed.killed()

    revived = world.agency(custodian)
    client = world.client(revived)
    final = _finished(client, query_id)
    assert final.state == agency_pb2.QUERY_STATE_SUCCEEDED, final.error_message
    assert {m.subject.subject_id for m in client.matches(query_id)} == expected
    keyed = len({get_recipe("tin_v1").key(s) for s in subjects} - {None})
    assert world.charges() == (1, keyed)
    world.audits_verify()


@pytest.mark.parametrize("fault", ["after_charge@1:kill", "evaluate_answered@2:kill"])
def test_custodian_killed_mid_evaluate_is_retried_and_charged_once(world, fault):
    """The custodian dies after charging, or after part of its answer; restarted on the same
    port, the agency's retry finishes the query, charged once, audits intact."""
    subjects, expected = _subjects(world)
    port = _free_port()
    doomed = world.custodian(port, fault)
    agency = world.agency(doomed.address)
    client = world.client(agency)
    query_id = _submit(client, world.token, subjects)
    assert doomed.killed()
    world.custodian(port)
    final = _finished(client, query_id)
    assert final.state == agency_pb2.QUERY_STATE_SUCCEEDED, final.error_message
    assert {m.subject.subject_id for m in client.matches(query_id)} == expected
    keyed = len({get_recipe("tin_v1").key(s) for s in subjects} - {None})
    assert world.charges() == (1, keyed)
    world.audits_verify()


def test_agency_killed_mid_download_resumes_from_the_bytes_it_held(world):
    """Killed after its second index chunk, the agency keeps those bytes and asks only for
    the rest when it starts again."""
    custodian = world.custodian_in_process()
    doomed_log = world.root / "agency.log"
    with pytest.raises(AssertionError, match="did not start"):
        _spawn(
            "psi_agency.cli", doomed_log, "download_chunk@2:kill", "serve",
            "--state", world.root / "agency", "--listen", "127.0.0.1:0",
            "--custodian", custodian, "--tls-dir", world.tls,
        )  # fmt: skip
    (partial,) = (world.root / "agency" / "index").rglob("*.partial")
    held = partial.stat().st_size
    assert held == 2 * LIMITS.index_chunk_bytes
    world.agency(custodian)
    with AuditLog(world.prepared.state.database) as log:
        fetches = [
            e.event_data() for e in log.entries() if e.event_data().get("kind") == "fetch_index"
        ]
    assert [f["offset"] for f in fetches] == [0, held]
    world.audits_verify()


def test_build_killed_after_a_shard_resumes_without_redoing_finished_shards(tmp_path):
    """A build SIGKILLed after its second shard reuses both shards, byte for byte, and ends
    with the same index as a build that was never interrupted."""
    records = write_records(tmp_path / "records.csv", make_records(500, seed=3))
    state_args = ("--state", tmp_path / "custodian")

    def cli(*args: object, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != faults.ENV}
        if fault:
            env[faults.ENV] = fault
        return subprocess.run(
            [sys.executable, "-m", "psi_custodian.cli", *map(str, args)],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=TIMEOUT, check=False,
        )  # fmt: skip

    assert cli("init", *state_args).returncode == 0
    build = ("build-index", *state_args, "--records", records, "--batch-rows", "100")
    assert cli(*build, fault="shard_stored@2:kill").returncode == -signal.SIGKILL
    shards = sorted((tmp_path / "custodian").rglob("build/*"))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards if p.is_file()}
    assert before
    resumed = cli(*build)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 shards reused" in resumed.stdout
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before if p.exists()}
    assert after == {p: v for p, v in before.items() if p in after}

    clean = tmp_path / "clean"
    state = CustodianState(tmp_path / "custodian")
    epoch = state.epoch()
    recipes = [RECIPES[r] for r in DEFAULT_RECIPE_IDS]
    report = build_index(records, clean, epoch, recipes, batch_rows=100)
    resumed_manifest = (state.index_dir(epoch.epoch_id) / "manifest.json").read_text()
    assert report.manifest.sha256 in resumed_manifest
