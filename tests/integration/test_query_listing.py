"""ListQueries over the real agency service: newest first, stable pages, refused tokens."""

from __future__ import annotations

import grpc
import pytest

from psi_proto.v1 import agency_pb2, agency_pb2_grpc
from psi_rpc.modes import MODE_ENUMS
from tests.factories import as_subjects

pytestmark = pytest.mark.integration


def _submit(deployment, case_id: str) -> str:
    client = deployment.agency_client()
    header = agency_pb2.QueryHeader(
        authorization=deployment.token(case_id=case_id),
        mode=MODE_ENUMS["cardinality"],
        recipe="name_address_v1",
    )
    subjects = [agency_pb2.Subject(**s) for s in as_subjects(deployment.records[:3])]
    return client.submit(header, [subjects]).query_id


def _stub(deployment) -> agency_pb2_grpc.AgencyStub:
    return agency_pb2_grpc.AgencyStub(deployment.channel(deployment.agency_address, "case-client"))


def test_pages_are_newest_first_and_stable_while_queries_arrive(deployment):
    """Seven queries in pages of three; a query submitted between pages does not shift them."""
    ids = [_submit(deployment, "LIST-1") for _ in range(7)]
    stub = _stub(deployment)
    request = agency_pb2.ListQueriesRequest(page_size=3, case_id="LIST-1")
    first = stub.ListQueries(request, timeout=30)
    late = _submit(deployment, "LIST-1")
    listed = [q.query_id for q in first.queries]
    token = first.next_page_token
    while token:
        page = stub.ListQueries(
            agency_pb2.ListQueriesRequest(page_size=3, case_id="LIST-1", page_token=token),
            timeout=30,
        )
        listed += [q.query_id for q in page.queries]
        token = page.next_page_token
    assert listed == ids[::-1]
    assert late not in listed
    newest = stub.ListQueries(agency_pb2.ListQueriesRequest(case_id="LIST-1"), timeout=30)
    assert newest.queries[0].query_id == late
    assert all(q.case_id == "LIST-1" and q.created_at.endswith("Z") for q in newest.queries)


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"page_size": 1001}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"page_token": "bm90IGEgdG9rZW4"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"state": 99}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_listing_requests_are_refused(deployment, request_fields, code):
    """An oversized page, a forged token or an unknown state is INVALID_ARGUMENT."""
    with pytest.raises(grpc.RpcError) as refused:
        _stub(deployment).ListQueries(agency_pb2.ListQueriesRequest(**request_fields), timeout=30)
    assert refused.value.code() == code


def test_a_token_cannot_be_reused_with_other_filters(deployment):
    """The next_page_token of one case's listing is refused for another case."""
    for _ in range(3):
        _submit(deployment, "LIST-2")
    stub = _stub(deployment)
    first = stub.ListQueries(
        agency_pb2.ListQueriesRequest(page_size=1, case_id="LIST-2"), timeout=30
    )
    assert first.next_page_token
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListQueries(
            agency_pb2.ListQueriesRequest(page_token=first.next_page_token, case_id="OTHER"),
            timeout=30,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
