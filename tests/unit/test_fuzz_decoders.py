"""Hypothesis fuzzing of every decoder that reads a peer's bytes: only our own errors escape.

No network: the servicer helpers are called directly on parsed messages. A crash here
would be an exception of the wrong type or, worse, openmined-psi aborting the process on
bytes that should have been refused first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import string
import tempfile
from pathlib import Path

import numpy as np
import private_set_intersection.python as stock
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import DecodeError
from hypothesis import event, given, settings
from hypothesis import strategies as st

from psi_agency.custodian_client import MIN_MESSAGE_BYTES, _check_info
from psi_agency.service import AgencyServicer, case_id_of, subject_row
from psi_core.errors import (
    AuthenticationError,
    BudgetExhaustedError,
    IntegrityError,
    InvalidInputError,
    MalformedMessageError,
    PeerError,
    PermissionDeniedError,
    PreconditionError,
)
from psi_core.index import EpochKey, IndexDownload, IndexManifest, write_index
from psi_core.policy import AuditLog, TrustedAuthorities, verify_authorization
from psi_core.protocol import BlindedQuery, Blinder, Reencryptor, openmined
from psi_core.recipes import recipe_ids
from psi_custodian.service import CustodianServicer
from psi_custodian.state import CustodianConfig, CustodianLimits
from psi_proto.v1 import agency_pb2, authorization_pb2, custodian_pb2
from psi_rpc.modes import mode_name
from tests.factories import served_epochs_with_key

FUZZ = settings(max_examples=200, deadline=None)

UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
HEX_EPOCH = st.text(string.hexdigits.lower()[:16], min_size=1, max_size=16)

#: Valid compressed points, so that some fuzzed inputs get past validation.
VALID_POINTS = Blinder().blind([f"fuzz|{i}" for i in range(8)])
_EPOCH = EpochKey(epoch_id="00fuzz00epoch000", created_at="", secret=Blinder().scalar)
_REENCRYPTOR = Reencryptor(_EPOCH.secret)


def _near_points() -> st.SearchStrategy[bytes]:
    """33-byte strings with a point-like prefix, off by a little or a lot."""
    return st.builds(
        lambda prefix, x: bytes([prefix]) + x,
        st.sampled_from([0, 2, 3, 4, 0xFF]),
        st.binary(min_size=32, max_size=32)
        | st.just(b"\xff" * 32)
        | st.just(b"\x00" * 32)
        | st.just((2**256 - 2**224 + 2**192 + 2**96 - 1).to_bytes(32, "big")),
    )


POINTS = st.sampled_from(VALID_POINTS) | _near_points() | st.binary(max_size=70)


# -- index download ----------------------------------------------------------------------


@FUZZ
@given(
    chunks=st.lists(
        st.tuples(
            st.none() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 8, 16, 24, 64, 72]),
            st.binary(max_size=90)
            | st.binary(min_size=8, max_size=8)
            | st.binary(min_size=16, max_size=16),
        ),
        max_size=6,
    ),
    key_count=st.integers(0, 9),
)
def test_index_download_append_raises_only_peer_error(chunks, key_count):
    """append() with any offset and bytes either appends whole fingerprints or PeerError."""
    size = key_count * 8
    manifest = IndexManifest("e", ("tin_v1",), key_count, key_count, size, "0" * 64)
    with tempfile.TemporaryDirectory() as tmp:
        download = IndexDownload(Path(tmp), manifest)
        accepted = 0
        for offset, data in chunks:
            try:
                download.append(download.offset if offset is None else offset, data)
                accepted += len(data)
            except PeerError:
                pass
            assert download.offset == accepted
            assert download.offset % 8 == 0 and download.offset <= size
        with contextlib.suppress(PeerError, IntegrityError):
            download.finish()


@FUZZ
@given(key_count=st.integers(0, 2**65), size=st.integers(0, 2**68), digest=TEXT)
def test_index_download_refuses_unusable_announcements_with_peer_error(key_count, size, digest):
    """An announced size or digest that cannot be right is a PeerError, nothing else."""
    manifest = IndexManifest("e", ("tin_v1",), 0, key_count, size, digest)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            IndexDownload(Path(tmp), manifest)
        except PeerError:
            return
        assert size == key_count * 8 and len(digest) == 64


# -- custodian facts ---------------------------------------------------------------------


@st.composite
def custodian_infos(draw: st.DrawFn) -> custodian_pb2.CustodianInfo:
    key_count = draw(UINT64 | st.integers(0, 1000))
    consistent = draw(st.booleans())
    size = key_count * 8 if consistent and key_count * 8 < 2**64 else draw(UINT64)
    return custodian_pb2.CustodianInfo(
        custodian_id=draw(TEXT),
        epoch_id=draw(HEX_EPOCH | TEXT),
        record_count=draw(UINT64),
        key_count=key_count,
        recipes=draw(st.lists(st.sampled_from([*recipe_ids(), "", "evil_v1"]) | TEXT, max_size=5)),
        index_sha256=draw(st.binary(min_size=32, max_size=32) | st.binary(max_size=40)),
        index_size_bytes=size,
        limits=custodian_pb2.PolicyLimits(
            max_subjects_per_query=draw(UINT64),
            max_points_per_chunk=draw(UINT32),
            max_message_bytes=draw(UINT32),
            max_concurrent_evaluations=draw(UINT32),
        ),
    )


@FUZZ
@given(info=custodian_infos())
def test_check_info_raises_only_peer_error(info):
    """Any CustodianInfo gives usable facts (safe epoch directory name) or PeerError."""
    try:
        facts = _check_info(info)
    except PeerError:
        return
    epoch_id = facts.manifest.epoch_id
    assert epoch_id.isascii() and epoch_id.isalnum() and len(epoch_id) <= 64
    assert facts.manifest.recipes and set(facts.manifest.recipes) <= set(recipe_ids())
    assert facts.manifest.size_bytes == facts.manifest.key_count * 8
    assert len(facts.manifest.sha256) == 64
    assert facts.max_points_per_chunk >= 1 and facts.max_subjects_per_query >= 1
    assert 1 <= facts.points_per_request <= facts.max_points_per_chunk
    assert facts.max_message_bytes >= MIN_MESSAGE_BYTES


_HONEST_INFO = custodian_pb2.CustodianInfo(
    custodian_id="custodian",
    epoch_id="0123456789abcdef",
    record_count=3,
    key_count=3,
    recipes=["tin_v1"],
    index_sha256=b"\x01" * 32,
    index_size_bytes=24,
    limits=custodian_pb2.PolicyLimits(
        max_subjects_per_query=10, max_points_per_chunk=4, max_message_bytes=8 << 20
    ),
).SerializeToString()


@st.composite
def mangled_infos(draw: st.DrawFn) -> bytes:
    """An honest CustodianInfo's bytes with a random slice replaced (or pure garbage)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    start = draw(st.integers(0, len(_HONEST_INFO)))
    end = draw(st.integers(start, len(_HONEST_INFO)))
    return _HONEST_INFO[:start] + draw(st.binary(max_size=12)) + _HONEST_INFO[end:]


