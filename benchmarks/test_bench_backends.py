"""Curve backends side by side: crypto_mb (Intel multi-buffer) against openmined, per core.

Figures (see benchmarks/README.md for the targets). Each ratio is given twice: per core
(CPU seconds this process spent per unit, all threads counted; the one with the 2.5
target) and wall clock (informational: the services spread a query over every core, and
the reference, computing with the GIL released, gains more from the second core).

* ``backends.build_openmined/crypto_mb``: per key, the whole inline ``build_index`` (CSV,
  3 recipes, b·H(k), fingerprints, shards, merge) with each backend, one process.
* ``backends.encrypt_shard_openmined/crypto_mb``: per key, ``encrypt_shard`` alone (the
  curve work of the build: hash-to-curve, multiply, fingerprint, sort).
* ``backends.online_e2e_openmined/crypto_mb``: per subject, one 2,000-subject agency query
  through both services over mTLS on loopback, end to end (SubmitQuery with its SQLite
  writes, blind, evaluate at the custodian, unblind, WatchQuery until done), each
  deployment on one backend for custodian and agency alike. Both services run in this
  process, so its CPU seconds are the whole query's.
* ``backends.online_openmined/crypto_mb (wall)``: the blind + evaluate + unblind phases of
  the same queries as the agency reports them (``QueryStatus.timings``), wall clock.
* ``backends.core_online_openmined/crypto_mb``: blind + re-encrypt + unblind without gRPC.

Every ratio alternates its sides round by round (``Baseline``). Skipped, with the reason,
where the crypto_mb backend cannot run.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from benchmarks._support import (
    EPOCH_SECRET,
    Baseline,
    Figure,
    Figures,
    deploy_tin_index,
    key_strings,
    population,
    tin_subjects,
    write_tin_population,
)
from psi_agency.client import AgencyClient
from psi_core.index import build_index, encrypt_shard
from psi_core.protocol import (
    CRYPTO_MB,
    OPENMINED,
    BlindedQuery,
    Reencryptor,
    crypto_mb_unavailable_reason,
    get_backend,
)
from psi_core.recipes import RECIPES
from psi_proto.v1 import agency_pb2
from psi_rpc.modes import MODE_ENUMS
from psi_tools.authority import init_authority
from psi_tools.dev_pki import init_pki
from tests.factories import write_records
from tests.integration.conftest import Deployment, tear_down

UNAVAILABLE = crypto_mb_unavailable_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        UNAVAILABLE is not None, reason=f"crypto_mb backend unavailable: {UNAVAILABLE}"
    ),
]

ALL_RECIPES = ("name_address_v1", "name_dob_v1", "tin_v1")
BUILD_RECORDS = 6_667
POPULATION = 20_000
MEMBERS, STRANGERS = 600, 1_400
SUBMIT_BATCH = 500
RECIPE = "tin_v1"
TARGET = 2.5


@pytest.fixture(scope="module")
def build_rows() -> list[dict[str, str]]:
    return population(BUILD_RECORDS, seed=7)


@pytest.fixture(scope="module")
def build_keys(build_rows) -> list[str]:
    return key_strings(build_rows, ALL_RECIPES)


@pytest.fixture(scope="module")
def build_csv(tmp_path_factory, build_rows) -> Path:
    return write_records(tmp_path_factory.mktemp("backends-build") / "records.csv", build_rows)


def _speedup(figures: Figures, name: str, reference: str, fast: str, meaning: str) -> None:
    """The per-core ratio (CPU seconds, the target) and the wall-clock one beside it.

    The services spread one query over ``PSI_THREADS`` threads (default: every core), and
    openmined-psi computes with the GIL released, so on this 2-core machine the wall
    clock of the reference gains from the second core more than crypto_mb's Python
    around the library does; CPU seconds per unit are what each unit costs a core.
    """
    figures.ratio(name, reference, fast, target=TARGET, at_least=True, meaning=meaning, basis="cpu")
    figures.ratio(f"{name} (wall)", reference, fast, target=None, meaning=f"{meaning}, wall clock")


def test_encrypt_shard_per_key(benchmark, figures: Figures, build_keys):
    """The build's curve work alone, per key, crypto_mb against openmined."""
    baseline = Baseline(
        "backends.encrypt_shard_openmined",
        lambda: encrypt_shard(EPOCH_SECRET, build_keys, OPENMINED),
        units=len(build_keys),
        unit="key",
    )
    fps = figures.measure(
        benchmark,
        "backends.encrypt_shard_crypto_mb",
        lambda: encrypt_shard(EPOCH_SECRET, build_keys, CRYPTO_MB),
        rounds=5,
        warmup_rounds=1,
        units=len(build_keys),
        unit="key",
        baselines=[baseline],
    )
    _speedup(
        figures,
        "backends.encrypt_shard_openmined/crypto_mb",
        baseline.name,
        "backends.encrypt_shard_crypto_mb",
        "per-key encrypt_shard (hash, multiply, fingerprint, sort): openmined over crypto_mb",
    )
    assert np.array_equal(fps, encrypt_shard(EPOCH_SECRET, build_keys, OPENMINED))


