"""python -m benchmarks.load: see the package docstring."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.load.driver import CaseSystem, QueryOutcome, Workload
from benchmarks.load.report import summarize, write_report
from benchmarks.load.services import MemorySampler, deploy, run_tool
from psi_core.io import RECORD_COLUMNS, read_rows
from tests.factories import make_records


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--minutes", type=float, help="how long to hold the load")
    span.add_argument("--seconds", type=float, help="how long to hold the load")
    parser.add_argument("--agencies", type=int, default=2)
    parser.add_argument("--case-systems", type=int, default=2, help="per agency")
    parser.add_argument("--population", type=int, default=20_000)
    parser.add_argument("--sizes", type=_ints, default=[10, 100, 1000])
    parser.add_argument("--modes", default="membership,cardinality")
    parser.add_argument("--recipes", default="name_address_v1,tin_v1")
    parser.add_argument("--workers", type=int, default=2, help="index build workers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("load-results"))
    args = parser.parse_args(argv)
    args.duration = 60 * args.minutes if args.minutes else (args.seconds or 60.0)
    if min(args.agencies, args.case_systems, args.population) < 1 or args.duration <= 0:
        parser.error("agencies, case systems, population and the duration must be positive")
    return args


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="psi-load-") as scratch:
        root = Path(scratch)
        population = root / "population.parquet"
        run_tool("psi", "synth", "population", "--n", args.population, "--seed", args.seed,
                 "--out", population)  # fmt: skip
        members = [row for batch in read_rows(population, RECORD_COLUMNS) for row in batch]
        strangers = make_records(max(args.sizes), seed=args.seed + 1000, prefix="X")
        workload = Workload(
            members, strangers, args.sizes, args.modes.split(","), args.recipes.split(",")
        )
        print(f"deploying: {args.population:,} records, {args.agencies} agencies", flush=True)
        deployment = deploy(
            root, population=population, agencies=args.agencies, workers=args.workers
        )
        outcomes: list[QueryOutcome] = []
        lock = threading.Lock()
        load_before = _load_average()
        try:
            with MemorySampler(deployment.services()):
                started = time.monotonic()
                deadline = started + args.duration
                systems = [
                    CaseSystem(
                        number=a * args.case_systems + c,
                        agency=a,
                        address=agency.address,
                        tls_dir=deployment.tls,
                        token=deployment.tokens[a].read_bytes(),
                        workload=workload,
                        deadline=deadline,
                        outcomes=outcomes,
                        lock=lock,
                        seed=args.seed * 1000 + a * 100 + c,
                    )
                    for a, agency in enumerate(deployment.agencies)
                    for c in range(args.case_systems)
                ]
                for system in systems:
                    system.start()
                for system in systems:
                    system.join()
                seconds = time.monotonic() - started
        finally:
            for service in deployment.services():
                service.stop()
        settings = {
            "command": "python -m benchmarks.load " + shlex.join(argv or sys.argv[1:]),
            "agencies": args.agencies,
            "case_systems": args.case_systems,
            "population": args.population,
            "sizes": args.sizes,
            "modes": args.modes,
            "recipes": args.recipes,
        }
        summary = summarize(
            outcomes,
            deployment.services(),
            seconds=seconds,
            settings=settings,
            load_before=load_before,
            load_after=_load_average(),
        )
    write_report(summary, args.out)
    print((args.out / "LOAD.md").read_text())
    return 1 if summary["errors_by_code"] else 0


if __name__ == "__main__":
    sys.exit(main())
