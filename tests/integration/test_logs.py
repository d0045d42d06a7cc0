"""Structured logs of both services, run as real processes: every line is one JSON object,
and no line carries a subject, a key string or a point in any encoding."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from psi_core.recipes import get_recipe
from tests.factories import as_subjects, make_records, write_records, write_subjects
from tests.integration.test_cli import TOOLS, run

pytestmark = pytest.mark.integration

PLANTED_GIVEN, PLANTED_FAMILY = "Zebulonqx", "Vantasquez"
HEX_RUN = re.compile(r"[0-9a-fA-F]{40,}")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def _start(tool: str, log: Path, *args: str | Path) -> tuple[subprocess.Popen[str], str]:
    """Start a service logging to ``log``; return it with the address it is listening on."""
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", TOOLS[tool], "--log-format", "json", "-v", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    assert process.stdout is not None
    for line in process.stdout:
        if " listening on " in line:
            return process, line.strip().rsplit(" ", 1)[-1]
    process.kill()
    raise AssertionError(f"{tool} exited before listening: {log.read_text()}")


def _stop(process: subprocess.Popen[str], log: Path) -> str:
    process.terminate()
    process.communicate(timeout=60)
    return log.read_text()


def _forbidden_strings(subject: dict[str, str]) -> list[str]:
    found = [PLANTED_GIVEN, PLANTED_FAMILY, subject["tin"], subject["street"]]
    for recipe_id in ("name_address_v1", "name_dob_v1", "tin_v1"):
        key = get_recipe(recipe_id).key(subject)
        assert key is not None
        raw = key.encode("utf-8")
        found += [key, raw.hex(), base64.b64encode(raw).decode(), hashlib.sha256(raw).hexdigest()]
    return found


def test_service_logs_are_json_lines_without_subjects_keys_or_points(tmp_path):
    """Run a real query through both services with JSON logs; read every line they wrote."""
    records = make_records(120, seed=3)
    records[7].update(given_name=PLANTED_GIVEN, family_name=PLANTED_FAMILY)
    subjects = as_subjects(records[:20]) + as_subjects(make_records(10, seed=9, prefix="X"), "T")
    planted = next(s for s in subjects if s["given_name"] == PLANTED_GIVEN)
    write_records(tmp_path / "records.csv", records)
    write_subjects(tmp_path / "subjects.csv", subjects)
    tls, authority, state = tmp_path / "tls", tmp_path / "authority", tmp_path / "custodian"
    for tool, *args in (
        ("psi", "pki", "init", "--out", tls),
        ("psi", "authority", "init", "--out", authority, "--issuer", "court"),
        ("psi-custodian", "init", "--state", state),
        ("psi-custodian", "build-index", "--state", state, "--records", tmp_path / "records.csv"),
    ):
        done = run(tool, *args)
        assert done.returncode == 0, done.stderr
    token = tmp_path / "case.token"
    issued = run(
        "psi", "authority", "issue", "--key", authority, "--agency-id", "agency",
        "--custodian-id", "custodian", "--case-id", "C-1", "--legal-basis", "test",
        "--max-subjects", "100", "--max-queries", "5", "--ttl", "1d", "--out", token,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr

    custodian_log_file, agency_log_file = tmp_path / "custodian.log", tmp_path / "agency.log"
    custodian, custodian_address = _start(
        "psi-custodian", custodian_log_file, "serve", "--state", state, "--listen", "127.0.0.1:0",
        "--tls-dir", tls, "--trust", authority,
    )  # fmt: skip
    try:
        agency, agency_address = _start(
            "psi-agency", agency_log_file, "serve", "--state", tmp_path / "agency",
            "--listen", "127.0.0.1:0", "--custodian", custodian_address, "--tls-dir", tls,
        )  # fmt: skip
        try:
            query = run(
                "psi-agency", "query", "--server", agency_address, "--tls-dir", tls,
                "--subjects", tmp_path / "subjects.csv", "--authorization", token,
                "--recipe", "name_address_v1", "--out", tmp_path / "matches.csv",
            )  # fmt: skip
            assert query.returncode == 0, query.stderr
            assert PLANTED_GIVEN in (tmp_path / "matches.csv").read_text()
        finally:
            agency_log = _stop(agency, agency_log_file)
    finally:
        custodian_log = _stop(custodian, custodian_log_file)

    forbidden = _forbidden_strings(planted)
    events = []
    for name, text in (("custodian", custodian_log), ("agency", agency_log)):
        for line in text.splitlines():
            assert line.strip(), f"{name} wrote an empty line"
            events.append(json.loads(line))
            assert not [f for f in forbidden if f in line], f"{name} logged subject data: {line}"
            assert not HEX_RUN.search(line), f"{name} logged a hex run (a point?): {line}"
            assert not BASE64_RUN.search(line), f"{name} logged a base64 run: {line}"
    methods = {(e.get("logger"), e.get("method"), e.get("code")) for e in events}
    assert ("psi_rpc.access", "Evaluate", "OK") in methods
    assert ("psi_rpc.access", "SubmitQuery", "OK") in methods
    finished = [e for e in events if e.get("message", "").startswith("query ")]
    assert finished and finished[-1]["outcome"] == "OK" and finished[-1]["subjects"] == 30
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