def test_build_index_per_key(benchmark, figures: Figures, build_csv, epoch_key, tmp_path):
    """The whole inline build_index, per key, crypto_mb against openmined (one core)."""
    counter = itertools.count()
    recipes = [RECIPES[r] for r in ALL_RECIPES]

    def build(backend: str):
        return build_index(
            build_csv, tmp_path / f"{backend}-{next(counter)}", epoch_key, recipes, backend=backend
        )

    reference = build(OPENMINED)
    baseline = Baseline(
        "backends.build_openmined",
        functools.partial(build, OPENMINED),
        units=reference.keys_encrypted,
        unit="key",
    )
    report = figures.measure(
        benchmark,
        "backends.build_crypto_mb",
        functools.partial(build, CRYPTO_MB),
        rounds=5,
        warmup_rounds=1,
        units=lambda r: r.keys_encrypted,
        unit="key",
        baselines=[baseline],
    )
    _speedup(
        figures,
        "backends.build_openmined/crypto_mb",
        baseline.name,
        "backends.build_crypto_mb",
        "per-key cost of a whole 1-worker build_index (CSV, 3 recipes): openmined over crypto_mb",
    )
    assert report.manifest.sha256 == reference.manifest.sha256


def test_core_online_per_subject(benchmark, figures: Figures, build_keys):
    """Blind, re-encrypt, unblind (no gRPC), per subject key, on each backend."""
    keys = build_keys[:2_000]

    def online(backend_name: str) -> np.ndarray:
        backend = get_backend(backend_name)
        query = BlindedQuery(backend=backend)
        answer = Reencryptor(EPOCH_SECRET, backend).membership(query.blind(keys))
        return query.fingerprints(len(keys), answer)

    baseline = Baseline(
        "backends.core_online_openmined",
        functools.partial(online, OPENMINED),
        units=len(keys),
        unit="subject",
    )
    fingerprints = figures.measure(
        benchmark,
        "backends.core_online_crypto_mb",
        functools.partial(online, CRYPTO_MB),
        rounds=5,
        warmup_rounds=1,
        units=len(keys),
        unit="subject",
        baselines=[baseline],
    )
    _speedup(
        figures,
        "backends.core_online_openmined/crypto_mb",
        baseline.name,
        "backends.core_online_crypto_mb",
        "per-subject blind + re-encrypt + unblind without gRPC: openmined over crypto_mb",
    )
    assert np.array_equal(fingerprints, online(OPENMINED))


# -- through both services ---------------------------------------------------------------


@pytest.fixture(scope="module")
def deployments(tmp_path_factory) -> Iterator[dict[str, Deployment]]:
    """One deployment per backend (custodian and agency on it), same population."""
    root = tmp_path_factory.mktemp("backends-online")
    pki = init_pki(root / "tls")
    authority = root / "authority"
    init_authority(authority, "bench-court")
    records = write_tin_population(root / "records.parquet", POPULATION)
    made: dict[str, Deployment] = {}
    try:
        for backend in (OPENMINED, CRYPTO_MB):
            deployment, _ = deploy_tin_index(
                root / backend,
                pki,
                authority,
                records,
                batch_rows=10_000,
                build_backend=CRYPTO_MB,
                backend=backend,
            )
            made[backend] = deployment
        yield made
    finally:
        for deployment in made.values():
            tear_down(deployment)


def _query(
    client: AgencyClient,
    token: bytes,
    batches: Sequence[list[agency_pb2.Subject]],
    backend: str,
    phases: list[float],
) -> None:
    header = agency_pb2.QueryHeader(
        authorization=token, mode=MODE_ENUMS["membership"], recipe=RECIPE
    )
    submitted = client.submit(header, batches)
    final = submitted
    for final in client.watch(submitted.query_id):  # noqa: B007
        pass
    assert final.state == agency_pb2.QUERY_STATE_SUCCEEDED, final.error_message
    assert final.match_count == MEMBERS
    assert (final.agency_backend, final.custodian_backend) == (backend, backend)
    t = final.timings
    phases.append(t.blind_seconds + t.evaluate_seconds + t.unblind_seconds)


def test_online_per_subject_through_both_services(benchmark, figures: Figures, deployments):
    """A 2,000-subject query through both services (mTLS), each side on one backend."""
    subjects = tin_subjects(MEMBERS, STRANGERS)
    batches = [
        [agency_pb2.Subject(**s) for s in subjects[i : i + SUBMIT_BATCH]]
        for i in range(0, len(subjects), SUBMIT_BATCH)
    ]
    phases: dict[str, list[float]] = {OPENMINED: [], CRYPTO_MB: []}
    queries = {}
    for backend, deployment in deployments.items():
        client = deployment.agency_client()
        token = deployment.token(max_subjects=10**8, max_queries=1_000)
        queries[backend] = functools.partial(
            _query, client, token, batches, backend, phases[backend]
        )
    count = len(subjects)
    figures.measure(
        benchmark,
        "backends.online_e2e_crypto_mb",
        queries[CRYPTO_MB],
        rounds=6,
        warmup_rounds=1,
        units=count,
        unit="subject",
        baselines=[Baseline("backends.online_e2e_openmined", queries[OPENMINED], count, "subject")],
    )
    _speedup(
        figures,
        "backends.online_e2e_openmined/crypto_mb",
        "backends.online_e2e_openmined",
        "backends.online_e2e_crypto_mb",
        "per-subject end-to-end query through both services: openmined over crypto_mb",
    )
    measured = not benchmark.disabled
    skip = 1 if measured else 0
    group = "backends.online_e2e_crypto_mb"
    for backend in (OPENMINED, CRYPTO_MB):
        name = f"backends.online_{backend}"
        figures.figures[name] = Figure(
            name, phases[backend][skip:], count, "subject", measured, group
        )
    figures.ratio(
        "backends.online_openmined/crypto_mb (wall)",
        "backends.online_openmined",
        "backends.online_crypto_mb",
        target=None,
        meaning="per-subject blind + evaluate + unblind phases through both services, wall "
        "clock: openmined over crypto_mb",
    )
