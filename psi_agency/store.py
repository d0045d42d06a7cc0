"""The agency's SQLite store: query jobs, their subjects and their matches.

A query is written with all its subjects in one transaction before it is acknowledged,
so a restart finds every accepted query and re-runs the ones that had not finished.
Matches are written in the same transaction that marks the query SUCCEEDED: a query
is either done with all its matches or not done. A query's blinding scalar is kept only
while the query is unfinished, so that a re-run after a restart sends the same points
(and the custodian need not charge it again); it is deleted when the query ends. A query
that waits to be tried again (the custodian was unreachable, or the service stopped while
it ran) is QUEUED with ``waiting_reason`` saying why and ``attempts`` counting its tries.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from psi_core import faults
from psi_core.errors import InvalidInputError, NotFoundError
from psi_core.io import SUBJECT_COLUMNS, utc_timestamp
from psi_core.policy import SqliteFile
from psi_core.protocol import MatchRule

SUBJECT_FIELDS = SUBJECT_COLUMNS

RECEIVING, QUEUED, RUNNING = "RECEIVING", "QUEUED", "RUNNING"
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED})

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS queries (
    query_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    recipe TEXT NOT NULL, -- the rule id (psi_core.protocol.MatchRule.rule_id)
    authorization BLOB NOT NULL,
    case_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    subject_count INTEGER NOT NULL,
    keyed_count INTEGER NOT NULL DEFAULT 0,
    processed_count INTEGER NOT NULL DEFAULT 0,
    match_count INTEGER NOT NULL DEFAULT 0,
    epoch_id TEXT NOT NULL DEFAULT '',
    fp_per_subject REAL NOT NULL DEFAULT 0,
    fp_expected REAL NOT NULL DEFAULT 0,
    error_code TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '',
    timings TEXT NOT NULL DEFAULT '{{}}',
    waiting_reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    quality TEXT NOT NULL DEFAULT '{{}}',
    no_key_counts TEXT NOT NULL DEFAULT '{{}}',
    agency_backend TEXT NOT NULL DEFAULT '',
    custodian_backend TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS subjects (
    query_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    {", ".join(f"{name} TEXT NOT NULL" for name in SUBJECT_FIELDS)},
    PRIMARY KEY (query_id, seq),
    UNIQUE (query_id, subject_id)
);
CREATE TABLE IF NOT EXISTS blinding_keys (
    query_id TEXT PRIMARY KEY,
    scalar BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS matches (
    query_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    recipe TEXT NOT NULL, -- the recipes that matched, ';'-joined
    PRIMARY KEY (query_id, seq)
);
"""
#: Columns added after the first release, with their definitions, for older databases.
_ADDED_COLUMNS = {
    "waiting_reason": "TEXT NOT NULL DEFAULT ''",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "quality": "TEXT NOT NULL DEFAULT '{}'",
    "no_key_counts": "TEXT NOT NULL DEFAULT '{}'",
    "agency_backend": "TEXT NOT NULL DEFAULT ''",
    "custodian_backend": "TEXT NOT NULL DEFAULT ''",
}
_JSON_COLUMNS = ("timings", "quality", "no_key_counts")


def _now() -> str:
    return utc_timestamp(timespec="milliseconds")


def _query_update(query_id: str, fields: dict[str, object]) -> tuple[str, tuple[object, ...]]:
    """An UPDATE of ``queries`` setting ``fields`` (``timings`` and ``quality`` as dicts)
    and updated_at."""
    values = dict(fields, updated_at=_now())
    for name in _JSON_COLUMNS:
        if name in values:
            values[name] = json.dumps(values[name])
    assignments = ", ".join(f"{name} = ?" for name in values)
    return f"UPDATE queries SET {assignments} WHERE query_id = ?", (*values.values(), query_id)


