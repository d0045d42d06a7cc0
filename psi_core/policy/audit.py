"""A hash-chained, append-only audit log in SQLite.

Each entry is ``(seq, time, event, prev_hash, hash)``: ``seq`` counts from 1 with no gaps,
``time`` is UTC ISO-8601 with microseconds and a ``Z``, ``event`` is canonical JSON
(sorted keys, no spaces, UTF-8 kept as is), ``prev_hash`` is the previous entry's hash (64
zero hex digits for entry 1) and ``hash`` is SHA-256, in lowercase hex, over::

    b"psi.v1.AuditEntry\\x00" || u64be(seq)
        || u32be(len(time)) || time || u32be(len(event)) || event || prev_hash (32 bytes)

with ``time`` and ``event`` UTF-8 encoded. Appends run in ``BEGIN IMMEDIATE`` transactions
(and under a lock within a process), so concurrent writers in threads or processes never
fork the chain.

What :meth:`AuditLog.verify` finds, and what it cannot:

- an edited event, time or hash, a deleted entry, two entries swapped, an entry inserted
  in the middle: always, at the first ``seq`` where the stored chain is inconsistent;
- entries removed from the *end*, or the whole log rewritten with freshly computed hashes:
  only against a head ``(seq, hash)`` kept somewhere the writer of the log cannot change
  (:meth:`AuditLog.head`, printed in every transparency export by
  :meth:`AuditLog.export_summary`); pass it as ``verify(expected_head=...)``.

The hash is unkeyed on purpose, so anyone holding the log can check it; the price is the
second point above. The table may share its SQLite file with other tables.

A request that is charged before it is answered leaves two entries with the same
``request`` id: one with ``"stage": "admitted"``, written in the very transaction that
charged it (:meth:`AuditLog.append_in`), and one with its outcome once it ends. A crash in
between leaves the admitted entry alone: the chain is intact, and :meth:`AuditLog.verify`
lists it in ``unfinished`` so that the charge is never without its audit entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psi_core.errors import InvalidInputError, PreconditionError
from psi_core.io.atomic import utc_timestamp, write_file_atomically
from psi_core.policy.sqlite import SqliteFile

__all__ = [
    "ADMITTED",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditVerification",
    "canonical_event_json",
    "entry_hash",
]

GENESIS_HASH = "0" * 64
_DOMAIN = b"psi.v1.AuditEntry\x00"
_TABLE_NAME = re.compile(r"(?!(?i:sqlite_))[A-Za-z_][A-Za-z0-9_]{0,62}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COLUMNS = ("seq", "time", "event", "prev_hash", "hash")
_PAGE = 1000
_MAX_LABEL = 64
_MAX_CASE_ID = 128
_SUMMARY_FORMAT = "psi.v1.AuditSummary"
#: ``stage`` of the entry written with a charge, before the request is answered.
ADMITTED = "admitted"


@dataclass(frozen=True)
class AuditEntry:
    """One stored entry; ``event`` is the canonical JSON text that was hashed."""

    seq: int
    time: str
    event: str
    prev_hash: str
    hash: str

    def event_data(self) -> dict[str, object]:
        """The event decoded from its JSON. Raises :class:`InvalidInputError` if the stored
        text is not a JSON object (a tampered entry)."""
        try:
            data = json.loads(self.event)
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise InvalidInputError(f"audit entry {self.seq} does not hold a JSON object")
        return data


@dataclass(frozen=True)
class AuditVerification:
    """Result of :meth:`AuditLog.verify`.

    ``entries_checked`` counts entries that verified before the first problem (all of
    them when ``ok``). ``first_bad_seq`` is the first seq at which the chain is
    inconsistent: a missing entry's seq, an entry whose hash or link is wrong, or the
    first entry cut from the tail.
    """

    ok: bool
    entries_checked: int
    first_bad_seq: int | None
    reason: str | None
    #: Seqs of "admitted" entries with no outcome entry for their request after them: a
    #: request charged and then cut off (a crash, a kill) or still running. A warning, not
    #: a broken chain.
    unfinished: tuple[int, ...] = ()


def canonical_event_json(event: Mapping[str, object]) -> str:
    """The canonical JSON text of an event: sorted keys, ``(",", ":")`` separators,
    non-ASCII kept, no NaN or infinity.

    Raises :class:`InvalidInputError` if ``event`` is not a mapping with string keys whose
    values JSON can represent.
    """
    if not isinstance(event, Mapping):
        raise InvalidInputError("an audit event must be a mapping of field names to values")
    if not all(isinstance(k, str) for k in event):
        raise InvalidInputError("audit event field names must be strings")
    try:
        return json.dumps(
            dict(event),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError):
        raise InvalidInputError(
            "audit event values must be strings, finite numbers, booleans, null, lists or "
            "objects with string keys"
        ) from None


def entry_hash(seq: int, time: str, event_json: str, prev_hash: str) -> str:
    """SHA-256 hex of an entry's canonical encoding (see the module doc).

    Raises :class:`InvalidInputError` if ``seq`` is outside ``0..2**64-1`` or
    ``prev_hash`` is not 64 lowercase hex digits.
    """
    if not 0 <= seq < 2**64:
        raise InvalidInputError("audit seq must fit in 64 unsigned bits")
    if _HEX64.fullmatch(prev_hash) is None:
        raise InvalidInputError("prev_hash must be 64 lowercase hex digits")
    t = time.encode("utf-8")
    e = event_json.encode("utf-8")
    h = hashlib.sha256(_DOMAIN)
    h.update(struct.pack(">Q", seq))
    h.update(struct.pack(">I", len(t)) + t)
    h.update(struct.pack(">I", len(e)) + e)
    h.update(bytes.fromhex(prev_hash))
    return h.hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditLog(SqliteFile):
    """An append-only, hash-chained log in one table of a SQLite file.

    Safe to share between threads; several processes may append to the same file. Use as
    a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        table: str = "audit",
        clock: Callable[[], dt.datetime] = _utc_now,
        share: SqliteFile | None = None,
    ) -> None:
        """Open (or create) table ``table`` in ``db_path``; other tables are left alone.

        ``clock`` returns the (timezone-aware) time stamped on each entry. Raises
        :class:`InvalidInputError` for a table name that is not a plain identifier and
        :class:`PreconditionError` if the file cannot be opened or the table exists with
        other columns. ``share`` is another store on the same file whose connection this
        log uses, so that :meth:`append_in` can write in that store's transactions.
        """
        if not isinstance(table, str) or _TABLE_NAME.fullmatch(table) is None:
            raise InvalidInputError(
                "audit table name must be a letter or '_' followed by up to 62 letters, "
                "digits or '_', and must not start with 'sqlite_'"
            )
        super().__init__(db_path, share=share)
        self._table = table
        self._clock = clock
        self._create_table(
            table,
            """seq INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            event TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL""",
            "an audit log",
        )

    def append(self, event: Mapping[str, object]) -> AuditEntry:
        """Append ``event`` as the next entry and return it.

        Raises :class:`InvalidInputError` if the event cannot be encoded
        (:func:`canonical_event_json`) and :class:`PreconditionError` if the database
        cannot be written (after waiting up to 30 s for other writers).
        """
        try:
            with self._transaction() as conn:
                return self.append_in(conn, event)
        except sqlite3.Error as exc:
            raise PreconditionError(
                f"cannot append to the audit log in {self._path}: {exc}"
            ) from exc

    def append_in(self, conn: sqlite3.Connection, event: Mapping[str, object]) -> AuditEntry:
        """Append ``event`` inside a transaction already open on this log's connection
        (one shared with ``share``), so that it commits with whatever else that
        transaction writes, or not at all."""
        if conn is not self._conn:
            raise PreconditionError("an audit entry can join only a transaction on its own file")
        event_json = canonical_event_json(event)
        last = conn.execute(
            f'SELECT seq, hash FROM "{self._table}" ORDER BY seq DESC LIMIT 1'
        ).fetchone()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        if not isinstance(prev_hash, str) or _HEX64.fullmatch(prev_hash) is None:
            raise PreconditionError(
                f"the last audit entry ({seq - 1}) in {self._path} has a malformed "
                "hash; run the audit verify command before appending"
            )
        time = _iso(self._clock())
        digest = entry_hash(seq, time, event_json, prev_hash)
        conn.execute(
            f'INSERT INTO "{self._table}" (seq, time, event, prev_hash, hash) '
            "VALUES (?, ?, ?, ?, ?)",
            (seq, time, event_json, prev_hash, digest),
        )
        return AuditEntry(seq, time, event_json, prev_hash, digest)

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry; ``(0, GENESIS_HASH)`` for an empty log.

        Keep it somewhere the log's writer cannot edit to detect tail truncation later.
        """
        with self._lock:
            last = self._conn.execute(
                f'SELECT seq, hash FROM "{self._table}" ORDER BY seq DESC LIMIT 1'
            ).fetchone()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        after = -(2**63)
        sql = (
            f'SELECT seq, time, event, prev_hash, hash FROM "{self._table}" '
            "WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        while True:
            with self._lock:
                page = self._conn.execute(sql, (after, _PAGE)).fetchall()
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def entries(self) -> Iterator[AuditEntry]:
        """Every entry in seq order, read in pages (appends made meanwhile may appear).

        Entries are returned as stored, without verification.
        """
        for seq, time, event, prev_hash, digest in self._rows():
            yield AuditEntry(seq, time, event, prev_hash, digest)

    def verify(self, expected_head: tuple[int, str] | None = None) -> AuditVerification:
        """Check the whole chain, and that it still contains ``expected_head`` if given.

        Never raises for a tampered log; the result says where the first problem is (see
        :class:`AuditVerification` and the module doc).
        """
        prev_hash = GENESIS_HASH
        expected = 1
        checked = 0
        anchor_seen: str | None = None
        anchor_seq = expected_head[0] if expected_head is not None else None
        open_requests: dict[str, int] = {}

        def bad(seq: int, reason: str) -> AuditVerification:
            return AuditVerification(False, checked, seq, reason)

        for seq, time, event, stored_prev, digest in self._rows():
            if seq > expected:
                return bad(expected, f"entry {expected} is missing (the next entry is {seq})")
            if seq < expected:
                return bad(seq, f"entry {seq} is out of sequence (expected {expected})")
            if not all(isinstance(v, str) for v in (time, event, stored_prev, digest)):
                return bad(seq, f"entry {seq} has a field of the wrong type")
            if stored_prev != prev_hash:
                return bad(
                    seq,
                    f"entry {seq} does not link to entry {seq - 1}: its prev_hash differs "
                    "from that entry's hash (an entry was removed, inserted or moved)",
                )
            if entry_hash(seq, time, event, stored_prev) != digest:
                return bad(
                    seq, f"entry {seq} does not match its hash (its contents or hash was edited)"
                )
            if seq == anchor_seq:
                anchor_seen = digest
            _track_request(open_requests, seq, event)
            prev_hash = digest
            expected += 1
            checked += 1

        if expected_head is not None:
            head_seq, head_hash = expected_head
            last = expected - 1
            if head_seq > last:
                return bad(
                    last + 1,
                    f"the log ends at entry {last} but the anchored head is entry {head_seq}: "
                    f"entries {last + 1} to {head_seq} were removed",
                )
            if head_seq == 0:
                anchor_seen = GENESIS_HASH
            if anchor_seen != head_hash:
                return bad(
                    head_seq,
                    f"entry {head_seq} differs from the anchored head: the log was rewritten "
                    f"up to entry {head_seq}",
                )
        return AuditVerification(True, checked, None, None, tuple(open_requests.values()))

    def export_summary(self, out_path: str | os.PathLike[str]) -> dict[str, object]:
        """Write a JSON transparency summary to ``out_path`` and return it.

        Per case id: entries, queries (entries that carry a ``subjects`` count) and how many
        of them were uncharged replays (``charged`` false), total subjects and subjects per
        outcome, counts per ``kind``, ``mode`` and ``outcome``, first and last time. Also the
        chain head (anchor it elsewhere) and the result of :meth:`verify`. Only the keys
        ``case_id``, ``subjects``, ``mode``, ``outcome``, ``kind`` and ``charged`` are read,
        so no other field of an event (subject data included) can reach the summary; a label
        that is not a short printable string is counted as ``"(other)"``. The file is
        replaced atomically.
        """
        head_seq, head_hash = self.head()
        verification = self.verify()
        unfinished = set(verification.unfinished)
        cases: dict[str | None, _CaseSummary] = {}
        total = 0
        for entry in self.entries():
            if entry.seq > head_seq:
                break
            total += 1
            try:
                event = entry.event_data()
            except InvalidInputError:
                event = {}
            case_id = _label(event.get("case_id"), _MAX_CASE_ID)
            case = cases.get(case_id)
            if case is None:
                case = cases[case_id] = _CaseSummary(case_id, entry.time)
            case.add(entry.time, event, unfinished=entry.seq in unfinished)

        summary: dict[str, object] = {
            "format": _SUMMARY_FORMAT,
            "generated_at": _iso(self._clock()),
            "table": self._table,
            "head": {"seq": head_seq, "hash": head_hash},
            "entries": total,
            "unfinished": len(unfinished),
            "chain": {
                "ok": verification.ok,
                "entries_checked": verification.entries_checked,
                "first_bad_seq": verification.first_bad_seq,
                "reason": verification.reason,
                "unfinished_seqs": sorted(unfinished),
            },
            "cases": [
                cases[k].as_json() for k in sorted(cases, key=lambda c: (c is not None, c or ""))
            ],
        }
        _write_json(Path(out_path), summary)
        return summary


def _iso(moment: dt.datetime) -> str:
    try:
        return utc_timestamp(moment)
    except ValueError:
        raise InvalidInputError("the audit clock must return timezone-aware datetimes") from None


def _track_request(open_requests: dict[str, int], seq: int, event_json: str) -> None:
    """Note an admitted request as open, and close it when its outcome entry comes."""
    if '"request":' not in event_json:
        return
    try:
        event = json.loads(event_json)
    except json.JSONDecodeError:
        return
    if not isinstance(event, dict) or not isinstance(event.get("request"), str):
        return
    if event.get("stage") == ADMITTED:
        open_requests[event["request"]] = seq
    else:
        open_requests.pop(event["request"], None)


def _label(value: object, limit: int = _MAX_LABEL) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= limit and value.isprintable():
        return value
    return "(other)"


@dataclass
class _CaseSummary:
    case_id: str | None
    first_time: str
    last_time: str = ""
    entries: int = 0
    queries: int = 0
    #: Requests charged then never finished (no outcome entry: a crash between the two).
    unfinished: int = 0
    uncharged_replays: int = 0
    subjects: int = 0
    subjects_by_outcome: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, time: str, event: Mapping[str, object], *, unfinished: bool = False) -> None:
        self.entries += 1
        self.last_time = time
        if event.get("stage") == ADMITTED:
            self.unfinished += unfinished
            return
        outcome = _label(event.get("outcome"))
        for counts, key in ((self.kinds, "kind"), (self.modes, "mode"), (self.outcomes, "outcome")):
            label = _label(event.get(key))
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
        subjects = event.get("subjects")
        if isinstance(subjects, int) and not isinstance(subjects, bool) and subjects >= 0:
            self.queries += 1
            self.subjects += subjects
            if event.get("charged") is False:
                self.uncharged_replays += 1
            key = outcome or "(none)"
            self.subjects_by_outcome[key] = self.subjects_by_outcome.get(key, 0) + subjects

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_file_atomically(path, text.encode("utf-8"), 0o644)
