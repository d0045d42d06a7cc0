"""The agency store keeps why a query waits, and opens databases from before that column."""

from __future__ import annotations

import sqlite3

from psi_agency.store import QUEUED, AgencyStore


def _begin(store: AgencyStore, query_id: str) -> None:
    store.begin_query(
        query_id, mode="membership", recipe="tin_v1", authorization=b"t", case_id="C",
        requested_by="",
    )  # fmt: skip


def test_waiting_reason_and_attempts_are_stored(tmp_path):
    """A waiting query's reason and attempt count survive a reopen of the database."""
    with AgencyStore(tmp_path / "agency.sqlite") as store:
        _begin(store, "q1")
        store.update("q1", state=QUEUED, waiting_reason="custodian down", attempts=2)
    with AgencyStore(tmp_path / "agency.sqlite") as store:
        record = store.get("q1")
    assert (record.state, record.waiting_reason, record.attempts) == (QUEUED, "custodian down", 2)


def test_a_database_without_the_new_columns_gains_them(tmp_path):
    """An agency.sqlite written before waiting_reason/attempts existed opens and works."""
    path = tmp_path / "agency.sqlite"
    with AgencyStore(path) as store:
        _begin(store, "old")
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE queries DROP COLUMN waiting_reason")
    conn.execute("ALTER TABLE queries DROP COLUMN attempts")
    conn.commit()
    conn.close()
    with AgencyStore(path) as store:
        assert store.get("old").attempts == 0
        store.update("old", waiting_reason="why", attempts=1)
        assert store.get("old").waiting_reason == "why"
