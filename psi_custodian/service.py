"""The Custodian gRPC servicer: a thin adapter over psi_core.

Every handler validates what arrived, asks the admission policy before any curve work,
writes one audit entry whatever the outcome, and reports failures through
``psi_rpc.status`` (never a stack trace, key or point). A request that is admitted has a
second entry, "admitted", written by the policy in the transaction of its charge, so a
crash between the charge and the answer leaves the charge audited.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from psi_core import faults
from psi_core.errors import (
    BudgetExhaustedError,
    InvalidInputError,
    MalformedMessageError,
    NotFoundError,
    PreconditionError,
    PsiError,
    shown,
)
from psi_core.index import (
    ADD,
    BASE,
    REMOVE,
    EncryptedIndex,
    IndexManifest,
    ServedEpoch,
    ServedEpochs,
    parse_time,
)
from psi_core.policy import DEFAULT_MAX_TOKEN_BYTES, AuditLog, RequestKey, read_claims_unverified
from psi_core.protocol import (
    ChunkCommitment,
    CurveBackend,
    FalsePositiveBound,
    KeyDeclaration,
    RequestDigest,
    classic_setup_size_bound,
    default_backend,
    openmined,
)
from psi_custodian.classic import ClassicJob, build_in_child
from psi_custodian.policy import AdmissionPolicy, AdmissionRequest
from psi_custodian.state import CustodianConfig
from psi_proto.v1 import common_pb2, custodian_pb2, custodian_pb2_grpc
from psi_rpc.metrics import ServiceMetrics
from psi_rpc.modes import mode_name
from psi_rpc.status import grpc_errors

_CLASSIC_CACHE_SIZE = 4
#: A ClassicSetup message around its server_setup: two tags and two lengths.
_CLASSIC_FRAMING_BYTES = 32
_KINDS = {
    BASE: custodian_pb2.SEGMENT_KIND_BASE,
    ADD: custodian_pb2.SEGMENT_KIND_ADD,
    REMOVE: custodian_pb2.SEGMENT_KIND_REMOVE,
}

PeerIdentity = Callable[[grpc.ServicerContext], str | None]


def _record_claims(event: dict[str, Any], token: bytes) -> None:
    """Note which token and case a request *claims*, so a refusal is traceable in the audit.

    Overwritten by the verified ``token_id`` and ``case_id`` once admission succeeds.
    """
    claimed = read_claims_unverified(token)
    if claimed is not None:
        event.update(token_id=claimed.token_id, case_id=claimed.case_id, verified=False)


def _hashed(chunks: Iterable[list[bytes]], digest: RequestDigest) -> Iterator[list[bytes]]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _committed(chunks: Iterable[list[bytes]], commitment: ChunkCommitment) -> Iterator[list[bytes]]:
    """Each chunk, once it is checked against the header's commitment (before it is answered)."""
    for chunk in chunks:
        commitment.check(chunk)
        yield chunk
    commitment.check_complete()


def _request_key(
    header: custodian_pb2.EvaluateHeader, declared: KeyDeclaration, mode: str, sha256: bytes
) -> RequestKey:
    return RequestKey(
        sha256=sha256,
        point_count=header.point_count,
        mode=mode,
        recipe=declared.ledger_recipe(),
        epoch_id=header.epoch_id,
    )


def _declared(header: custodian_pb2.EvaluateHeader) -> KeyDeclaration:
    """The header's keys per recipe and subjects to charge, in either form of header."""
    if not header.recipe_keys:
        return KeyDeclaration(
            ((header.recipe, header.point_count),), header.subject_count or header.point_count
        )
    if header.recipe:
        raise InvalidInputError("set recipe (one recipe) or recipe_keys (several), not both")
    return KeyDeclaration(
        tuple((entry.recipe, entry.key_count) for entry in header.recipe_keys),
        header.subject_count,
    )


