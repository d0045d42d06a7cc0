"""Why a subject gives no key: one stable reason per recipe, never a change to a key."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from psi_agency.store import AgencyStore
from psi_core.recipes import NO_KEY_REASONS, RECIPES, MatchKeyRecipe, get_recipe
from tests.factories import make_records

VECTORS = Path(__file__).parents[1] / "vectors" / "recipes.json"
GOOD = make_records(1, seed=3)[0]


def _records() -> list[dict[str, str]]:
    records = [dict(r) for r in json.loads(VECTORS.read_text(encoding="utf-8"))["records"].values()]
    for record in make_records(40, seed=5):
        for column in list(record)[1:]:
            records.append({**record, column: ""})
            records.append({**record, column: "??"})
    return records


@pytest.mark.parametrize("recipe", list(RECIPES.values()), ids=list(RECIPES))
def test_a_reason_exactly_when_there_is_no_key(recipe):
    """why_no_key is None iff key is not None, and every reason is a documented code."""
    for record in _records():
        reason = recipe.why_no_key(record)
        assert (reason is None) == (recipe.key(record) is not None), record
        assert reason is None or reason in NO_KEY_REASONS


@pytest.mark.parametrize(
    ("recipe", "change", "reason"),
    [
        ("name_address_v1", {"given_name": "", "family_name": " "}, "no_name"),
        ("name_address_v1", {"given_name": "J", "family_name": ""}, "name_unusable"),
        ("name_address_v1", {"street": ""}, "no_street"),
        ("name_address_v1", {"state": ""}, "no_state"),
        ("name_address_v1", {"state": "Atlantis"}, "state_unknown"),
        ("name_address_v1", {"zip": ""}, "no_zip"),
        ("name_address_v1", {"zip": "1234"}, "zip_not_valid"),
        ("name_address_v1", {"zip": "", "street": ""}, "no_street"),
        ("name_dob_v1", {"date_of_birth": ""}, "no_birth_date"),
        ("name_dob_v1", {"date_of_birth": "04/12/1980"}, "birth_date_not_valid"),
        ("name_dob_v1", {"date_of_birth": "1980-02-30"}, "birth_date_not_valid"),
        ("name_dob_v1", {"given_name": "", "family_name": "", "date_of_birth": ""}, "no_name"),
        ("tin_v1", {"tin": ""}, "no_tin"),
        ("tin_v1", {"tin": "12345678"}, "tin_not_nine_digits"),
        ("tin_v1", {"tin": "123-45-678X"}, "tin_not_nine_digits"),
        ("tin_v1", {"tin": "1234567890"}, "tin_not_nine_digits"),
        ("tin_v1", {"tin": "666-12-3456"}, "tin_never_issued"),
        ("tin_v1", {"tin": "123-00-4567"}, "tin_never_issued"),
    ],
)
def test_the_first_failing_field_names_the_reason(recipe, change, reason):
    """Each field that can be missing or unusable has its own code, in key order."""
    record = {**GOOD, **change}
    assert get_recipe(recipe).key(record) is None
    assert get_recipe(recipe).why_no_key(record) == reason


def test_a_recipe_without_its_own_checks_names_its_first_empty_column():
    """A later recipe version that brings no checks still gets a useful code."""
    recipe = MatchKeyRecipe(
        id="name_zip_v9",
        description="test only",
        required=("given_name", "zip", "tin"),
        canonical_fields=lambda record: None,
    )
    assert recipe.why_no_key({**GOOD, "zip": ""}) == "no_zip"
    assert recipe.why_no_key({**GOOD, "given_name": ""}) == "no_name"
    assert recipe.why_no_key(GOOD) == "incomplete"
    assert all(text and code.islower() for code, text in NO_KEY_REASONS.items())


def test_the_agency_store_keeps_no_key_counts_and_upgrades_an_older_database(tmp_path):
    """no_key_counts survive a reopen; a database made before the column gets it, empty."""
    path = tmp_path / "agency.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE queries (query_id TEXT PRIMARY KEY, state TEXT NOT NULL,"
            " mode TEXT NOT NULL, recipe TEXT NOT NULL, authorization BLOB NOT NULL,"
            " case_id TEXT NOT NULL, requested_by TEXT NOT NULL, created_at TEXT NOT NULL,"
            " updated_at TEXT NOT NULL, subject_count INTEGER NOT NULL,"
            " keyed_count INTEGER NOT NULL DEFAULT 0, processed_count INTEGER NOT NULL DEFAULT 0,"
            " match_count INTEGER NOT NULL DEFAULT 0, epoch_id TEXT NOT NULL DEFAULT '',"
            " fp_per_subject REAL NOT NULL DEFAULT 0, fp_expected REAL NOT NULL DEFAULT 0,"
            " error_code TEXT NOT NULL DEFAULT '', error_message TEXT NOT NULL DEFAULT '',"
            " timings TEXT NOT NULL DEFAULT '{}')"
        )
        db.execute(
            "INSERT INTO queries (query_id, state, mode, recipe, authorization, case_id,"
            " requested_by, created_at, updated_at, subject_count)"
            " VALUES ('old', 'SUCCEEDED', 'membership', 'tin_v1', x'00', 'C', '', '', '', 1)"
        )
    store = AgencyStore(path)
    assert store.get("old").no_key_counts == {}
    store.update("old", no_key_counts={"tin_v1": {"no_tin": 2, "tin_never_issued": 1}})
    store.close()
    reopened = AgencyStore(path)
    assert reopened.get("old").no_key_counts == {"tin_v1": {"no_tin": 2, "tin_never_issued": 1}}
    reopened.close()
