"""A few seconds of the load harness: real services as processes, every answer checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_load_harness_holds_a_short_load_with_no_errors_and_writes_its_report(tmp_path):
    """Two case systems on one agency for a few seconds: queries succeed, report written."""
    out = tmp_path / "load"
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.load", "--seconds", "4", "--agencies", "1",
            "--case-systems", "2", "--population", "300", "--sizes", "5,20",
            "--workers", "1", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "load.json").read_text())
    assert summary["succeeded"] == summary["queries"] > 0
    assert summary["errors_by_code"] == {}
    assert set(summary["memory"]) == {"custodian", "agency-0"}
    assert all(samples for samples in summary["rss_samples"].values())
    assert summary["latency_seconds"]["total"]["p50"] > 0
    assert (out / "rss.png").stat().st_size > 0
    assert "| evaluate |" in (out / "LOAD.md").read_text()
