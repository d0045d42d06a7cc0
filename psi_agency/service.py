"""The Agency gRPC servicer, for case-management systems: a thin adapter over the store
and the query runner.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from psi_agency.paging import Cursor, PageTokens
from psi_agency.progress import ProgressBoard
from psi_agency.quality import quality_message, quality_metadata
from psi_agency.runner import QueryRunner
from psi_agency.store import SUBJECT_FIELDS, SUCCEEDED, TERMINAL_STATES, AgencyStore, QueryRecord
from psi_core.errors import BudgetExhaustedError, InvalidInputError, PreconditionError
from psi_core.policy import read_claims_unverified
from psi_core.protocol import ALL, ANY, AT_LEAST, MatchRule
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2, agency_pb2_grpc, common_pb2
from psi_rpc.modes import MODE_ENUMS, mode_name
from psi_rpc.status import grpc_errors

STATE_ENUMS = {
    "RECEIVING": agency_pb2.QUERY_STATE_QUEUED,
    "QUEUED": agency_pb2.QUERY_STATE_QUEUED,
    "RUNNING": agency_pb2.QUERY_STATE_RUNNING,
    "SUCCEEDED": agency_pb2.QUERY_STATE_SUCCEEDED,
    "FAILED": agency_pb2.QUERY_STATE_FAILED,
}
STATE_NAMES = {enum: name for name, enum in STATE_ENUMS.items() if name != "RECEIVING"}
MAX_FIELD_CHARS = 256
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1_000
_WATCH_WAKEUP_SECONDS = 5.0
_RULE_KINDS = {
    ANY: agency_pb2.MATCH_RULE_KIND_ANY,
    ALL: agency_pb2.MATCH_RULE_KIND_ALL,
    AT_LEAST: agency_pb2.MATCH_RULE_KIND_AT_LEAST,
}
#: Most WatchQuery streams served at once: each holds a server thread while it waits.
DEFAULT_MAX_WATCHERS = 16


def case_id_of(token: bytes) -> str:
    """The case id a token names (read, not verified: the custodian verifies)."""
    claimed = read_claims_unverified(token)
    if claimed is None:
        raise InvalidInputError(
            "the authorization is not a psi.v1.SignedAuthorization of at most 4096 bytes"
        )
    if not claimed.case_id or not claimed.token_id:
        raise InvalidInputError("the authorization names no case or token id")
    return claimed.case_id


def subject_row(subject: agency_pb2.Subject) -> dict[str, str]:
    row = {name: getattr(subject, name) for name in SUBJECT_FIELDS}
    if not row["subject_id"].strip():
        raise InvalidInputError("every subject needs a subject_id")
    if any(len(value) > MAX_FIELD_CHARS for value in row.values()):
        raise InvalidInputError(f"subject fields are limited to {MAX_FIELD_CHARS} characters")
    return row


def rule_of(header: agency_pb2.QueryHeader) -> MatchRule:
    """The query's recipes and rule from a QueryHeader (either form), checked."""
    if header.recipe and header.recipes:
        raise InvalidInputError("set recipe (one recipe) or recipes (several), not both")
    recipes = [get_recipe(r).id for r in (header.recipes or [header.recipe])]
    kind = header.rule.kind
    if kind == agency_pb2.MATCH_RULE_KIND_UNSPECIFIED:
        if len(recipes) > 1:
            raise InvalidInputError(
                "a query with several recipes needs a rule: any, all or at least k"
            )
        return MatchRule.of(recipes)
    if kind == agency_pb2.MATCH_RULE_KIND_AT_LEAST:
        return MatchRule.of(recipes, f"at-least-{header.rule.at_least}")
    names = {number: name for name, number in _RULE_KINDS.items()}
    if kind not in names:
        raise InvalidInputError(f"unknown rule kind {kind}")
    return MatchRule.of(recipes, names[kind])


def rule_message(rule: MatchRule) -> agency_pb2.MatchRule:
    return agency_pb2.MatchRule(
        kind=_RULE_KINDS[rule.kind], at_least=rule.k if rule.kind == AT_LEAST else 0
    )


