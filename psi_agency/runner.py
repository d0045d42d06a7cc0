"""Runs agency queries in the background, one at a time, against the custodian.

For each query: compute each stored subject's key under every recipe of the query, blind
the distinct keys of each recipe with a fresh scalar, stream them to the custodian in
chunks (recipe after recipe), unblind the answers, look the fingerprints up in the local
copy of the index, apply the query's rule (``psi_core.protocol.rules``) and store the
result with its expected false matches. Any failure marks the query FAILED with a status
name and a message; nothing is half-stored.
A custodian that is unreachable or too slow is tried again with backoff (``retry``); the
query waits QUEUED meanwhile, saying why. Stopping leaves queued queries queued, gives
the one in flight a deadline, then cancels its calls and leaves it resumable.

On start, queries that were queued or running when the service stopped are run again.
A query that had already sent points is re-run with its stored scalar, so it sends the
same points and declares their digest as a replay: if the custodian answered them in
full before, it answers again without charging the authorization a second time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from psi_agency.custodian_client import CustodianClient, CustodianFacts
from psi_agency.epochs import IndexHolder
from psi_agency.progress import ProgressBoard
from psi_agency.quality import estimate_quality
from psi_agency.retry import RetryPolicy, retry_unreachable
from psi_agency.store import FAILED, QUEUED, RUNNING, AgencyStore, QueryRecord
from psi_core import faults
from psi_core.errors import PeerError, PreconditionError, PsiError, UnreachableError
from psi_core.index import SegmentedIndex
from psi_core.policy import AuditLog
from psi_core.protocol import (
    BlindedQuery,
    ChunkCommitment,
    CurveBackend,
    FalsePositiveBound,
    KeyDeclaration,
    KeyFlags,
    MatchRule,
    SubjectKeys,
    count_found,
    default_backend,
)
from psi_core.recipes import MatchKeyRecipe, get_recipe
from psi_proto.v1 import custodian_pb2
from psi_rpc.metrics import ServiceMetrics
from psi_rpc.modes import MODE_ENUMS

log = logging.getLogger(__name__)

#: What a query's log line carries: ids, counts and the outcome, never a subject or a key.
_LOGGED_QUERY_FIELDS = ("query_id", "case_id", "mode", "recipe", "subjects", "matches", "outcome")


@dataclass
class _Timings:
    """Seconds per agency-side phase; the rest of the wall time is the custodian's."""

    blind: float = 0.0
    unblind: float = 0.0
    lookup: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def as_dict(self) -> dict[str, float]:
        total = time.perf_counter() - self.started
        return {
            "blind_seconds": self.blind,
            "evaluate_seconds": max(total - self.blind - self.unblind - self.lookup, 0.0),
            "unblind_seconds": self.unblind,
            "lookup_seconds": self.lookup,
        }


def _bounded_cardinality_answer(
    answers: Iterable[list[bytes]], sent: int, per_chunk: int
) -> list[bytes]:
    """The cardinality answer, refused the moment it holds more points than were sent or
    a chunk over the custodian's own announced chunk size, so a hostile custodian cannot
    make the agency buffer more than ``sent`` points."""
    collected: list[bytes] = []
    for chunk in answers:
        if len(chunk) > per_chunk:
            raise PeerError(
                f"the custodian sent an answer chunk of {len(chunk)} points, over the "
                f"{per_chunk} it announced; the query is void"
            )
        if len(collected) + len(chunk) > sent:
            raise PeerError(
                f"the custodian answered more than the {sent} points sent; the query is void"
            )
        collected.extend(chunk)
    return collected


class _Interrupted(Exception):
    """The runner is stopping: the query goes back to QUEUED, its scalar kept."""


def _no_key_counts(
    recipes: list[MatchKeyRecipe],
    subject_keys: SubjectKeys,
    subjects: Iterable[dict[str, str]],
) -> dict[str, dict[str, int]]:
    """Per recipe, per reason code: how many subjects gave no key.

    Only the subjects without a key under some recipe are looked at again (``subjects``
    is read up to the last of them, in submission order; not at all when every subject
    has every key).
    """
    keyless = (subject_keys.key_index < 0).any(axis=1).nonzero()[0]
    if not len(keyless):
        return {}
    counts: dict[str, Counter[str]] = {recipe.id: Counter() for recipe in recipes}
    wanted = iter(keyless)
    target = int(next(wanted))
    for seq, subject in enumerate(subjects):
        if seq != target:
            continue
        for recipe, position in zip(recipes, subject_keys.key_index[seq].tolist(), strict=True):
            if position < 0:
                counts[recipe.id][recipe.why_no_key(subject) or "incomplete"] += 1
        following = next(wanted, None)
        if following is None:
            break
        target = int(following)
    return {recipe_id: dict(found) for recipe_id, found in counts.items() if found}