def _segment_info(manifest: IndexManifest) -> custodian_pb2.IndexSegment:
    return custodian_pb2.IndexSegment(
        seq=manifest.seq,
        kind=_KINDS[manifest.kind],
        key_count=manifest.key_count,
        size_bytes=manifest.size_bytes,
        sha256=bytes.fromhex(manifest.sha256),
        record_count=manifest.record_count,
    )


def _epoch_info(served: ServedEpoch) -> custodian_pb2.EpochInfo:
    index = served.index
    ends = served.record.ends_at
    return custodian_pb2.EpochInfo(
        epoch_id=served.epoch_id,
        current=served.current,
        ends_at_unix_seconds=0 if served.current or not ends else int(parse_time(ends).timestamp()),
        recipes=list(index.manifest.recipes),
        record_count=index.record_count,
        key_count=index.key_count,
        base=_segment_info(index.manifest),
        segments=[_segment_info(s.manifest) for s in index.segments],
    )


def _piece(served: ServedEpoch, segment: int) -> EncryptedIndex:
    """The base (segment 0) or the segment with that seq; NotFoundError otherwise."""
    if segment == 0:
        return served.index.base
    for piece in served.index.segments:
        if piece.manifest.seq == segment:
            return piece
    raise NotFoundError(
        f"epoch {served.epoch_id} holds no segment {segment}; call GetInfo for its segments"
    )


def _time_out(event: dict[str, Any], context: grpc.ServicerContext) -> None:
    """The watchdog's action: mark the audit entry, then cancel the call."""
    event["timed_out"] = True
    context.cancel()


class Watchdog:
    """Calls ``expire`` once if not disarmed in time; ``arm`` restarts the countdown."""

    def __init__(self, expire: Callable[[], object]) -> None:
        self._expire = expire
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        self.disarm()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disarm()


