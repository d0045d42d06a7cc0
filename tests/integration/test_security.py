"""Security plumbing against the real services: tokens, budgets, mTLS, plaintext, audit."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from psi_agency.client import AgencyClient
from psi_core.errors import InvalidInputError, PreconditionError
from psi_core.policy import ADMITTED, AuditLog, load_tls_material
from psi_core.protocol import BlindedQuery
from psi_core.recipes import get_recipe
from psi_custodian.app import start_custodian
from psi_proto.v1 import agency_pb2, authorization_pb2, custodian_pb2, custodian_pb2_grpc
from psi_rpc.modes import MODE_ENUMS
from psi_rpc.server import create_channel, create_server
from psi_tools.authority import init_authority
from psi_tools.dev_pki import init_pki
from tests.factories import as_subjects
from tests.integration.conftest import Deployment, evaluate_requests, make_deployment, tear_down

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIN = get_recipe("tin_v1")
CALL_TIMEOUT = 30


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stub(deployment: Deployment, role: str = "agency-client") -> custodian_pb2_grpc.CustodianStub:
    return custodian_pb2_grpc.CustodianStub(deployment.channel(deployment.custodian_address, role))


def _member_keys(deployment: Deployment, start: int, count: int) -> list[str]:
    return [TIN.key(r) for r in deployment.records[start : start + count]]


def _evaluate(
    deployment: Deployment,
    token: bytes,
    keys: list[str],
    *,
    stub: custodian_pb2_grpc.CustodianStub | None = None,
) -> list[bool]:
    """One membership Evaluate call straight to the custodian; the hits, or RpcError."""
    stub = stub or _stub(deployment)
    epoch_id = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=CALL_TIMEOUT).epoch_id
    query = BlindedQuery()
    requests = evaluate_requests(token, epoch_id, query.blind(keys))
    answers = [list(a.points) for a in stub.Evaluate(iter(requests), timeout=CALL_TIMEOUT)]
    assert len(answers) == 1
    assert deployment.agency is not None
    return deployment.agency.index.contains(query.fingerprints(len(keys), answers[0])).tolist()


def _refused(
    deployment: Deployment, token: bytes, keys: list[str], **kwargs: object
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        _evaluate(deployment, token, keys, **kwargs)  # type: ignore[arg-type]
    return caught.value


def _query_through_agency(
    deployment: Deployment, token: bytes, count: int = 4
) -> tuple[AgencyClient, agency_pb2.QueryStatus]:
    client = deployment.agency_client()
    subjects = as_subjects(deployment.records[:count])
    header = agency_pb2.QueryHeader(
        authorization=token, mode=MODE_ENUMS["membership"], recipe="tin_v1"
    )
    submitted = client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]], timeout=60)
    *_, final = client.watch(submitted.query_id, timeout=60)
    return client, final


def _assert_failed_without_matches(
    client: AgencyClient, status: agency_pb2.QueryStatus, code: str
) -> None:
    assert status.state == agency_pb2.QUERY_STATE_FAILED, status
    assert status.error_code == code, status.error_message
    assert status.error_message
    assert status.match_count == 0
    with pytest.raises(PreconditionError):
        list(client.matches(status.query_id, timeout=CALL_TIMEOUT))


# -- tokens ------------------------------------------------------------------------------


def _expired_token(deployment: Deployment, **claims: object) -> bytes:
    past = _utcnow() - dt.timedelta(hours=2)
    return deployment.token(now=past, not_before=past, ttl=dt.timedelta(minutes=5), **claims)


def test_expired_token_is_unauthenticated_at_the_custodian(deployment):
    """An expired token sent straight to the custodian gets UNAUTHENTICATED, naming expiry."""
    error = _refused(deployment, _expired_token(deployment), _member_keys(deployment, 0, 2))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in error.details()


def test_expired_token_fails_the_agency_query_with_unauthenticated(deployment):
    """An expired token submitted to the agency ends the query FAILED with UNAUTHENTICATED."""
    client, status = _query_through_agency(deployment, _expired_token(deployment))
    _assert_failed_without_matches(client, status, "UNAUTHENTICATED")
    assert "expired" in status.error_message


def test_not_yet_valid_token_is_unauthenticated(deployment):
    """A token whose validity starts in an hour is refused with UNAUTHENTICATED."""
    token = deployment.token(not_before=_utcnow() + dt.timedelta(hours=1))
    error = _refused(deployment, token, _member_keys(deployment, 0, 2))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "not valid until" in error.details()


def test_token_of_an_untrusted_authority_is_unauthenticated(deployment, tmp_path):
    """A token from an authority the custodian does not trust is UNAUTHENTICATED."""
    rogue = init_authority(tmp_path / "rogue", "rogue-court").root
    token = deployment.token(rogue, case_id="CASE-ROGUE", max_subjects=10, max_queries=1)
    error = _refused(deployment, token, _member_keys(deployment, 0, 2))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "does not trust" in error.details()


def test_token_signed_by_an_impostor_of_the_trusted_issuer_is_unauthenticated(deployment, tmp_path):
    """A second key claiming the trusted issuer's name fails signature verification."""
    impostor = init_authority(tmp_path / "impostor", "test-court").root
    token = deployment.token(impostor, case_id="CASE-IMPOSTOR", max_subjects=10, max_queries=1)
    error = _refused(deployment, token, _member_keys(deployment, 0, 2))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature does not verify" in error.details()


