"""The agency store keeps a query's blinding scalar only while the query is unfinished."""

from __future__ import annotations

from pathlib import Path

import pytest

from psi_agency.store import FAILED, RUNNING, AgencyStore
from tests.factories import as_subjects, make_records

SCALAR = bytes(range(1, 33))


@pytest.fixture
def store(tmp_path: Path):
    store = AgencyStore(tmp_path / "agency.sqlite")
    store.begin_query(
        "q1",
        mode="membership",
        recipe="tin_v1",
        authorization=b"token",
        case_id="C",
        requested_by="test",
    )
    store.add_subjects("q1", 0, as_subjects(make_records(3)))
    store.seal_query("q1", 3)
    yield store
    store.close()


def test_a_kept_scalar_survives_a_reopen_and_progress_updates(store, tmp_path):
    store.keep_blinding_key("q1", SCALAR)
    store.update("q1", state=RUNNING, processed_count=2)
    store.close()
    reopened = AgencyStore(tmp_path / "agency.sqlite")
    assert reopened.blinding_key("q1") == SCALAR
    reopened.close()


def test_success_failure_and_discard_each_drop_the_scalar(store):
    store.keep_blinding_key("q1", SCALAR)
    store.finish("q1", [(0, "tin_v1")], match_count=1)
    assert store.blinding_key("q1") is None

    store.keep_blinding_key("q1", SCALAR)
    store.update("q1", state=FAILED, error_code="UNAVAILABLE", error_message="gone")
    assert store.blinding_key("q1") is None

    store.keep_blinding_key("q1", SCALAR)
    store.discard_query("q1")
    assert store.blinding_key("q1") is None
