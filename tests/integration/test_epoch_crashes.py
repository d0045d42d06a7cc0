"""kill -9 of the custodian's CLI mid-epoch-switch and mid-update, while the service runs.

Each case runs a real ``psi-custodian`` process with ``PSI_FAULT=<point>:kill``
(``psi_core.faults``): the process SIGKILLs itself there, as ``kill -9`` would. Then the
running service, a restart, or the next command must find a consistent state: nothing that
was finished is lost, the old key is not left behind, queries return the right matches and
the audit chain verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from psi_core.index import EpochRegistry, list_segments, read_manifest
from psi_core.policy import AuditLog
from psi_custodian.app import start_custodian
from psi_custodian.cli import main as custodian_cli
from psi_custodian.state import CustodianState
from psi_proto.v1 import agency_pb2, common_pb2
from tests.factories import as_subjects, make_records, write_records
from tests.integration.conftest import Deployment, make_deployment, tear_down

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(tmp_path):
    created = make_deployment(tmp_path, recipes=("tin_v1",))
    yield created
    tear_down(created)


def _killed_at(point: str, *args: str) -> None:
    """Run ``psi-custodian ARGS`` and require that it died by SIGKILL at ``point``."""
    result = subprocess.run(
        [sys.executable, "-m", "psi_custodian.cli", *args],
        env={**os.environ, "PSI_FAULT": f"{point}:kill"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def _matches(deployment: Deployment, rows: list[dict[str, str]]):
    client = deployment.agency_client()
    submitted = client.submit(
        agency_pb2.QueryHeader(
            authorization=deployment.token(),
            mode=common_pb2.QUERY_MODE_MEMBERSHIP,
            recipe="tin_v1",
        ),
        [[agency_pb2.Subject(**s) for s in as_subjects(rows)]],
    )
    for status in client.watch(submitted.query_id):  # noqa: B007
        pass
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    return status.epoch_id, {m.subject.subject_id for m in client.matches(status.query_id)}


def _audit(deployment: Deployment) -> list[dict]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        assert log.verify().ok, "the audit chain must verify after the crash"
        return [e.event_data() for e in log.entries()]


def _registry(deployment: Deployment) -> EpochRegistry:
    return CustodianState(deployment.custodian_state).registry()


def _state(deployment: Deployment) -> str:
    return str(deployment.custodian_state)


def test_killed_while_creating_an_epoch_leaves_no_usable_key(deployment):
    """Killed after the new key was written but before the registry named it: the service
    keeps serving the old epoch, and the orphaned key is destroyed by the next retire."""
    rows = deployment.records[:8]
    before = _matches(deployment, rows)
    records = str(deployment.root / "records.parquet")
    _killed_at(
        "epoch_create_before_registry", "epoch", "new", "--state", _state(deployment),
        "--records", records,
    )  # fmt: skip
    registry = _registry(deployment)
    assert len(registry.records()) == 1
    orphans = list((deployment.custodian_state / "epochs").iterdir())
    assert len(orphans) == 2, "the current epoch's key and the orphan"
    assert _matches(deployment, rows) == before

    assert custodian_cli(["epoch", "retire-expired", "--state", _state(deployment)]) == 0
    assert [p.name for p in (deployment.custodian_state / "epochs").iterdir()] == [
        registry.current().epoch_id
    ]
    assert "epoch_created" not in [e["kind"] for e in _audit(deployment)]


def test_killed_while_activating_changes_nothing(deployment):
    """Killed just before the registry write: the old epoch is still the only one served."""
    state = _state(deployment)
    records = str(deployment.root / "records.parquet")
    assert custodian_cli(["epoch", "new", "--state", state, "--records", records]) == 0
    pending = _registry(deployment).records()[-1].epoch_id
    _killed_at("epoch_activate_before_registry", "epoch", "activate", "--state", state, pending)
    assert _registry(deployment).get(pending).state == "pending"
    epoch, matches = _matches(deployment, deployment.records[:5])
    assert epoch != pending and len(matches) == 5
    assert custodian_cli(["epoch", "activate", "--state", state, pending, "--overlap", "1h"]) == 0
    _audit(deployment)


def test_killed_mid_retirement_is_finished_by_the_running_service(deployment):
    """Killed after the old key was destroyed, before the registry said so: the running
    service finishes the retirement on its next call and serves the new epoch correctly."""
    state = _state(deployment)
    rows = deployment.records[:10] + make_records(4, seed=5, prefix="X")
    old, expected = _matches(deployment, rows)
    records = str(deployment.root / "records.parquet")
    assert custodian_cli(["epoch", "new", "--state", state, "--records", records]) == 0
    new = _registry(deployment).records()[-1].epoch_id
    _killed_at(
        "epoch_retire_before_registry", "epoch", "activate", "--state", state, new,
        "--overlap", "0",
    )  # fmt: skip
    registry = _registry(deployment)
    assert registry.get(old).state == "retiring"
    assert not list(deployment.custodian_state.glob(f"**/{old}/epoch.key"))

    epoch, matches = _matches(deployment, rows)
    assert (epoch, matches) == (new, expected)
    assert _registry(deployment).get(old).state == "retired"
    assert not (deployment.custodian_state / "index" / old).exists()
    events = _audit(deployment)
    assert {"kind": "epoch_retired", "by": "service"}.items() <= next(
        e for e in events if e["kind"] == "epoch_retired"
    ).items()
    assert [e["kind"] for e in events].count("epoch_activated") == 1


def test_killed_before_a_segment_is_published_then_rerun(deployment, tmp_path):
    """An append killed before its rename publishes nothing; running it again publishes it."""
    state = _state(deployment)
    newcomers = make_records(6, seed=31, prefix="N")
    append = str(write_records(tmp_path / "append.parquet", newcomers))
    _killed_at("segment_before_publish", "build-index", "--state", state, "--append", append)
    epoch_dir = deployment.custodian_state / "index" / _registry(deployment).current().epoch_id
    assert list_segments(epoch_dir) == []
    assert _matches(deployment, newcomers)[1] == set()
    assert custodian_cli(["build-index", "--state", state, "--append", append]) == 0
    assert len(_matches(deployment, newcomers)[1]) == 6


def test_killed_after_compaction_committed_is_rolled_forward_on_restart(deployment, tmp_path):
    """Compaction killed after its commit mark: the service keeps answering from the old
    pieces, and a restarted custodian finishes the compaction; answers are unchanged."""
    state = _state(deployment)
    newcomers = make_records(6, seed=41, prefix="N")
    append = str(write_records(tmp_path / "append.parquet", newcomers))
    assert custodian_cli(["build-index", "--state", state, "--append", append]) == 0
    rows = deployment.records[:5] + newcomers
    _, expected = _matches(deployment, rows)
    assert len(expected) == 11
    _killed_at("compact_after_commit", "compact", "--state", state)
    epoch_dir = deployment.custodian_state / "index" / _registry(deployment).current().epoch_id
    assert (epoch_dir / ".compact" / "COMMIT").exists()
    assert _matches(deployment, rows)[1] == expected

    deployment.agency.stop()
    deployment.agency = None
    deployment.custodian.stop()
    _restart_custodian(deployment)
    assert not (epoch_dir / ".compact").exists()
    assert list_segments(epoch_dir) == [] and read_manifest(epoch_dir).seq == 1
    deployment.agency = deployment.start_agency(deployment.root / "agency")
    assert _matches(deployment, rows)[1] == expected
    _audit(deployment)


def _restart_custodian(deployment: Deployment) -> None:
    """Start a custodian on the same state directory (a restart after the crash)."""
    deployment.custodian = start_custodian(
        deployment.custodian_state,
        "127.0.0.1:0",
        tls=deployment.tls("custodian-server"),
        trusted_authorities=[deployment.authority],
    )


def test_crash_points_are_inert_without_the_variable(tmp_path: Path):
    """Outside tests no crash point fires (the variable names no point)."""
    registry = EpochRegistry(tmp_path)
    assert os.environ.get("PSI_FAULT") is None
    registry.create(current=True)
    assert len(registry.records()) == 1
