"""Microbenchmarks: the cost of each step per unit of work, one thread unless stated.

Figures (``FIGURE ... us/unit``), per unit:

* ``micro.recipe_per_record``: the three recipes on one synthetic record (normalizing,
  formatting the key strings), as the build runs them;
* ``micro.bH_ours_per_key`` vs ``micro.bH_raw_openmined_per_key``: b·H(k), fingerprint and
  sort (``encrypt_shard``) against openmined-psi's bare ``CreateSetupMessage(RAW)`` on
  the same keys, round-paired (ratio ``micro.bH_ours/raw``);
* ``micro.blind_per_subject``, ``micro.evaluate_per_subject``,
  ``micro.unblind_per_subject``: the three online curve steps (``BlindedQuery.blind``,
  ``Reencryptor.membership``, ``BlindedQuery.fingerprints``) with the machine's threads
  (``psi_core.protocol.parallel``), and the same with one thread, round-paired (ratios
  ``micro.*_threads/1``: the parallel speed-up, which other tenants of a shared machine
  eat into);
* ``micro.lookup_per_subject``: ``EncryptedIndex.contains`` on an index of 10^6 keys;
* ``micro.merge_per_key``: ``fingerprint.merge_unique`` of 50 sorted shards into a file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import private_set_intersection.python as psi
import pytest

from benchmarks._support import EPOCH_SECRET, Baseline, Figures, key_strings, population
from psi_core.index import encrypt_shard
from psi_core.protocol import BlindedQuery, Reencryptor, fingerprint, member_mask, parallel
from psi_core.recipes import RECIPES

ROUNDS = 5
SUBJECTS = 10_000
RECORDS = 2_000
RECIPE_IDS = ("name_address_v1", "name_dob_v1", "tin_v1")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return population(RECORDS, seed=9)


@pytest.fixture(scope="module")
def keys(rows) -> list[str]:
    return key_strings(rows, RECIPE_IDS)


@pytest.fixture(scope="module")
def subject_keys() -> list[str]:
    return [f"tin_v1|{i:09d}" for i in range(SUBJECTS)]


def test_recipe_per_record(benchmark, figures: Figures, rows):
    recipes = [RECIPES[r] for r in RECIPE_IDS]

    def run() -> int:
        return sum(1 for recipe in recipes for row in rows if recipe.key(row) is not None)

    figures.measure(
        benchmark, "micro.recipe_per_record", run, rounds=ROUNDS, units=len(rows), unit="record"
    )


def test_bH_ours_vs_raw_openmined(benchmark, figures: Figures, keys):
    def raw() -> None:
        server = psi.server.CreateFromKey(EPOCH_SECRET, True)
        server.CreateSetupMessage(1e-9, 1, keys, psi.DataStructure.RAW)

    figures.measure(
        benchmark,
        "micro.bH_ours_per_key",
        lambda: encrypt_shard(EPOCH_SECRET, keys),
        rounds=ROUNDS,
        warmup_rounds=1,
        units=len(keys),
        unit="key",
        baselines=[Baseline("micro.bH_raw_openmined_per_key", raw, len(keys), "key")],
    )
    figures.ratio(
        "micro.bH_ours/raw",
        "micro.bH_ours_per_key",
        "micro.bH_raw_openmined_per_key",
        target=1.15,
        meaning="b·H(k) + fingerprint + sort over the bare library call, per key",
    )


def _one_thread(fn):
    def run():
        saved = parallel.worker_count
        parallel.worker_count = lambda: 1
        try:
            return fn()
        finally:
            parallel.worker_count = saved

    return run


def _online_step(benchmark, figures: Figures, name: str, fn) -> None:
    figures.measure(
        benchmark,
        f"micro.{name}_per_subject",
        fn,
        rounds=ROUNDS,
        warmup_rounds=1,
        units=SUBJECTS,
        unit="subject",
        baselines=[
            Baseline(f"micro.{name}_per_subject_1_thread", _one_thread(fn), SUBJECTS, "subject")
        ],
    )
    figures.ratio(
        f"micro.{name}_threads/1",
        f"micro.{name}_per_subject",
        f"micro.{name}_per_subject_1_thread",
        target=None,
        meaning=f"{name} with {parallel.worker_count()} threads over one thread (below 1 = faster)",
    )


def test_blind_per_subject(benchmark, figures: Figures, subject_keys):
    query = BlindedQuery()
    _online_step(benchmark, figures, "blind", lambda: query.blind(subject_keys))


def test_evaluate_per_subject(benchmark, figures: Figures, subject_keys):
    points = BlindedQuery().blind(subject_keys)
    reencryptor = Reencryptor(EPOCH_SECRET)
    _online_step(benchmark, figures, "evaluate", lambda: reencryptor.membership(points))


def test_unblind_per_subject(benchmark, figures: Figures, subject_keys):
    query = BlindedQuery()
    answer = Reencryptor(EPOCH_SECRET).membership(query.blind(subject_keys))
    _online_step(benchmark, figures, "unblind", lambda: query.fingerprints(len(answer), answer))


def test_lookup_per_subject(benchmark, figures: Figures):
    rng = np.random.default_rng(3)
    index = np.unique(rng.integers(0, 2**63, size=10**6, dtype=np.uint64)).astype("<u8")
    probes = np.concatenate(
        [index[: SUBJECTS // 2], rng.integers(0, 2**63, SUBJECTS // 2, dtype=np.uint64)]
    )
    figures.measure(
        benchmark,
        "micro.lookup_per_subject",
        lambda: member_mask(index, probes),
        rounds=ROUNDS,
        units=SUBJECTS,
        unit="subject",
    )


def test_merge_per_key(benchmark, figures: Figures, tmp_path: Path):
    rng = np.random.default_rng(4)
    paths = []
    for shard in range(50):
        path = tmp_path / f"shard-{shard:06d}.npy"
        np.save(path, np.sort(rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64)))
        paths.append(path)
    result = figures.measure(
        benchmark,
        "micro.merge_per_key",
        lambda: fingerprint.merge_unique(paths, io.BytesIO()),
        rounds=ROUNDS,
        units=50 * 20_000,
        unit="key",
    )
    assert result.count == 50 * 20_000
