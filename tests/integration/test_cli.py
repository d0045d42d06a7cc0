"""The command-line tools, run as an operator runs them: separate processes, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from psi_core.io import read_rows
from psi_core.protocol import crypto_mb_unavailable_reason
from tests.factories import make_records, write_records

pytestmark = pytest.mark.integration

TOOLS = {
    "psi": "psi_tools.cli",
    "psi-custodian": "psi_custodian.cli",
    "psi-agency": "psi_agency.cli",
}


def run(
    tool: str, *args: str | Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", TOOLS[tool], *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def test_demo_runs_end_to_end_with_mtls_and_reports_quality(tmp_path):
    """`psi demo` (small) prints matches, precision/recall, the custodian's view, intact audits."""
    result = run(
        "psi",
        "demo",
        "--workdir",
        tmp_path / "demo",
        "--records",
        "3000",
        "--subjects",
        "200",
        "--workers",
        "1",
    )
    report = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report
    out = result.stdout
    assert "against truth: precision" in out, report
    assert "what the custodian saw" in out, report
    assert '"subjects":' in out, report
    assert out.count("audit log intact") == 2, report
    table = out.split("match quality per recipe", 1)[1].split("\n\n", 1)[0]
    assert all(recipe in table for recipe in ("name_address_v1", "name_dob_v1", "tin_v1")), report
    assert "at-least-2(name_address_v1,name_dob_v1,tin_v1)" in table, report
    assert "best on this data: " in table, report
    assert '"recipe_keys": {"name_address_v1": ' in out, report
    matches = [
        row
        for batch in read_rows(tmp_path / "demo" / "matches.csv", ("subject_id", "recipe"))
        for row in batch
    ]
    assert matches and all(row["recipe"] == "name_address_v1" for row in matches)