def _tampered_claims(token: bytes) -> bytes:
    signed = authorization_pb2.SignedAuthorization.FromString(token)
    claims = authorization_pb2.AuthorizationClaims.FromString(signed.claims)
    claims.max_subjects = 10**9
    signed.claims = claims.SerializeToString(deterministic=True)
    return signed.SerializeToString(deterministic=True)


def _tampered_signature(token: bytes) -> bytes:
    signed = authorization_pb2.SignedAuthorization.FromString(token)
    signed.signature = signed.signature[:-1] + bytes([signed.signature[-1] ^ 1])
    return signed.SerializeToString(deterministic=True)


@pytest.mark.parametrize("tamper", [_tampered_claims, _tampered_signature])
def test_tampered_token_is_unauthenticated(deployment, tamper):
    """Raising a token's budget or flipping a signature bit makes it UNAUTHENTICATED."""
    error = _refused(deployment, tamper(deployment.token()), _member_keys(deployment, 0, 2))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature does not verify" in error.details()


@pytest.mark.parametrize(
    ("token", "code", "phrase"),
    [
        (b"garbage", grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        (b"\x0a\x03abc", grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        (b"\xff" * 4096, grpc.StatusCode.UNAUTHENTICATED, "malformed"),
        (b"\x00" * 4097, grpc.StatusCode.INVALID_ARGUMENT, "larger than any valid token"),
    ],
    ids=["garbage", "no-signature", "max-size-junk", "oversized"],
)
def test_garbage_token_is_refused_with_a_clear_message(deployment, token, code, phrase):
    """Bytes that are no token are UNAUTHENTICATED (oversized: INVALID_ARGUMENT), clearly."""
    error = _refused(deployment, token, _member_keys(deployment, 0, 2))
    assert error.code() == code
    assert phrase in error.details()


def test_garbage_token_is_refused_by_the_agency_at_submission(deployment):
    """The agency refuses to queue a query whose authorization is not a token."""
    with pytest.raises(InvalidInputError, match="SignedAuthorization"):
        _query_through_agency(deployment, b"garbage")


# -- budgets -----------------------------------------------------------------------------


def test_second_query_on_a_single_use_token_is_resource_exhausted(deployment):
    """max_queries=1: the first query succeeds, the second is RESOURCE_EXHAUSTED."""
    token = deployment.token(max_queries=1)
    keys = _member_keys(deployment, 0, 2)
    assert _evaluate(deployment, token, keys) == [True, True]
    error = _refused(deployment, token, keys)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 of 1 queries" in error.details()


def test_refused_oversized_query_leaves_the_budget_untouched(deployment):
    """A query over max_subjects is refused and charges nothing: the next one fits."""
    token = deployment.token(max_subjects=5, max_queries=1)
    error = _refused(deployment, token, _member_keys(deployment, 0, 6))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "exceeds the 5 left" in error.details()
    assert _evaluate(deployment, token, _member_keys(deployment, 10, 5)) == [True] * 5
    assert _refused(deployment, token, _member_keys(deployment, 0, 1)).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def test_over_budget_query_through_the_agency_fails_with_resource_exhausted(deployment):
    """A token used up by a direct call makes the agency's query FAILED/RESOURCE_EXHAUSTED."""
    token = deployment.token(max_queries=1)
    assert _evaluate(deployment, token, _member_keys(deployment, 0, 1)) == [True]
    client, status = _query_through_agency(deployment, token)
    _assert_failed_without_matches(client, status, "RESOURCE_EXHAUSTED")


# -- whose token -------------------------------------------------------------------------


def test_token_issued_to_another_agency_is_permission_denied(deployment):
    """A token for agency 'other-agency' over the 'agency' certificate is PERMISSION_DENIED."""
    error = _refused(
        deployment, deployment.token(agency_id="other-agency"), _member_keys(deployment, 0, 2)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "other-agency" in error.details() and "'agency'" in error.details()


def test_token_addressed_to_another_custodian_is_permission_denied(deployment):
    """A token whose audience is another custodian is PERMISSION_DENIED."""
    error = _refused(
        deployment, deployment.token(custodian_id="other-custodian"), _member_keys(deployment, 0, 2)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "other-custodian" in error.details()


def test_another_agency_token_fails_the_agency_query_with_permission_denied(deployment):
    """Through the agency, a token for another agency ends FAILED with PERMISSION_DENIED."""
    client, status = _query_through_agency(deployment, deployment.token(agency_id="other-agency"))
    _assert_failed_without_matches(client, status, "PERMISSION_DENIED")


def test_case_client_certificate_cannot_spend_an_agency_token(deployment):
    """A certificate of our CA but another role (case-client) is not the token's agency."""
    stub = _stub(deployment, "case-client")
    error = _refused(deployment, deployment.token(), _member_keys(deployment, 0, 2), stub=stub)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "case-client" in error.details()


# -- transport ---------------------------------------------------------------------------


def _get_info_code(channel: grpc.Channel) -> grpc.StatusCode:
    stub = custodian_pb2_grpc.CustodianStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=CALL_TIMEOUT)
    return caught.value.code()


def _still_serving(deployment: Deployment) -> None:
    assert _evaluate(deployment, deployment.token(), _member_keys(deployment, 20, 2)) == [
        True,
        True,
    ]


def test_channel_without_a_client_certificate_is_refused(deployment):
    """TLS with only the CA root fails the handshake (UNAVAILABLE); others are still served."""
    root = deployment.tls("agency-client").root_ca
    channel = grpc.secure_channel(
        deployment.custodian_address, grpc.ssl_channel_credentials(root_certificates=root)
    )
    deployment.channels.append(channel)
    assert _get_info_code(channel) == grpc.StatusCode.UNAVAILABLE
    _still_serving(deployment)


def test_client_certificate_of_another_ca_is_refused(deployment, tmp_path):
    """A client certificate from a different CA is refused at the handshake."""
    rogue = load_tls_material(init_pki(tmp_path / "rogue-pki").root, "agency-client")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=deployment.tls("agency-client").root_ca,
        private_key=rogue.private_key,
        certificate_chain=rogue.cert_chain,
    )
    channel = grpc.secure_channel(deployment.custodian_address, credentials)
    deployment.channels.append(channel)
    assert _get_info_code(channel) == grpc.StatusCode.UNAVAILABLE
    _still_serving(deployment)


def test_plaintext_client_to_the_mtls_custodian_is_refused(deployment):
    """A plaintext channel to the mTLS port gets no answer (UNAVAILABLE)."""
    channel = create_channel(deployment.custodian_address, tls=None)
    deployment.channels.append(channel)
    assert _get_info_code(channel) == grpc.StatusCode.UNAVAILABLE
    _still_serving(deployment)


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "10.1.2.3:0", "example.org:0"])
def test_plaintext_server_off_loopback_is_refused(address):
    """create_server refuses tls=None on a non-loopback address, naming loopback."""
    with pytest.raises(PreconditionError, match="loopback"):
        create_server(address, lambda server: None, [], tls=None)


