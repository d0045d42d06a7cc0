"""The population report's ratios from entries: the spu cache build and the two backends."""

from __future__ import annotations

from benchmarks.population import report


def _entry(system: str, phase: str, cpu: float, **fields: object) -> dict[str, object]:
    return {
        "system": system,
        "phase": phase,
        "measurement": {"cpu_seconds": cpu, "children_cpu_seconds": 0.0},
        **fields,
    }


def _results(*entries: dict[str, object]) -> dict[str, object]:
    return {
        "entries": list(entries),
        "workers": 2,
        "backend": "crypto_mb",
        "compare_backend": "openmined",
    }


def test_spu_cache_build_is_compared_per_key_with_our_build_at_the_same_size():
    results = _results(
        _entry("ours", "offline", 30.0, records=10**6, workers=2, keys=10**6, build_seconds=16),
        _entry("ours", "offline", 40.0, records=10**6, workers=1, keys=10**6, build_seconds=40),
        _entry("ours", "offline", 3.0, records=10**5, workers=2, keys=10**5, build_seconds=2),
        _entry(
            "spu-ub-cache", "offline", 99.0, records=10**6, keys=10**6, cpu_seconds=60.0,
            build_seconds=31,
        ),
    )  # fmt: skip
    (row,) = report._spu_cache_ratios(results)
    assert row["records"] == 10**6
    assert row["ours_cpu_per_key"] == 30e-6
    assert row["spu_cpu_per_key"] == 60e-6
    assert row["ratio"] == 2.0


def test_backend_ratios_pair_the_same_size_and_use_cpu_per_unit():
    results = _results(
        _entry("ours", "offline", 30.0, records=10**6, workers=2, keys=10**6, build_seconds=16),
        _entry(
            "ours-openmined", "offline", 90.0, records=10**6, workers=2, keys=10**6,
            build_seconds=46,
        ),
        _entry("ours", "online", 10.0, records=10**6, subjects=10**5, query_seconds=8.0),
        _entry("ours", "online", 1.0, records=10**6, subjects=10**4, query_seconds=1.0),
        _entry(
            "ours-openmined", "online", 27.0, records=10**6, subjects=10**5, query_seconds=16.0
        ),
    )  # fmt: skip
    rows = {row["phase"]: row for row in report._backend_ratios(results)}
    assert rows["offline"]["cpu_ratio"] == 3.0 and rows["offline"]["met"]
    assert rows["offline"]["wall_ratio"] == 46 / 16
    assert abs(rows["online"]["cpu_ratio"] - 2.7) < 1e-9 and rows["online"]["met"]
    assert rows["online"]["subjects"] == 10**5
    assert report._backend_ratios({**results, "compare_backend": None}) == []
