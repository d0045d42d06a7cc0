"""Peak memory of the index build's merge: external k-way merge vs everything in RAM.

    python -m benchmarks.build_memory --keys 1e7 [--shard-keys 60000] [--full-build]

Writes sorted shard files as the build leaves them (random 64-bit fingerprints, which is
what b·H(k) fingerprints look like; 60,000 a shard = 20,000 records x 3 recipes), then
merges them into an index twice, each in a fresh process: ``old`` loads every shard and
runs ``np.unique`` over the concatenation (the build before this change), ``new`` is
``build_index``'s streaming merge (``fingerprint.merge_unique``). Prints each one's peak
RSS next to the index size, checks the two index files are byte-identical, and states the
target: peak RSS at most the index size + 512 MiB. ``--full-build`` also runs the whole
``build_index`` (recipes and curve work, one tin_v1 key a record) at ``--keys`` records:
about 100 CPU-us a key, so 10^7 keys take about 15 CPU-minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.population.measure import run_job
from psi_core.index import build_index, process_pool
from psi_core.index.encrypted import write_index, write_index_stream
from psi_core.index.epoch import EpochKey
from psi_core.protocol import fingerprint
from psi_core.recipes import get_recipe

MiB = 2**20
TARGET_OVER_INDEX = 512 * MiB


def write_shards(directory: Path, keys: int, shard_keys: int, seed: int = 1) -> list[Path]:
    """Sorted shard files of random fingerprints, ``keys`` in all (with a few repeats)."""
    rng = np.random.default_rng(seed)
    paths = []
    for shard, start in enumerate(range(0, keys, shard_keys)):
        count = min(shard_keys, keys - start)
        values = rng.integers(0, 2**64 - 1, size=count, dtype=np.uint64, endpoint=True)
        if shard % 7 == 1 and count > 10:
            values[:10] = values[-10:]
        path = directory / f"shard-{shard:06d}.npy"
        np.save(path, np.sort(values).astype(fingerprint.INDEX_DTYPE))
        paths.append(path)
    return paths


def merge_in_memory(shards: list[str], out: str) -> str:
    """The former merge: every shard in RAM, concatenated, ``np.unique``."""
    parts = [np.load(p) for p in shards]
    values = np.unique(np.concatenate(parts))
    return write_index(Path(out), values, epoch_id="bench", recipes=("x",), record_count=0).sha256


def merge_streaming(shards: list[str], out: str) -> str:
    """The build's merge now: ``merge_unique`` streamed into the index file."""

    def fill(handle) -> tuple[int, str]:
        result = fingerprint.merge_unique([Path(p) for p in shards], handle)
        return result.count, result.sha256

    return write_index_stream(
        Path(out), fill, epoch_id="bench", recipes=("x",), record_count=0
    ).sha256


def full_build(records: str, out: str, workers: int) -> str:
    epoch = EpochKey("bench", "2000-01-01T00:00:00+00:00", bytes(range(1, 33)))
    with process_pool(workers) as pool:
        report = build_index(
            Path(records),
            Path(out),
            epoch,
            [get_recipe("tin_v1")],
            executor=pool,
            max_in_flight=2 * workers,
            batch_rows=50_000,
        )
    return report.manifest.sha256


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.build_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--keys", type=lambda v: int(float(v)), default=10**7)
    p.add_argument("--shard-keys", type=lambda v: int(float(v)), default=60_000)
    p.add_argument("--full-build", action="store_true")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="build-memory-", dir=args.work))
    try:
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        (work / "shards").mkdir()
        shards = [str(s) for s in write_shards(work / "shards", args.keys, args.shard_keys)]
        rows = []
        for name, fn in (
            ("old (np.unique in RAM)", merge_in_memory),
            ("new (k-way merge)", merge_streaming),
        ):
            out = work / name.split()[0]
            sha, m = run_job(fn, shards, str(out))
            size = (out / "fingerprints.u64").stat().st_size
            rows.append((name, sha, m, size))
            shutil.rmtree(out)
        print(f"{len(shards)} shards, {args.keys:,} fingerprints written")
        for name, sha, m, size in rows:
            over = m.peak_rss_bytes - size
            print(
                f"RESULT merge {name}: peak RSS {m.peak_rss_bytes / MiB:,.0f} MiB, index "
                f"{size / MiB:,.0f} MiB, over index {over / MiB:,.0f} MiB "
                f"(target <= 512 MiB: {'met' if over <= TARGET_OVER_INDEX else 'MISSED'}); "
                f"wall {m.wall_seconds:.1f} s; other CPUs busy {m.other_cpus:.2f}; "
                f"sha256 {sha[:16]}"
            )
        identical = rows[0][1] == rows[1][1]
        print(f"RESULT byte-identical: {identical}")
        print(
            "RESULT peak RSS new / old: "
            f"{rows[1][2].peak_rss_bytes / rows[0][2].peak_rss_bytes:.3f}"
        )
        if args.full_build:
            from benchmarks._support import write_tin_population

            records = work / "records.parquet"
            write_tin_population(records, args.keys)
            sha, m = run_job(full_build, str(records), str(work / "full"), args.workers)
            size = (work / "full" / "fingerprints.u64").stat().st_size
            print(
                f"RESULT full build_index of {args.keys:,} keys with {args.workers} workers: "
                f"peak RSS {m.peak_rss_bytes / MiB:,.0f} MiB (reading process; largest worker "
                f"{m.children_peak_rss_bytes / MiB:,.0f} MiB), index {size / MiB:,.0f} MiB, "
                f"wall {m.wall_seconds:.0f} s"
            )
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        return 0 if identical else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