def test_build_index_refuses_a_malformed_file_with_its_line_number(tmp_path):
    """A bad row stops build-index with exit 65 and the line; --on-error skip goes on."""
    assert run("psi-custodian", "init", "--state", tmp_path / "state").returncode == 0
    good = write_records(tmp_path / "good.csv", make_records(6)).read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*good[:4], '"unterminated,quote', *good[4:]]) + "\n")
    refused = run("psi-custodian", "build-index", "--state", tmp_path / "state", "--records", bad)
    assert refused.returncode == 65
    assert f"input file error: {bad}: line 5" in refused.stderr
    assert "Traceback" not in refused.stderr
    skipped = run(
        "psi-custodian",
        "build-index",
        "--state",
        tmp_path / "state",
        "--records",
        bad,
        "--on-error",
        "skip",
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped:" in skipped.stderr and "1 rows skipped" in skipped.stdout


def test_build_index_on_a_missing_file_is_a_clear_error(tmp_path):
    """A records path that does not exist is one line on stderr, exit 65."""
    run("psi-custodian", "init", "--state", tmp_path / "state")
    result = run(
        "psi-custodian",
        "build-index",
        "--state",
        tmp_path / "state",
        "--records",
        tmp_path / "no.csv",
    )
    assert result.returncode == 65
    assert f"input file error: {tmp_path / 'no.csv'}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_uninitialized_state_is_a_clear_error(tmp_path):
    """Commands on a directory that was never initialized say to run init."""
    result = run("psi-custodian", "info", "--state", tmp_path / "nothing")
    assert result.returncode == 1 and "psi-custodian init" in result.stderr


def test_plaintext_off_loopback_is_refused_at_start(tmp_path):
    """`serve --insecure` on a non-loopback address exits at once with the reason."""
    run("psi-custodian", "init", "--state", tmp_path / "state")
    write_records(tmp_path / "r.csv", make_records(5))
    run(
        "psi-custodian",
        "build-index",
        "--state",
        tmp_path / "state",
        "--records",
        tmp_path / "r.csv",
    )
    run("psi", "authority", "init", "--out", tmp_path / "authority")
    result = run(
        "psi-custodian",
        "serve",
        "--state",
        tmp_path / "state",
        "--listen",
        "0.0.0.0:0",
        "--insecure",
        "--trust",
        tmp_path / "authority",
    )
    assert result.returncode == 1 and "loopback" in result.stderr


def test_agency_with_a_dead_custodian_fails_fast_and_clearly(tmp_path):
    """An agency whose custodian is down exits with UNAVAILABLE instead of hanging."""
    result = run(
        "psi-agency",
        "serve",
        "--state",
        tmp_path / "agency",
        "--listen",
        "127.0.0.1:0",
        "--custodian",
        "127.0.0.1:1",
        "--insecure",
        timeout=120,
    )
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr


def test_authority_and_pki_refuse_to_overwrite(tmp_path):
    """A second `init` into the same directory is refused, keeping the first keys."""
    assert run("psi", "pki", "init", "--out", tmp_path / "tls").returncode == 0
    key = (tmp_path / "tls" / "ca.key").read_bytes()
    again = run("psi", "pki", "init", "--out", tmp_path / "tls")
    assert again.returncode == 1 and (tmp_path / "tls" / "ca.key").read_bytes() == key
    assert run("psi", "authority", "init", "--out", tmp_path / "auth").returncode == 0
    assert run("psi", "authority", "init", "--out", tmp_path / "auth").returncode == 1


def test_issue_rejects_a_nonsense_duration(tmp_path):
    """`authority issue --ttl soon` is refused with a message, no token written."""
    run("psi", "authority", "init", "--out", tmp_path / "auth")
    result = run(
        "psi",
        "authority",
        "issue",
        "--key",
        tmp_path / "auth",
        "--agency-id",
        "agency",
        "--custodian-id",
        "custodian",
        "--case-id",
        "C",
        "--legal-basis",
        "x",
        "--max-subjects",
        "10",
        "--max-queries",
        "1",
        "--ttl",
        "soon",
        "--out",
        tmp_path / "t",
    )
    assert result.returncode == 1 and not (tmp_path / "t").exists()


NO_LIBRARY = {"PSI_CRYPTO_MB_LIBRARY": "/nonexistent/libcrypto_mb.so"}


def test_build_index_backend_auto_falls_back_with_one_line(tmp_path):
    """Without the library, auto builds on openmined and says why once; crypto_mb refuses."""
    records = write_records(tmp_path / "records.csv", make_records(20))
    assert run("psi-custodian", "init", "--state", tmp_path / "state").returncode == 0
    build = ("build-index", "--state", tmp_path / "state", "--records", records)
    auto = run("psi-custodian", *build, "--backend", "auto", env=NO_LIBRARY)
    assert auto.returncode == 0, auto.stderr
    assert "curve backend openmined" in auto.stdout
    assert auto.stderr.count("using openmined, not crypto_mb") == 1
    forced = run("psi-custodian", *build, "--backend", "crypto_mb", env=NO_LIBRARY)
    assert forced.returncode == 1
    assert "error (FAILED_PRECONDITION): the crypto_mb backend cannot run here" in forced.stderr
    assert "Traceback" not in forced.stderr


@pytest.mark.skipif(
    crypto_mb_unavailable_reason() is not None,
    reason=f"crypto_mb backend unavailable: {crypto_mb_unavailable_reason()}",
)
def test_build_index_on_either_backend_gives_the_same_index(tmp_path):
    """`--backend crypto_mb` and `--backend openmined` write the same index digest."""
    records = write_records(tmp_path / "records.csv", make_records(40))
    assert run("psi-custodian", "init", "--state", tmp_path / "state").returncode == 0
    digests = []
    for backend in ("crypto_mb", "openmined"):
        result = run(
            "psi-custodian",
            "build-index",
            *("--state", tmp_path / "state", "--records", records, "--backend", backend),
        )
        assert result.returncode == 0, result.stderr
        assert f"curve backend {backend}" in result.stdout
        digests.append(result.stdout.split("sha256 ")[1][:16])
    assert digests[0] == digests[1]


def test_build_index_on_a_dask_local_cluster_equals_the_process_pool_build(tmp_path):
    """`build-index --dask-local 2` (a real 2-worker LocalCluster) writes the byte-identical
    index of `--workers 2` under the same epoch key."""
    import shutil

    records = write_records(tmp_path / "r.csv", make_records(400, seed=3))
    assert run("psi-custodian", "init", "--state", tmp_path / "pool").returncode == 0
    shutil.copytree(tmp_path / "pool", tmp_path / "dask")
    built = {}
    for state, flags in (("pool", ("--workers", "2")), ("dask", ("--dask-local", "2"))):
        result = run(
            "psi-custodian",
            "build-index",
            "--state",
            tmp_path / state,
            "--records",
            records,
            "--batch-rows",
            "100",
            *flags,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (index,) = (tmp_path / state).rglob("fingerprints.u64")
        built[state] = index.read_bytes()
    assert built["pool"] and built["pool"] == built["dask"]