@FUZZ
@given(data=mangled_infos())
def test_check_info_on_mangled_bytes_raises_only_peer_error(data):
    """Mangled GetInfo bytes either fail to parse (gRPC's error) or give facts or PeerError."""
    try:
        info = custodian_pb2.CustodianInfo.FromString(data)
    except DecodeError:
        return
    with contextlib.suppress(PeerError):
        _check_info(info)


# -- the custodian's answer --------------------------------------------------------------

_QUERY = BlindedQuery()


@FUZZ
@given(answer=st.lists(POINTS, max_size=8), sent=st.none() | st.integers(0, 10))
def test_fingerprints_of_any_answer_raise_only_peer_error(answer, sent):
    """BlindedQuery.fingerprints on any answer returns one fingerprint per point or PeerError."""
    expected = len(answer) if sent is None else sent
    try:
        result = _QUERY.fingerprints(expected, answer)
    except PeerError:
        return
    assert len(result) == expected == len(answer)


# -- authorization tokens ----------------------------------------------------------------


@st.composite
def tokens(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or a SignedAuthorization with arbitrary claims and signature."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    claims = authorization_pb2.AuthorizationClaims(
        token_id=draw(TEXT),
        issuer=draw(st.sampled_from(["test-court", ""]) | TEXT),
        agency_id=draw(TEXT),
        custodian_id=draw(st.sampled_from(["custodian"]) | TEXT),
        case_id=draw(TEXT),
        legal_basis=draw(TEXT),
        max_subjects=draw(UINT64),
        max_queries=draw(UINT32),
        not_before=draw(st.integers(-(2**63), 2**63 - 1)),
        expires_at=draw(st.integers(-(2**63), 2**63 - 1)),
        issued_at=draw(st.integers(-(2**63), 2**63 - 1)),
    ).SerializeToString()
    signature = draw(st.binary(min_size=64, max_size=64) | st.binary(max_size=80))
    return authorization_pb2.SignedAuthorization(
        claims=claims, signature=signature
    ).SerializeToString()


