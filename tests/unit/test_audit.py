"""Tests of the hash-chained audit log (psi_core.policy.audit)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from psi_core.errors import InvalidInputError, PreconditionError
from psi_core.policy import GENESIS_HASH, AuditLog, canonical_event_json, entry_hash
from psi_core.policy import audit as audit_module

THREADS = 16
SUBJECT_NAMES = ("Jose Garcia", "Zoë Ñúñez", "S-000123")


def _clock() -> Callable[[], dt.datetime]:
    start = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
    counter = itertools.count()
    lock = threading.Lock()

    def now() -> dt.datetime:
        with lock:
            return start + dt.timedelta(seconds=next(counter))

    return now


def _event(i: int) -> dict[str, object]:
    return {
        "kind": "evaluate",
        "case_id": "CASE-A" if i % 3 else "CASE-B",
        "subjects": 10 * i,
        "mode": "membership" if i % 2 else "cardinality",
        "outcome": "ok" if i != 7 else "budget_exhausted",
        "token_id": f"tok{i}",
        "subject_ids": [SUBJECT_NAMES[i % 3]],
        "note": SUBJECT_NAMES[(i + 1) % 3],
    }


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def log(db: Path) -> Iterator[AuditLog]:
    with AuditLog(db, clock=_clock()) as audit:
        for i in range(1, 11):
            audit.append(_event(i))
        yield audit


def _sql(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db)
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def _row(db: Path, seq: int) -> tuple[str, str, str, str]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT time, event, prev_hash, hash FROM audit WHERE seq = ?", (seq,)
        ).fetchone()
    finally:
        conn.close()


# Positive cases


def test_an_empty_log_verifies_and_has_the_genesis_head(db: Path) -> None:
    """A new log verifies with zero entries and its head is (0, 64 zero digits)."""
    with AuditLog(db) as audit:
        assert audit.head() == (0, "0" * 64)
        result = audit.verify(expected_head=(0, GENESIS_HASH))
        assert (result.ok, result.entries_checked) == (True, 0)


def test_append_returns_a_linked_hashed_entry(db: Path) -> None:
    """Entries count from 1, stamp UTC ISO time, link to the previous hash and hash correctly."""
    with AuditLog(db, clock=_clock()) as audit:
        first = audit.append({"b": 1, "a": "é"})
        second = audit.append({"kind": "x"})
    assert (first.seq, second.seq) == (1, 2)
    assert first.time == "2025-03-01T09:00:00.000000Z"
    assert first.event == '{"a":"é","b":1}'
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.hash == entry_hash(1, first.time, first.event, GENESIS_HASH)


def test_entry_hash_matches_the_documented_encoding() -> None:
    """entry_hash is SHA-256 over the domain, u64 seq, length-prefixed time and event, raw prev."""
    time, event = "2025-03-01T09:00:00.000000Z", '{"k":"ü"}'
    expected = hashlib.sha256(
        b"psi.v1.AuditEntry\x00"
        + struct.pack(">Q", 7)
        + struct.pack(">I", len(time.encode()))
        + time.encode()
        + struct.pack(">I", len(event.encode()))
        + event.encode()
        + bytes.fromhex("ab" * 32)
    ).hexdigest()
    assert entry_hash(7, time, event, "ab" * 32) == expected


def test_canonical_json_is_sorted_compact_and_keeps_unicode() -> None:
    """Events are encoded with sorted keys, no spaces and non-ASCII kept as is."""
    assert canonical_event_json({"z": [1, 2], "a": {"y": "Ñ", "x": None}}) == (
        '{"a":{"x":null,"y":"Ñ"},"z":[1,2]}'
    )


def test_an_untouched_log_verifies(log: AuditLog) -> None:
    """Ten honest appends verify, with or without the current head anchored."""
    assert log.verify().ok
    result = log.verify(expected_head=log.head())
    assert (result.ok, result.entries_checked, result.first_bad_seq) == (True, 10, None)


def test_an_anchor_from_the_past_still_verifies(log: AuditLog) -> None:
    """A head anchored earlier still verifies after further honest appends."""
    anchor = log.head()
    log.append({"kind": "later"})
    assert log.verify(expected_head=anchor).ok


def test_entries_are_returned_in_order_across_pages(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """entries() yields every entry in seq order, also when read in several pages."""
    monkeypatch.setattr(audit_module, "_PAGE", 3)
    entries = list(log.entries())
    assert [e.seq for e in entries] == list(range(1, 11))
    assert entries[3].event_data()["token_id"] == "tok4"
    assert log.verify().ok


def test_concurrent_appends_form_one_chain(db: Path) -> None:
    """16 threads appending at once yield seq 1..N with a valid chain and no lost entry."""
    with AuditLog(db) as audit:
        barrier = threading.Barrier(THREADS)

        def work(i: int) -> None:
            barrier.wait()
            for j in range(5):
                audit.append({"thread": i, "j": j})

        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result = audit.verify()
        assert (result.ok, result.entries_checked) == (True, THREADS * 5)
        assert audit.head()[0] == THREADS * 5


def test_concurrent_appends_through_separate_connections_form_one_chain(db: Path) -> None:
    """16 AuditLog objects on one file (as separate processes would be) never fork the chain."""
    logs = [AuditLog(db) for _ in range(THREADS)]
    try:
        barrier = threading.Barrier(THREADS)

        def work(i: int) -> None:
            barrier.wait()
            for j in range(3):
                logs[i].append({"writer": i, "j": j})

        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result = logs[0].verify()
        assert (result.ok, result.entries_checked) == (True, THREADS * 3)
    finally:
        for audit in logs:
            audit.close()


def test_the_chain_continues_after_a_restart(db: Path) -> None:
    """A new AuditLog on the same file appends after the last entry and the chain verifies."""
    with AuditLog(db) as first:
        first.append({"kind": "a"})
        head = first.head()
    with AuditLog(db) as second:
        entry = second.append({"kind": "b"})
        assert (entry.seq, entry.prev_hash) == (2, head[1])
        assert second.verify(expected_head=head).ok


def test_two_tables_in_one_file_are_independent(db: Path) -> None:
    """Logs in different tables of one SQLite file keep separate chains."""
    with AuditLog(db, table="custodian_audit") as a, AuditLog(db, table="agency_audit") as b:
        a.append({"kind": "a"})
        a.append({"kind": "a"})
        b.append({"kind": "b"})
        assert (a.head()[0], b.head()[0]) == (2, 1)
        assert a.verify().ok
        assert b.verify().ok


def test_export_summary_groups_per_case(log: AuditLog, tmp_path: Path) -> None:
    """The summary counts queries, subjects, modes, outcomes and kinds per case, plus the head."""
    out = tmp_path / "export" / "summary.json"
    summary = log.export_summary(out)
    assert json.loads(out.read_text(encoding="utf-8")) == summary
    assert summary["head"] == {"seq": 10, "hash": log.head()[1]}
    assert summary["chain"]["ok"] is True  # type: ignore[index]
    cases = {c["case_id"]: c for c in summary["cases"]}  # type: ignore[attr-defined]
    a, b = cases["CASE-A"], cases["CASE-B"]
    assert (a["queries"], a["subjects"]) == (7, 10 * (1 + 2 + 4 + 5 + 7 + 8 + 10))
    assert (b["queries"], b["subjects"]) == (3, 10 * (3 + 6 + 9))
    assert a["outcomes"] == {"ok": 6, "budget_exhausted": 1}
    assert a["subjects_by_outcome"]["budget_exhausted"] == 70
    assert b["modes"] == {"cardinality": 1, "membership": 2}
    assert a["kinds"] == {"evaluate": 7}
    assert a["first_time"] == "2025-03-01T09:00:00.000000Z"
    assert a["last_time"] == "2025-03-01T09:00:09.000000Z"


# Negative cases: every kind of tampering is found at the right place


def test_an_edited_event_is_found(log: AuditLog, db: Path) -> None:
    """Changing one entry's event makes verify report that entry."""
    _sql(db, ("UPDATE audit SET event = ? WHERE seq = 4", ('{"kind":"nothing to see"}',)))
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.entries_checked) == (False, 4, 3)
    assert "does not match its hash" in (result.reason or "")


