"""ListQueries' parts without a network: signed page tokens and the store's keyset listing."""

from __future__ import annotations

import base64
import json

import pytest

from psi_agency.paging import Cursor, PageTokens
from psi_agency.store import QUEUED, SUCCEEDED, AgencyStore
from psi_core.errors import InvalidInputError, PreconditionError

FILTERS = ("SUCCEEDED", "CASE-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_opens_to_its_cursor_with_the_same_filters():
    """issue then open gives the cursor back."""
    tokens = PageTokens()
    cursor = Cursor("2026-12-07T10:00:00.000+00:00", "00ff00ff00ff00ff")
    assert tokens.open(tokens.issue(cursor, FILTERS), FILTERS) == cursor


def test_a_token_for_other_filters_is_refused():
    """A token cannot be replayed against another state or case."""
    tokens = PageTokens()
    token = tokens.issue(Cursor("t", "q"), FILTERS)
    with pytest.raises(InvalidInputError, match="other filters"):
        tokens.open(token, ("FAILED", "CASE-1"))


@pytest.mark.parametrize("forge", ["garbage", "!!!", "", "A" * 2000])
def test_tokens_this_service_did_not_issue_are_refused(forge):
    """Garbage, empty and oversized tokens are INVALID_ARGUMENT."""
    with pytest.raises(InvalidInputError):
        PageTokens().open(forge, FILTERS)


def test_an_edited_cursor_breaks_the_signature():
    """Moving the cursor inside a real token is caught by the HMAC."""
    tokens = PageTokens()
    raw = base64.urlsafe_b64decode(tokens.issue(Cursor("t", "q"), FILTERS))
    payload, mac = raw[:-32], raw[-32:]
    edited = json.dumps({**json.loads(payload), "q": "other"}, separators=(",", ":")).encode()
    forged = base64.urlsafe_b64encode(edited + mac).decode()
    with pytest.raises(InvalidInputError, match="not one this service issued"):
        tokens.open(forged, FILTERS)


def test_another_service_instance_does_not_accept_the_token():
    """A restart draws a new secret, so old tokens stop working."""
    token = PageTokens().issue(Cursor("t", "q"), FILTERS)
    with pytest.raises(InvalidInputError):
        PageTokens().open(token, FILTERS)


def test_a_token_expires():
    """Past its time to live a token is FAILED_PRECONDITION, before it still opens."""
    clock = Clock()
    tokens = PageTokens(ttl_seconds=60, clock=clock)
    token = tokens.issue(Cursor("t", "q"), FILTERS)
    clock.now += 59
    assert tokens.open(token, FILTERS).query_id == "q"
    clock.now += 2
    with pytest.raises(PreconditionError, match="expired"):
        tokens.open(token, FILTERS)


def _add(store: AgencyStore, query_id: str, case_id: str, state: str, seal: bool = True) -> None:
    store.begin_query(
        query_id,
        mode="membership",
        recipe="name_address_v1",
        authorization=b"t",
        case_id=case_id,
        requested_by="test",
    )
    if seal:
        store.add_subjects(query_id, 0, [{"subject_id": "s"}])
        store.seal_query(query_id, 1)
        store.update(query_id, state=state)


def test_listing_is_newest_first_keyset_paged_and_filtered(tmp_path):
    """Pages follow (created_at, query_id) descending; filters and RECEIVING apply."""
    with AgencyStore(tmp_path / "agency.sqlite") as store:
        for i in range(7):
            _add(store, f"q{i:02d}", "A" if i % 2 else "B", SUCCEEDED if i < 5 else QUEUED)
        _add(store, "receiving", "A", QUEUED, seal=False)
        everything = [r.query_id for r in store.list_queries(limit=100)]
        assert everything == [f"q{i:02d}" for i in range(6, -1, -1)]
        first = store.list_queries(limit=3)
        last = first[-1]
        second = store.list_queries(limit=3, after=(last.created_at, last.query_id))
        assert [r.query_id for r in first + second] == everything[:6]
        assert {r.query_id for r in store.list_queries(limit=100, case_id="A")} == {
            "q01", "q03", "q05",
        }  # fmt: skip
        assert [r.query_id for r in store.list_queries(limit=100, state=QUEUED)] == ["q06", "q05"]
