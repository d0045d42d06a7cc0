"""The one way this project opens and writes its SQLite files.

Every store (the custodian's ledger and audit log, the agency's queries and audit log)
holds one autocommit connection in WAL mode with ``synchronous=FULL``, shared by its
threads under a lock, and writes in ``BEGIN IMMEDIATE`` transactions, so that a check and
the write it guards are one atomic step across threads *and* processes sharing the file,
and a write that returned survives a crash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from psi_core.errors import PreconditionError

__all__ = ["SqliteFile"]

_BUSY_TIMEOUT_S = 30.0


def _open_sqlite(db_path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open ``db_path`` (creating its directory) in autocommit mode, WAL, synchronous=FULL.

    The connection may be used from any thread; callers serialize access to it. Raises
    :class:`PreconditionError` if the file cannot be opened as a SQLite database.
    """
    path = Path(db_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise PreconditionError(f"cannot open the database {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as exc:
        conn.close()
        raise PreconditionError(f"{path} is not a usable SQLite database: {exc}") from exc
    return conn


class SqliteFile:
    """One connection to ``db_path`` (see :func:`_open_sqlite`), shared by threads under a
    lock. Use as a context manager or call :meth:`close`.

    ``share`` makes this store use another store's connection and lock (the same file), so
    that both can write in one transaction: the custodian's ledger and its audit log, whose
    "admitted" entry must commit with the charge or not at all. Only the store that opened
    the connection closes it.
    """

    def __init__(self, db_path: str | os.PathLike[str], *, share: SqliteFile | None = None) -> None:
        self._path = Path(db_path)
        if share is None:
            self._lock = threading.Lock()
            self._conn = _open_sqlite(self._path)
            self._owner = True
            return
        if share._path.resolve() != self._path.resolve():
            raise PreconditionError(
                f"a store can share only a connection to its own file ({self._path}), "
                f"not one to {share._path}"
            )
        self._lock = share._lock
        self._conn = share._conn
        self._owner = False

    def _create_table(self, table: str, schema: str, what: str) -> None:
        """``CREATE TABLE IF NOT EXISTS table (schema)``, then check that the table holds
        exactly the columns ``schema`` names, in order (one table of another kind with the
        same name would otherwise be written into). Closes the connection and raises
        :class:`PreconditionError` saying which file and table otherwise."""
        try:
            self._conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({schema})')
            found = tuple(r[1] for r in self._conn.execute(f'PRAGMA table_info("{table}")'))
        except sqlite3.Error as exc:
            self.close()
            raise PreconditionError(f"cannot create the {what} in {self._path}: {exc}") from exc
        if found != _column_names(schema):
            self.close()
            raise PreconditionError(
                f"table {table} in {self._path} exists but is not {what} "
                f"(columns {', '.join(found)}); move it aside or use another database file"
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction under the lock: committed when the block ends,
        rolled back if it raises."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (if this store opened it); further calls fail."""
        if not self._owner:
            return
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _column_names(schema: str) -> tuple[str, ...]:
    """The column names of a ``CREATE TABLE`` body: the first word of each comma-separated
    part that is not a table constraint (``PRIMARY KEY (...)``, ``UNIQUE``, ``CHECK``)."""
    names: list[str] = []
    depth = 0
    part = ""
    for char in schema + ",":
        if char == "," and depth == 0:
            word = part.strip().split(None, 1)[0] if part.strip() else ""
            if word and word.upper() not in _CONSTRAINTS:
                names.append(word)
            part = ""
            continue
        depth += (char == "(") - (char == ")")
        part += char
    return tuple(names)


_CONSTRAINTS = frozenset({"PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT"})