def test_plaintext_custodian_off_loopback_is_refused(deployment):
    """start_custodian refuses plaintext on 0.0.0.0, naming loopback."""
    with pytest.raises(PreconditionError, match="loopback"):
        start_custodian(
            deployment.custodian_state,
            "0.0.0.0:0",
            tls=None,
            trusted_authorities=[deployment.authority],
        )


@pytest.mark.parametrize("address", ["10.1.2.3:1", "0.0.0.0:1", "example.org:443"])
def test_plaintext_channel_off_loopback_is_refused_before_connecting(address):
    """create_channel raises for a non-loopback plaintext target (nothing is sent)."""
    with pytest.raises(PreconditionError, match="loopback"):
        create_channel(address, tls=None)


# -- audit -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A deployment of its own, whose custodian log this module reads and copies."""
    created = make_deployment(tmp_path_factory.mktemp("audited"))
    yield created
    tear_down(created)


def _custodian_log(deployment: Deployment) -> AuditLog:
    return AuditLog(deployment.custodian_state / "custodian.sqlite")


def _events_after(log: AuditLog, seq: int) -> list[dict[str, object]]:
    """The outcome entries after ``seq`` (each admitted request also has an "admitted" one)."""
    return [
        e.event_data()
        for e in log.entries()
        if e.seq > seq and e.event_data().get("stage") != ADMITTED
    ]


