"""The population harness end to end at toy sizes: every job in its own process, answers
checked, models fitted, report, plots and README section written."""

from __future__ import annotations

import json

import pytest

from benchmarks.population import harness, report
from psi_core.protocol import crypto_mb_unavailable_reason

pytestmark = pytest.mark.integration
#: The other backend is compared in the same run where it can run here.
COMPARE = [] if crypto_mb_unavailable_reason() else ["--compare-backend", "crypto_mb"]


def test_population_harness_smoke(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Title\n\nbefore\n\n{report.README_BEGIN}\nold\n{report.README_END}\n\nafter\n"
    )
    out = tmp_path / "out"
    code = harness.main(
        [
            "--sizes", "200,400",
            "--clients", "8,16",
            "--baselines", "hash-join,classic",
            "--out", str(out),
            "--workers", "2",
            "--batch-rows", "100",
            "--readme", str(readme),
            "--no-progress",
            "--backend", "openmined",
            *COMPARE,
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    ours = [e for e in results["entries"] if e["system"] == "ours"]
    online = [e for e in ours if e["phase"] == "online"]
    assert len(online) == 4 and all(e["correct"] for e in online)
    assert all(e["matches"] == e["expected_matches"] for e in online)
    assert all(e["query_bytes_up"] > 0 and e["query_bytes_down"] > 0 for e in online)
    assert all(e["index_download_bytes_down"] >= e["records"] * 8 for e in online)
    offline = [e for e in ours if e["phase"] == "offline"]
    assert {(e["records"], e["workers"]) for e in offline} == {(200, 2), (400, 2), (400, 1)}
    assert all(e["keys"] == e["records"] and e["merge_seconds"] is not None for e in offline)
    systems = {e["system"] for e in results["entries"]}
    assert {"hash-join", "classic-openmined"} <= systems
    assert all(e["correct"] for e in results["entries"] if e["phase"] == "online")
    assert {"offline.cpu", "online.query", "online.blind"} <= set(results["fits"])
    assert {x["cores"] for x in results["extrapolations"]} >= {1, 2, 16, 64}
    assert any(x["dask_workers"] for x in results["extrapolations"])
    assert any(row["stops"] for row in results["classic_limits"])
    for name in ("POPULATION.md", "offline.png", "online.png", "phases.png"):
        assert (out / name).stat().st_size > 0
    assert results["backend"] == "openmined"
    compared = [e for e in results["entries"] if e["system"] == "ours-crypto_mb"]
    rows = results["targets"]["backends"]
    if COMPARE:
        assert {e["phase"] for e in compared} == {"offline", "online"}
        assert all(e["correct"] for e in compared if e["phase"] == "online")
        assert [e["keys"] for e in compared if e["phase"] == "offline"] == [400]
        assert {r["phase"] for r in rows} == {"offline", "online"}
        assert all(r["cpu_ratio"] > 0 for r in rows)
    else:
        assert compared == [] and rows == []
    text = readme.read_text()
    assert "old" not in text and "before" in text and "after" in text
    assert text.count(report.README_BEGIN) == 1 and "online.png" in text
