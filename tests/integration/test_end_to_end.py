"""Both services as real gRPC servers on loopback with mTLS: queries end to end."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from psi_agency.custodian_client import CustodianClient
from psi_core.errors import BudgetExhaustedError, PreconditionError
from psi_core.protocol import BlindedQuery
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2, custodian_pb2, custodian_pb2_grpc
from psi_rpc.modes import MODE_ENUMS
from tests.factories import as_subjects, make_records
from tests.integration.conftest import make_deployment, stock_classic_intersection, tear_down

pytestmark = pytest.mark.integration


def _subjects(deployment, members: int, strangers: int):
    """Members of the population, some written differently, plus people who are not in it."""
    chosen = as_subjects(deployment.records[:members])
    for subject in chosen[::3]:
        subject["given_name"], subject["family_name"] = (
            subject["family_name"].upper(),
            subject["given_name"].lower(),
        )
    for subject in chosen[1::3]:
        subject["street"] = subject["street"].replace("St", "Street").replace("Avenue", "AVE")
    others = as_subjects(make_records(strangers, seed=99, prefix="X"), prefix="T")
    return chosen + others


def _expected(deployment, subjects, recipe_id):
    recipe = get_recipe(recipe_id)
    population_keys = {recipe.key(r) for r in deployment.records} - {None}
    return {s["subject_id"] for s in subjects if recipe.key(s) in population_keys}


def _run_query(deployment, subjects, *, mode="membership", recipe="name_address_v1", token=None):
    client = deployment.agency_client()
    header = agency_pb2.QueryHeader(
        authorization=token or deployment.token(), mode=MODE_ENUMS[mode], recipe=recipe
    )
    batches = [
        [agency_pb2.Subject(**s) for s in subjects[i : i + 25]] for i in range(0, len(subjects), 25)
    ]
    submitted = client.submit(header, batches)
    *_, final = client.watch(submitted.query_id)
    return client, final


@pytest.mark.parametrize("recipe", ["name_address_v1", "name_dob_v1", "tin_v1"])
def test_membership_query_returns_exactly_the_plaintext_intersection(deployment, recipe):
    """The agency's matches are exactly the subjects whose key is in the population."""
    subjects = _subjects(deployment, members=60, strangers=40)
    client, status = _run_query(deployment, subjects, recipe=recipe)
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    matched = {m.subject.subject_id for m in client.matches(status.query_id)}
    expected = _expected(deployment, subjects, recipe)
    assert matched == expected
    assert len(expected) >= 40
    assert status.match_count == len(expected)
    assert status.false_positive_bound.per_subject > 0


def test_matches_carry_only_the_subjects_own_fields(deployment):
    """A match is the subject as the agency submitted it, nothing from the custodian."""
    subjects = _subjects(deployment, members=10, strangers=0)
    client, status = _run_query(deployment, subjects)
    by_id = {s["subject_id"]: s for s in subjects}
    for match in client.matches(status.query_id):
        sent = by_id[match.subject.subject_id]
        assert {k: getattr(match.subject, k) for k in sent} == sent
        assert match.recipe == "name_address_v1"


def test_cardinality_query_returns_only_the_count(deployment):
    """Cardinality mode reports the intersection size and refuses to list matches."""
    subjects = _subjects(deployment, members=30, strangers=30)
    client, status = _run_query(deployment, subjects, mode="cardinality")
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert status.match_count == len(_expected(deployment, subjects, "name_address_v1"))
    with pytest.raises(PreconditionError, match="cardinality"):
        list(client.matches(status.query_id))


def test_subjects_without_a_key_are_counted_and_not_sent(deployment):
    """Subjects lacking the recipe's fields are reported, not silently matched."""
    subjects = _subjects(deployment, members=5, strangers=0)
    for subject in subjects[:2]:
        subject["tin"] = ""
    _, status = _run_query(deployment, subjects, recipe="tin_v1")
    assert status.subject_count == 5
    assert status.keyed_subject_count == 3
    assert status.match_count == 3


