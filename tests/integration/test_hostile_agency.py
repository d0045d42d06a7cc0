"""A hostile agency against the real custodian: every bad message gets its status code,
and the process keeps serving honest queries (openmined-psi never sees unchecked bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import private_set_intersection.python as stock
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from psi_core.protocol import BlindedQuery, Blinder, ChunkCommitment, RequestDigest
from psi_core.recipes import get_recipe
from psi_proto.v1 import common_pb2, custodian_pb2, custodian_pb2_grpc
from tests.factories import make_records, off_curve_point
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 30
TIN = get_recipe("tin_v1")
MEMBERSHIP = common_pb2.QUERY_MODE_MEMBERSHIP
CARDINALITY = common_pb2.QUERY_MODE_CARDINALITY
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
#: The custodian's default per-chunk and per-query caps (state.CustodianLimits).
MAX_POINTS_PER_CHUNK = 65_536
MAX_SUBJECTS_PER_QUERY = 10_000_000
MAX_CLASSIC_CLIENT_INPUTS = 1_000_000


VALID = Blinder().blind([f"hostile|{i}" for i in range(4)])
OFF_CURVE = off_curve_point()
BEYOND_FIELD = b"\x02" + b"\xff" * 32
UNCOMPRESSED = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), VALID[0]).public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)


@pytest.fixture(scope="module")
def stub(deployment: Deployment) -> custodian_pb2_grpc.CustodianStub:
    channel = deployment.channel(deployment.custodian_address, "agency-client")
    return custodian_pb2_grpc.CustodianStub(channel)


@pytest.fixture(scope="module")
def info(stub) -> custodian_pb2.CustodianInfo:
    return stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=CALL_TIMEOUT)


def _header(
    token: bytes,
    epoch_id: str,
    point_count: int,
    *,
    mode: int = MEMBERSHIP,
    recipe: str = "tin_v1",
    replay_of: bytes = b"",
) -> custodian_pb2.EvaluateRequest:
    return custodian_pb2.EvaluateRequest(
        header=custodian_pb2.EvaluateHeader(
            authorization=token,
            mode=mode,
            recipe=recipe,
            epoch_id=epoch_id,
            point_count=point_count,
            replay_of_sha256=replay_of,
        )
    )


def _chunk(points: list[bytes]) -> custodian_pb2.EvaluateRequest:
    return custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points))


def _status_of(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _evaluate_code(stub, requests: list[custodian_pb2.EvaluateRequest]) -> grpc.RpcError:
    return _status_of(lambda: list(stub.Evaluate(iter(requests), timeout=CALL_TIMEOUT)))


def _honest_hits(deployment: Deployment, stub, info, token: bytes, worker: int = 0) -> bool:
    """One honest membership query; True when its answer is exactly right."""
    members = [TIN.key(r) for r in deployment.records[worker * 5 : worker * 5 + 5]]
    strangers = [TIN.key(r) for r in make_records(3, seed=500 + worker, prefix="H")]
    keys = members + strangers
    query = BlindedQuery()
    requests = [_header(token, info.epoch_id, len(keys)), _chunk(query.blind(keys))]
    answers = [list(a.points) for a in stub.Evaluate(iter(requests), timeout=CALL_TIMEOUT)]
    assert deployment.agency is not None
    hits = deployment.agency.index.contains(query.fingerprints(len(keys), answers[0]))
    return hits.tolist() == [True] * len(members) + [False] * len(strangers)


# -- Evaluate ----------------------------------------------------------------------------

Requests = Callable[[bytes, str], list[custodian_pb2.EvaluateRequest]]


def _big_chunk(token: bytes, epoch_id: str) -> list[custodian_pb2.EvaluateRequest]:
    over = MAX_POINTS_PER_CHUNK + 1
    return [_header(token, epoch_id, over), _chunk([VALID[0]] * over)]


EVALUATE_CASES: list[tuple[str, Requests, grpc.StatusCode, str]] = [
    (
        "garbage-points",
        lambda t, e: [_header(t, e, 2), _chunk([BEYOND_FIELD, b"junk"])],
        INVALID,
        "point",
    ),
    ("off-curve-point", lambda t, e: [_header(t, e, 1), _chunk([OFF_CURVE])], INVALID, "curve"),
    ("uncompressed-point", lambda t, e: [_header(t, e, 1), _chunk([UNCOMPRESSED])], INVALID, "33"),
    ("truncated-point", lambda t, e: [_header(t, e, 1), _chunk([VALID[0][1:]])], INVALID, "33"),
    ("empty-point", lambda t, e: [_header(t, e, 1), _chunk([b""])], INVALID, "33"),
    ("empty-chunk", lambda t, e: [_header(t, e, 1), _chunk([])], INVALID, "empty"),
    ("no-messages", lambda t, e: [], INVALID, "must start with an EvaluateHeader"),
    ("header-missing", lambda t, e: [_chunk(VALID[:1])], INVALID, "must start with"),
    (
        "empty-first-message",
        lambda t, e: [custodian_pb2.EvaluateRequest(), _chunk(VALID[:1])],
        INVALID,
        "must start with",
    ),
    (
        "two-headers",
        lambda t, e: [_header(t, e, 1), _header(t, e, 1), _chunk(VALID[:1])],
        INVALID,
        "only PointChunk",
    ),
    (
        "chunk-then-header",
        lambda t, e: [_header(t, e, 2), _chunk(VALID[:1]), _header(t, e, 1)],
        INVALID,
        "only PointChunk",
    ),
    (
        "point-count-zero",
        lambda t, e: [_header(t, e, 0), _chunk(VALID[:1])],
        EXHAUSTED,
        "between 1",
    ),
    (
        "point-count-over-cap",
        lambda t, e: [_header(t, e, MAX_SUBJECTS_PER_QUERY + 1), _chunk(VALID[:1])],
        EXHAUSTED,
        "per-query cap",
    ),
    (
        "point-count-uint64-max",
        lambda t, e: [_header(t, e, 2**64 - 1), _chunk(VALID[:1])],
        EXHAUSTED,
        "per-query cap",
    ),
    (
        "more-points-than-declared",
        lambda t, e: [_header(t, e, 1), _chunk(VALID[:2])],
        INVALID,
        "more points were sent",
    ),
    (
        "more-points-in-a-later-chunk",
        lambda t, e: [_header(t, e, 2), _chunk(VALID[:1]), _chunk(VALID[1:3])],
        INVALID,
        "more points were sent",
    ),
    (
        "fewer-points-than-declared",
        lambda t, e: [_header(t, e, 3), _chunk(VALID[:2])],
        INVALID,
        "2 points were sent but 3",
    ),
    (
        "fewer-points-cardinality",
        lambda t, e: [_header(t, e, 3, mode=CARDINALITY), _chunk(VALID[:2])],
        INVALID,
        "2 points were sent but 3",
    ),
    ("chunk-over-the-cap", _big_chunk, INVALID, "at most 65536"),
    (
        "unknown-recipe",
        lambda t, e: [_header(t, e, 1, recipe="nope_v9"), _chunk(VALID[:1])],
        PRECONDITION,
        "not in this custodian's index",
    ),
    (
        "recipe-with-junk",
        lambda t, e: [_header(t, e, 1, recipe="\x00" * 5000), _chunk(VALID[:1])],
        PRECONDITION,
        "not in this custodian's index",
    ),
    (
        "replay-digest-of-5-bytes",
        lambda t, e: [_header(t, e, 1, replay_of=b"\x01" * 5), _chunk(VALID[:1])],
        INVALID,
        "replay_of_sha256 must be empty or 32 bytes",
    ),
    ("mode-7", lambda t, e: [_header(t, e, 1, mode=7), _chunk(VALID[:1])], INVALID, "mode"),
    ("mode-unset", lambda t, e: [_header(t, e, 1, mode=0), _chunk(VALID[:1])], INVALID, "mode"),
    (
        "wrong-epoch",
        lambda t, e: [_header(t, "0000000000000000", 1), _chunk(VALID[:1])],
        PRECONDITION,
        "is not served",
    ),
    ("empty-epoch", lambda t, e: [_header(t, "", 1), _chunk(VALID[:1])], PRECONDITION, "epoch"),
    (
        "oversized-authorization",
        lambda t, e: [_header(b"\x01" * 4097, e, 1), _chunk(VALID[:1])],
        INVALID,
        "larger than any valid token",
    ),
    (
        "empty-authorization",
        lambda t, e: [_header(b"", e, 1), _chunk(VALID[:1])],
        INVALID,
        "no authorization",
    ),
    (
        "garbage-authorization",
        lambda t, e: [_header(b"\xff" * 4096, e, 1), _chunk(VALID[:1])],
        UNAUTHENTICATED,
        "malformed",
    ),
]


@pytest.mark.parametrize(
    ("requests", "code", "phrase"),
    [c[1:] for c in EVALUATE_CASES],
    ids=[c[0] for c in EVALUATE_CASES],
)
def test_hostile_evaluate_is_refused_and_the_custodian_keeps_serving(
    deployment, stub, info, requests, code, phrase
):
    """Each malformed Evaluate stream gets its status code; an honest one then succeeds."""
    error = _evaluate_code(stub, requests(deployment.token(), info.epoch_id))
    assert error.code() == code, error.details()
    assert phrase in error.details()
    assert _honest_hits(deployment, stub, info, deployment.token())


def test_replayed_token_after_its_queries_are_used_is_resource_exhausted(deployment, stub, info):
    """A token with max_queries=2 works twice; replaying it is RESOURCE_EXHAUSTED."""
    token = deployment.token(max_queries=2)
    assert _honest_hits(deployment, stub, info, token)
    assert _honest_hits(deployment, stub, info, token)
    for _ in range(2):
        error = _status_of(lambda: _honest_hits(deployment, stub, info, token))
        assert error.code() == EXHAUSTED
        assert "2 of 2 queries" in error.details()
    assert _honest_hits(deployment, stub, info, deployment.token())


def test_hostile_stream_is_charged_so_it_cannot_probe_for_free(deployment, stub, info):
    """A stream refused after admission (miscounted points) still spent its query."""
    token = deployment.token(max_queries=1)
    error = _evaluate_code(stub, [_header(token, info.epoch_id, 3), _chunk(VALID[:2])])
    assert error.code() == INVALID
    error = _status_of(lambda: _honest_hits(deployment, stub, info, token))
    assert error.code() == EXHAUSTED


def test_replay_is_free_only_for_the_very_points_already_answered(deployment, stub, info):
    """A request answered in full may be sent again uncharged, declared by its digest: the
    answer is the same. Other points under that digest get no answer at all; another mode
    or another token is a new, charged query."""
    token = deployment.token(max_queries=1)
    keys = [TIN.key(r) for r in deployment.records[:4]]
    points = BlindedQuery().blind(keys)
    digest = RequestDigest()
    digest.update(points)

    def evaluate(requests: list[custodian_pb2.EvaluateRequest], received: list) -> None:
        for answer in stub.Evaluate(iter(requests), timeout=CALL_TIMEOUT):
            received.append(list(answer.points))

    first: list = []
    evaluate([_header(token, info.epoch_id, 4), _chunk(points)], first)
    again: list = []
    replay = _header(token, info.epoch_id, 4, replay_of=digest.digest())
    evaluate([replay, _chunk(points[:1]), _chunk(points[1:])], again)
    assert [p for chunk in again for p in chunk] == first[0]
    assert [len(chunk) for chunk in again] == [1, 3]

    forged: list = []
    error = _status_of(lambda: evaluate([replay, _chunk(VALID)], forged))
    assert error.code() == INVALID
    assert "do not hash to replay_of_sha256" in error.details()
    assert forged == []

    as_cardinality = _header(token, info.epoch_id, 4, mode=CARDINALITY, replay_of=digest.digest())
    error = _status_of(lambda: evaluate([as_cardinality, _chunk(points)], []))
    assert error.code() == EXHAUSTED
    other_token = deployment.token(max_queries=1)
    replayed_elsewhere = _header(other_token, info.epoch_id, 4, replay_of=digest.digest())
    evaluate([replayed_elsewhere, _chunk(points)], [])
    error = _status_of(lambda: _honest_hits(deployment, stub, info, other_token))
    assert error.code() == EXHAUSTED


# -- FetchIndex --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "epoch", "code"),
    [
        (3, None, INVALID),
        (8 * 10**9, None, INVALID),
        (2**64 - 8, None, INVALID),
        (2**64 - 1, None, INVALID),
        (0, "0000000000000000", PRECONDITION),
        (0, "", PRECONDITION),
        (0, "../" * 50, PRECONDITION),
    ],
    ids=[
        "unaligned",
        "beyond-size",
        "near-uint64-max",
        "uint64-max",
        "wrong-epoch",
        "no-epoch",
        "path",
    ],
)
def test_hostile_fetch_index_is_refused(deployment, stub, info, offset, epoch, code):
    """A bad offset is INVALID_ARGUMENT, another epoch FAILED_PRECONDITION; serving goes on."""
    request = custodian_pb2.FetchIndexRequest(
        epoch_id=info.epoch_id if epoch is None else epoch, offset=offset
    )
    error = _status_of(lambda: list(stub.FetchIndex(request, timeout=CALL_TIMEOUT)))
    assert error.code() == code, error.details()
    assert _honest_hits(deployment, stub, info, deployment.token())


def test_fetch_index_at_its_end_is_an_empty_stream(stub, info):
    """The index size as offset gives an empty stream, not an error."""
    request = custodian_pb2.FetchIndexRequest(epoch_id=info.epoch_id, offset=info.index_size_bytes)
    assert list(stub.FetchIndex(request, timeout=CALL_TIMEOUT)) == []


# -- classic API -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "phrase"),
    [
        ({"fpr": 0.0}, INVALID, "fpr"),
        ({"fpr": 1.0}, INVALID, "fpr"),
        ({"fpr": float("nan")}, INVALID, "fpr"),
        ({"fpr": float("inf")}, INVALID, "fpr"),
        ({"fpr": -0.5}, INVALID, "fpr"),
        ({"num_client_inputs": 0}, INVALID, "num_client_inputs"),
        ({"num_client_inputs": 2**64 - 1}, INVALID, "num_client_inputs"),
        ({"num_client_inputs": MAX_CLASSIC_CLIENT_INPUTS + 1}, INVALID, "num_client_inputs"),
        ({"recipe": "nope_v9"}, PRECONDITION, "not in this custodian's index"),
        ({"authorization": b""}, INVALID, "no authorization"),
        ({"authorization": b"\x01" * 4097}, INVALID, "larger than any valid token"),
        ({"authorization": b"garbage"}, UNAUTHENTICATED, "malformed"),
        ({"fpr": 1e-320, "num_client_inputs": MAX_CLASSIC_CLIENT_INPUTS}, PRECONDITION, "64-bit"),
        ({"fpr": 1e-17, "num_client_inputs": MAX_CLASSIC_CLIENT_INPUTS}, PRECONDITION, "64-bit"),
    ],
    ids=[
        "fpr-0",
        "fpr-1",
        "fpr-nan",
        "fpr-inf",
        "fpr-negative",
        "inputs-0",
        "inputs-uint64-max",
        "inputs-over-cap",
        "unknown-recipe",
        "no-authorization",
        "oversized-authorization",
        "garbage-authorization",
        "denormal-fpr",
        "hash-range-overflow",
    ],
)
def test_hostile_classic_setup_is_refused(deployment, stub, info, fields, code, phrase):
    """Bad classic setup parameters get their status code, never a crash."""
    request = {
        "authorization": deployment.token(),
        "fpr": 1e-6,
        "num_client_inputs": 10,
        "recipe": "tin_v1",
        **fields,
    }
    error = _status_of(
        lambda: stub.GetClassicSetup(custodian_pb2.ClassicSetupRequest(**request), timeout=60)
    )
    assert error.code() == code, error.details()
    assert phrase in error.details()
    assert _honest_hits(deployment, stub, info, deployment.token())


def _classic(points: list[bytes], *, reveal: bool = True) -> bytes:
    request = stock.Request()
    request.reveal_intersection = reveal
    request.encrypted_elements.extend(points)
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("payload", "token", "code", "phrase"),
    [
        (b"\xff\xff\xff garbage", None, INVALID, "not a valid psi.Request"),
        (b"", None, INVALID, "reveal_intersection"),
        (_classic([], reveal=True), None, INVALID, "no points"),
        (_classic(VALID[:2], reveal=False), None, INVALID, "reveal_intersection"),
        (_classic([OFF_CURVE]), None, INVALID, "curve"),
        (_classic([VALID[0], BEYOND_FIELD]), None, INVALID, "field element"),
        (_classic([VALID[0][:20]]), None, INVALID, "33-byte"),
        (_classic([UNCOMPRESSED]), None, INVALID, "33-byte"),
        (_classic(VALID[:2]), b"", INVALID, "no authorization"),
        (_classic(VALID[:2]), b"garbage", UNAUTHENTICATED, "malformed"),
    ],
    ids=[
        "garbage",
        "empty",
        "no-points",
        "reveal-false",
        "off-curve",
        "beyond-field",
        "truncated",
        "uncompressed",
        "no-authorization",
        "garbage-authorization",
    ],
)
def test_hostile_classic_request_is_refused(deployment, stub, info, payload, token, code, phrase):
    """Bad classic requests get their status code before openmined-psi sees them."""
    request = custodian_pb2.ClassicRequest(
        authorization=deployment.token() if token is None else token, request=payload
    )
    error = _status_of(lambda: stub.ProcessClassicRequest(request, timeout=CALL_TIMEOUT))
    assert error.code() == code, error.details()
    assert phrase in error.details()
    assert _honest_hits(deployment, stub, info, deployment.token())


# -- many at once ------------------------------------------------------------------------

HOSTILE_MIX = [c for c in EVALUATE_CASES if c[0] != "chunk-over-the-cap"]


def test_sixteen_concurrent_hostile_and_honest_calls(deployment, stub, info):
    """16 threads at once, half hostile: every honest answer is right, every hostile refused."""
    honest_token = deployment.token(max_queries=32)
    barrier = threading.Barrier(16)

    def one(worker: int) -> bool:
        if worker % 2 == 0:
            barrier.wait(timeout=CALL_TIMEOUT)
            return _honest_hits(deployment, stub, info, honest_token, worker)
        _, build, code, phrase = HOSTILE_MIX[(worker * 5) % len(HOSTILE_MIX)]
        requests = build(deployment.token(), info.epoch_id)
        barrier.wait(timeout=CALL_TIMEOUT)
        error = _evaluate_code(stub, requests)
        return error.code() == code and phrase in error.details()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [True] * 16
    assert _honest_hits(deployment, stub, info, deployment.token())


def test_points_other_than_the_committed_chunks_get_no_answer(deployment, stub, info):
    """A header that commits to some chunks, followed by other points: the call ends with
    INVALID_ARGUMENT at the first chunk that differs, with no answer for it; the honest
    chunks sent again under the same commitment are answered without a second charge."""
    token = deployment.token(max_queries=1)
    keys = [TIN.key(r) for r in deployment.records[:4]]
    query = BlindedQuery()
    chunks = [query.blind(keys[:2]), query.blind(keys[2:])]
    header = _header(token, info.epoch_id, 4)
    header.header.chunk_sha256.extend(ChunkCommitment.of(chunks))
    received: list = []

    def evaluate(requests: list[custodian_pb2.EvaluateRequest]) -> None:
        for answer in stub.Evaluate(iter(requests), timeout=CALL_TIMEOUT):
            received.append(list(answer.points))

    error = _status_of(lambda: evaluate([header, _chunk(chunks[0]), _chunk(VALID[:2])]))
    assert error.code() == INVALID
    assert "chunk 2 does not match" in error.details()
    assert len(received) <= 1 and all(len(a) == 2 for a in received)
    received.clear()
    evaluate([header, _chunk(chunks[0]), _chunk(chunks[1])])
    assert [len(a) for a in received] == [2, 2]


def test_a_commitment_cannot_ride_on_an_old_replay_digest(deployment, stub, info):
    """A header that names an answered request's digest and commits to new chunks is
    refused before any charge or answer (else the new points would be answered free)."""
    token = deployment.token(max_queries=1)
    keys = [TIN.key(r) for r in deployment.records[:4]]
    old = BlindedQuery().blind(keys)
    list(stub.Evaluate(iter([_header(token, info.epoch_id, 4), _chunk(old)]), timeout=CALL_TIMEOUT))
    digest = RequestDigest()
    digest.update(old)
    fresh = BlindedQuery().blind(keys)
    header = _header(token, info.epoch_id, 4, replay_of=digest.digest())
    header.header.chunk_sha256.extend(ChunkCommitment.of([fresh]))
    error = _evaluate_code(stub, [header, _chunk(fresh)])
    assert error.code() == INVALID
    assert "not both" in error.details()
