"""Structured logs of both services, run as real processes: every line is one JSON object,
and no line carries a subject, a key string or a point in any encoding."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from benchmarks.load.services import start_service
from psi_core.recipes import get_recipe
from tests.factories import as_subjects, make_records, write_records, write_subjects
from tests.integration.test_cli import run

pytestmark = pytest.mark.integration

JSON_LOGS = ("--log-format", "json", "-v")
PLANTED_GIVEN, PLANTED_FAMILY = "Zebulonqx", "Vantasquez"
HEX_RUN = re.compile(r"[0-9a-fA-F]{40,}")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


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
    custodian = start_service(
        "custodian", "psi-custodian", *JSON_LOGS, "serve", "--state", state,
        "--listen", "127.0.0.1:0", "--tls-dir", tls, "--trust", authority,
        log=custodian_log_file,
    )  # fmt: skip
    try:
        agency = start_service(
            "agency", "psi-agency", *JSON_LOGS, "serve", "--state", tmp_path / "agency",
            "--listen", "127.0.0.1:0", "--custodian", custodian.address, "--tls-dir", tls,
            log=agency_log_file,
        )  # fmt: skip
        try:
            query = run(
                "psi-agency", "query", "--server", agency.address, "--tls-dir", tls,
                "--subjects", tmp_path / "subjects.csv", "--authorization", token,
                "--recipe", "name_address_v1", "--out", tmp_path / "matches.csv",
            )  # fmt: skip
            assert query.returncode == 0, query.stderr
            assert PLANTED_GIVEN in (tmp_path / "matches.csv").read_text()
        finally:
            agency.stop()
    finally:
        custodian.stop()
    custodian_log, agency_log = custodian_log_file.read_text(), agency_log_file.read_text()

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