def _admitted_after(log: AuditLog, seq: int) -> list[dict[str, object]]:
    return [
        e.event_data()
        for e in log.entries()
        if e.seq > seq and e.event_data().get("stage") == ADMITTED
    ]


def test_custodian_audits_every_request_with_its_outcome(audited):
    """Each accepted or refused request adds exactly one entry: outcome, peer, subjects, and
    the token and case it claimed (marked unverified when refused)."""
    case = "CASE-AUDIT-1"
    keys = _member_keys(audited, 0, 3)
    with _custodian_log(audited) as log:
        start, _ = log.head()
        assert _evaluate(audited, audited.token(case_id=case), keys) == [True] * 3
        single = audited.token(case_id=case, max_queries=1)
        assert _evaluate(audited, single, keys[:1]) == [True]
        refusals = [
            (single, "RESOURCE_EXHAUSTED"),
            (_expired_token(audited, case_id=case), "UNAUTHENTICATED"),
            (audited.token(case_id=case, agency_id="other-agency"), "PERMISSION_DENIED"),
            (b"\x00" * 4097, "INVALID_ARGUMENT"),
        ]
        for token, code in refusals:
            assert _refused(audited, token, keys).code().name == code
        events = _events_after(log, start)
        admitted = _admitted_after(log, start)
        assert log.verify().ok
        assert log.verify().unfinished == ()
    assert [e["outcome"] for e in events] == ["OK", "OK"] + [code for _, code in refusals]
    assert [a["request"] for a in admitted] == [e["request"] for e in events[:2]]
    assert [a["charged"] for a in admitted] == [True, True]
    assert all(e["kind"] == "evaluate" and e["peer"] == "agency" for e in events)
    assert [e.get("subjects") for e in events] == [3, 1, 3, 3, 3, None]
    assert [e.get("case_id") for e in events[:2]] == [case, case]
    assert [e.get("verified") for e in events] == [True, True, False, False, False, None]
    for event in events[2:5]:
        assert event["case_id"] == case and event["reason"]
    assert events[2]["token_id"] == events[1]["token_id"], "the replayed token is named"
    assert "case_id" not in events[5] and events[5]["reason"]


def test_agency_audits_every_query(deployment):
    """The agency's own log gets one entry per query, with its case, outcome and size."""
    tokens = {
        "CASE-AG-OK": deployment.token(case_id="CASE-AG-OK"),
        "CASE-AG-EXPIRED": _expired_token(deployment, case_id="CASE-AG-EXPIRED"),
    }
    ids = {
        case: _query_through_agency(deployment, token)[1].query_id for case, token in tokens.items()
    }
    # Queries run one at a time, and each writes its audit entry before the next starts:
    # once this last query has finished running, both entries above are written.
    _query_through_agency(deployment, deployment.token(case_id="CASE-AG-SENTINEL"))
    assert deployment.agency is not None
    with AuditLog(deployment.root / "agency" / "agency.sqlite") as log:
        assert log.verify().ok
        entries = [e.event_data() for e in log.entries()]
    by_query = {qid: [e for e in entries if e.get("query_id") == qid] for qid in ids.values()}
    assert all(len(found) == 1 for found in by_query.values())
    ok, expired = by_query[ids["CASE-AG-OK"]][0], by_query[ids["CASE-AG-EXPIRED"]][0]
    assert ok["outcome"] == "OK" and ok["case_id"] == "CASE-AG-OK"
    assert ok["subjects"] == 4 and ok["matches"] == 4
    assert expired["outcome"] == "UNAUTHENTICATED" and expired["case_id"] == "CASE-AG-EXPIRED"