@FUZZ
@given(token=tokens())
def test_case_id_of_raises_only_invalid_input(token):
    """The agency's reading of any token gives a non-empty case id or InvalidInputError."""
    try:
        case_id = case_id_of(token)
    except InvalidInputError:
        return
    assert isinstance(case_id, str) and case_id


_TRUSTED = TrustedAuthorities({"test-court": Ed25519PrivateKey.generate().public_key()})


@FUZZ
@given(token=tokens())
def test_verify_authorization_refuses_any_forged_token(token):
    """No fuzzed token verifies; each is refused as UNAUTHENTICATED or PERMISSION_DENIED."""
    with pytest.raises((AuthenticationError, PermissionDeniedError)):
        verify_authorization(
            token,
            trusted=_TRUSTED,
            custodian_id="custodian",
            peer_agency_id="agency",
            now=dt.datetime.now(dt.UTC),
        )


# -- the custodian's servicer helpers ----------------------------------------------------

_REFUSALS = (InvalidInputError, PreconditionError, BudgetExhaustedError)


@pytest.fixture(scope="module")
def servicer(tmp_path_factory) -> CustodianServicer:
    root = tmp_path_factory.mktemp("fuzz-custodian")
    write_index(
        root / "index" / _EPOCH.epoch_id,
        np.array([1, 2, 3], dtype="<u8"),
        epoch_id=_EPOCH.epoch_id,
        recipes=("tin_v1",),
        record_count=3,
    )
    audit = AuditLog(root / "audit.sqlite")
    yield CustodianServicer(
        config=CustodianConfig(
            "custodian", CustodianLimits(max_subjects_per_query=16, max_points_per_chunk=4)
        ),
        epochs=served_epochs_with_key(root, _EPOCH),
        policy=None,  # type: ignore[arg-type]
        audit=audit,
        peer_identity=lambda context: "agency",
    )
    audit.close()


@st.composite
def evaluate_requests(draw: st.DrawFn) -> custodian_pb2.EvaluateRequest:
    kind = draw(st.sampled_from(["header", "chunk", "empty", "bytes"]))
    if kind == "header":
        header = custodian_pb2.EvaluateHeader(
            authorization=draw(st.binary(max_size=5000) | st.just(b"t")),
            mode=draw(st.integers(-(2**31), 2**31 - 1) | st.sampled_from([1, 2])),
            recipe=draw(st.sampled_from(["tin_v1", "name_dob_v1"]) | TEXT),
            epoch_id=draw(st.just(_EPOCH.epoch_id) | TEXT),
            point_count=draw(UINT64 | st.integers(0, 20)),
            recipe_keys=draw(
                st.lists(
                    st.builds(
                        custodian_pb2.RecipeKeyCount,
                        recipe=st.sampled_from(["tin_v1", "name_dob_v1"]) | TEXT,
                        key_count=UINT64 | st.integers(0, 20),
                    ),
                    max_size=3,
                )
            ),
            subject_count=draw(UINT64 | st.integers(0, 20)),
        )
        return custodian_pb2.EvaluateRequest(header=header)
    if kind == "chunk":
        points = draw(st.lists(POINTS, max_size=6))
        return custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points))
    if kind == "empty":
        return custodian_pb2.EvaluateRequest()
    try:
        return custodian_pb2.EvaluateRequest.FromString(draw(st.binary(max_size=120)))
    except DecodeError:
        return custodian_pb2.EvaluateRequest()


@st.composite
def evaluate_streams(draw: st.DrawFn) -> list[custodian_pb2.EvaluateRequest]:
    """Arbitrary message lists, or a valid header with nearly right chunks and a twist."""
    if draw(st.booleans()):
        return draw(st.lists(evaluate_requests(), max_size=5))
    valid = st.sampled_from(VALID_POINTS)
    points = draw(st.lists(valid | valid | valid | POINTS, min_size=1, max_size=10))
    header = custodian_pb2.EvaluateHeader(
        authorization=b"t",
        mode=draw(st.sampled_from([1, 2])),
        recipe="tin_v1",
        epoch_id=_EPOCH.epoch_id,
        point_count=max(len(points) + draw(st.sampled_from([0, 0, 0, 1, -1])), 0),
    )
    messages = [custodian_pb2.EvaluateRequest(header=header)]
    while points:
        size = draw(st.integers(1, 5))
        messages.append(
            custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points[:size]))
        )
        points = points[size:]
    if draw(st.integers(0, 4)) == 0:
        messages.insert(draw(st.integers(0, len(messages))), draw(evaluate_requests()))
    return messages