def status_message(record: QueryRecord) -> agency_pb2.QueryStatus:
    timings = record.timings
    rule = record.rule
    return agency_pb2.QueryStatus(
        query_id=record.query_id,
        state=STATE_ENUMS[record.state],
        mode=MODE_ENUMS[record.mode],
        recipe=record.recipe,
        subject_count=record.subject_count,
        keyed_subject_count=record.keyed_count,
        processed_count=record.processed_count,
        match_count=record.match_count,
        false_positive_bound=common_pb2.FalsePositiveBound(
            per_subject=record.fp_per_subject,
            expected_false_matches=record.fp_expected,
            fingerprint_bits=64,
        ),
        epoch_id=record.epoch_id,
        error_code=record.error_code,
        error_message=record.error_message,
        timings=agency_pb2.PhaseTimings(**timings),
        case_id=record.case_id,
        recipes=rule.recipes,
        rule=rule_message(rule),
        rule_id=rule.rule_id,
        quality=quality_message(record.quality),
        waiting_reason=record.waiting_reason,
        attempts=record.attempts,
        agency_backend=record.agency_backend,
        custodian_backend=record.custodian_backend,
        created_at=_rfc3339(record.created_at),
        updated_at=_rfc3339(record.updated_at),
        no_key_counts=[
            agency_pb2.NoKeyCount(recipe=recipe, reason=reason, count=count)
            for recipe, reasons in sorted(record.no_key_counts.items())
            for reason, count in sorted(reasons.items())
        ],
    )


def _rfc3339(stored: str) -> str:
    return stored.replace("+00:00", "Z")


def _until_cancelled(
    requests: Iterator[agency_pb2.SubmitQueryRequest],
) -> Iterator[agency_pb2.SubmitQueryRequest]:
    """The stream's messages; a client's cancel (grpc raises a bare RpcError) is a refusal."""
    try:
        yield from requests
    except grpc.RpcError:
        raise InvalidInputError(
            "the client cancelled the submission; nothing of the query was kept"
        ) from None