@dataclass
class QueryRecord:
    query_id: str
    state: str
    mode: str
    #: The rule id: a recipe id alone, or e.g. ``any(name_dob_v1,tin_v1)``.
    recipe: str
    authorization: bytes
    case_id: str
    requested_by: str
    created_at: str
    updated_at: str
    subject_count: int
    keyed_count: int = 0
    processed_count: int = 0
    match_count: int = 0
    epoch_id: str = ""
    fp_per_subject: float = 0.0
    fp_expected: float = 0.0
    error_code: str = ""
    error_message: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    waiting_reason: str = ""
    attempts: int = 0
    agency_backend: str = ""
    custodian_backend: str = ""
    #: The expected false matches (``psi_agency.quality.estimate_quality``); empty until
    #: the query has counted its keys.
    quality: dict[str, object] = field(default_factory=dict)
    no_key_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per recipe, per reason code: subjects that gave no key."""

    @property
    def rule(self) -> MatchRule:
        return MatchRule.from_id(self.recipe)


def _record(columns: dict[str, object]) -> QueryRecord:
    for name in _JSON_COLUMNS:
        columns[name] = json.loads(str(columns[name]))
    return QueryRecord(**columns)  # type: ignore[arg-type]


class AgencyStore(SqliteFile):
    """Thread-safe access to the agency database (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._conn.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        with self._transaction() as conn:
            present = {row[1] for row in conn.execute("PRAGMA table_info(queries)")}
            for name, definition in _ADDED_COLUMNS.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE queries ADD COLUMN {name} {definition}")

    def begin_query(
        self,
        query_id: str,
        *,
        mode: str,
        recipe: str,
        authorization: bytes,
        case_id: str,
        requested_by: str,
    ) -> None:
        """Record a query that is still receiving subjects (state RECEIVING)."""
        now = _now()
        with self._lock:
            self._conn.execute(
                "INSERT INTO queries (query_id, state, mode, recipe, authorization, case_id,"
                " requested_by, created_at, updated_at, subject_count)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (query_id, RECEIVING, mode, recipe, authorization, case_id, requested_by, now, now),
            )

    def add_subjects(self, query_id: str, first_seq: int, subjects: list[dict[str, str]]) -> None:
        """Append one batch of subjects in one transaction; duplicate subject ids are refused."""
        placeholders = ", ".join("?" for _ in range(len(SUBJECT_FIELDS) + 2))
        rows = [
            (query_id, first_seq + i, *(subject.get(f, "") for f in SUBJECT_FIELDS))
            for i, subject in enumerate(subjects)
        ]
        try:
            with self._transaction() as conn:
                conn.executemany(f"INSERT INTO subjects VALUES ({placeholders})", rows)
        except sqlite3.IntegrityError as exc:
            raise InvalidInputError("subject_id values must be unique within a query") from exc

    def seal_query(self, query_id: str, subject_count: int) -> QueryRecord:
        """All subjects are stored: the query is QUEUED and will survive a restart."""
        self.update(query_id, state=QUEUED, subject_count=subject_count)
        return self.get(query_id)

    def discard_query(self, query_id: str) -> None:
        """Forget a query that was never acknowledged, with its subjects."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM subjects WHERE query_id = ?", (query_id,))
            conn.execute("DELETE FROM matches WHERE query_id = ?", (query_id,))
            conn.execute("DELETE FROM blinding_keys WHERE query_id = ?", (query_id,))
            conn.execute("DELETE FROM queries WHERE query_id = ?", (query_id,))

    def discard_unsealed(self) -> int:
        """Drop queries whose submission was cut off (never acknowledged to the caller)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT query_id FROM queries WHERE state = ?", (RECEIVING,)
            ).fetchall()
        for (query_id,) in rows:
            self.discard_query(query_id)
        return len(rows)

    def get(self, query_id: str) -> QueryRecord:
        with self._lock:
            cursor = self._conn.execute("SELECT * FROM queries WHERE query_id = ?", (query_id,))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        if row is None:
            raise NotFoundError("no query with that id")
        return _record(dict(zip(names, row, strict=True)))

    def list_queries(
        self,
        *,
        limit: int,
        state: str = "",
        case_id: str = "",
        after: tuple[str, str] | None = None,
    ) -> list[QueryRecord]:
        """Up to ``limit`` sealed queries, newest first (``created_at``, then ``query_id``),
        only in ``state`` / of ``case_id`` when given, strictly older than ``after``."""
        clauses, values = ["state != ?"], [RECEIVING]
        if state:
            clauses.append("state = ?")
            values.append(state)
        if case_id:
            clauses.append("case_id = ?")
            values.append(case_id)
        if after is not None:
            clauses.append("(created_at, query_id) < (?, ?)")
            values.extend(after)
        with self._lock:
            cursor = self._conn.execute(
                f"SELECT * FROM queries WHERE {' AND '.join(clauses)}"
                " ORDER BY created_at DESC, query_id DESC LIMIT ?",
                (*values, limit),
            )
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return [_record(dict(zip(names, row, strict=True))) for row in rows]

    def state_counts(self) -> dict[str, int]:
        """How many queries are in each state (every state named, zero included)."""
        counts = dict.fromkeys((RECEIVING, QUEUED, RUNNING, SUCCEEDED, FAILED), 0)
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM queries GROUP BY state")
            counts.update({state: count for state, count in rows})
        return counts

    def unfinished(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT query_id FROM queries WHERE state IN (?, ?) ORDER BY created_at",
                (QUEUED, RUNNING),
            ).fetchall()
        return [r[0] for r in rows]

    def update(self, query_id: str, **fields: object) -> None:
        """Set columns of a query (``timings`` and ``no_key_counts`` as dicts); a query
        that ends (FAILED) loses its blinding key in the same transaction."""
        with self._transaction() as conn:
            conn.execute(*_query_update(query_id, fields))
            if fields.get("state") in TERMINAL_STATES:
                conn.execute("DELETE FROM blinding_keys WHERE query_id = ?", (query_id,))

    def blinding_key(self, query_id: str) -> bytes | None:
        """The scalar an earlier run of this query blinded with, if it got that far."""
        with self._lock:
            row = self._conn.execute(
                "SELECT scalar FROM blinding_keys WHERE query_id = ?", (query_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def keep_blinding_key(self, query_id: str, scalar: bytes) -> None:
        """Store the scalar before any point blinded with it leaves the agency."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO blinding_keys VALUES (?, ?)", (query_id, scalar))

    def subjects(self, query_id: str) -> Iterator[dict[str, str]]:
        """The query's subjects in submission order (streamed in pages)."""
        last = -1
        columns = ", ".join(SUBJECT_FIELDS)
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT seq, {columns} FROM subjects WHERE query_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT 10000",
                    (query_id, last),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield dict(zip(SUBJECT_FIELDS, row[1:], strict=True))
            last = rows[-1][0]

    def finish(self, query_id: str, matches: Iterable[tuple[int, str]], **fields: object) -> None:
        """Store the matches, (seq, recipes that matched ``;``-joined), and mark the query
        SUCCEEDED, in one transaction."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM matches WHERE query_id = ?", (query_id,))
            conn.executemany(
                "INSERT INTO matches VALUES (?, ?, ?)",
                ((query_id, seq, recipes) for seq, recipes in matches),
            )
            conn.execute(*_query_update(query_id, {**fields, "state": SUCCEEDED}))
            conn.execute("DELETE FROM blinding_keys WHERE query_id = ?", (query_id,))
            faults.point("query_committing")

    def matches(self, query_id: str) -> Iterator[tuple[str, dict[str, str]]]:
        """(recipes that matched ``;``-joined, subject) for every match of a query, in
        submission order."""
        columns = ", ".join(f"s.{name}" for name in SUBJECT_FIELDS)
        last = -1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT m.seq, m.recipe, {columns} FROM matches m JOIN subjects s"
                    " ON s.query_id = m.query_id AND s.seq = m.seq"
                    " WHERE m.query_id = ? AND m.seq > ? ORDER BY m.seq LIMIT 10000",
                    (query_id, last),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield row[1], dict(zip(SUBJECT_FIELDS, row[2:], strict=True))
            last = rows[-1][0]