@FUZZ
@given(messages=evaluate_streams())
def test_evaluate_stream_validation_raises_only_refusals(servicer, messages):
    """Any Evaluate stream is refused with our errors or reaches the curve only when valid."""
    stream = iter(messages)
    try:
        header, served = servicer._read_header(stream)
        servicer._check_declaration(header, mode_name(header.mode), served)
        for chunk in servicer._point_chunks(stream, header.point_count):
            answer = _REENCRYPTOR.membership(chunk)
            assert len(answer) == len(chunk)
            event("a chunk reached the curve library")
    except _REFUSALS as exc:
        event(type(exc).__name__)


@FUZZ
@given(payload=st.binary(max_size=300), points=st.lists(POINTS, max_size=6), reveal=st.booleans())
def test_classic_request_parsing_raises_only_malformed_message(payload, points, reveal):
    """Any classic request bytes are refused with MalformedMessageError or are safe to use."""
    structured = stock.Request()
    structured.reveal_intersection = reveal
    structured.encrypted_elements.extend(points)
    for data in (payload, structured.SerializeToString()):
        try:
            parsed = openmined.parse_classic_request(data, max_points=4)
        except MalformedMessageError:
            continue
        assert 1 <= len(parsed) <= 4
        assert len(_REENCRYPTOR.membership(parsed)) == len(parsed)
        event("a classic request reached the curve library")


# -- the agency's servicer helpers -------------------------------------------------------

_AGENCY = AgencyServicer(
    store=None,  # type: ignore[arg-type]
    runner=None,  # type: ignore[arg-type]
    board=None,  # type: ignore[arg-type]
    custodian_recipes=lambda: ("tin_v1", "name_address_v1"),
)


@st.composite
def submit_requests(draw: st.DrawFn) -> agency_pb2.SubmitQueryRequest:
    kind = draw(st.sampled_from(["header", "batch", "bytes"]))
    if kind == "header":
        header = agency_pb2.QueryHeader(
            authorization=draw(tokens()),
            mode=draw(st.integers(-(2**31), 2**31 - 1) | st.sampled_from([1, 2])),
            recipe=draw(st.sampled_from(["tin_v1", "name_dob_v1", "name_address_v1", ""]) | TEXT),
            requested_by=draw(TEXT | st.text(min_size=257, max_size=300)),
            recipes=draw(st.lists(st.sampled_from(["tin_v1", "name_dob_v1"]) | TEXT, max_size=3)),
            rule=agency_pb2.MatchRule(
                kind=draw(st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, 2, 3])),
                at_least=draw(st.integers(0, 2**32 - 1)),
            ),
        )
        return agency_pb2.SubmitQueryRequest(header=header)
    if kind == "batch":
        subjects = draw(
            st.lists(
                st.builds(
                    agency_pb2.Subject,
                    subject_id=TEXT,
                    given_name=TEXT,
                    family_name=st.text(max_size=300),
                    tin=TEXT,
                ),
                max_size=3,
            )
        )
        return agency_pb2.SubmitQueryRequest(batch=agency_pb2.SubjectBatch(subjects=subjects))
    try:
        return agency_pb2.SubmitQueryRequest.FromString(draw(st.binary(max_size=200)))
    except DecodeError:
        return agency_pb2.SubmitQueryRequest()


@FUZZ
@given(messages=st.lists(submit_requests(), max_size=4))
def test_submit_stream_validation_raises_only_refusals(messages):
    """Any SubmitQuery stream is refused with our errors before anything is stored."""
    stream = iter(messages)
    try:
        header, _ = _AGENCY._header(stream)
        case_id_of(header.authorization)
        for message in stream:
            if message.WhichOneof("kind") != "batch":
                continue
            for subject in message.batch.subjects:
                row = subject_row(subject)
                assert row["subject_id"].strip()
    except (InvalidInputError, PreconditionError):
        pass
