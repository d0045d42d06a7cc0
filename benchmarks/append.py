"""Cost of an append against a full build: ``python -m benchmarks.append``.

Builds the index of N records (all three recipes, inline, one worker) and, in the same
round and on the same index, appends 1% more records as a delta segment
(``build_segment``), then publishes a removal segment of as many records. Rounds
alternate the sides, so a change of load on the shared machine hits both; the figure is
the median of the per-round ratios. The target (issue 9) is append / full build ≤ 3%.

    flock /tmp/psi-bench.lock .venv/bin/python -m benchmarks.append --n 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._support import fixed_epoch, load_average, population
from psi_core.index import ADD, REMOVE, SegmentedIndex, build_index, build_segment
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES
from tests.factories import write_records


def _timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(n: int, fraction: float, rounds: int, work: Path) -> dict[str, object]:
    epoch = fixed_epoch()
    recipes = [RECIPES[r] for r in DEFAULT_RECIPE_IDS]
    extra = max(int(n * fraction), 1)
    rows = population(n + extra, seed=7)
    base_file = write_records(work / "base.parquet", rows[:n])
    append_file = write_records(work / "append.parquet", rows[n:])
    remove_file = write_records(work / "remove.parquet", rows[:extra])
    full, append, remove = [], [], []
    for round_number in range(rounds):
        directory = work / f"index-{round_number}"
        full.append(_timed(lambda d=directory: build_index(base_file, d, epoch, recipes)))
        append.append(_timed(lambda d=directory: build_segment(append_file, d, epoch, ADD)))
        remove.append(_timed(lambda d=directory: build_segment(remove_file, d, epoch, REMOVE)))
        index = SegmentedIndex.open(directory)
        assert index.record_count == n, "the segments did not apply"
        shutil.rmtree(directory)

    def ratio(side: list[float]) -> float:
        return statistics.median(s / f for s, f in zip(side, full, strict=True))

    return {
        "records": n,
        "appended_records": extra,
        "rounds": rounds,
        "append_over_full_build": statistics.median(
            a / f for a, f in zip(append, full, strict=True)
        ),
        "remove_over_full_build": statistics.median(
            r / f for r, f in zip(remove, full, strict=True)
        ),
        "records_ratio": extra / n,
        "full_build_seconds": full,
        "append_seconds": append,
        "remove_seconds": remove,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.append", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="records in the full build")
    parser.add_argument("--fraction", type=float, default=0.01, help="appended share of n")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="psi-append-bench-") as scratch:
        figures = run(args.n, args.fraction, args.rounds, Path(scratch))
    figures["loadavg_before"], figures["loadavg_after"] = before, load_average()
    figures["cpus"] = os.cpu_count()
    print(
        f"FIGURE append.{figures['appended_records']}_of_{args.n}/full_build: "
        f"{figures['append_over_full_build']:.4f} (median of {args.rounds} paired rounds; "
        f"records ratio {figures['records_ratio']:.4f}; target <= 0.03)"
    )
    print(
        f"FIGURE remove.{figures['appended_records']}_of_{args.n}/full_build: "
        f"{figures['remove_over_full_build']:.4f}"
    )
    print(f"LOAD before {figures['loadavg_before']}; after {figures['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