def test_an_edited_time_is_found(log: AuditLog, db: Path) -> None:
    """Changing one entry's time makes verify report that entry."""
    _sql(db, ("UPDATE audit SET time = ? WHERE seq = 6", ("2020-01-01T00:00:00.000000Z",)))
    assert log.verify().first_bad_seq == 6


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(log: AuditLog, db: Path) -> None:
    """Editing an event and recomputing its hash is found at the following entry's link."""
    time, _, prev, _ = _row(db, 4)
    forged = '{"kind":"benign"}'
    _sql(
        db,
        (
            "UPDATE audit SET event = ?, hash = ? WHERE seq = 4",
            (forged, entry_hash(4, time, forged, prev)),
        ),
    )
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "does not link to entry 4" in (result.reason or "")


def test_an_edited_hash_is_found(log: AuditLog, db: Path) -> None:
    """Changing one entry's stored hash makes verify report that entry."""
    _sql(db, ("UPDATE audit SET hash = ? WHERE seq = 4", ("f" * 64,)))
    assert log.verify().first_bad_seq == 4


def test_a_deleted_middle_entry_is_found(log: AuditLog, db: Path) -> None:
    """Deleting entry 5 makes verify report entry 5 as missing."""
    _sql(db, ("DELETE FROM audit WHERE seq = 5", ()))
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.entries_checked) == (False, 5, 4)
    assert "entry 5 is missing" in (result.reason or "")


