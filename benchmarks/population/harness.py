"""The population harness: offline and online phases over a size series, with baselines.

    python -m benchmarks.population --sizes 1e4,1e5,1e6 --clients 1e3,1e4,1e5 --out DIR

Every job runs in its own spawned process (``measure.run_job``). The order is: write the
populations, build each index (``--workers`` processes; at ``--scaling-size`` also with
one), run one query for every (N, n) through both services over mTLS with a byte-counting
relay between them, then the baselines on the same keys. Then the cost models are fitted
and extrapolated (``model``) and DIR/results.json, DIR/POPULATION.md and the PNG plots are
written (``report``); ``--readme README.md`` also refreshes the README's results section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.population import jobs, model, report
from benchmarks.population.measure import JobFailed, Measurement, run_job

BASELINES = ("hash-join", "classic", "spu")
BACKEND_VARIABLE = "PSI_CURVE_BACKEND"
ANCHORS_PYTHON = Path(__file__).resolve().parents[2] / ".venv-anchors" / "bin" / "python"


def _sizes(text: str) -> list[int]:
    try:
        values = sorted({int(float(v)) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return values


def _baselines(text: str) -> list[str]:
    if text == "none":
        return []
    chosen = [b.strip() for b in text.split(",") if b.strip()]
    unknown = set(chosen) - set(BASELINES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown baseline(s) {sorted(unknown)}; choose from {', '.join(BASELINES)} or none"
        )
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.population",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=_sizes("1e4,1e5,1e6"),
        help="custodian records N (default 1e4,1e5,1e6)",
    )
    p.add_argument(
        "--clients",
        type=_sizes,
        default=_sizes("1e3,1e4,1e5"),
        help="subjects n per query (default 1e3,1e4,1e5)",
    )
    p.add_argument(
        "--baselines",
        type=_baselines,
        default=list(BASELINES),
        help="comma list of hash-join,classic,spu, or none (default all)",
    )
    p.add_argument("--out", type=Path, default=Path("population-results"), help="output dir")
    p.add_argument("--work", type=Path, help="scratch dir (default OUT/work, removed after)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="build worker processes (default: CPU count)",
    )
    p.add_argument(
        "--scaling-size",
        type=lambda v: int(float(v)),
        help="N at which the build also runs with 1 worker (default: largest <= 1e6)",
    )
    p.add_argument("--batch-rows", type=int, default=50_000, help="records per build shard")
    p.add_argument(
        "--classic-max",
        type=lambda v: int(float(v)),
        default=10**6,
        help="largest N the classic baseline is run at (beyond: reported as not run)",
    )
    p.add_argument(
        "--spu-max",
        type=lambda v: int(float(v)),
        default=10**6,
        help="largest N the spu baselines are run at",
    )
    p.add_argument(
        "--backend",
        default=None,
        help="curve backend of our jobs: openmined or crypto_mb (default: PSI_CURVE_BACKEND, "
        "else openmined)",
    )
    p.add_argument(
        "--compare-backend",
        default=None,
        help="also build at the scaling size and run the largest query up to n = 1e5 with this "
        "backend, for a per-core ratio of the two backends in the same run",
    )
    p.add_argument("--readme", type=Path, help="also refresh the results section of this README")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--from-results",
        type=Path,
        help="measure nothing: re-analyse this results.json and rewrite the report into --out",
    )
    return p


def render(results: dict[str, Any], out: Path, readme: Path | None) -> None:
    """Fits, report, plots (and README section) from the measured entries."""
    results.update(report.analyse(results))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    report.write_markdown(out, results)
    report.write_plots(out, results)
    if readme:
        report.update_readme(readme, results, out)


class Progress:
    """A tqdm bar over jobs (stderr), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True)

    def step(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_description(label)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _entry(
    system: str, phase: str, result: dict[str, Any], m: Measurement | None, **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"system": system, "phase": phase, **extra, **result}
    if m is not None:
        entry["measurement"] = m.to_dict()
    return entry


def _backend_hook(name: str | None) -> None:
    """The curve backend of our jobs: they run in spawned processes, which read it from
    ``PSI_CURVE_BACKEND`` (``psi_core.protocol.default_backend``)."""
    if name is None:
        return
    os.environ[BACKEND_VARIABLE] = name


@contextlib.contextmanager
def _backend_for_jobs(name: str) -> Iterator[None]:
    """Jobs started inside run on backend ``name``; the previous choice comes back after."""
    before = os.environ.get(BACKEND_VARIABLE)
    os.environ[BACKEND_VARIABLE] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BACKEND_VARIABLE, None)
        else:
            os.environ[BACKEND_VARIABLE] = before