class AgencyServicer(agency_pb2_grpc.AgencyServicer):
    def __init__(
        self,
        *,
        store: AgencyStore,
        runner: QueryRunner,
        board: ProgressBoard,
        custodian_recipes: Callable[[], tuple[str, ...]],
        max_subjects: int = 10_000_000,
        max_batch: int = 100_000,
        max_watchers: int = DEFAULT_MAX_WATCHERS,
        page_tokens: PageTokens | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._board = board
        self._custodian_recipes = custodian_recipes
        self._max_subjects = max_subjects
        self._max_batch = max_batch
        self._max_watchers = max_watchers
        self._watch_slots = threading.BoundedSemaphore(max_watchers)
        self._page_tokens = page_tokens or PageTokens()

    def _header(
        self, request_iterator: Iterator[agency_pb2.SubmitQueryRequest]
    ) -> tuple[agency_pb2.QueryHeader, MatchRule]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("kind") != "header":
            raise InvalidInputError("a SubmitQuery stream must start with a QueryHeader")
        header = first.header
        mode = mode_name(header.mode)
        rule = rule_of(header)
        if mode != "membership" and len(rule.recipes) > 1:
            raise InvalidInputError(
                "a cardinality query takes one recipe: its sorted answer cannot tie a "
                "subject's keys together, so a rule over several recipes cannot be applied"
            )
        held = self._custodian_recipes()
        missing = [r for r in rule.recipes if r not in held]
        if missing:
            raise PreconditionError(
                f"the custodian does not hold recipe {', '.join(missing)}; it holds "
                f"{', '.join(held)}"
            )
        if len(header.requested_by) > MAX_FIELD_CHARS:
            raise InvalidInputError(f"requested_by is limited to {MAX_FIELD_CHARS} characters")
        return header, rule

    @grpc_errors
    def SubmitQuery(
        self,
        request_iterator: Iterator[agency_pb2.SubmitQueryRequest],
        context: grpc.ServicerContext,
    ) -> Any:
        header, rule = self._header(request_iterator)
        query_id = secrets.token_hex(8)
        self._store.begin_query(
            query_id,
            mode=mode_name(header.mode),
            recipe=rule.rule_id,
            authorization=header.authorization,
            case_id=case_id_of(header.authorization),
            requested_by=header.requested_by,
        )
        count = 0
        declared: int | None = None
        try:
            for message in _until_cancelled(request_iterator):
                kind = message.WhichOneof("kind")
                if declared is not None:
                    raise InvalidInputError("nothing may follow the SubmitEnd message")
                if kind == "end":
                    declared = message.end.subject_count
                    continue
                if kind != "batch":
                    raise InvalidInputError("only SubjectBatch messages may follow the header")
                batch = [subject_row(s) for s in message.batch.subjects]
                if len(batch) > self._max_batch:
                    raise InvalidInputError(f"a batch holds at most {self._max_batch} subjects")
                if count + len(batch) > self._max_subjects:
                    raise InvalidInputError(f"a query holds at most {self._max_subjects} subjects")
                self._store.add_subjects(query_id, count, batch)
                count += len(batch)
            if count == 0:
                raise InvalidInputError("the query holds no subjects")
            if declared is None or not context.is_active():
                raise InvalidInputError(
                    "the subject stream ended without its SubmitEnd message (the client "
                    "stopped or cancelled); nothing of the query was kept"
                )
            if declared != count:
                raise InvalidInputError(
                    f"the SubmitEnd message declares {declared} subjects but {count} arrived; "
                    "nothing of the query was kept"
                )
            record = self._store.seal_query(query_id, count)
        except BaseException:
            self._store.discard_query(query_id)
            raise
        self._runner.submit(query_id)
        return status_message(record)

    @grpc_errors
    def GetQuery(self, request: agency_pb2.GetQueryRequest, context: grpc.ServicerContext) -> Any:
        return status_message(self._store.get(request.query_id))

    @grpc_errors
    def WatchQuery(
        self, request: agency_pb2.GetQueryRequest, context: grpc.ServicerContext
    ) -> Iterator[agency_pb2.QueryStatus]:
        """Capped at ``max_watchers`` streams; a slot is freed as soon as the watcher hangs
        up (gRPC's callback), not only when the waiting thread notices."""
        if not self._watch_slots.acquire(blocking=False):
            raise BudgetExhaustedError(
                f"{self._max_watchers} WatchQuery streams are open, the most this agency "
                "serves at once; poll with GetQuery or watch again later"
            )
        released = threading.Lock()

        def release() -> None:
            if released.acquire(blocking=False):
                self._watch_slots.release()
                self._board.bump(request.query_id)

        context.add_callback(release)
        try:
            yield from self._watch(request.query_id, context)
        finally:
            release()

    def _watch(
        self, query_id: str, context: grpc.ServicerContext
    ) -> Iterator[agency_pb2.QueryStatus]:
        seen = self._board.version(query_id)
        record = self._store.get(query_id)
        while True:
            yield status_message(record)
            if record.state in TERMINAL_STATES or not context.is_active():
                return
            seen = self._board.wait(query_id, seen, _WATCH_WAKEUP_SECONDS)
            record = self._store.get(query_id)

    @grpc_errors
    def ListMatches(
        self, request: agency_pb2.ListMatchesRequest, context: grpc.ServicerContext
    ) -> Iterator[agency_pb2.Match]:
        record = self._store.get(request.query_id)
        if record.mode != "membership":
            raise PreconditionError("a cardinality query has no list of matches, only a count")
        if record.state != SUCCEEDED:
            raise PreconditionError(f"the query is {record.state}; matches exist once it SUCCEEDED")
        context.send_initial_metadata(quality_metadata(record.quality))
        for recipes, subject in self._store.matches(request.query_id):
            yield agency_pb2.Match(
                recipe=record.recipe,
                subject=agency_pb2.Subject(**subject),
                matched_recipes=recipes.split(";"),
            )

    @grpc_errors
    def ListQueries(
        self, request: agency_pb2.ListQueriesRequest, context: grpc.ServicerContext
    ) -> Any:
        size = request.page_size or DEFAULT_PAGE_SIZE
        if size > MAX_PAGE_SIZE:
            raise InvalidInputError(f"page_size is at most {MAX_PAGE_SIZE}")
        state = STATE_NAMES.get(request.state, "") if request.state else ""
        if request.state and not state:
            raise InvalidInputError("unknown query state")
        filters = (state, request.case_id)
        after = None
        if request.page_token:
            cursor = self._page_tokens.open(request.page_token, filters)
            after = (cursor.created_at, cursor.query_id)
        records = self._store.list_queries(
            limit=size + 1, state=state, case_id=request.case_id, after=after
        )
        page, more = records[:size], len(records) > size
        next_token = ""
        if more:
            last = page[-1]
            next_token = self._page_tokens.issue(Cursor(last.created_at, last.query_id), filters)
        return agency_pb2.ListQueriesResponse(
            queries=[status_message(r) for r in page], next_page_token=next_token
        )