def test_a_deletion_hidden_by_renumbering_is_found(log: AuditLog, db: Path) -> None:
    """Deleting entry 5 and renumbering the rest down is found at 5."""
    _sql(
        db,
        ("DELETE FROM audit WHERE seq = 5", ()),
        ("UPDATE audit SET seq = seq - 1 WHERE seq > 5", ()),
    )
    assert log.verify().first_bad_seq == 5


def test_a_deleted_first_entry_is_found(log: AuditLog, db: Path) -> None:
    """Deleting entry 1 makes verify report entry 1 as missing."""
    _sql(db, ("DELETE FROM audit WHERE seq = 1", ()))
    assert log.verify().first_bad_seq == 1


def test_two_swapped_entries_are_found(log: AuditLog, db: Path) -> None:
    """Swapping entries 3 and 6 (their seq numbers) makes verify report entry 3."""
    _sql(
        db,
        ("UPDATE audit SET seq = -3 WHERE seq = 3", ()),
        ("UPDATE audit SET seq = 3 WHERE seq = 6", ()),
        ("UPDATE audit SET seq = 6 WHERE seq = -3", ()),
    )
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_an_inserted_forged_entry_is_found(log: AuditLog, db: Path) -> None:
    """A forged entry with a correct hash inserted at 5 is found where the chain breaks: 6."""
    _, _, _, hash4 = _row(db, 4)
    time, event = "2025-03-01T09:00:04.500000Z", '{"case_id":"CASE-A","kind":"evaluate"}'
    conn = sqlite3.connect(db)
    try:
        for seq in range(10, 4, -1):
            conn.execute("UPDATE audit SET seq = ? WHERE seq = ?", (seq + 1, seq))
        conn.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?)",
            (5, time, event, hash4, entry_hash(5, time, event, hash4)),
        )
        conn.commit()
    finally:
        conn.close()
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.entries_checked) == (False, 6, 5)


def test_tail_truncation_is_found_only_against_an_anchored_head(log: AuditLog, db: Path) -> None:
    """Deleting entries 9-10 passes a bare verify but fails against the anchored head at 9."""
    anchor = log.head()
    _sql(db, ("DELETE FROM audit WHERE seq >= 9", ()))
    assert log.verify().ok
    result = log.verify(expected_head=anchor)
    assert (result.ok, result.first_bad_seq, result.entries_checked) == (False, 9, 8)
    assert "entries 9 to 10 were removed" in (result.reason or "")


def test_a_fully_rewritten_chain_is_found_against_an_anchored_head(log: AuditLog, db: Path) -> None:
    """Rewriting an event and recomputing every later hash is caught only by the anchor."""
    anchor = log.head()
    entries = list(log.entries())
    prev = entries[1].hash
    conn = sqlite3.connect(db)
    try:
        for entry in entries[2:]:
            event = '{"kind":"rewritten"}' if entry.seq == 3 else entry.event
            digest = entry_hash(entry.seq, entry.time, event, prev)
            conn.execute(
                "UPDATE audit SET event = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (event, prev, digest, entry.seq),
            )
            prev = digest
        conn.commit()
    finally:
        conn.close()
    assert log.verify().ok
    result = log.verify(expected_head=anchor)
    assert (result.ok, result.first_bad_seq) == (False, 10)