class QueryRunner:
    def __init__(
        self,
        *,
        store: AgencyStore,
        custodian: CustodianClient,
        index: IndexHolder,
        audit: AuditLog,
        board: ProgressBoard,
        evaluate_timeout: Callable[[int], float] = lambda n: 60.0 + n / 1000.0,
        retry: RetryPolicy | None = None,
        backend: CurveBackend | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._store = store
        self._custodian = custodian
        self._index = index
        self._audit = audit
        self._board = board
        self._timeout = evaluate_timeout
        self._retry = retry or RetryPolicy()
        self._stopping = threading.Event()
        self._backend = backend or default_backend()
        self._metrics = metrics
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="query-runner", daemon=True)

    def start(self) -> None:
        for query_id in self._store.unfinished():
            self._queue.put(query_id)
        self._thread.start()

    def submit(self, query_id: str) -> None:
        self._queue.put(query_id)

    # -- stopping ------------------------------------------------------------------------

    def stop(self, drain_seconds: float = 10.0, cancel_seconds: float = 5.0) -> bool:
        """Stop within about ``drain_seconds + cancel_seconds``; True if the runner ended.

        Queued queries are left QUEUED (the next start runs them). The query in flight
        may finish for ``drain_seconds``; then its calls to the custodian are cancelled
        and it goes back to QUEUED with its blinding scalar kept, so the next start
        re-runs it as a replay the custodian does not charge again if it had answered.
        """
        self._stopping.set()
        self._queue.put(None)
        if self._thread.ident is None:
            return True
        self._thread.join(max(drain_seconds, 0.0))
        if self._thread.is_alive():
            cancelled = self._custodian.cancel_calls()
            log.info("stopping: cancelled %d call(s) to the custodian", cancelled)
            self._thread.join(max(cancel_seconds, 0.0))
        if self._thread.is_alive():
            log.warning("the query runner did not stop in time; its query resumes on restart")
            return False
        return True

    def _wait_or_stop(self, seconds: float) -> None:
        """The retry wait, cut short by a stop."""
        if self._stopping.wait(seconds):
            raise _Interrupted

    def _requeue(self, query_id: str) -> None:
        self._store.update(
            query_id,
            state=QUEUED,
            processed_count=0,
            waiting_reason="the agency stopped while the query ran; it runs again on restart",
        )

    # -- running -------------------------------------------------------------------------

    def _loop(self) -> None:
        while (query_id := self._queue.get()) is not None and not self._stopping.is_set():
            try:
                self.run(query_id)
            except Exception:
                log.exception("query %s could not be run or recorded", query_id)

    def run(self, query_id: str) -> None:
        """Run one query to SUCCEEDED or FAILED (or back to QUEUED when the runner is
        stopped meanwhile); never raises."""
        record = self._store.get(query_id)
        event: dict[str, object] = {
            "kind": "query",
            "query_id": query_id,
            "case_id": record.case_id,
            "requested_by": record.requested_by,
            "mode": record.mode,
            "recipe": record.recipe,
            "subjects": record.subject_count,
        }
        try:
            event["matches"] = self._with_retries(record)
            event["outcome"] = "OK"
        except (_Interrupted, PsiError) as exc:
            if isinstance(exc, _Interrupted) or self._stopping.is_set():
                event["outcome"] = "INTERRUPTED"
                self._requeue(query_id)
            else:
                event.update(outcome=exc.status, reason=str(exc))
                self._store.update(
                    query_id, state=FAILED, error_code=exc.status, error_message=str(exc)
                )
        except Exception:
            log.exception("query %s failed unexpectedly", query_id)
            event["outcome"] = "INTERNAL"
            self._store.update(
                query_id,
                state=FAILED,
                error_code="INTERNAL",
                error_message="internal error; the agency service log has the details",
            )
        finally:
            self._audit.append(event)
            self._board.bump(query_id)
            log.info(
                "query %s ended %s",
                query_id,
                event["outcome"],
                extra={k: event[k] for k in _LOGGED_QUERY_FIELDS if k in event},
            )

    # -- retrying ------------------------------------------------------------------------

    def _with_retries(self, record: QueryRecord) -> int:
        """``_execute`` under the retry policy; the scalar survives between attempts."""
        query_id = record.query_id

        def attempt(number: int) -> int:
            if self._stopping.is_set():
                raise _Interrupted
            self._store.update(
                query_id,
                state=RUNNING,
                processed_count=0,
                match_count=0,
                attempts=number,
                waiting_reason="",
            )
            self._board.bump(query_id)
            return self._execute(self._store.get(query_id))

        def waiting(failed: int, error: UnreachableError, seconds: float) -> None:
            reason = f"{error}; attempt {failed + 1} of {self._retry.attempts} in {seconds:.0f} s"
            self._store.update(query_id, state=QUEUED, processed_count=0, waiting_reason=reason)
            self._board.bump(query_id)

        try:
            return retry_unreachable(
                self._retry, attempt, waiting=waiting, sleep=self._wait_or_stop
            )
        except UnreachableError as exc:
            raise UnreachableError(
                f"{exc} (gave up after {self._retry.attempts} attempt"
                f"{'s' if self._retry.attempts > 1 else ''})"
            ) from exc

    def _execute(self, record: QueryRecord) -> int:
        timings = _Timings()
        rule = MatchRule.from_id(record.recipe)
        recipes = [get_recipe(recipe_id) for recipe_id in rule.recipes]
        facts = self._custodian.info()
        if self._store.blinding_key(record.query_id) is not None and record.epoch_id:
            epoch, index = self._index.for_epoch(facts, record.epoch_id)
        else:
            epoch, index = self._index.for_new_query(facts)
        missing = [r for r in rule.recipes if r not in epoch.recipes]
        if missing:
            raise PreconditionError(
                f"the custodian does not hold recipe {', '.join(missing)}; it holds "
                f"{', '.join(epoch.recipes)}"
            )
        if facts.suite != self._backend.suite:
            raise PreconditionError(
                f"the custodian answers in suite {facts.suite[:64]!r}; this agency blinds in "
                f"{self._backend.suite}"
            )

        started = time.perf_counter()
        subject_keys = SubjectKeys.build(recipes, self._store.subjects(record.query_id))
        keys = subject_keys.keys
        no_key = _no_key_counts(recipes, subject_keys, self._store.subjects(record.query_id))
        timings.blind += time.perf_counter() - started
        keyed = subject_keys.keyed_subjects
        bound = FalsePositiveBound.for_query(index.key_count, len(keys))
        self._store.update(
            record.query_id,
            keyed_count=keyed,
            no_key_counts=no_key,
            epoch_id=epoch.epoch_id,
            fp_per_subject=bound.per_subject,
            fp_expected=bound.expected_false_matches,
            agency_backend=self._backend.name,
            custodian_backend=facts.backend,
            quality=estimate_quality(rule.rule_id, keyed, bound.expected_false_matches),
        )
        if len(keys) > facts.max_subjects_per_query:
            raise PreconditionError(
                f"the query has {len(keys)} distinct keys; the custodian accepts at most "
                f"{facts.max_subjects_per_query} per query: split it"
            )
        subject_keys, found = self._match(record, subject_keys, facts, index, timings)

        if record.mode == "membership":
            hits = subject_keys.hits(found)
            matches = [(seq, ";".join(hits.recipes_of(seq))) for seq in hits.matched(rule)]
            match_count = len(matches)
        else:
            matches, match_count = [], count_found(found)
        self._store.finish(
            record.query_id,
            matches,
            processed_count=keyed,
            match_count=match_count,
            timings=timings.as_dict(),
        )
        if self._metrics is not None:
            for phase, seconds in timings.as_dict().items():
                self._metrics.phase_seconds.labels(phase.removesuffix("_seconds")).observe(seconds)
        return match_count

    def _match(
        self,
        record: QueryRecord,
        subject_keys: SubjectKeys,
        facts: CustodianFacts,
        index: SegmentedIndex,
        timings: _Timings,
    ) -> tuple[SubjectKeys, list[KeyFlags]]:
        """The keys in the order they were sent, and for each (chunk by chunk) whether
        b·H(x) is in the index."""
        if not subject_keys.keys:
            return subject_keys, []
        step = facts.points_per_request
        sent_sizes: list[int] = []
        stored_scalar = self._store.blinding_key(record.query_id)
        query = BlindedQuery(stored_scalar, self._backend)
        began = time.perf_counter()
        subject_keys = subject_keys.in_secret_order(query.scalar)
        keys = subject_keys.keys
        timings.blind += time.perf_counter() - began

        if stored_scalar is None:
            self._store.keep_blinding_key(record.query_id, query.scalar)
            faults.point("query_blinded")
        # Every chunk is blinded before the first is sent, so that the header can commit to
        # all of them: the custodian then charges this request once, however often a crash
        # on either side makes it run again with the same scalar (the same chunks).
        chunks: list[list[bytes]] = []
        for start in range(0, len(keys), step):
            began = time.perf_counter()
            chunks.append(query.blind(keys[start : start + step]))
            timings.blind += time.perf_counter() - began
        sent_sizes.extend(len(chunk) for chunk in chunks)
        header = custodian_pb2.EvaluateHeader(
            authorization=record.authorization,
            mode=MODE_ENUMS[record.mode],
            epoch_id=index.epoch_id,
            point_count=len(keys),
            suite=self._backend.suite,
            chunk_sha256=ChunkCommitment.of(chunks),
            **_declared_fields(subject_keys.declaration()),
        )
        answers = self._custodian.evaluate(header, iter(chunks), timeout=self._timeout(len(keys)))
        if record.mode == "membership":
            found = self._membership(
                record, answers, sent_sizes, subject_keys, query, index, timings
            )
            return subject_keys, found
        collected = _bounded_cardinality_answer(answers, len(keys), facts.max_points_per_chunk)
        faults.point("query_collected")
        return subject_keys, [self._lookup(query, len(keys), collected, index, timings)]

    def _membership(
        self,
        record: QueryRecord,
        answers: Iterator[list[bytes]],
        sent_sizes: list[int],
        subject_keys: SubjectKeys,
        query: BlindedQuery,
        index: SegmentedIndex,
        timings: _Timings,
    ) -> list[KeyFlags]:
        hits: list[KeyFlags] = []
        processed, total, keyed = 0, len(subject_keys.keys), subject_keys.keyed_subjects
        for number, answer in enumerate(answers):
            if number >= len(sent_sizes):
                raise PeerError("the custodian answered more chunks than were sent")
            hits.append(self._lookup(query, sent_sizes[number], answer, index, timings))
            processed += sent_sizes[number]
            # Progress in keyed subjects (the unit QueryStatus reports), whatever the recipes.
            self._store.update(record.query_id, processed_count=processed * keyed // total)
            self._board.bump(record.query_id)
            faults.point("query_answered")
        if len(hits) != len(sent_sizes):
            raise PeerError("the custodian answered fewer chunks than were sent")
        if processed != total:
            # The stream can end before every chunk was even sent (a custodian that stops
            # reading and returns OK); without this the rest would count as non-matches.
            raise PeerError(
                f"the custodian's answer ended after {processed} of {total} points; "
                "the query is void"
            )
        faults.point("query_collected")
        return hits

    @staticmethod
    def _lookup(
        query: BlindedQuery,
        sent: int,
        answer: list[bytes],
        index: SegmentedIndex,
        timings: _Timings,
    ) -> KeyFlags:
        began = time.perf_counter()
        fingerprints = query.fingerprints(sent, answer)
        timings.unblind += time.perf_counter() - began
        began = time.perf_counter()
        hits = index.contains(fingerprints)
        timings.lookup += time.perf_counter() - began
        return hits


def _declared_fields(declared: KeyDeclaration) -> dict[str, object]:
    """The header fields that declare the keys: the single-recipe form when it says it all
    (so a custodian that knows no multi-key header still serves single-recipe queries)."""
    if declared.is_single:
        return {"recipe": declared.recipes[0]}
    return {
        "recipe_keys": [
            custodian_pb2.RecipeKeyCount(recipe=recipe, key_count=count)
            for recipe, count in declared.segments
        ],
        "subject_count": declared.subjects,
    }
