"""Runs agency queries in the background, one at a time, against the custodian.

For each query: compute the recipe's key for every stored subject, blind the distinct
keys with a fresh scalar, stream them to the custodian in chunks, unblind the answers,
look the fingerprints up in the local copy of the index, and store the result. Any
failure marks the query FAILED with a status name and a message; nothing is half-stored.
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

import numpy as np

from psi_agency.custodian_client import CustodianClient, CustodianFacts
from psi_agency.epochs import IndexHolder
from psi_agency.progress import ProgressBoard
from psi_agency.retry import RetryPolicy, retry_unreachable
from psi_agency.store import FAILED, QUEUED, RUNNING, AgencyStore, QueryRecord
from psi_core import faults
from psi_core.errors import PeerError, PreconditionError, PsiError, UnreachableError
from psi_core.index import SegmentedIndex
from psi_core.policy import AuditLog
from psi_core.protocol import BlindedQuery, FalsePositiveBound, RequestDigest, distinct_keys
from psi_core.recipes import get_recipe
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
        recipe = get_recipe(record.recipe)
        facts = self._custodian.info()
        if self._store.blinding_key(record.query_id) is not None and record.epoch_id:
            epoch, index = self._index.for_epoch(facts, record.epoch_id)
        else:
            epoch, index = self._index.for_new_query(facts)
        if recipe.id not in epoch.recipes:
            raise PreconditionError(
                f"the custodian does not hold recipe {recipe.id}; it holds "
                f"{', '.join(epoch.recipes)}"
            )

        started = time.perf_counter()
        subject_keys: list[str | None] = []
        no_key: Counter[str] = Counter()
        for subject in self._store.subjects(record.query_id):
            key = recipe.key(subject)
            subject_keys.append(key)
            if key is None:
                no_key[recipe.why_no_key(subject) or "incomplete"] += 1
        keys, key_of_subject = distinct_keys(subject_keys)
        timings.blind += time.perf_counter() - started
        keyed = int(np.count_nonzero(key_of_subject >= 0))
        bound = FalsePositiveBound.for_query(index.key_count, len(keys))
        self._store.update(
            record.query_id,
            keyed_count=keyed,
            no_key_counts={recipe.id: dict(no_key)} if no_key else {},
            epoch_id=epoch.epoch_id,
            fp_per_subject=bound.per_subject,
            fp_expected=bound.expected_false_matches,
        )
        if len(keys) > facts.max_subjects_per_query:
            raise PreconditionError(
                f"the query has {len(keys)} distinct keys; the custodian accepts at most "
                f"{facts.max_subjects_per_query} per query: split it"
            )
        matched_keys = self._match(record, keys, facts, index, timings)

        if record.mode == "membership":
            matched_mask = np.zeros(len(keys) + 1, dtype=bool)
            matched_mask[: len(keys)][matched_keys] = True
            subject_hits = matched_mask[key_of_subject]
            seqs = np.flatnonzero(subject_hits & (key_of_subject >= 0)).tolist()
            match_count = len(seqs)
        else:
            seqs, match_count = [], len(matched_keys)
        self._store.finish(
            record.query_id,
            seqs,
            recipe.id,
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
        keys: list[str],
        facts: CustodianFacts,
        index: SegmentedIndex,
        timings: _Timings,
    ) -> np.ndarray:
        """Indices (into ``keys``) of the keys whose b·H(x) is in the index."""
        if not keys:
            return np.empty(0, dtype=np.int64)
        step = facts.points_per_request
        sent_sizes: list[int] = []
        stored_scalar = self._store.blinding_key(record.query_id)
        query = BlindedQuery(stored_scalar)

        def blinded_chunks() -> Iterator[list[bytes]]:
            for start in range(0, len(keys), step):
                began = time.perf_counter()
                points = query.blind(keys[start : start + step])
                timings.blind += time.perf_counter() - began
                sent_sizes.append(len(points))
                yield points

        chunks: Iterable[list[bytes]]
        if stored_scalar is None:
            self._store.keep_blinding_key(record.query_id, query.scalar)
            faults.point("query_blinded")
            chunks, replay_of = blinded_chunks(), b""
        else:
            chunks = list(blinded_chunks())
            digest = RequestDigest()
            for chunk in chunks:
                digest.update(chunk)
            replay_of = digest.digest()
        header = custodian_pb2.EvaluateHeader(
            authorization=record.authorization,
            mode=MODE_ENUMS[record.mode],
            recipe=record.recipe,
            epoch_id=index.epoch_id,
            point_count=len(keys),
            replay_of_sha256=replay_of,
        )
        answers = self._custodian.evaluate(header, chunks, timeout=self._timeout(len(keys)))
        if record.mode == "membership":
            return self._membership(record, answers, sent_sizes, len(keys), query, index, timings)
        collected = _bounded_cardinality_answer(answers, len(keys), facts.max_points_per_chunk)
        faults.point("query_collected")
        hits = self._lookup(query, len(keys), collected, index, timings)
        return np.flatnonzero(hits)

    def _membership(
        self,
        record: QueryRecord,
        answers: Iterator[list[bytes]],
        sent_sizes: list[int],
        total: int,
        query: BlindedQuery,
        index: SegmentedIndex,
        timings: _Timings,
    ) -> np.ndarray:
        hits: list[np.ndarray] = []
        processed = 0
        for number, answer in enumerate(answers):
            if number >= len(sent_sizes):
                raise PeerError("the custodian answered more chunks than were sent")
            hits.append(self._lookup(query, sent_sizes[number], answer, index, timings))
            processed += sent_sizes[number]
            self._store.update(record.query_id, processed_count=processed)
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
        return np.flatnonzero(np.concatenate(hits))

    @staticmethod
    def _lookup(
        query: BlindedQuery,
        sent: int,
        answer: list[bytes],
        index: SegmentedIndex,
        timings: _Timings,
    ) -> np.ndarray:
        began = time.perf_counter()
        fingerprints = query.fingerprints(sent, answer)
        timings.unblind += time.perf_counter() - began
        began = time.perf_counter()
        hits = index.contains(fingerprints)
        timings.lookup += time.perf_counter() - began
        return hits