class CustodianServicer(custodian_pb2_grpc.CustodianServicer):
    def __init__(
        self,
        *,
        config: CustodianConfig,
        epochs: ServedEpochs,
        policy: AdmissionPolicy,
        audit: AuditLog,
        peer_identity: PeerIdentity,
        slot_wait_seconds: float = 30.0,
        backend: CurveBackend | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._config = config
        self._limits = config.limits
        self._epochs = epochs
        self._policy = policy
        self._audit = audit
        self._peer_identity = peer_identity
        self._backend = backend or default_backend()
        self._metrics = metrics
        self._slots = threading.BoundedSemaphore(self._limits.max_concurrent_evaluations)
        self._slot_wait = slot_wait_seconds
        self._classic_cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._classic_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _reencrypting(self, mode: str, points: int) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self._metrics is not None:
            self._metrics.points_evaluated.labels(mode).inc(points)
            self._metrics.phase_seconds.labels("reencrypt").observe(time.perf_counter() - started)

    @contextmanager
    def _audited(self, kind: str, context: grpc.ServicerContext) -> Iterator[dict[str, Any]]:
        """One audit entry per request, written whatever the outcome.

        A call that was cancelled (by the peer or by the watchdog) is recorded as CANCELLED,
        whatever error its handler saw as the stream was cut.
        """
        event: dict[str, Any] = {
            "kind": kind,
            "request": secrets.token_hex(8),
            "peer": self._peer_identity(context) or "(plaintext)",
        }
        try:
            yield event
            event["outcome"] = "OK"
        except PsiError as exc:
            cancelled = event.get("timed_out") or not context.is_active()
            event["outcome"] = "CANCELLED" if cancelled else exc.status
            event["reason"] = str(exc)
            raise
        except (GeneratorExit, grpc.RpcError):
            event["outcome"] = "CANCELLED"
            raise
        except BaseException:
            event["outcome"] = "INTERNAL"
            raise
        finally:
            self._audit.append(event)

    @contextmanager
    def _evaluation_slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._slot_wait):
            raise BudgetExhaustedError(
                f"the custodian is running its maximum of "
                f"{self._limits.max_concurrent_evaluations} evaluations; retry later"
            )
        try:
            yield
        finally:
            self._slots.release()

    def _check_authorization_field(self, token: bytes) -> None:
        if not token:
            raise InvalidInputError("the request carries no authorization; pass a signed token")
        if len(token) > DEFAULT_MAX_TOKEN_BYTES:
            raise InvalidInputError("the authorization is larger than any valid token")

    @staticmethod
    def _check_recipe(recipe: str, served: ServedEpoch) -> None:
        recipes = served.index.manifest.recipes
        if recipe not in recipes:
            raise PreconditionError(
                f"recipe {shown(recipe)} is not in this custodian's index; it holds "
                f"{', '.join(recipes)}"
            )

    def _served(self, epoch_id: str) -> ServedEpoch:
        """The named served epoch, or the current one when ``epoch_id`` is empty."""
        return self._epochs.get(epoch_id) if epoch_id else self._epochs.current()

    # -- Custodian API -------------------------------------------------------------------

    @grpc_errors
    def GetInfo(self, request: custodian_pb2.GetInfoRequest, context: grpc.ServicerContext) -> Any:
        served = self._epochs.refresh()
        if self._metrics is not None:
            for epoch in served:
                self._metrics.index_keys.labels(epoch.epoch_id).set(epoch.index.key_count)
        manifest = served[0].index.manifest
        bound = FalsePositiveBound.for_query(served[0].index.key_count, 1)
        return custodian_pb2.CustodianInfo(
            custodian_id=self._config.custodian_id,
            epoch_id=manifest.epoch_id,
            record_count=manifest.record_count,
            key_count=manifest.key_count,
            recipes=list(manifest.recipes),
            index_sha256=bytes.fromhex(manifest.sha256),
            index_size_bytes=manifest.size_bytes,
            limits=custodian_pb2.PolicyLimits(
                max_subjects_per_query=self._limits.max_subjects_per_query,
                max_points_per_chunk=self._limits.max_points_per_chunk,
                max_message_bytes=self._limits.max_message_bytes,
                max_concurrent_evaluations=self._limits.max_concurrent_evaluations,
                max_replays_per_token=self._limits.max_replays_per_token,
                max_classic_setups_per_token=self._limits.max_classic_setups_per_token,
            ),
            false_positive_bound=common_pb2.FalsePositiveBound(
                per_subject=bound.per_subject, fingerprint_bits=bound.fingerprint_bits
            ),
            classic_setup_available=manifest.classic_setup_available,
            backend=self._backend.name,
            suite=self._backend.suite,
            epochs=[_epoch_info(epoch) for epoch in served],
        )

    @grpc_errors
    def FetchIndex(
        self, request: custodian_pb2.FetchIndexRequest, context: grpc.ServicerContext
    ) -> Iterator[custodian_pb2.IndexChunk]:
        with (
            self._audited("fetch_index", context) as event,
            Watchdog(lambda: _time_out(event, context)) as watchdog,
        ):
            event.update(offset=request.offset, segment=request.segment)
            if not request.epoch_id:
                raise PreconditionError("name the epoch to fetch (call GetInfo for its id)")
            served = self._epochs.get(request.epoch_id)
            event["epoch_id"] = served.epoch_id
            piece = _piece(served, request.segment)
            size = piece.manifest.size_bytes
            if request.offset % 8 or request.offset > size:
                raise InvalidInputError(f"offset must be a multiple of 8 between 0 and {size}")
            # gRPC waits, in this thread, for the reader to take each chunk: a reader that
            # stops reading is cancelled once no chunk has gone out for a while.
            for offset, data in piece.read_chunks(request.offset, self._limits.index_chunk_bytes):
                watchdog.arm(self._limits.fetch_progress_seconds)
                yield custodian_pb2.IndexChunk(offset=offset, data=data)

    @grpc_errors
    def Evaluate(
        self,
        request_iterator: Iterator[custodian_pb2.EvaluateRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[custodian_pb2.EvaluateResponse]:
        limits = self._limits
        with (
            self._audited("evaluate", context) as event,
            Watchdog(lambda: _time_out(event, context)) as watchdog,
        ):
            watchdog.arm(limits.evaluate_base_seconds)
            header, served = self._read_header(request_iterator)
            mode = mode_name(header.mode)
            declared = self._check_declaration(header, mode, served)
            event.update(
                mode=mode,
                recipe=",".join(declared.recipes),
                subjects=declared.subjects,
                epoch_id=served.epoch_id,
            )
            if not declared.is_single:
                event.update(points=header.point_count, recipe_keys=dict(declared.segments))
            watchdog.arm(
                limits.evaluate_base_seconds
                + limits.evaluate_seconds_per_point * header.point_count
            )
            with self._evaluation_slot():
                _record_claims(event, header.authorization)
                if header.chunk_sha256 and header.replay_of_sha256:
                    # A replay digest would make the request uncharged while the chunks it
                    # commits to, and so the points answered, could be new ones.
                    raise InvalidInputError(
                        "an Evaluate header carries chunk_sha256 or replay_of_sha256, not both"
                    )
                replay_of = (
                    _request_key(header, declared, mode, header.replay_of_sha256)
                    if header.replay_of_sha256
                    else None
                )
                commitment = (
                    ChunkCommitment(header.chunk_sha256, header.point_count)
                    if header.chunk_sha256
                    else None
                )
                admission = self._policy.admit(
                    AdmissionRequest(
                        kind="evaluate",
                        authorization=header.authorization,
                        subjects=declared.subjects,
                        mode=mode,
                        peer_agency_id=self._peer_identity(context),
                        replay_of=replay_of,
                        committed=(
                            _request_key(header, declared, mode, commitment.request_sha256())
                            if commitment is not None
                            else None
                        ),
                        max_replays=limits.max_replays_per_token,
                        audit_event=dict(event),
                    )
                )
                faults.point("after_charge")
                event.update(
                    token_id=admission.token_id,
                    case_id=admission.case_id,
                    verified=True,
                    charged=not admission.replayed,
                )
                chunks = self._point_chunks(request_iterator, header.point_count)
                if commitment is not None:
                    yield from self._answer(served, mode, _committed(chunks, commitment))
                    return
                if replay_of is not None and admission.replayed:
                    yield from self._answer(served, mode, self._replayed_chunks(chunks, replay_of))
                    return
                digest = RequestDigest()
                yield from self._answer(served, mode, _hashed(chunks, digest))
                self._policy.record_answered(
                    admission, _request_key(header, declared, mode, digest.digest())
                )

    def _answer(
        self, served: ServedEpoch, mode: str, chunks: Iterable[list[bytes]]
    ) -> Iterator[custodian_pb2.EvaluateResponse]:
        reencryptor = served.reencryptor
        if mode == "membership":
            for chunk in chunks:
                with self._reencrypting(mode, len(chunk)):
                    points = reencryptor.membership(chunk)
                yield custodian_pb2.EvaluateResponse(points=points)
                faults.point("evaluate_answered")
            return
        received = [point for chunk in chunks for point in chunk]
        with self._reencrypting(mode, len(received)):
            answer = reencryptor.cardinality(received)
        step = self._limits.max_points_per_chunk
        for start in range(0, len(answer), step):
            yield custodian_pb2.EvaluateResponse(points=answer[start : start + step])
            faults.point("evaluate_answered")

    @staticmethod
    def _replayed_chunks(chunks: Iterator[list[bytes]], replay_of: RequestKey) -> list[list[bytes]]:
        """Every chunk of an uncharged replay, once they hash to the declared digest.

        Nothing is answered before the whole request is checked: otherwise an agency could
        declare an answered request's digest and get fresh points answered for free.
        """
        digest = RequestDigest()
        received = list(_hashed(chunks, digest))
        if digest.digest() != replay_of.sha256:
            raise InvalidInputError(
                "the points sent do not hash to replay_of_sha256; a replay must resend the "
                "very same points (same blinding scalar, same keys, same order). Nothing "
                "was answered or charged"
            )
        return received

    def _read_header(
        self, request_iterator: Iterator[custodian_pb2.EvaluateRequest]
    ) -> tuple[custodian_pb2.EvaluateHeader, ServedEpoch]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("kind") != "header":
            raise InvalidInputError("an Evaluate stream must start with an EvaluateHeader")
        header = first.header
        self._check_authorization_field(header.authorization)
        mode_name(header.mode)
        if not header.epoch_id:
            raise PreconditionError("the query names no key epoch; call GetInfo and sync")
        served = self._epochs.get(header.epoch_id)
        if header.suite and header.suite != self._backend.suite:
            raise PreconditionError(
                f"the points were blinded in suite {header.suite[:64]!r}; this custodian "
                f"answers only {self._backend.suite}"
            )
        if len(header.replay_of_sha256) not in (0, 32):
            raise InvalidInputError("replay_of_sha256 must be empty or 32 bytes (SHA-256)")
        if not 1 <= header.point_count <= self._limits.max_subjects_per_query:
            raise BudgetExhaustedError(
                f"point_count must be between 1 and {self._limits.max_subjects_per_query} "
                f"(this custodian's per-query cap)"
            )
        return header, served

    def _check_declaration(
        self, header: custodian_pb2.EvaluateHeader, mode: str, served: ServedEpoch
    ) -> KeyDeclaration:
        """The header's declaration, refused unless consistent and within this custodian's
        limits; runs before any charge or curve work."""
        declared = _declared(header)
        declared.check(point_count=header.point_count, mode=mode)
        for recipe in declared.recipes:
            self._check_recipe(recipe, served)
        if declared.subjects > self._limits.max_subjects_per_query:
            raise BudgetExhaustedError(
                f"subject_count must be at most {self._limits.max_subjects_per_query} "
                "(this custodian's per-query cap)"
            )
        return declared

    def _point_chunks(
        self, request_iterator: Iterator[custodian_pb2.EvaluateRequest], declared: int
    ) -> Iterator[list[bytes]]:
        """The point chunks after the header, checked against the declared total."""
        received = 0
        for message in request_iterator:
            if message.WhichOneof("kind") != "chunk":
                raise InvalidInputError("only PointChunk messages may follow the header")
            points = list(message.chunk.points)
            if not points:
                raise MalformedMessageError("an empty PointChunk was sent")
            if len(points) > self._limits.max_points_per_chunk:
                raise MalformedMessageError(
                    f"a chunk holds {len(points)} points; at most "
                    f"{self._limits.max_points_per_chunk} are accepted per chunk"
                )
            received += len(points)
            if received > declared:
                raise MalformedMessageError(
                    f"more points were sent than the {declared} declared in the header"
                )
            yield points
        if received != declared:
            raise MalformedMessageError(f"{received} points were sent but {declared} were declared")

    @grpc_errors
    def GetClassicSetup(
        self, request: custodian_pb2.ClassicSetupRequest, context: grpc.ServicerContext
    ) -> Any:
        limits = self._limits
        with (
            self._audited("classic_setup", context) as event,
            Watchdog(lambda: _time_out(event, context)) as watchdog,
        ):
            self._check_authorization_field(request.authorization)
            served = self._served(request.epoch_id)
            event["epoch_id"] = served.epoch_id
            if not served.index.classic_setup_available:
                raise PreconditionError(
                    "this custodian does not offer the classic openmined-psi setup: its "
                    "index was built without plaintext keys. Use Evaluate, or ask the "
                    "custodian to rebuild with `psi-custodian build-index --classic-keys` "
                    "(which keeps every plaintext key; see docs/THREAT_MODEL.md)"
                )
            if request.recipe:
                self._check_recipe(request.recipe, served)
            most = limits.max_classic_client_inputs
            if not 1 <= request.num_client_inputs <= most:
                raise InvalidInputError(f"num_client_inputs must be between 1 and {most}")
            if not 0.0 < request.fpr < 1.0:
                raise InvalidInputError("fpr must be strictly between 0 and 1")
            event.update(subjects=request.num_client_inputs, recipe=request.recipe or "*")
            _record_claims(event, request.authorization)
            self._check_classic_size(request, served)
            admission = self._policy.admit(
                AdmissionRequest(
                    kind="classic_setup",
                    authorization=request.authorization,
                    subjects=0,
                    mode="membership",
                    peer_agency_id=self._peer_identity(context),
                    charge=False,
                    count_use=(
                        "classic_setup",
                        limits.max_classic_setups_per_token,
                        "classic setups",
                    ),
                    audit_event=dict(event),
                )
            )
            faults.point("after_charge")
            event.update(token_id=admission.token_id, case_id=admission.case_id, verified=True)
            watchdog.arm(limits.classic_setup_seconds)
            cancelled = threading.Event()
            if not context.add_callback(cancelled.set):
                cancelled.set()
            setup = self._classic_setup(
                served, request.fpr, request.num_client_inputs, request.recipe, cancelled
            )
            return custodian_pb2.ClassicSetup(server_setup=setup, epoch_id=served.epoch_id)

    def _check_classic_size(
        self, request: custodian_pb2.ClassicSetupRequest, served: ServedEpoch
    ) -> None:
        """Refuse, before any work, a setup the library cannot build or gRPC cannot send."""
        keys = served.index.classic_key_count(request.recipe)
        bound = (
            classic_setup_size_bound(keys, request.fpr, request.num_client_inputs)
            + _CLASSIC_FRAMING_BYTES
            + len(served.epoch_id)
        )
        most = self._limits.max_message_bytes
        if bound > most:
            raise PreconditionError(
                f"the classic setup over {keys:,} keys could be up to {bound:,} bytes, over "
                f"this custodian's max_message_bytes ({most:,}); ask for one recipe, a larger "
                f"fpr or fewer num_client_inputs, or use Evaluate"
            )

    def _classic_setup(
        self,
        served: ServedEpoch,
        fpr: float,
        num_client_inputs: int,
        recipe: str,
        cancelled: threading.Event,
    ) -> bytes:
        """The setup from the cache, or built in a child process that ``cancelled`` kills,
        holding an evaluation slot while it runs.

        One is built at a time (each reads every kept key); a call that finds another being
        built waits as long as for an evaluation slot, and holds no slot while it waits.
        """
        cache_key = (served.epoch_id, served.index.version, fpr, num_client_inputs, recipe)
        if not self._classic_lock.acquire(timeout=self._slot_wait):
            raise BudgetExhaustedError("another classic setup is being built; retry later")
        try:
            cached = self._classic_cache.get(cache_key)
            if cached is not None:
                self._classic_cache.move_to_end(cache_key)
                return cached
            job = ClassicJob(served.directory, recipe, served.key.secret, fpr, num_client_inputs)
            with self._evaluation_slot():
                setup = build_in_child(job, cancelled)
            self._classic_cache[cache_key] = setup
            while len(self._classic_cache) > _CLASSIC_CACHE_SIZE:
                self._classic_cache.popitem(last=False)
            return setup
        finally:
            self._classic_lock.release()

    @grpc_errors
    def ProcessClassicRequest(
        self, request: custodian_pb2.ClassicRequest, context: grpc.ServicerContext
    ) -> Any:
        with self._audited("classic_request", context) as event:
            self._check_authorization_field(request.authorization)
            served = self._served(request.epoch_id)
            points = openmined.parse_classic_request(
                request.request, max_points=self._limits.max_subjects_per_query
            )
            event.update(subjects=len(points), mode="membership", epoch_id=served.epoch_id)
            with self._evaluation_slot():
                _record_claims(event, request.authorization)
                admission = self._policy.admit(
                    AdmissionRequest(
                        kind="classic_request",
                        authorization=request.authorization,
                        subjects=len(points),
                        mode="membership",
                        peer_agency_id=self._peer_identity(context),
                        audit_event=dict(event),
                    )
                )
                faults.point("after_charge")
                event.update(token_id=admission.token_id, case_id=admission.case_id, verified=True)
                answer = served.reencryptor.membership(points)
            return custodian_pb2.ClassicResponse(
                response=openmined.classic_response(points, answer)
            )
