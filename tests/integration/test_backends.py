"""A custodian on one curve backend serves an agency on the other, over the real services.

Skipped with the reason where the crypto_mb backend cannot run (see tests/unit/test_backends.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from psi_agency.custodian_client import CustodianClient
from psi_core.protocol import (
    CRYPTO_MB,
    OPENMINED,
    SUITE,
    BlindedQuery,
    crypto_mb_unavailable_reason,
)
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2, custodian_pb2, custodian_pb2_grpc
from psi_rpc.modes import MODE_ENUMS
from tests.factories import as_subjects, make_records
from tests.integration.conftest import (
    Deployment,
    make_deployment,
    stock_classic_intersection,
    tear_down,
)

UNAVAILABLE = crypto_mb_unavailable_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        UNAVAILABLE is not None, reason=f"crypto_mb backend unavailable: {UNAVAILABLE}"
    ),
]

#: (index build, custodian, agency) backends of each deployment.
MIXES = {
    "fast custodian, reference agency": (CRYPTO_MB, CRYPTO_MB, OPENMINED),
    "reference custodian, fast agency": (OPENMINED, OPENMINED, CRYPTO_MB),
}


@pytest.fixture(scope="module", params=list(MIXES))
def mixed(request, tmp_path_factory) -> Iterator[tuple[Deployment, tuple[str, str, str]]]:
    build, custodian, agency = MIXES[request.param]
    deployment = make_deployment(
        tmp_path_factory.mktemp("backends"),
        recipes=("name_address_v1", "tin_v1"),
        build_backend=build,
        custodian_backend=custodian,
        agency_backend=agency,
    )
    yield deployment, (build, custodian, agency)
    tear_down(deployment)


def _query(deployment: Deployment, subjects: list[dict[str, str]], mode: str):
    client = deployment.agency_client()
    header = agency_pb2.QueryHeader(
        authorization=deployment.token(), mode=MODE_ENUMS[mode], recipe="name_address_v1"
    )
    submitted = client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]])
    *_, final = client.watch(submitted.query_id)
    return client, final


def _subjects(deployment: Deployment) -> tuple[list[dict[str, str]], set[str]]:
    subjects = as_subjects(deployment.records[:40]) + as_subjects(
        make_records(25, seed=123, prefix="X"), prefix="T"
    )
    recipe = get_recipe("name_address_v1")
    population = {recipe.key(r) for r in deployment.records} - {None}
    expected = {s["subject_id"] for s in subjects if recipe.key(s) in population}
    return subjects, expected


def test_membership_across_backends_is_exactly_the_intersection(mixed):
    """Index and answers from one backend, blinding and unblinding on the other."""
    deployment, (_, custodian, agency) = mixed
    subjects, expected = _subjects(deployment)
    client, status = _query(deployment, subjects, "membership")
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert {m.subject.subject_id for m in client.matches(status.query_id)} == expected
    assert len(expected) >= 35
    assert (status.agency_backend, status.custodian_backend) == (agency, custodian)


def test_cardinality_across_backends_counts_the_intersection(mixed):
    deployment, _ = mixed
    subjects, expected = _subjects(deployment)
    _, status = _query(deployment, subjects, "cardinality")
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert status.match_count == len(expected)


def _stub(deployment: Deployment) -> custodian_pb2_grpc.CustodianStub:
    return custodian_pb2_grpc.CustodianStub(
        deployment.channel(deployment.custodian_address, "agency-client")
    )


def test_get_info_names_the_backend_and_the_suite(mixed):
    deployment, (_, custodian, _) = mixed
    info = _stub(deployment).GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
    assert (info.backend, info.suite) == (custodian, SUITE)


def _evaluate(deployment: Deployment, keys: list[str], suite: str):
    custodian = CustodianClient(deployment.channel(deployment.custodian_address, "agency-client"))
    facts = custodian.info()
    query = BlindedQuery()
    header = custodian_pb2.EvaluateHeader(
        authorization=deployment.token(),
        mode=MODE_ENUMS["membership"],
        recipe="tin_v1",
        epoch_id=facts.manifest.epoch_id,
        point_count=len(keys),
        suite=suite,
    )
    answers = list(custodian.evaluate(header, iter([query.blind(keys)]), timeout=60))
    return deployment.agency.index.contains(query.fingerprints(len(keys), answers[0]))


def test_an_evaluate_header_without_a_suite_means_p256(mixed):
    """Agencies older than the suite field (empty) are answered as P-256."""
    deployment, _ = mixed
    keys = [get_recipe("tin_v1").key(r) for r in deployment.records[:5]] + ["tin_v1|absent"]
    assert _evaluate(deployment, keys, "").tolist() == [True] * 5 + [False]


def test_an_evaluate_header_in_another_suite_is_refused(mixed):
    deployment, _ = mixed
    with pytest.raises(grpc.RpcError) as caught:
        _stub(deployment).Evaluate(
            iter(
                [
                    custodian_pb2.EvaluateRequest(
                        header=custodian_pb2.EvaluateHeader(
                            authorization=deployment.token(),
                            mode=MODE_ENUMS["membership"],
                            recipe="tin_v1",
                            epoch_id=_stub(deployment)
                            .GetInfo(custodian_pb2.GetInfoRequest(), timeout=30)
                            .epoch_id,
                            point_count=1,
                            suite="RISTRETTO255_SHA512",
                        )
                    )
                ]
            ),
            timeout=30,
        ).next()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "P256_SHA256_TAI" in caught.value.details()


def test_a_stock_openmined_client_works_through_the_classic_rpcs(mixed):
    """The classic setup and request still serve an unmodified openmined-psi client."""
    deployment, _ = mixed
    stub = _stub(deployment)
    recipe = get_recipe("tin_v1")
    client_keys = [recipe.key(r) for r in deployment.records[:6]] + ["tin_v1|nobody"]
    token = deployment.token()
    found = stock_classic_intersection(stub, token, client_keys)
    assert found == set(client_keys[:6])
