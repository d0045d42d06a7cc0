"""`psi-agency query --detach` and `psi-agency queries …` as an operator runs them."""

from __future__ import annotations

import json

import pytest

from psi_core.io import read_rows
from tests.factories import as_subjects, make_records, write_subjects
from tests.integration.test_cli import run

pytestmark = pytest.mark.integration


def _tls_args(deployment) -> list[str]:
    return ["--server", deployment.agency_address, "--tls-dir", str(deployment.pki.root)]


def test_a_detached_query_is_followed_listed_and_its_matches_fetched(deployment, tmp_path):
    """--detach prints the id and returns; watch, show, list and matches then work on it."""
    members = as_subjects(deployment.records[:12])
    strangers = as_subjects(make_records(8, seed=77, prefix="X"), prefix="T")
    subjects = write_subjects(tmp_path / "subjects.csv", members + strangers)
    token = tmp_path / "case.token"
    token.write_bytes(deployment.token(case_id="CLI-DETACH"))
    detached = run(
        "psi-agency", "query", *_tls_args(deployment), "--subjects", subjects,
        "--authorization", token, "--recipe", "tin_v1", "--detach",
    )  # fmt: skip
    assert detached.returncode == 0, detached.stderr
    query_id = detached.stdout.strip()
    assert len(query_id) == 16 and "queries watch" in detached.stderr

    watched = run("psi-agency", "queries", "watch", query_id, *_tls_args(deployment))
    assert watched.returncode == 0, watched.stderr
    assert f"query {query_id}" in watched.stdout and "matches 12" in watched.stdout

    shown = run(
        "psi-agency", "queries", "show", query_id, "--format", "json", *_tls_args(deployment)
    )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "QUERY_STATE_SUCCEEDED" and status["case_id"] == "CLI-DETACH"

    listed = run(
        "psi-agency", "queries", "list", "--case", "CLI-DETACH", "--format", "json",
        *_tls_args(deployment),
    )  # fmt: skip
    assert [json.loads(line)["query_id"] for line in listed.stdout.splitlines()] == [query_id]

    out = tmp_path / "matches.csv"
    fetched = run(
        "psi-agency", "queries", "matches", query_id, "--out", out, *_tls_args(deployment)
    )
    assert fetched.returncode == 0, fetched.stderr
    rows = [row for batch in read_rows(out, ("subject_id",)) for row in batch]
    assert {row["subject_id"] for row in rows} == {s["subject_id"] for s in members}


def test_unknown_query_ids_are_a_clear_error(deployment):
    """show and watch of an id the agency does not hold say NOT_FOUND, without a traceback."""
    for verb in ("show", "watch", "matches"):
        result = run("psi-agency", "queries", verb, "0123456789abcdef", *_tls_args(deployment))
        assert result.returncode == 1
        assert "NOT_FOUND" in result.stderr and "Traceback" not in result.stderr
