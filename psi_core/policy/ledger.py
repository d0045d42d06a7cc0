"""The custodian's ledger of what each authorization token has used.

One row per token id in the table ``authorization_ledger`` of a SQLite file that may hold
other tables too (the audit log, for one). Every :meth:`AuthorizationLedger.charge` runs in
one ``BEGIN IMMEDIATE`` transaction (:class:`psi_core.policy.sqlite.SqliteFile`), so the check of
the remaining budget and the record of the use are one atomic step across threads *and*
processes sharing the file, and a charge that returned survives a crash.

A charge is taken before the query's curve work and is not given back if that work later
fails, so a failing query cannot be used to probe without spending budget.

The table ``answered_requests`` remembers, per token, the digest of every request that was
answered in full (:class:`RequestKey`). A request that declares itself a replay of one of
those is admitted without a charge: the custodian then checks that its points hash to the
remembered digest before it answers, and as the epoch key is fixed, the answer is the one
already given. An agency that restarts after the custodian answered but before it stored
the result therefore re-runs the query without spending the budget twice, and nobody learns
anything new from a replay.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from psi_core.errors import BudgetExhaustedError, InvalidInputError, PreconditionError
from psi_core.io.atomic import utc_timestamp
from psi_core.policy.sqlite import SqliteFile

__all__ = [
    "REPLAY",
    "AuthorizationLedger",
    "InTransaction",
    "LedgerEntry",
    "RequestKey",
    "TokenBudget",
]

_TABLE = "authorization_ledger"
_ANSWERED = "answered_requests"
_SQLITE_MAX_INT = 2**63 - 1
_USES = "token_uses"
#: What :meth:`AuthorizationLedger.count_use` counts for an uncharged replay.
REPLAY = "replay"


#: Called inside the ledger's transaction, on its connection, once a use is recorded: what
#: it writes commits with the use or not at all (the custodian's "admitted" audit entry).
InTransaction = Callable[[sqlite3.Connection, "LedgerEntry"], None]


class TokenBudget(Protocol):
    """What the ledger reads from verified claims
    (:class:`psi_core.policy.authorization.AuthorizationClaims` or the protobuf message)."""

    @property
    def token_id(self) -> str: ...
    @property
    def max_queries(self) -> int: ...
    @property
    def max_subjects(self) -> int: ...


@dataclass(frozen=True)
class LedgerEntry:
    """A token's use so far and what it has left; ``replayed`` if this use was not charged
    because it repeats a request already answered."""

    queries_used: int
    subjects_used: int
    queries_left: int
    subjects_left: int
    replayed: bool = False


@dataclass(frozen=True)
class RequestKey:
    """What makes two requests the same request: the SHA-256 of their points in order,
    and the count, mode, recipe and key epoch they were answered under. For a multi-key
    request ``recipe`` names the whole declaration, keys per recipe and subjects
    (``psi_core.protocol.KeyDeclaration.ledger_recipe``)."""

    sha256: bytes
    point_count: int
    mode: str
    recipe: str
    epoch_id: str

    def __post_init__(self) -> None:
        if len(self.sha256) != 32:
            raise InvalidInputError("a request digest is 32 bytes (SHA-256)")

    def as_row(self) -> tuple[bytes, int, str, str, str]:
        return (self.sha256, self.point_count, self.mode, self.recipe, self.epoch_id)


class AuthorizationLedger(SqliteFile):
    """Per-token usage counters with an atomic check-and-charge.

    Safe to share between threads; several processes may open the same file. Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        """Open (or create) the ledger table in ``db_path``.

        Raises :class:`PreconditionError` if the file is not a usable SQLite database or
        already holds a table of that name with other columns.
        """
        super().__init__(db_path)
        self._create_table(
            _TABLE,
            """token_id TEXT PRIMARY KEY,
            queries_used INTEGER NOT NULL,
            subjects_used INTEGER NOT NULL,
            max_queries INTEGER NOT NULL,
            max_subjects INTEGER NOT NULL,
            first_used TEXT NOT NULL,
            last_used TEXT NOT NULL""",
            "an authorization ledger",
        )
        self._create_table(
            _ANSWERED,
            """token_id TEXT NOT NULL,
            request_sha256 BLOB NOT NULL,
            point_count INTEGER NOT NULL,
            mode TEXT NOT NULL,
            recipe TEXT NOT NULL,
            epoch_id TEXT NOT NULL,
            answered_at TEXT NOT NULL,
            PRIMARY KEY (token_id, request_sha256, point_count, mode, recipe, epoch_id)""",
            "a table of answered requests",
        )
        self._create_table(
            _USES,
            """token_id TEXT NOT NULL,
            what TEXT NOT NULL,
            used INTEGER NOT NULL,
            PRIMARY KEY (token_id, what)""",
            "a table of uncharged uses",
        )

    def charge(
        self,
        claims: TokenBudget,
        subjects: int,
        *,
        replay_of: RequestKey | None = None,
        max_replays: int | None = None,
        record: InTransaction | None = None,
    ) -> LedgerEntry:
        """Record one query of ``subjects`` subjects against ``claims.token_id``.

        With ``replay_of`` naming a request this token already had answered in full (see
        :meth:`record_answered`), nothing is charged and the entry comes back with
        ``replayed`` set, whatever budget is left; any other ``replay_of`` is charged as a
        new query. Uncharged replays still cost the custodian curve work, so with
        ``max_replays`` a token gets at most that many (counted in the same transaction;
        one more raises :class:`BudgetExhaustedError`).

        ``record``, if given, runs inside the transaction once the use is recorded (see
        :data:`InTransaction`); if it raises, nothing is recorded.

        The limits are read from ``claims`` (already verified; a ``max_subjects`` above
        2**63-1 counts as 2**63-1, SQLite's largest integer). Either the whole use is
        recorded and the new totals returned, or nothing is recorded and
        :class:`BudgetExhaustedError` is raised (no query left, or fewer subjects left than
        asked for). Raises :class:`InvalidInputError` if ``subjects`` is not a positive
        whole number, :class:`PreconditionError` if the database cannot be written.
        """
        if isinstance(subjects, bool) or not isinstance(subjects, int) or subjects < 1:
            raise InvalidInputError("a query must carry a positive whole number of subjects")
        token_id = claims.token_id
        max_queries = int(claims.max_queries)
        max_subjects = min(int(claims.max_subjects), _SQLITE_MAX_INT)
        now = _now()
        with self._recording(token_id) as conn:
            row = conn.execute(
                f"SELECT queries_used, subjects_used FROM {_TABLE} WHERE token_id = ?",
                (token_id,),
            ).fetchone()
            queries_used, subjects_used = row if row else (0, 0)
            if replay_of is not None and self._was_answered(token_id, replay_of):
                self._count(conn, token_id, REPLAY, max_replays, "uncharged replays")
                entry = _entry(
                    queries_used, subjects_used, max_queries, max_subjects, replayed=True
                )
                if record is not None:
                    record(conn, entry)
                return entry
            if queries_used >= max_queries:
                raise BudgetExhaustedError(
                    f"token {token_id} has used {queries_used} of {max_queries} "
                    "queries; ask the authority for a new token"
                )
            left = max_subjects - subjects_used
            if subjects > left:
                raise BudgetExhaustedError(
                    f"query of {subjects} subjects exceeds the {max(left, 0)} left on "
                    f"token {token_id} (of {max_subjects}); send fewer subjects or "
                    "ask the authority for a new token"
                )
            queries_used += 1
            subjects_used += subjects
            conn.execute(
                f"""INSERT INTO {_TABLE} (token_id, queries_used, subjects_used,
                        max_queries, max_subjects, first_used, last_used)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(token_id) DO UPDATE SET
                        queries_used = excluded.queries_used,
                        subjects_used = excluded.subjects_used,
                        max_queries = excluded.max_queries,
                        max_subjects = excluded.max_subjects,
                        last_used = excluded.last_used""",
                (token_id, queries_used, subjects_used, max_queries, max_subjects, now, now),
            )
            entry = _entry(queries_used, subjects_used, max_queries, max_subjects)
            if record is not None:
                record(conn, entry)
        return entry

    def count_use(
        self,
        claims: TokenBudget,
        what: str,
        limit: int,
        *,
        label: str,
        record: InTransaction | None = None,
    ) -> LedgerEntry:
        """Count one uncharged use ``what`` (e.g. "classic_setup") of ``claims.token_id``,
        at most ``limit`` per token; ``label`` names it in the refusal.

        Raises :class:`BudgetExhaustedError` (nothing recorded) when the token has had
        ``limit`` already. ``record`` runs in the same transaction (see :meth:`charge`).
        Returns the token's budget, which this use does not touch.
        """
        token_id = claims.token_id
        with self._recording(token_id) as conn:
            self._count(conn, token_id, what, limit, label)
            row = conn.execute(
                f"SELECT queries_used, subjects_used FROM {_TABLE} WHERE token_id = ?",
                (token_id,),
            ).fetchone()
            entry = _entry(
                *(row or (0, 0)),
                int(claims.max_queries),
                min(int(claims.max_subjects), _SQLITE_MAX_INT),
            )
            if record is not None:
                record(conn, entry)
        return entry

    @contextmanager
    def _recording(self, token_id: str) -> Iterator[sqlite3.Connection]:
        """A write transaction for ``token_id``'s use; a database failure is a
        PreconditionError that names the file."""
        try:
            with self._transaction() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise PreconditionError(
                f"cannot record the use of token {token_id} in {self._path}: {exc}"
            ) from exc

    def uses(self, token_id: str, what: str) -> int:
        """How many uncharged uses ``what`` token ``token_id`` has had."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT used FROM {_USES} WHERE token_id = ? AND what = ?", (token_id, what)
            ).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _count(
        conn: sqlite3.Connection, token_id: str, what: str, limit: int | None, label: str
    ) -> None:
        row = conn.execute(
            f"SELECT used FROM {_USES} WHERE token_id = ? AND what = ?", (token_id, what)
        ).fetchone()
        used = int(row[0]) if row else 0
        if limit is not None and used >= limit:
            raise BudgetExhaustedError(
                f"token {token_id} has had its {limit} {label}; ask the authority for a new token"
            )
        conn.execute(
            f"""INSERT INTO {_USES} (token_id, what, used) VALUES (?, ?, 1)
                ON CONFLICT(token_id, what) DO UPDATE SET used = used + 1""",
            (token_id, what),
        )

    def record_answered(self, token_id: str, request: RequestKey) -> None:
        """Remember that ``request`` was answered in full under ``token_id``, so that it
        may be replayed without a charge. Call only once every point of the request was
        received and hashed by the custodian itself."""
        with self._lock:
            try:
                self._conn.execute(
                    f"""INSERT OR IGNORE INTO {_ANSWERED} (token_id, request_sha256,
                            point_count, mode, recipe, epoch_id, answered_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    (token_id, *request.as_row(), _now()),
                )
            except sqlite3.Error as exc:
                raise PreconditionError(
                    f"cannot record an answered request in {self._path}: {exc}"
                ) from exc

    def _was_answered(self, token_id: str, request: RequestKey) -> bool:
        row = self._conn.execute(
            f"""SELECT 1 FROM {_ANSWERED} WHERE token_id = ? AND request_sha256 = ?
                AND point_count = ? AND mode = ? AND recipe = ? AND epoch_id = ?""",
            (token_id, *request.as_row()),
        ).fetchone()
        return row is not None

    def newest_tokens(self, limit: int) -> list[tuple[str, LedgerEntry]]:
        """The ``limit`` most recently charged tokens and their use, newest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT token_id, queries_used, subjects_used, max_queries, max_subjects "
                f"FROM {_TABLE} ORDER BY last_used DESC, token_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(row[0], _entry(*row[1:])) for row in rows]

    def usage(self, token_id: str) -> LedgerEntry | None:
        """The token's use so far (limits as of its last charge), or ``None`` if it was
        never charged."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT queries_used, subjects_used, max_queries, max_subjects "
                f"FROM {_TABLE} WHERE token_id = ?",
                (token_id,),
            ).fetchone()
        if row is None:
            return None
        return _entry(*row)


def _entry(
    queries_used: int,
    subjects_used: int,
    max_queries: int,
    max_subjects: int,
    *,
    replayed: bool = False,
) -> LedgerEntry:
    return LedgerEntry(
        queries_used=queries_used,
        subjects_used=subjects_used,
        queries_left=max(max_queries - queries_used, 0),
        subjects_left=max(max_subjects - subjects_used, 0),
        replayed=replayed,
    )


def _now() -> str:
    return utc_timestamp()