def test_stock_openmined_client_intersects_through_classic_api(deployment):
    """A stock openmined-psi client computes the same intersection via the classic pair."""
    stub = custodian_pb2_grpc.CustodianStub(
        deployment.channel(deployment.custodian_address, "agency-client")
    )
    recipe = get_recipe("tin_v1")
    members = [recipe.key(r) for r in deployment.records[:20]]
    strangers = [recipe.key(r) for r in make_records(10, seed=5, prefix="Z")]
    client_keys = [k for k in members + strangers if k]
    token = deployment.token()
    found = stock_classic_intersection(stub, token, client_keys)
    population = {recipe.key(r) for r in deployment.records}
    assert found == set(client_keys) & population


def _direct_evaluate(deployment, keys, token):
    custodian = CustodianClient(deployment.channel(deployment.custodian_address, "agency-client"))
    facts = custodian.info()
    query = BlindedQuery()
    header = custodian_pb2.EvaluateHeader(
        authorization=token,
        mode=MODE_ENUMS["membership"],
        recipe="tin_v1",
        epoch_id=facts.manifest.epoch_id,
        point_count=len(keys),
    )
    answers = list(custodian.evaluate(header, iter([query.blind(keys)]), timeout=60))
    return deployment.agency.index.contains(query.fingerprints(len(keys), answers[0]))


def test_sixteen_concurrent_evaluations_are_all_correct(deployment):
    """16 Evaluate calls at once (one openmined object per thread) all answer correctly."""
    recipe = get_recipe("tin_v1")
    token = deployment.token(max_queries=32)
    barrier = threading.Barrier(16)

    def one(worker: int):
        members = [recipe.key(r) for r in deployment.records[worker * 10 : worker * 10 + 10]]
        strangers = [recipe.key(r) for r in make_records(5, seed=1000 + worker, prefix="Q")]
        keys = [k for k in members + strangers if k]
        barrier.wait()
        hits = _direct_evaluate(deployment, keys, token)
        return hits.tolist() == [True] * len(members) + [False] * (len(keys) - len(members))

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(16)))


def test_custodian_survives_a_malformed_request(deployment):
    """Garbage points get INVALID_ARGUMENT and the next honest query still works."""
    stub = custodian_pb2_grpc.CustodianStub(
        deployment.channel(deployment.custodian_address, "agency-client")
    )
    facts = CustodianClient(
        deployment.channel(deployment.custodian_address, "agency-client")
    ).info()
    header = custodian_pb2.EvaluateHeader(
        authorization=deployment.token(),
        mode=MODE_ENUMS["membership"],
        recipe="tin_v1",
        epoch_id=facts.manifest.epoch_id,
        point_count=2,
    )
    requests = [
        custodian_pb2.EvaluateRequest(header=header),
        custodian_pb2.EvaluateRequest(
            chunk=custodian_pb2.PointChunk(points=[b"\x02" + b"\xff" * 32, b"junk"])
        ),
    ]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Evaluate(iter(requests), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    key = get_recipe("tin_v1").key(deployment.records[0])
    assert _direct_evaluate(deployment, [key], deployment.token()).tolist() == [True]


def test_health_and_reflection_are_served(deployment):
    """Both services answer gRPC health checks and list their services by reflection."""
    for address, role, name in (
        (deployment.custodian_address, "agency-client", "psi.v1.Custodian"),
        (deployment.agency_address, "case-client", "psi.v1.Agency"),
    ):
        channel = deployment.channel(address, role)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
        assert name in names


def test_agency_refuses_a_recipe_the_custodian_does_not_hold(tmp_path_factory):
    """Asking for a recipe outside the custodian's index fails at submission."""
    deployment = make_deployment(tmp_path_factory.mktemp("tin-only"), recipes=("tin_v1",))
    try:
        with pytest.raises(PreconditionError, match="does not hold recipe name_dob_v1"):
            _run_query(deployment, _subjects(deployment, 3, 0), recipe="name_dob_v1")
    finally:
        tear_down(deployment)


def test_query_over_the_token_budget_fails_with_resource_exhausted(deployment):
    """A query larger than the token's subject budget ends FAILED with RESOURCE_EXHAUSTED."""
    subjects = _subjects(deployment, members=10, strangers=10)
    _, status = _run_query(deployment, subjects, token=deployment.token(max_subjects=5))
    assert status.state == agency_pb2.QUERY_STATE_FAILED
    assert status.error_code == "RESOURCE_EXHAUSTED"
    assert "exceeds" in status.error_message or "left" in status.error_message
    assert BudgetExhaustedError.status == "RESOURCE_EXHAUSTED"
