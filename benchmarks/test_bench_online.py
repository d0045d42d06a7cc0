"""Online query latency: independent of the index size N, and against classic openmined-psi.

Figures (see benchmarks/README.md for the targets):

* ``online.e2e_latency_2e5/1e4``: one agency query of 1,000 subjects (300 members), end to
  end through both services over mTLS on loopback (SubmitQuery, then WatchQuery until it
  is done), against an index of 2·10^5 keys over the same query against 10^4 keys.
* ``online.core_latency_2e5/1e4``: the same without gRPC: blind, re-encrypt, unblind,
  look up (``BlindedQuery`` + ``Reencryptor`` + ``member_mask``).
* ``online.classic/ours_1e5``: classic openmined-psi as a black box at N = 10^5 (per query
  a GCS ServerSetup over all N keys, the client's Request, the server's Response, the
  client's intersection) over our online step against a pre-built index of 10^5 keys.

Each comparison alternates its two sides round by round, so a change of load on the shared
machine hits both alike. Populations hold one tin_v1 key per record (unique TINs), so the
indexes are quick to build; they are built once per module with a 2-process pool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import private_set_intersection.python as psi
import pytest

from benchmarks._support import (
    EPOCH_SECRET,
    Baseline,
    Figures,
    deploy_tin_index,
    fixed_epoch,
    tin_subjects,
    write_tin_population,
)
from psi_agency.client import AgencyClient
from psi_core.index import EncryptedIndex, EpochKey, build_index, iter_index_keys, process_pool
from psi_core.protocol import BlindedQuery, Reencryptor
from psi_core.recipes import get_recipe
from psi_custodian.state import CustodianState
from psi_proto.v1 import agency_pb2
from psi_rpc.modes import MODE_ENUMS
from psi_tools.authority import init_authority
from psi_tools.dev_pki import init_pki
from tests.integration.conftest import Deployment, tear_down

pytestmark = pytest.mark.integration

SMALL, LARGE, CLASSIC = 10_000, 200_000, 100_000
MEMBERS, STRANGERS = 300, 700
RECIPE = "tin_v1"
BATCH_ROWS = 25_000
SUBMIT_BATCH = 250
ROUNDS, CLASSIC_ROUNDS = 10, 3


@dataclass
class OnlineEnv:
    deployments: dict[int, Deployment]
    secrets: dict[int, bytes]
    indexes: dict[int, EncryptedIndex]
    classic_keys: list[str]


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> Iterator[OnlineEnv]:
    """Two deployments (10^4 and 2·10^5 keys) and a fixed-key index of 10^5 keys."""
    root = tmp_path_factory.mktemp("online")
    pki = init_pki(root / "tls")
    authority = root / "authority"
    init_authority(authority, "bench-court")
    deployments: dict[int, Deployment] = {}
    epochs: dict[int, EpochKey] = {}
    try:
        with process_pool(2) as pool:
            for size in (SMALL, LARGE):
                records = write_tin_population(root / f"records-{size}.parquet", size)
                deployments[size], epochs[size] = deploy_tin_index(
                    root / f"n{size}", pki, authority, records, batch_rows=BATCH_ROWS, executor=pool
                )
            classic_dir = root / "classic-index"
            build_index(
                write_tin_population(root / f"records-{CLASSIC}.parquet", CLASSIC),
                classic_dir,
                fixed_epoch(),
                [get_recipe(RECIPE)],
                executor=pool,
                batch_rows=BATCH_ROWS,
                classic_keys=True,
            )
        secrets = {size: epoch.secret for size, epoch in epochs.items()}
        secrets[CLASSIC] = EPOCH_SECRET
        indexes = {
            size: EncryptedIndex.open(
                CustodianState(d.custodian_state).index_dir(epochs[size].epoch_id)
            )
            for size, d in deployments.items()
        }
        indexes[CLASSIC] = EncryptedIndex.open(classic_dir)
        yield OnlineEnv(deployments, secrets, indexes, list(iter_index_keys(classic_dir)))
    finally:
        for deployment in deployments.values():
            tear_down(deployment)


@pytest.fixture(scope="module")
def subjects() -> list[dict[str, str]]:
    """1,000 subjects: 300 in every population (the first records), 700 in none."""
    return tin_subjects(MEMBERS, STRANGERS)


@pytest.fixture(scope="module")
def subject_keys(subjects) -> list[str]:
    recipe = get_recipe(RECIPE)
    keys = [recipe.key(s) for s in subjects]
    assert None not in keys and len(set(keys)) == len(keys)
    return keys  # type: ignore[return-value]


def _agency_query(
    client: AgencyClient, token: bytes, batches: Sequence[list[agency_pb2.Subject]]
) -> agency_pb2.QueryStatus:
    header = agency_pb2.QueryHeader(
        authorization=token, mode=MODE_ENUMS["membership"], recipe=RECIPE
    )
    submitted = client.submit(header, batches)
    final = submitted
    for final in client.watch(submitted.query_id):  # noqa: B007
        pass
    return final


def test_agency_query_latency_vs_index_size(benchmark, figures: Figures, online, subjects):
    """A 1,000-subject agency query through both services (mTLS) at N = 2e5 vs N = 1e4.

    Each timed query against the 2e5-key deployment runs right after the same query
    against the 1e4-key one; each agency keeps one channel (handshake not timed).
    """
    batches = [
        [agency_pb2.Subject(**s) for s in subjects[i : i + SUBMIT_BATCH]]
        for i in range(0, len(subjects), SUBMIT_BATCH)
    ]
    queries = {}
    for size, deployment in online.deployments.items():
        client = deployment.agency_client()
        token = deployment.token(max_subjects=10**8, max_queries=1_000)
        queries[size] = functools.partial(_checked_agency_query, client, token, batches)
    figures.measure(
        benchmark,
        f"online.e2e_query_1000_subjects_N={LARGE}",
        queries[LARGE],
        rounds=ROUNDS,
        warmup_rounds=1,
        baselines=[Baseline(f"online.e2e_query_1000_subjects_N={SMALL}", queries[SMALL])],
    )
    figures.ratio(
        "online.e2e_latency_2e5/1e4",
        f"online.e2e_query_1000_subjects_N={LARGE}",
        f"online.e2e_query_1000_subjects_N={SMALL}",
        target=1.3,
        meaning="end-to-end latency of the same 1,000-subject query, index 2e5 keys over 1e4",
    )


def _checked_agency_query(
    client: AgencyClient, token: bytes, batches: Sequence[list[agency_pb2.Subject]]
) -> None:
    status = _agency_query(client, token, batches)
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert status.match_count == MEMBERS


def _core_query(reencryptor: Reencryptor, index: EncryptedIndex, keys: list[str]) -> None:
    """Blind, re-encrypt (custodian), unblind, look up; checks the answer."""
    query = BlindedQuery()
    answer = reencryptor.membership(query.blind(keys))
    hits = index.contains(query.fingerprints(len(keys), answer))
    assert hits.tolist() == [True] * MEMBERS + [False] * STRANGERS


def _core(online: OnlineEnv, size: int, keys: list[str]) -> Callable[[], None]:
    query = functools.partial(
        _core_query, Reencryptor(online.secrets[size]), online.indexes[size], keys
    )
    query()  # creates this thread's openmined server object; untimed
    return query


def test_core_query_latency_vs_index_size(benchmark, figures: Figures, online, subject_keys):
    """The online step alone (no gRPC) for 1,000 keys at N = 2e5 vs N = 1e4, alternating."""
    assert len(online.indexes[SMALL]) == SMALL and len(online.indexes[LARGE]) == LARGE
    figures.measure(
        benchmark,
        f"online.core_query_1000_keys_N={LARGE}",
        _core(online, LARGE, subject_keys),
        rounds=ROUNDS,
        warmup_rounds=1,
        baselines=[
            Baseline(f"online.core_query_1000_keys_N={SMALL}", _core(online, SMALL, subject_keys))
        ],
    )
    figures.ratio(
        "online.core_latency_2e5/1e4",
        f"online.core_query_1000_keys_N={LARGE}",
        f"online.core_query_1000_keys_N={SMALL}",
        target=1.3,
        meaning="blind + re-encrypt + unblind + lookup of 1,000 keys, index 2e5 keys over 1e4",
    )


def test_classic_openmined_query(benchmark, figures: Figures, online, subject_keys):
    """Classic openmined-psi per query at N = 1e5 vs our online step against 1e5, alternating.

    Classic: a GCS ServerSetup over all N keys, the client's Request, the server's
    Response and the client's intersection, all in one process (no wire, no validation).
    """
    server_keys = online.classic_keys
    assert len(server_keys) == len(online.indexes[CLASSIC]) == CLASSIC

    def classic() -> list[int]:
        server = psi.server.CreateFromKey(EPOCH_SECRET, True)
        setup = server.CreateSetupMessage(
            1e-9, len(subject_keys), server_keys, psi.DataStructure.GCS
        )
        client = psi.client.CreateWithNewKey(True)
        response = server.ProcessRequest(client.CreateRequest(subject_keys))
        return list(client.GetIntersection(setup, response))

    found = figures.measure(
        benchmark,
        f"online.classic_openmined_query_1000_keys_N={CLASSIC}",
        classic,
        rounds=CLASSIC_ROUNDS,
        baselines=[
            Baseline(
                f"online.core_query_1000_keys_N={CLASSIC}", _core(online, CLASSIC, subject_keys)
            )
        ],
    )
    figures.ratio(
        "online.classic/ours_1e5",
        f"online.classic_openmined_query_1000_keys_N={CLASSIC}",
        f"online.core_query_1000_keys_N={CLASSIC}",
        target=None,
        meaning="classic openmined-psi per-query cost over our online step, both at N = 1e5",
    )
    assert set(range(MEMBERS)) <= set(found) and len(found) <= MEMBERS + 1
