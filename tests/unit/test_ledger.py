"""Tests of the per-token authorization ledger (psi_core.policy.ledger)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from psi_core.errors import BudgetExhaustedError, InvalidInputError, PreconditionError
from psi_core.policy import AuditLog, AuthorizationLedger, LedgerEntry, RequestKey
from psi_core.policy.ledger import REPLAY
from psi_proto.v1 import authorization_pb2

THREADS = 16


@dataclass(frozen=True)
class Budget:
    token_id: str
    max_queries: int
    max_subjects: int


@pytest.fixture
def ledger(tmp_path: Path):
    with AuthorizationLedger(tmp_path / "custodian.db") as led:
        yield led


def _race(n: int, work) -> tuple[list[Any], list[BaseException]]:
    """Run work(i) in n threads released together by a barrier; return results and errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            value = work(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


# Positive cases


def test_charges_accumulate(ledger: AuthorizationLedger) -> None:
    """Each charge adds one query and its subjects, and reports what is left."""
    token = Budget("t1", max_queries=3, max_subjects=1000)
    assert ledger.charge(token, 100) == LedgerEntry(1, 100, 2, 900)
    assert ledger.charge(token, 250) == LedgerEntry(2, 350, 1, 650)
    assert ledger.usage("t1") == LedgerEntry(2, 350, 1, 650)


def test_the_last_query_and_the_last_subject_can_be_used(ledger: AuthorizationLedger) -> None:
    """A budget can be spent exactly to zero: the final query may take every remaining subject."""
    token = Budget("t2", max_queries=2, max_subjects=200)
    ledger.charge(token, 150)
    assert ledger.charge(token, 50) == LedgerEntry(2, 200, 0, 0)


def test_usage_of_an_unused_token_is_none(ledger: AuthorizationLedger) -> None:
    """usage() of a token that was never charged is None."""
    assert ledger.usage("never") is None


def test_tokens_have_separate_budgets(ledger: AuthorizationLedger) -> None:
    """Exhausting one token leaves another token's budget untouched."""
    a, b = Budget("a", 1, 10), Budget("b", 1, 10)
    ledger.charge(a, 10)
    assert ledger.charge(b, 10) == LedgerEntry(1, 10, 0, 0)


def test_protobuf_claims_are_accepted(ledger: AuthorizationLedger) -> None:
    """The ledger reads token_id and limits from a psi.v1.AuthorizationClaims message too."""
    claims = authorization_pb2.AuthorizationClaims(token_id="pb", max_queries=2, max_subjects=9)
    assert ledger.charge(claims, 4) == LedgerEntry(1, 4, 1, 5)


def test_use_survives_a_restart(tmp_path: Path) -> None:
    """A new ledger object on the same file sees and enforces every earlier charge."""
    token = Budget("t3", max_queries=2, max_subjects=100)
    with AuthorizationLedger(tmp_path / "c.db") as first:
        first.charge(token, 60)
    with AuthorizationLedger(tmp_path / "c.db") as second:
        assert second.usage("t3") == LedgerEntry(1, 60, 1, 40)
        with pytest.raises(BudgetExhaustedError):
            second.charge(token, 41)
        second.charge(token, 40)
    with AuthorizationLedger(tmp_path / "c.db") as third:
        assert third.usage("t3") == LedgerEntry(2, 100, 0, 0)


def test_concurrent_charges_never_exceed_max_queries(ledger: AuthorizationLedger) -> None:
    """16 threads charging one token with 5 queries: exactly 5 succeed, 11 are refused."""
    token = Budget("race-q", max_queries=5, max_subjects=10**9)
    results, errors = _race(THREADS, lambda i: ledger.charge(token, 1))
    assert len(results) == 5
    assert len(errors) == THREADS - 5
    assert all(isinstance(e, BudgetExhaustedError) for e in errors)
    assert ledger.usage("race-q") == LedgerEntry(5, 5, 0, 10**9 - 5)


def test_concurrent_charges_never_exceed_max_subjects(ledger: AuthorizationLedger) -> None:
    """16 threads asking 30 subjects each of a 200-subject budget: 6 succeed, the total is 180."""
    token = Budget("race-s", max_queries=100, max_subjects=200)
    results, errors = _race(THREADS, lambda i: ledger.charge(token, 30))
    assert len(results) == 6
    assert all(isinstance(e, BudgetExhaustedError) for e in errors)
    assert ledger.usage("race-s") == LedgerEntry(6, 180, 94, 20)


def test_separate_connections_are_atomic_too(tmp_path: Path) -> None:
    """16 ledger objects on one file (as separate processes would be) never overspend."""
    ledgers = [AuthorizationLedger(tmp_path / "shared.db") for _ in range(THREADS)]
    try:
        token = Budget("race-c", max_queries=7, max_subjects=10**6)
        results, errors = _race(THREADS, lambda i: ledgers[i].charge(token, 3))
        assert len(results) == 7
        assert all(isinstance(e, BudgetExhaustedError) for e in errors)
        used = sorted(r.queries_used for r in results)
        assert used == list(range(1, 8))
        assert ledgers[0].usage("race-c") == LedgerEntry(7, 21, 0, 10**6 - 21)
    finally:
        for led in ledgers:
            led.close()


def test_ledger_shares_a_file_with_the_audit_log(tmp_path: Path) -> None:
    """The ledger and an audit log in the same SQLite file each keep their own table."""
    db = tmp_path / "custodian.db"
    with AuthorizationLedger(db) as led, AuditLog(db) as log:
        led.charge(Budget("s", 1, 5), 5)
        log.append({"kind": "evaluate", "subjects": 5})
        assert log.verify().ok
        assert led.usage("s") == LedgerEntry(1, 5, 0, 0)


# Negative cases


def test_query_budget_is_exhausted_exactly_at_the_limit(ledger: AuthorizationLedger) -> None:
    """After max_queries charges the next raises BudgetExhaustedError and records nothing."""
    token = Budget("t4", max_queries=3, max_subjects=1000)
    for _ in range(3):
        ledger.charge(token, 1)
    with pytest.raises(BudgetExhaustedError, match="token t4 has used 3 of 3 queries"):
        ledger.charge(token, 1)
    assert ledger.usage("t4") == LedgerEntry(3, 3, 0, 997)


def test_subject_budget_overrun_is_refused_without_recording(ledger: AuthorizationLedger) -> None:
    """A query larger than the subjects left raises and leaves both counts as they were."""
    token = Budget("t5", max_queries=10, max_subjects=1000)
    ledger.charge(token, 800)
    with pytest.raises(
        BudgetExhaustedError, match="query of 500 subjects exceeds the 200 left on token t5"
    ):
        ledger.charge(token, 500)
    assert ledger.usage("t5") == LedgerEntry(1, 800, 9, 200)


def test_a_first_query_larger_than_the_whole_budget_is_refused(ledger: AuthorizationLedger) -> None:
    """A first query over max_subjects raises and creates no ledger row."""
    with pytest.raises(BudgetExhaustedError, match="exceeds the 100 left"):
        ledger.charge(Budget("t6", 5, 100), 101)
    assert ledger.usage("t6") is None


def test_refusals_persist_across_a_restart(tmp_path: Path) -> None:
    """An exhausted token stays exhausted for a new ledger object on the same file."""
    token = Budget("t7", max_queries=1, max_subjects=10)
    with AuthorizationLedger(tmp_path / "c.db") as first:
        first.charge(token, 1)
    with AuthorizationLedger(tmp_path / "c.db") as second, pytest.raises(BudgetExhaustedError):
        second.charge(token, 1)


@pytest.mark.parametrize("subjects", [0, -1, True, 1.5, "3"])
def test_subject_count_must_be_a_positive_integer(
    ledger: AuthorizationLedger, subjects: object
) -> None:
    """A subject count that is not a positive int raises InvalidInputError and records nothing."""
    with pytest.raises(InvalidInputError):
        ledger.charge(Budget("t8", 5, 5), subjects)  # type: ignore[arg-type]
    assert ledger.usage("t8") is None


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    """Opening a ledger on a file that is not a SQLite database raises PreconditionError."""
    bogus = tmp_path / "not.db"
    bogus.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(PreconditionError, match=r"not\.db"):
        AuthorizationLedger(bogus)


def test_a_closed_ledger_refuses_to_charge(tmp_path: Path) -> None:
    """Charging a closed ledger raises PreconditionError instead of silently dropping the use."""
    led = AuthorizationLedger(tmp_path / "c.db")
    led.close()
    with pytest.raises(PreconditionError):
        led.charge(Budget("t9", 1, 1), 1)


def test_a_spent_subject_budget_refuses_even_one_subject(ledger: AuthorizationLedger) -> None:
    """With queries left but no subjects left, a one-subject query is refused."""
    token = Budget("t10", max_queries=5, max_subjects=10)
    ledger.charge(token, 10)
    with pytest.raises(BudgetExhaustedError, match="query of 1 subjects exceeds the 0 left"):
        ledger.charge(token, 1)
    assert ledger.usage("t10") == LedgerEntry(1, 10, 4, 0)


def test_a_token_with_no_queries_is_refused_at_once(ledger: AuthorizationLedger) -> None:
    """Claims with max_queries=0 are refused on the first charge."""
    with pytest.raises(BudgetExhaustedError, match="has used 0 of 0 queries"):
        ledger.charge(Budget("t11", 0, 10), 1)


def test_a_directory_is_not_a_ledger(tmp_path: Path) -> None:
    """A db path that is a directory raises PreconditionError."""
    with pytest.raises(PreconditionError, match="cannot open the database"):
        AuthorizationLedger(tmp_path)


def test_a_foreign_table_of_the_same_name_is_refused(tmp_path: Path) -> None:
    """An existing authorization_ledger table with other columns raises PreconditionError."""
    db = tmp_path / "c.db"
    conn = sqlite3.connect(db)
    try:
        conn.execute("CREATE TABLE authorization_ledger (token_id TEXT, note TEXT)")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(PreconditionError, match="is not an authorization ledger"):
        AuthorizationLedger(db)


# Replays of answered requests

REQUEST = RequestKey(
    sha256=bytes(range(32)), point_count=5, mode="membership", recipe="tin_v1", epoch_id="e1"
)


def test_a_replay_of_an_answered_request_is_not_charged(ledger: AuthorizationLedger) -> None:
    """Once answered in full, the same request is free under the same token, even with no
    budget left; it was charged once."""
    token = Budget("r1", max_queries=1, max_subjects=5)
    assert ledger.charge(token, 5, replay_of=REQUEST) == LedgerEntry(1, 5, 0, 0)
    ledger.record_answered("r1", REQUEST)
    assert ledger.charge(token, 5, replay_of=REQUEST) == LedgerEntry(1, 5, 0, 0, replayed=True)
    assert ledger.usage("r1") == LedgerEntry(1, 5, 0, 0)


def test_a_replay_that_differs_in_anything_is_a_new_charged_query(
    ledger: AuthorizationLedger,
) -> None:
    token = Budget("r2", max_queries=10, max_subjects=100)
    ledger.charge(token, 5)
    ledger.record_answered("r2", REQUEST)
    variants = [
        RequestKey(bytes(32), 5, "membership", "tin_v1", "e1"),
        RequestKey(REQUEST.sha256, 6, "membership", "tin_v1", "e1"),
        RequestKey(REQUEST.sha256, 5, "cardinality", "tin_v1", "e1"),
        RequestKey(REQUEST.sha256, 5, "membership", "name_dob_v1", "e1"),
        RequestKey(REQUEST.sha256, 5, "membership", "tin_v1", "e2"),
    ]
    for used, variant in enumerate(variants, start=2):
        entry = ledger.charge(token, variant.point_count, replay_of=variant)
        assert not entry.replayed
        assert entry.queries_used == used
    other = Budget("r3", max_queries=1, max_subjects=100)
    assert not ledger.charge(other, 5, replay_of=REQUEST).replayed
    with pytest.raises(BudgetExhaustedError):
        ledger.charge(other, 5, replay_of=REQUEST)


def test_answered_requests_survive_a_restart(tmp_path: Path) -> None:
    token = Budget("r4", max_queries=1, max_subjects=5)
    with AuthorizationLedger(tmp_path / "c.db") as first:
        first.charge(token, 5)
        first.record_answered("r4", REQUEST)
        first.record_answered("r4", REQUEST)
    with AuthorizationLedger(tmp_path / "c.db") as second:
        assert second.charge(token, 5, replay_of=REQUEST).replayed


def test_a_request_digest_is_32_bytes() -> None:
    with pytest.raises(InvalidInputError, match="32 bytes"):
        RequestKey(b"short", 1, "membership", "tin_v1", "e1")


def test_uncharged_replays_are_bounded_per_token(ledger: AuthorizationLedger) -> None:
    """Each replay costs curve work: with max_replays=2 the third is refused, counted in
    the same transaction; another token has its own count."""
    token = Budget("r5", max_queries=1, max_subjects=5)
    ledger.charge(token, 5, replay_of=REQUEST)
    ledger.record_answered("r5", REQUEST)
    for _ in range(2):
        assert ledger.charge(token, 5, replay_of=REQUEST, max_replays=2).replayed
    with pytest.raises(BudgetExhaustedError, match="2 uncharged replays"):
        ledger.charge(token, 5, replay_of=REQUEST, max_replays=2)
    assert ledger.uses("r5", REPLAY) == 2
    other = Budget("r6", max_queries=2, max_subjects=10)
    ledger.charge(other, 5)
    ledger.record_answered("r6", REQUEST)
    assert ledger.charge(other, 5, replay_of=REQUEST, max_replays=2).replayed


def test_counted_uses_are_bounded_and_leave_the_budget_alone(ledger: AuthorizationLedger) -> None:
    token = Budget("u1", max_queries=3, max_subjects=30)
    for used in (1, 2):
        entry = ledger.count_use(token, "classic_setup", 2, label="classic setups")
        assert entry == LedgerEntry(0, 0, 3, 30)
        assert ledger.uses("u1", "classic_setup") == used
    with pytest.raises(BudgetExhaustedError, match="2 classic setups"):
        ledger.count_use(token, "classic_setup", 2, label="classic setups")
    assert ledger.usage("u1") is None


def test_what_record_writes_commits_with_the_charge_or_not_at_all(tmp_path: Path) -> None:
    """An audit entry written by ``record`` is in the charge's transaction: when it fails,
    the charge is rolled back too; when the charge is refused, no entry is written."""
    db = tmp_path / "custodian.sqlite"
    with AuthorizationLedger(db) as ledger, AuditLog(db, share=ledger) as audit:
        token = Budget("a1", max_queries=1, max_subjects=5)

        def failing(conn: sqlite3.Connection, entry: LedgerEntry) -> None:
            audit.append_in(conn, {"stage": "admitted"})
            raise RuntimeError("the audit write failed")

        with pytest.raises(RuntimeError):
            ledger.charge(token, 5, record=failing)
        assert ledger.usage("a1") is None and audit.head()[0] == 0

        ledger.charge(token, 5, record=lambda conn, e: audit.append_in(conn, {"q": e.queries_used}))
        assert [e.event_data() for e in audit.entries()] == [{"q": 1}]
        with pytest.raises(BudgetExhaustedError):
            ledger.charge(token, 1, record=lambda conn, e: audit.append_in(conn, {"q": 2}))
        assert audit.head()[0] == 1


def test_an_audit_entry_cannot_join_a_transaction_on_another_connection(tmp_path: Path) -> None:
    with (
        AuthorizationLedger(tmp_path / "c.sqlite") as ledger,
        AuditLog(tmp_path / "c.sqlite") as log,
    ):
        with pytest.raises(PreconditionError, match="own file"):
            ledger.charge(Budget("x", 1, 1), 1, record=lambda conn, e: log.append_in(conn, {}))
        assert ledger.usage("x") is None