def run(args: argparse.Namespace) -> dict[str, Any]:
    _backend_hook(args.backend)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work: Path = args.work or out / "work"
    work.mkdir(parents=True, exist_ok=True)
    sizes, clients = args.sizes, args.clients
    scaling = args.scaling_size or max([s for s in sizes if s <= 10**6] or [sizes[0]])
    if scaling not in sizes:
        sizes = sorted({*sizes, scaling})
    spu_reason = None
    if "spu" in args.baselines and not ANCHORS_PYTHON.exists():
        spu_reason = (
            f"spu baseline skipped: {ANCHORS_PYTHON} is absent "
            "(create it with `python3 tasks.py anchors`)"
        )
        print(spu_reason, file=sys.stderr)
    grid = [(n_rec, n_sub) for n_rec in sizes for n_sub in clients]
    compare = args.compare_backend if args.compare_backend != args.backend else None
    total = len(sizes) * 2 + 2 + len(grid) + (2 if compare else 0)
    total += len(grid) * sum(
        {"hash-join": 1, "classic": 1, "spu": 0 if spu_reason else 2}[b] for b in args.baselines
    )
    if "spu" in args.baselines and spu_reason is None:
        total += len(sizes)
    bar = Progress(total, not args.no_progress)
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    started = time.perf_counter()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())

    def job(label: str, fn: Callable[..., Any], *fn_args: Any) -> tuple[Any, Measurement] | None:
        bar.step(label)
        try:
            return run_job(fn, *fn_args)
        except JobFailed as exc:
            print(f"\n{label} failed: {exc}", file=sys.stderr)
            skipped.append({"job": label, "reason": str(exc).splitlines()[0]})
            return None
        finally:
            bar.done()

    def not_run(label: str, reason: str) -> None:
        skipped.append({"job": label, "reason": reason})
        bar.done()

    def query(label: str, system: str, phase: str, n_rec: int, n_sub: int, *rest: Any) -> None:
        """One online job against the index built at ``n_rec``; a wrong answer stops the run."""
        done = job(label, jobs.online_job, str(work), states[n_rec], n_rec, n_sub, *rest)
        if done:
            if not done[0]["correct"]:
                raise SystemExit(f"WRONG ANSWER ({label}): {done[0]}")
            entries.append(_entry(system, phase, done[0], done[1], records=n_rec, subjects=n_sub))

    records: dict[int, str] = {}
    for n_rec in sizes:
        path = work / f"records-{n_rec}.parquet"
        job(f"write N={n_rec:.0e}", jobs.write_population, str(path), n_rec)
        records[n_rec] = str(path)

    def build(label: str, system: str, n_rec: int, state: Path, workers: int) -> bool:
        """One offline job into a fresh ``state``; True when it finished."""
        if state.exists():
            shutil.rmtree(state)
        done = job(label, jobs.offline_job, records[n_rec], str(state), workers, args.batch_rows)
        if done:
            entries.append(
                _entry(system, "offline", done[0], done[1], records=n_rec, workers=workers)
            )
        return done is not None

    states: dict[int, str] = {}
    for n_rec in sizes:
        state = work / f"custodian-{n_rec}"
        if build(f"build N={n_rec:.0e} W={args.workers}", "ours", n_rec, state, args.workers):
            states[n_rec] = str(state)
    one = work / "custodian-w1"
    build(f"build N={scaling:.0e} W=1", "ours", scaling, one, 1)
    shutil.rmtree(one, ignore_errors=True)

    for n_rec, n_sub in grid:
        if n_rec not in states:
            bar.done()
            continue
        query(f"query N={n_rec:.0e} n={n_sub:.0e}", "ours", "online", n_rec, n_sub)
    serial_at = (
        (max(states), max([c for c in clients if c <= 10**5] or clients)) if states else None
    )
    if serial_at is not None:
        label = f"query N={serial_at[0]:.0e} n={serial_at[1]:.0e} one thread"
        query(label, "ours", "online-serial", *serial_at, 1)
    if compare:
        system = f"ours-{compare}"
        state = work / f"custodian-{compare}"
        with _backend_for_jobs(compare):
            label = f"build N={scaling:.0e} W={args.workers} {compare}"
            build(label, system, scaling, state, args.workers)
        shutil.rmtree(state, ignore_errors=True)
        compare_at = (
            (scaling, max([c for c in clients if c <= 10**5] or clients))
            if scaling in states
            else None
        )
        if compare_at is None:
            bar.done()
        else:
            with _backend_for_jobs(compare):
                label = f"query N={compare_at[0]:.0e} n={compare_at[1]:.0e} {compare}"
                query(label, system, "online", *compare_at)
    if "spu" in args.baselines and spu_reason is None:
        for n_rec in sizes:
            if n_rec > args.spu_max:
                not_run(f"spu-ub-cache N={n_rec}", f"not run above --spu-max {args.spu_max:.0e}")
                continue
            done = job(
                f"spu-ub-cache N={n_rec:.0e}",
                jobs.spu_cache_job,
                str(ANCHORS_PYTHON),
                str(work),
                n_rec,
            )
            if done:
                entries.append(_entry("spu-ub-cache", "offline", done[0], done[1], records=n_rec))
    send_limit = jobs.deploy.CustodianLimits().max_message_bytes
    for n_rec, n_sub in grid:
        for baseline in args.baselines:
            if baseline == "hash-join":
                done = job(
                    f"hash-join N={n_rec:.0e} n={n_sub:.0e}", jobs.hash_join_job, n_rec, n_sub
                )
                if done:
                    entries.append(
                        _entry(
                            "hash-join", "online", done[0], done[1], records=n_rec, subjects=n_sub
                        )
                    )
            elif baseline == "classic":
                reason = jobs.classic_limits(n_rec, n_sub, send_limit)
                limit = reason if reason and "custodian" not in reason else None
                if limit is None and n_rec > args.classic_max:
                    limit = f"not run above --classic-max {args.classic_max:.0e}"
                if limit is not None:
                    not_run(f"classic N={n_rec} n={n_sub}", limit)
                    continue
                done = job(f"classic N={n_rec:.0e} n={n_sub:.0e}", jobs.classic_job, n_rec, n_sub)
                if done:
                    entries.append(
                        _entry(
                            "classic-openmined",
                            "online",
                            done[0],
                            done[1],
                            records=n_rec,
                            subjects=n_sub,
                            over_custodian_limit=reason,
                        )
                    )
            elif baseline == "spu" and spu_reason is None:
                for protocol in ("ecdh", "rr22"):
                    if n_rec > args.spu_max:
                        not_run(
                            f"spu-{protocol} N={n_rec} n={n_sub}",
                            f"not run above --spu-max {args.spu_max:.0e}",
                        )
                        continue
                    done = job(
                        f"spu-{protocol} N={n_rec:.0e} n={n_sub:.0e}",
                        jobs.spu_job,
                        str(ANCHORS_PYTHON),
                        str(work),
                        n_rec,
                        n_sub,
                        protocol,
                    )
                    if done:
                        entries.append(
                            _entry(
                                f"spu-{protocol}",
                                "online",
                                done[0],
                                done[1],
                                records=n_rec,
                                subjects=n_sub,
                            )
                        )
    bar.close()
    results: dict[str, Any] = {
        "command": "python -m benchmarks.population " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "load_before": load_before,
        "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "sizes": sizes,
        "clients": clients,
        "workers": args.workers,
        "scaling_size": scaling,
        "backend": args.backend or os.environ.get(BACKEND_VARIABLE) or "openmined",
        "compare_backend": compare,
        "baselines": args.baselines,
        "spu_skipped": spu_reason,
        "entries": entries,
        "not_run": skipped,
        "classic_limits": report.classic_limit_table(send_limit),
    }
    render(results, out, args.readme)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.from_results:
        results = json.loads(args.from_results.read_text())
        send_limit = jobs.deploy.CustodianLimits().max_message_bytes
        results["classic_limits"] = report.classic_limit_table(send_limit)
        render(results, args.out, args.readme)
    else:
        results = run(args)
    print((args.out / "POPULATION.md").read_text())
    return 0 if all(e.get("correct", True) for e in results["entries"]) else 1


__all__ = ["main", "model"]