def _copy_database(source: Path, state_dir: Path) -> Path:
    """A consistent copy of a live SQLite database (WAL included) as STATE/custodian.sqlite."""
    state_dir.mkdir()
    target = state_dir / "custodian.sqlite"
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def _cli_verify(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "psi_custodian.cli", "audit", "verify", "--state", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def _tamper(database: Path, *statements: str) -> None:
    conn = sqlite3.connect(database)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def _fill_log(deployment: Deployment) -> None:
    keys = _member_keys(deployment, 0, 2)
    for _ in range(2):
        _evaluate(deployment, deployment.token(case_id="CASE-TAMPER"), keys)
    _refused(deployment, _expired_token(deployment), keys)


def _edit_event(head: int) -> list[str]:
    return [
        'UPDATE audit SET event = replace(event, \'"outcome":"OK"\', '
        f'\'"outcome":"UNAUTHENTICATED"\') WHERE seq = {head - 1}'
    ]


def _delete_row(head: int) -> list[str]:
    return [f"DELETE FROM audit WHERE seq = {head - 1}"]


def _swap_rows(head: int) -> list[str]:
    return [
        f"UPDATE audit SET seq = -1 WHERE seq = {head}",
        f"UPDATE audit SET seq = {head} WHERE seq = {head - 1}",
        f"UPDATE audit SET seq = {head - 1} WHERE seq = -1",
    ]


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [(_edit_event, 1), (_delete_row, 1), (_swap_rows, 1)],
    ids=["edited-event", "deleted-row", "swapped-rows"],
)
def test_tampering_with_the_audit_database_is_detected(audited, tmp_path, tamper, first_bad):
    """An edited, deleted or reordered entry fails verify() and the CLI exits non-zero."""
    _fill_log(audited)
    copy = _copy_database(audited.custodian_state / "custodian.sqlite", tmp_path / "state")
    with AuditLog(copy) as log:
        head, _ = log.head()
        assert log.verify().ok
    _tamper(copy, *tamper(head))
    with AuditLog(copy) as log:
        result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == head - first_bad
    assert result.reason
    outcome = _cli_verify(copy.parent)
    assert outcome.returncode != 0
    assert f"BROKEN at entry {head - first_bad}" in outcome.stderr


def test_untouched_audit_copy_verifies_with_the_cli(audited, tmp_path):
    """The CLI exits 0 on an intact log (so the non-zero exits above mean tampering)."""
    _fill_log(audited)
    copy = _copy_database(audited.custodian_state / "custodian.sqlite", tmp_path / "state")
    outcome = _cli_verify(copy.parent)
    assert outcome.returncode == 0, outcome.stderr
    assert "intact" in outcome.stdout


def test_audit_export_counts_per_case_and_names_no_subject(deployment, tmp_path):
    """The export has per-case outcome counts and no subject data from either service."""
    subjects = as_subjects(deployment.records[:4])
    _query_through_agency(deployment, deployment.token(case_id="CASE-EXPORT"))
    _query_through_agency(deployment, deployment.token(case_id="CASE-EXPORT"))
    _query_through_agency(deployment, deployment.token(case_id="CASE-EXPORT-SENTINEL"))
    for service, state in (
        ("psi_custodian.cli", deployment.custodian_state),
        ("psi_agency.cli", deployment.root / "agency"),
    ):
        out = tmp_path / f"{service}.json"
        outcome = subprocess.run(
            [
                sys.executable,
                "-m",
                service,
                "audit",
                "export",
                "--state",
                str(state),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert outcome.returncode == 0, outcome.stderr
        text = out.read_text(encoding="utf-8")
        summary = json.loads(text)
        assert summary["chain"]["ok"] is True
        cases = {c["case_id"]: c for c in summary["cases"]}
        export = cases["CASE-EXPORT"]
        assert export["outcomes"].get("OK") == 2
        assert export["subjects_by_outcome"].get("OK") == 8
        for subject in subjects:
            for field in ("tin", "street"):
                assert subject[field] not in text
            assert f"{subject['given_name']} {subject['family_name']}" not in text