def test_export_contains_no_subject_data(log: AuditLog, tmp_path: Path) -> None:
    """The transparency export holds no subject names or ids and no event field beyond counts."""
    out = tmp_path / "summary.json"
    log.export_summary(out)
    text = out.read_text(encoding="utf-8")
    for secret in (*SUBJECT_NAMES, "subject_ids", "note", "tok1"):
        assert secret not in text


def test_export_does_not_carry_subject_data_in_label_fields(db: Path, tmp_path: Path) -> None:
    """Lists or long text placed in mode/outcome/kind are counted as '(other)', not copied."""
    with AuditLog(db) as audit:
        audit.append({"case_id": "C", "mode": ["Jose Garcia"], "outcome": "x" * 500, "kind": 3})
        summary = audit.export_summary(tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text(encoding="utf-8")
    assert "Jose" not in text
    assert "xxxx" not in text
    case = summary["cases"][0]  # type: ignore[index]
    assert case["modes"] == {"(other)": 1}
    assert case["kinds"] == {"(other)": 1}


def test_export_reports_a_broken_chain(log: AuditLog, db: Path, tmp_path: Path) -> None:
    """An export of a tampered log says the chain is not ok and where it breaks."""
    _sql(db, ("UPDATE audit SET event = ? WHERE seq = 2", ('{"kind":"x"}',)))
    summary = log.export_summary(tmp_path / "s.json")
    assert summary["chain"]["ok"] is False  # type: ignore[index]
    assert summary["chain"]["first_bad_seq"] == 2  # type: ignore[index]


@pytest.mark.parametrize(
    "event",
    [
        {"x": float("nan")},
        {"x": object()},
        {"x": b"bytes"},
        {1: "int key"},
        ["not", "a", "mapping"],
    ],
)
def test_unencodable_events_are_refused_and_not_appended(db: Path, event: object) -> None:
    """An event JSON cannot represent canonically raises InvalidInputError and adds no entry."""
    with AuditLog(db) as audit:
        with pytest.raises(InvalidInputError):
            audit.append(event)  # type: ignore[arg-type]
        assert audit.head() == (0, GENESIS_HASH)


@pytest.mark.parametrize("table", ["", "1abc", "audit; DROP TABLE x", "sqlite_master", "a-b"])
def test_unsafe_table_names_are_refused(db: Path, table: str) -> None:
    """A table name that is not a plain identifier raises InvalidInputError."""
    with pytest.raises(InvalidInputError):
        AuditLog(db, table=table)


def test_a_foreign_table_of_the_same_name_is_refused(db: Path) -> None:
    """An existing table with other columns raises PreconditionError instead of being used."""
    _sql(db, ("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT)", ()))
    with pytest.raises(PreconditionError, match="is not an audit log"):
        AuditLog(db, table="jobs")


def test_a_naive_clock_is_refused(db: Path) -> None:
    """A clock returning naive datetimes raises InvalidInputError and appends nothing."""
    with AuditLog(db, clock=lambda: dt.datetime(2025, 1, 1)) as audit:
        with pytest.raises(InvalidInputError):
            audit.append({"kind": "x"})
        assert audit.head()[0] == 0


def test_an_admitted_entry_without_outcome_is_reported_not_broken(db: Path, tmp_path: Path) -> None:
    """A request admitted (and charged) whose outcome entry never came is listed in
    ``unfinished``; the chain stays intact and the export counts it per case."""
    with AuditLog(db) as audit:
        audit.append({"kind": "evaluate", "request": "r1", "stage": "admitted", "case_id": "C"})
        audit.append({"kind": "evaluate", "request": "r1", "outcome": "OK", "case_id": "C"})
        cut = audit.append(
            {"kind": "evaluate", "request": "r2", "stage": "admitted", "case_id": "C"}
        )
        audit.append({"kind": "evaluate", "outcome": "UNAUTHENTICATED", "case_id": "C"})
        result = audit.verify()
        summary = audit.export_summary(tmp_path / "summary.json")
    assert result.ok and result.entries_checked == 4
    assert result.unfinished == (cut.seq,)
    assert summary["unfinished"] == 1
    (case,) = summary["cases"]
    assert case["unfinished"] == 1
    assert case["queries"] == 0, "neither admitted entries nor entries without subjects count"
    assert case["outcomes"] == {"OK": 1, "UNAUTHENTICATED": 1}
