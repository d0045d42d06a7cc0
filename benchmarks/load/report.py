"""The load run's figures: latency percentiles per phase, throughput, errors, memory."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.load.driver import PHASES, QueryOutcome, error_examples, errors_by_code
from benchmarks.load.services import Service

WARM_UP_SHARE = 0.2


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(round(q / 100 * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[rank]


def memory_growth(samples: Sequence[tuple[float, int]], seconds: float) -> dict[str, float]:
    """RSS at the end of warm-up (first 20% of the run), at the end, and the growth between,
    each the median of a 10%-of-the-run window so one sample's noise does not decide."""
    window = max(seconds * 0.1, 1.0)
    warm_end = seconds * WARM_UP_SHARE
    after_warm = [rss for t, rss in samples if warm_end <= t < warm_end + window]
    at_end = [rss for t, rss in samples if t >= seconds - window]
    base = statistics.median(after_warm) if after_warm else 0
    last = statistics.median(at_end) if at_end else 0
    return {
        "rss_after_warm_up_bytes": base,
        "rss_at_end_bytes": last,
        "rss_peak_bytes": max((rss for _, rss in samples), default=0),
        "growth_after_warm_up": (last - base) / base if base else 0.0,
    }


def summarize(
    outcomes: Sequence[QueryOutcome],
    services: Sequence[Service],
    *,
    seconds: float,
    settings: dict[str, Any],
    load_before: str,
    load_after: str,
) -> dict[str, Any]:
    ok = [o for o in outcomes if not o.error]
    latency = {
        phase: {
            f"p{q}": percentile([o.phases[phase] for o in ok if phase in o.phases], q)
            for q in (50, 95, 99)
        }
        for phase in PHASES
    }
    by_size = {}
    for size in sorted({o.size for o in ok}):
        totals = [o.phases["total"] for o in ok if o.size == size]
        p50, p99 = percentile(totals, 50), percentile(totals, 99)
        by_size[str(size)] = {
            "queries": len(totals),
            "p50": p50,
            "p99": p99,
            "p99_over_p50": p99 / p50 if p50 else 0.0,
        }
    total = latency["total"]
    memory = {s.name: memory_growth(s.rss, seconds) for s in services}
    return {
        "settings": settings,
        "seconds": seconds,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "queries": len(outcomes),
        "succeeded": len(ok),
        "errors_by_code": errors_by_code(outcomes),
        "error_examples": error_examples(outcomes),
        "queries_per_second": len(ok) / seconds if seconds else 0.0,
        "subjects_per_second": sum(o.size for o in ok) / seconds if seconds else 0.0,
        "latency_seconds": latency,
        "p99_over_p50": total["p99"] / total["p50"] if total["p50"] else 0.0,
        "total_by_query_size": by_size,
        "worst_p99_over_p50_per_size": max(
            (s["p99_over_p50"] for s in by_size.values()), default=0.0
        ),
        "memory": memory,
        "rss_samples": {s.name: s.rss for s in services},
    }


def write_report(summary: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(summary, indent=1) + "\n")
    _plot(summary, out / "rss.png")
    (out / "LOAD.md").write_text(markdown(summary))


def markdown(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    errors = summary["errors_by_code"] or {"none": 0}
    growth = max(m["growth_after_warm_up"] for m in summary["memory"].values())
    lines = [
        "# Load and soak run",
        "",
        f"Command: `{settings['command']}`",
        "",
        f"{settings['agencies']} agencies × {settings['case_systems']} case systems (closed loop) "
        f"against one custodian of {settings['population']:,} records over mTLS on loopback, "
        f"for {summary['seconds']:.0f} s; query sizes {settings['sizes']}, modes "
        f"{settings['modes']}, recipes {settings['recipes']}. Load average before "
        f"{summary['load_average_before']}, after {summary['load_average_after']}.",
        "",
        f"- queries: {summary['queries']} ({summary['succeeded']} succeeded with the right "
        f"answer); errors by code: {', '.join(f'{k} {v}' for k, v in errors.items())}",
        *(f"  - {example}" for example in summary["error_examples"]),
        f"- throughput: {summary['queries_per_second']:.2f} queries/s, "
        f"{summary['subjects_per_second']:,.0f} subjects/s",
        f"- end-to-end p99 / p50 per query size, worst: "
        f"{summary['worst_p99_over_p50_per_size']:.2f} (target < 2); over all sizes mixed "
        f"{summary['p99_over_p50']:.2f} (a 1,000-subject query is not a 10-subject one)",
        f"- largest RSS growth after warm-up: {growth:+.1%} (target < 10%)",
        "",
        "| phase | p50 s | p95 s | p99 s |",
        "|---|---|---|---|",
    ]
    for phase, q in summary["latency_seconds"].items():
        lines.append(f"| {phase} | {q['p50']:.3f} | {q['p95']:.3f} | {q['p99']:.3f} |")
    lines += ["", "| query size | queries | p50 s | p99 s | p99 / p50 |", "|---|---|---|---|---|"]
    for size, s in summary["total_by_query_size"].items():
        lines.append(
            f"| {size} | {s['queries']} | {s['p50']:.3f} | {s['p99']:.3f} | "
            f"{s['p99_over_p50']:.2f} |"
        )
    lines += ["", "| service | RSS after warm-up MiB | at end MiB | peak MiB | growth |"]
    lines.append("|---|---|---|---|---|")
    for name, m in summary["memory"].items():
        lines.append(
            f"| {name} | {m['rss_after_warm_up_bytes'] / 2**20:.1f} | "
            f"{m['rss_at_end_bytes'] / 2**20:.1f} | {m['rss_peak_bytes'] / 2**20:.1f} | "
            f"{m['growth_after_warm_up']:+.1%} |"
        )
    lines += ["", "![RSS over time](rss.png)", ""]
    return "\n".join(lines)


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for name, samples in summary["rss_samples"].items():
        axes.plot([t for t, _ in samples], [rss / 2**20 for _, rss in samples], label=name)
    axes.axvline(summary["seconds"] * WARM_UP_SHARE, color="grey", linestyle=":", label="warm-up")
    axes.set_xlabel("seconds")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title("service memory under load")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
