"""Index build: our per-shard cost against the bare library call, and 2-worker scaling.

Figures (see benchmarks/README.md for the targets):

* ``build.encrypt_shard/raw_setup``: per key, ``psi_core.index.build.encrypt_shard`` (b·H(k),
  fingerprint, sort) over openmined-psi's ``CreateSetupMessage(RAW)`` on the same keys.
* ``build.pipeline_inline/raw_setup``: per key, the whole ``build_index`` from a CSV (read,
  recipes, encrypt, store shard, merge, write index and manifest) over the same call.
* ``build.throughput_2_workers/1_worker``: ``build_index`` with ``process_pool(2)`` against
  the same build inline, on 20,000 records x 3 recipes in shards of 2,500 records.
* ``machine.parallel_ceiling_2_workers``: what the machine gave two of our pool workers
  in the same rounds (two shards at once against one alone), the ceiling of the above.

Each comparison alternates its sides round by round (``Baseline`` in
``benchmarks/_support.py``), so a change of load on the shared machine hits all alike.
The raw library call is the baseline of the first two; the 1-worker build of the third.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import numpy as np
import private_set_intersection.python as psi
import pytest

from benchmarks._support import (
    EPOCH_SECRET,
    Baseline,
    Figures,
    key_strings,
    population,
    warm_worker,
)
from psi_core.index import build_index, encrypt_shard, process_pool, shard_keys
from psi_core.io import RECORD_COLUMNS, read_rows
from psi_core.protocol import fingerprint
from psi_core.recipes import RECIPES
from tests.factories import write_records

ALL_RECIPES = ("name_address_v1", "name_dob_v1", "tin_v1")
#: 6,667 records x 3 recipes: about 20,000 distinct key strings of 16-60 characters.
BASELINE_RECORDS = 6_667
SCALING_RECORDS = 20_000
SCALING_BATCH_ROWS = 2_500
WORKERS = 2


@pytest.fixture(scope="module")
def baseline_rows() -> list[dict[str, str]]:
    return population(BASELINE_RECORDS, seed=7)


@pytest.fixture(scope="module")
def baseline_keys(baseline_rows) -> list[str]:
    return key_strings(baseline_rows, ALL_RECIPES)


@pytest.fixture(scope="module")
def baseline_csv(tmp_path_factory, baseline_rows) -> Path:
    return write_records(tmp_path_factory.mktemp("baseline") / "records.csv", baseline_rows)


@pytest.fixture(scope="module")
def scaling_rows() -> list[dict[str, str]]:
    return population(SCALING_RECORDS, seed=8)


@pytest.fixture(scope="module")
def scaling_csv(tmp_path_factory, scaling_rows) -> Path:
    return write_records(tmp_path_factory.mktemp("scaling") / "records.csv", scaling_rows)


@pytest.fixture(scope="module")
def scaling_key_count(scaling_rows) -> int:
    return len(key_strings(scaling_rows, ALL_RECIPES))


@pytest.fixture(scope="module")
def scaling_shard_keys(scaling_csv) -> int:
    """Keys a sharded build encrypts: distinct keys per shard, summed over the shards."""
    return sum(
        len(shard_keys(rows, _recipes()))
        for rows in read_rows(scaling_csv, RECORD_COLUMNS, batch_rows=SCALING_BATCH_ROWS)
    )


@pytest.fixture(scope="module")
def two_workers():
    """A spawned 2-process pool whose workers are started and warm before any timing."""
    pool = process_pool(WORKERS)
    try:
        pids = {
            f.result()
            for f in [pool.submit(warm_worker, EPOCH_SECRET, 200, 0.3) for _ in range(2 * WORKERS)]
        }
        assert len(pids) == WORKERS, "the pool did not start every worker while warming"
        yield pool
    finally:
        pool.shutdown(wait=True)


def _fresh_dirs(root: Path):
    """A pedantic ``setup``: a new index directory for every round (untimed)."""
    counter = itertools.count()

    def setup():
        return (root / f"round-{next(counter)}",), {}

    return setup


def _recipes():
    return [RECIPES[r] for r in ALL_RECIPES]


def _raw_setup(keys: list[str]):
    server = psi.server.CreateFromKey(EPOCH_SECRET, True)
    return server.CreateSetupMessage(1e-9, 1, keys, psi.DataStructure.RAW)


def _raw_baseline(name: str, keys: list[str]) -> Baseline:
    return Baseline(name, lambda: _raw_setup(keys), units=len(keys), unit="key")


def test_encrypt_shard_one_worker(benchmark, figures: Figures, baseline_keys):
    """Ours, one worker: encrypt_shard (b·H(k), 64-bit fingerprints, sort) on the same keys."""
    baseline = _raw_baseline("build.raw_setup_beside_encrypt_shard", baseline_keys)
    fps = figures.measure(
        benchmark,
        "build.encrypt_shard",
        encrypt_shard,
        rounds=5,
        warmup_rounds=1,
        setup=lambda: ((EPOCH_SECRET, baseline_keys), {}),
        units=len(baseline_keys),
        unit="key",
        baselines=[baseline],
    )
    figures.ratio(
        "build.encrypt_shard/raw_setup",
        "build.encrypt_shard",
        baseline.name,
        target=1.15,
        meaning="per-key cost of our shard function over the bare library call, 1 worker",
    )
    assert fps.size == len(baseline_keys) and bool(np.all(fps[1:] >= fps[:-1]))
    sample = baseline_keys[:500]
    raw = _raw_setup(sample).raw.encrypted_elements
    expected = np.sort(fingerprint.from_compressed_points(list(raw)))
    assert np.array_equal(encrypt_shard(EPOCH_SECRET, sample), expected)


def test_build_index_pipeline_one_worker(
    benchmark, figures: Figures, baseline_csv, baseline_keys, epoch_key, tmp_path
):
    """Ours, one worker: the whole build_index from a CSV, inline, normalised per key."""
    baseline = _raw_baseline("build.raw_setup_beside_pipeline", baseline_keys)
    report = figures.measure(
        benchmark,
        "build.pipeline_inline",
        lambda index_dir: build_index(baseline_csv, index_dir, epoch_key, _recipes()),
        rounds=5,
        warmup_rounds=1,
        setup=_fresh_dirs(tmp_path),
        units=lambda r: r.keys_encrypted,
        unit="key",
        baselines=[baseline],
    )
    figures.ratio(
        "build.pipeline_inline/raw_setup",
        "build.pipeline_inline",
        baseline.name,
        target=1.15,
        meaning="per-key cost of a whole 1-worker build_index (CSV, 3 recipes) over the bare call",
    )
    assert report.records_read == BASELINE_RECORDS
    assert report.keys_encrypted == report.manifest.key_count == len(baseline_keys)


def test_main_process_reading(benchmark, figures: Figures, scaling_csv, scaling_shard_keys):
    """What build_index's main process does per shard: read the CSV batch (recipes run in
    the workers, inside ``encrypt_records``)."""

    def read_only() -> int:
        for _ in read_rows(scaling_csv, RECORD_COLUMNS, batch_rows=SCALING_BATCH_ROWS):
            pass
        return scaling_shard_keys

    figures.measure(
        benchmark,
        "build.main_process_read",
        read_only,
        rounds=5,
        warmup_rounds=1,
        units=lambda n: n,
        unit="key",
    )


def test_build_index_two_workers(
    benchmark,
    figures: Figures,
    scaling_csv,
    scaling_key_count,
    scaling_shard_keys,
    epoch_key,
    two_workers,
    tmp_path,
):
    """2 workers (process pool, started and warm) against 1 worker inline, round by round.

    Same file (20,000 records x 3 recipes), same shards of 2,500 records. Before each
    timed 2-worker build: the 1-worker build, then one shard alone in the pool and two
    shards at once (one per worker), which measure what parallelism the machine gives two
    of our workers in that round: the ceiling for the build's own ratio.
    """
    inline_dirs = _fresh_dirs(tmp_path / "inline")
    probe = key_strings(population(SCALING_BATCH_ROWS, seed=9), ALL_RECIPES)

    def one_worker() -> None:
        (index_dir,), _ = inline_dirs()
        report = build_index(
            scaling_csv, index_dir, epoch_key, _recipes(), batch_rows=SCALING_BATCH_ROWS
        )
        assert report.manifest.key_count == scaling_key_count

    def shards_in_pool(count: int) -> None:
        futures = [two_workers.submit(encrypt_shard, EPOCH_SECRET, probe) for _ in range(count)]
        for future in futures:
            assert future.result().size == len(probe)

    report = figures.measure(
        benchmark,
        "build.two_workers_20k_records",
        lambda index_dir: build_index(
            scaling_csv,
            index_dir,
            epoch_key,
            _recipes(),
            executor=two_workers,
            batch_rows=SCALING_BATCH_ROWS,
        ),
        rounds=4,
        warmup_rounds=1,
        setup=_fresh_dirs(tmp_path / "pool"),
        units=lambda r: r.keys_encrypted,
        unit="key",
        baselines=[
            Baseline("build.one_worker_20k_records", one_worker, scaling_shard_keys, "key"),
            Baseline(_ALONE, lambda: shards_in_pool(1), len(probe), "key"),
            Baseline(_TOGETHER, lambda: shards_in_pool(WORKERS), WORKERS * len(probe), "key"),
        ],
    )
    figures.ratio(
        _SCALING,
        "build.one_worker_20k_records",
        "build.two_workers_20k_records",
        target=1.7,
        at_least=True,
        meaning="build_index throughput with process_pool(2) over inline, same input and shards",
    )
    figures.ratio(
        _CEILING,
        _ALONE,
        _TOGETHER,
        target=None,
        meaning="throughput of 2 pool workers encrypting at once over 1 alone: what the machine "
        "gave 2 workers in the same rounds",
    )
    figures.derive(
        "build.scaling_efficiency",
        _efficiency,
        "{:.1%}: the build's 2-worker ratio over the machine ceiling, median over rounds",
    )
    figures.derive(
        "build.main_process_share",
        _share,
        "{:.1%} of the 1-worker build is reading in the main process",
    )
    figures.derive(
        "build.amdahl_bound_2_workers",
        lambda f: None if (s := _share(f)) is None else 1 / (s + (1 - s) / WORKERS),
        "{:.2f}x: speed-up bound if that main-process share did not overlap the workers",
    )
    assert report.records_read == SCALING_RECORDS
    assert report.keys_encrypted == scaling_shard_keys
    assert report.manifest.key_count == scaling_key_count


_ALONE = "machine.pool_one_shard_alone"
_TOGETHER = "machine.pool_two_shards_together"
_SCALING = "build.throughput_2_workers/1_worker"
_CEILING = "machine.parallel_ceiling_2_workers"


def _share(figures: Figures) -> float | None:
    keys = figures.value("build.main_process_read")
    whole = figures.value("build.one_worker_20k_records")
    return None if keys is None or whole is None else keys / whole


def _efficiency(figures: Figures) -> float | None:
    build = figures.round_ratios("build.one_worker_20k_records", "build.two_workers_20k_records")
    ceiling = figures.round_ratios(_ALONE, _TOGETHER)
    if not build or not ceiling:
        return None
    return statistics.median(b / c for b, c in zip(build, ceiling, strict=True))
