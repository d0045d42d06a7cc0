"""Match-key recipes: recorded vectors, spellings that must agree, people who must not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psi_core.errors import InvalidInputError, UnknownRecipeError
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES, MatchKeyRecipe, get_recipe, recipe_ids
from psi_core.recipes._usps import STATES, SUFFIXES

VECTORS = Path(__file__).parents[1] / "vectors" / "recipes.json"

BASE: dict[str, str | None] = {
    "record_id": "r1",
    "given_name": "Jose",
    "family_name": "Garcia",
    "date_of_birth": "1980-04-12",
    "street": "123 N Main St Apt 4",
    "city": "Springfield",
    "state": "IL",
    "zip": "62701",
    "tin": "123-45-6789",
}

ADDR, DOB, TIN = "name_address_v1", "name_dob_v1", "tin_v1"


def rec(**overrides: str | None) -> dict[str, str | None]:
    return {**BASE, **overrides}


def _load_vectors() -> list[dict[str, object]]:
    """Each vector with its record joined in (the file lists each record once)."""
    document = json.loads(VECTORS.read_text(encoding="utf-8"))
    records = document["records"]
    return [{**v, "record": records[v["name"]]} for v in document["vectors"]]


_VECTOR_ROWS = _load_vectors()


@pytest.mark.parametrize(
    "vector", _VECTOR_ROWS, ids=[f"{v['recipe']}-{v['name']}" for v in _VECTOR_ROWS]
)
def test_recorded_vector(vector):
    """Each recipe still gives the recorded key for each curated record (else: bump version)."""
    assert get_recipe(vector["recipe"]).key(vector["record"]) == vector["key"]


def test_vectors_cover_every_recipe():
    """The vector file holds vectors, keyed and None, for every recipe of this build."""
    recipes_with_key = {v["recipe"] for v in _VECTOR_ROWS if v["key"] is not None}
    recipes_with_none = {v["recipe"] for v in _VECTOR_ROWS if v["key"] is None}
    assert recipes_with_key == set(RECIPES) == recipes_with_none


SAME: list[tuple[str, dict[str, str | None], dict[str, str | None]]] = [
    (ADDR, rec(given_name="José"), rec(given_name="JOSE")),
    (
        ADDR,
        rec(given_name="Jürgen", family_name="Müller"),
        rec(given_name="JURGEN", family_name="MULLER"),
    ),
    (
        ADDR,
        rec(given_name="Thị", family_name="Nguyễn"),
        rec(given_name="THI", family_name="NGUYEN"),
    ),
    (
        ADDR,
        rec(given_name="Łukasz", family_name="Søren"),
        rec(given_name="Lukasz", family_name="Soren"),
    ),
    (
        ADDR,
        rec(given_name="Ævar", family_name="Þórsson"),
        rec(given_name="Aevar", family_name="Thorsson"),
    ),
    (
        ADDR,
        rec(given_name="Hans", family_name="Strauß"),
        rec(given_name="HANS", family_name="STRAUSS"),
    ),
    (ADDR, rec(given_name="Đặng", family_name="Văn"), rec(given_name="Dang", family_name="Van")),
    (ADDR, rec(given_name="ＪＯＳＥ"), rec(given_name="Jose")),
    (
        ADDR,
        rec(given_name="jose", family_name="garcia"),
        rec(given_name="JOSE", family_name="GARCIA"),
    ),
    (
        ADDR,
        rec(given_name="", family_name="GARCIA, JOSE"),
        rec(given_name="Jose", family_name="Garcia"),
    ),
    (
        ADDR,
        rec(given_name=None, family_name="Garcia, Jose"),
        rec(given_name="Jose", family_name="Garcia"),
    ),
    (
        ADDR,
        rec(given_name="Garcia", family_name="Jose"),
        rec(given_name="Jose", family_name="Garcia"),
    ),
    (
        ADDR,
        rec(given_name="Jose", family_name="Garcia Lopez"),
        rec(given_name="Jose Garcia", family_name="Lopez"),
    ),
    (
        ADDR,
        rec(given_name="José", family_name="García-López"),
        rec(given_name="Jose", family_name="Garcia Lopez"),
    ),
    (
        ADDR,
        rec(given_name="Mary", family_name="Smith-Jones"),
        rec(given_name="Mary", family_name="Smith Jones"),
    ),
    (
        ADDR,
        rec(given_name="Sean", family_name="O'Brien"),
        rec(given_name="Sean", family_name="OBrien"),
    ),
    (
        ADDR,
        rec(given_name="Sean", family_name="O'Brien"),
        rec(given_name="Sean", family_name="O Brien"),
    ),
    (
        ADDR,
        rec(given_name="Sean", family_name="O’Brien"),
        rec(given_name="Sean", family_name="O'Brien"),
    ),
    (
        ADDR,
        rec(given_name="Anil", family_name="D'Souza"),
        rec(given_name="Anil", family_name="D Souza"),
    ),
    (
        ADDR,
        rec(given_name="Mary", family_name="Mc Donald"),
        rec(given_name="Mary", family_name="McDonald"),
    ),
    (ADDR, rec(family_name="Garcia Jr."), rec(family_name="Garcia JR")),
    (ADDR, rec(family_name="Garcia Junior"), rec(family_name="Garcia, Jr")),
    (ADDR, rec(family_name="Garcia III"), rec(family_name="Garcia 3rd")),
    (ADDR, rec(given_name="Mr. Jose"), rec(given_name="Jose")),
    (ADDR, rec(given_name="  Jose  ", family_name=" Garcia. "), rec()),
    (ADDR, rec(street="123 North Main Street"), rec(street="123 N MAIN ST")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N Main St #4")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N Main St Unit 4")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N. Main St., Apt. #4")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N Main St # 04")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="Apt 4, 123 N Main St")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N Main St 4")),
    (ADDR, rec(street="123 Main St Apt 4-B"), rec(street="123 Main St Apt 4B")),
    (ADDR, rec(street="500 W Madison St Suite 200"), rec(street="500 W Madison St STE 200")),
    (ADDR, rec(street="123 Park Avenue South"), rec(street="123 PARK AVE S")),
    (ADDR, rec(street="123 South West 8th Street"), rec(street="123 SW 8th St")),
    (ADDR, rec(street="123 Fifth Avenue"), rec(street="123 5th Ave")),
    (ADDR, rec(street="45 W Twenty-Third St"), rec(street="45 W 23rd St")),
    (ADDR, rec(street="12 Saint James Place"), rec(street="12 St James Pl")),
    (ADDR, rec(street="500 Avenue A"), rec(street="500 Ave A")),
    (ADDR, rec(street="12 Mount Vernon Blvd"), rec(street="12 Mt Vernon Boulevard")),
    (ADDR, rec(street="1234 N St NW"), rec(street="1234 North Street N.W.")),
    (ADDR, rec(street="9800 U.S. Highway 1"), rec(street="9800 US Hwy 1")),
    (ADDR, rec(street="P.O. Box 55"), rec(street="PO BOX 55")),
    (ADDR, rec(street="10 Main Street, 2nd Floor"), rec(street="10 Main St Fl 2")),
    (ADDR, rec(street="  123,  N.  Main   St.;  Apt 4 "), rec()),
    (ADDR, rec(zip="62701-1234"), rec(zip="62701")),
    (ADDR, rec(zip="627011234"), rec(zip=" 62701 ")),
    (ADDR, rec(state="Illinois"), rec(state="IL")),
    (ADDR, rec(state="ill."), rec(state="il")),
    (ADDR, rec(state="District of Columbia"), rec(state="D.C.")),
    (ADDR, rec(state="Puerto Rico"), rec(state="PR")),
    (ADDR, rec(city="New York"), rec(city="Brooklyn")),
    (ADDR, rec(city="Saint Louis"), rec(city=None)),
    (DOB, rec(given_name="José", street=None), rec(given_name="JOSE", zip="99999")),
    (DOB, rec(date_of_birth=" 1980-04-12 "), rec(date_of_birth="1980-04-12")),
    (DOB, rec(given_name="", family_name="GARCIA, JOSE"), rec()),
    (TIN, rec(tin="123-45-6789"), rec(tin="123456789")),
    (TIN, rec(tin="123 45 6789"), rec(tin=" 123.45.6789 ")),
    (TIN, rec(given_name="Someone", family_name="Else", zip=None), rec()),
]


@pytest.mark.parametrize(("recipe_id", "a", "b"), SAME)
def test_spellings_of_one_person_agree(recipe_id, a, b):
    """Two ways of writing the same person's record give one key, and not None."""
    recipe = get_recipe(recipe_id)
    assert recipe.key(a) is not None
    assert recipe.key(a) == recipe.key(b)


DIFFERENT: list[tuple[str, dict[str, str | None], dict[str, str | None]]] = [
    (ADDR, rec(street="123 N Main St"), rec(street="125 N Main St")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N Main St Apt 5")),
    (ADDR, rec(street="123 N Main St Apt 4"), rec(street="123 N Main St")),
    (ADDR, rec(street="123 Main St Apt 4B"), rec(street="123 Main St Apt 4C")),
    (ADDR, rec(street="123 Main St Bldg 3 Apt 4"), rec(street="123 Main St Apt 34")),
    (ADDR, rec(street="123 N Main St"), rec(street="123 S Main St")),
    (ADDR, rec(street="123 Main St NE"), rec(street="123 Main St NW")),
    (ADDR, rec(street="123 Main St"), rec(street="123 Main Ave")),
    (ADDR, rec(street="123 1st Ave"), rec(street="123 1st St")),
    (ADDR, rec(street="123 North St"), rec(street="123 South St")),
    (ADDR, rec(street="PO Box 55"), rec(street="PO Box 56")),
    (ADDR, rec(zip="62701"), rec(zip="62702")),
    (ADDR, rec(state="IL"), rec(state="IN")),
    (ADDR, rec(family_name="Garcia Jr"), rec(family_name="Garcia Sr")),
    (ADDR, rec(family_name="Garcia Jr"), rec(family_name="Garcia")),
    (ADDR, rec(family_name="Garcia II"), rec(family_name="Garcia III")),
    (ADDR, rec(given_name="Maria"), rec(given_name="Marta")),
    (ADDR, rec(given_name="Jose A"), rec(given_name="Jose B")),
    (ADDR, rec(given_name="Jose A"), rec(given_name="Jose")),
    (ADDR, rec(family_name="Garcia Lopez"), rec(family_name="Garcia")),
    (ADDR, rec(family_name="Garcia"), rec(family_name="Garza")),
    (ADDR, rec(given_name="Ana", family_name="Garcia"), rec(given_name="Ana", family_name="Lopez")),
    (ADDR, rec(family_name="Smith-Jones"), rec(family_name="SmithJones")),
    (DOB, rec(date_of_birth="1980-04-12"), rec(date_of_birth="1980-04-13")),
    (DOB, rec(date_of_birth="1980-04-12"), rec(date_of_birth="1980-12-04")),
    (DOB, rec(date_of_birth="1980-04-12"), rec(date_of_birth="1981-04-12")),
    (DOB, rec(family_name="Garcia Jr"), rec(family_name="Garcia Sr")),
    (DOB, rec(given_name="Maria"), rec(given_name="Mario")),
    (TIN, rec(tin="123-45-6789"), rec(tin="123-45-6788")),
    (TIN, rec(tin="123-45-6789"), rec(tin="213-45-6789")),
    (TIN, rec(tin="123-45-6789"), rec(tin="923-45-6789")),
]


@pytest.mark.parametrize(("recipe_id", "a", "b"), DIFFERENT)
def test_different_people_or_places_stay_apart(recipe_id, a, b):
    """Records that differ in a fact that tells people apart never share a key."""
    recipe = get_recipe(recipe_id)
    key_a, key_b = recipe.key(a), recipe.key(b)
    assert key_a is not None
    assert key_b is not None
    assert key_a != key_b


def test_token_sorting_collapses_reordered_given_names():
    """Documented trade-off: sorting name tokens makes "Mary Ann" and "Ann Mary" one key."""
    recipe = get_recipe(ADDR)
    assert recipe.key(rec(given_name="Mary Ann")) == recipe.key(rec(given_name="Ann Mary"))


UNUSABLE: list[tuple[str, dict[str, str | None]]] = [
    (ADDR, rec(given_name=None, family_name=None)),
    (ADDR, rec(given_name="", family_name="")),
    (ADDR, rec(given_name="", family_name="Garcia")),
    (ADDR, rec(given_name="J.", family_name="Garcia")),
    (ADDR, rec(given_name="Mr", family_name="Garcia")),
    (ADDR, rec(given_name="Jose", family_name="Jr.")),
    (ADDR, rec(given_name="--", family_name="''")),
    (ADDR, rec(street=None)),
    (ADDR, rec(street="")),
    (ADDR, rec(street="Main Street")),
    (ADDR, rec(street="P.O. Box")),
    (ADDR, rec(street=" ,.# ")),
    (ADDR, rec(state=None)),
    (ADDR, rec(state="Ontario")),
    (ADDR, rec(state="XX")),
    (ADDR, rec(zip=None)),
    (ADDR, rec(zip="6270")),
    (ADDR, rec(zip="627012")),
    (ADDR, rec(zip="62701-12")),
    (ADDR, rec(zip="ABCDE")),
    (ADDR, rec(zip="00000")),
    (ADDR, rec(zip="６２７０１")),
    (DOB, rec(date_of_birth=None)),
    (DOB, rec(date_of_birth="")),
    (DOB, rec(date_of_birth="1980-02-30")),
    (DOB, rec(date_of_birth="1981-02-29")),
    (DOB, rec(date_of_birth="1900-02-29")),
    (DOB, rec(date_of_birth="1980-13-01")),
    (DOB, rec(date_of_birth="1980-00-10")),
    (DOB, rec(date_of_birth="1980-04-00")),
    (DOB, rec(date_of_birth="1980-04-31")),
    (DOB, rec(date_of_birth="1980/04/12")),
    (DOB, rec(date_of_birth="04/12/1980")),
    (DOB, rec(date_of_birth="1980-4-12")),
    (DOB, rec(date_of_birth="19800412")),
    (DOB, rec(date_of_birth="1980-04-12T00:00")),
    (DOB, rec(date_of_birth="１９８０-04-12")),
    (DOB, rec(date_of_birth="1899-12-31")),
    (DOB, rec(date_of_birth="1900-01-01")),
    (DOB, rec(given_name=None, family_name="Garcia")),
    (TIN, rec(tin=None)),
    (TIN, rec(tin="")),
    (TIN, rec(tin="12345678")),
    (TIN, rec(tin="1234567890")),
    (TIN, rec(tin="000-12-3456")),
    (TIN, rec(tin="123-00-4567")),
    (TIN, rec(tin="123-45-0000")),
    (TIN, rec(tin="000-00-0000")),
    (TIN, rec(tin="666-12-3456")),
    (TIN, rec(tin="12a-45-6789")),
    (TIN, rec(tin="123/45/6789")),
    (TIN, rec(tin="-123456789")),
    (TIN, rec(tin="１２３４５６７８９")),
]


@pytest.mark.parametrize(("recipe_id", "record"), UNUSABLE)
def test_unusable_record_gives_none(recipe_id, record):
    """A record missing a required field, or with an unusable one, gives None."""
    assert get_recipe(recipe_id).key(record) is None


@pytest.mark.parametrize("recipe_id", [ADDR, DOB, TIN])
def test_empty_record_gives_none(recipe_id):
    """A record with no columns at all gives None, not an exception."""
    assert get_recipe(recipe_id).key({}) is None


@pytest.mark.parametrize(("recipe_id", "date"), [(DOB, "2000-02-29"), (DOB, "2099-12-31")])
def test_real_edge_dates_are_kept(recipe_id, date):
    """Leap days and the last accepted year are real dates and yield a key."""
    assert get_recipe(recipe_id).key(rec(date_of_birth=date)) == f"{DOB}|GARCIA JOSE|{date}"


KEY_SHAPES = {
    ADDR: re.compile(r"name_address_v1\|[A-Z0-9 ]+\|[A-Z0-9 #]+\|[A-Z]{2}\|[0-9]{5}"),
    DOB: re.compile(r"name_dob_v1\|[A-Z0-9 ]+\|[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    TIN: re.compile(r"tin_v1\|[0-9]{9}"),
}


@pytest.mark.parametrize(("recipe_id", "a", "b"), SAME)
def test_key_has_documented_shape(recipe_id, a, b):
    """A key is the recipe id, then its fields in the documented format, split by '|'."""
    for record in (a, b):
        key = get_recipe(recipe_id).key(record)
        assert key is not None
        assert KEY_SHAPES[recipe_id].fullmatch(key), key


def test_separator_in_input_never_reaches_a_field():
    """A '|' typed into any field is folded away, so fields cannot be spliced."""
    record = rec(given_name="Jose|X", family_name="|Garcia", street="123 Main|St", state="IL|")
    key = get_recipe(ADDR).key(record)
    assert key is not None
    assert key.count("|") == 4


@pytest.mark.parametrize(
    "record", [rec(), rec(given_name="Ana", tin="987-65-4321"), rec(street="PO Box 1")]
)
def test_keys_of_different_recipes_never_equal(record):
    """Every recipe's key starts with its own id, so no two recipes can produce one key."""
    keys = {recipe_id: get_recipe(recipe_id).key(record) for recipe_id in recipe_ids()}
    keys = {recipe_id: key for recipe_id, key in keys.items() if key is not None}
    assert set(DEFAULT_RECIPE_IDS) <= set(keys)
    for recipe_id, key in keys.items():
        assert key.startswith(recipe_id + "|")
    assert len(set(keys.values())) == len(keys)


@settings(max_examples=300, deadline=None)
@given(
    given_name=st.one_of(st.none(), st.text(max_size=30)),
    family_name=st.one_of(st.none(), st.text(max_size=30)),
    street=st.one_of(st.none(), st.text(max_size=40)),
)
def test_any_text_gives_none_or_a_well_formed_key(given_name, family_name, street):
    """Arbitrary Unicode never raises and never yields a field containing '|' or spaces at ends."""
    record = rec(given_name=given_name, family_name=family_name, street=street)
    for recipe_id, fields in ((ADDR, 4), (DOB, 2)):
        key = get_recipe(recipe_id).key(record)
        if key is None:
            continue
        parts = key.split("|")
        assert parts[0] == recipe_id
        assert len(parts) == fields + 1
        assert all(part and part == part.strip() and "  " not in part for part in parts)


@given(name=st.text(min_size=1, max_size=30))
def test_folding_is_idempotent_on_its_output(name):
    """Feeding a canonical name back in gives the same canonical name."""
    recipe = get_recipe(DOB)
    key = recipe.key(rec(given_name=name, family_name="Garcia"))
    if key is not None:
        canonical = key.split("|")[1]
        assert recipe.key(rec(given_name=canonical, family_name="")) == key


def test_recipe_ids_are_sorted_and_match_registry():
    """recipe_ids() lists exactly the registry's ids, sorted."""
    assert recipe_ids() == tuple(sorted(RECIPES))
    assert set(DEFAULT_RECIPE_IDS) == {ADDR, DOB, TIN} < set(RECIPES)


@pytest.mark.parametrize("recipe_id", [ADDR, DOB, TIN])
def test_get_recipe_returns_the_registered_recipe(recipe_id):
    """get_recipe finds each registered recipe under its own id."""
    recipe = get_recipe(recipe_id)
    assert recipe is RECIPES[recipe_id]
    assert recipe.id == recipe_id
    assert recipe.description
    assert "\n" not in recipe.description
    assert set(recipe.required) <= set(BASE) - {"record_id"}


@pytest.mark.parametrize(
    "recipe_id", ["", "name_address", "name_address_v9", "NAME_DOB_V1", "tin_v1 ", "x" * 500]
)
def test_get_recipe_unknown_id_raises(recipe_id):
    """An id this build does not implement raises UnknownRecipeError listing the known ids."""
    with pytest.raises(UnknownRecipeError) as info:
        get_recipe(recipe_id)
    assert isinstance(info.value, InvalidInputError)
    assert info.value.status == "INVALID_ARGUMENT"
    message = str(info.value)
    assert all(known in message for known in recipe_ids())
    assert len(message) < 120 + len(", ".join(recipe_ids()))


def test_registry_is_read_only():
    """RECIPES cannot be modified by a caller."""
    assert isinstance(RECIPES, MappingProxyType)
    with pytest.raises(TypeError):
        RECIPES["evil_v1"] = RECIPES[TIN]  # type: ignore[index]


def test_recipe_is_frozen():
    """A recipe's id cannot be changed after construction."""
    with pytest.raises(AttributeError):
        RECIPES[TIN].id = "other_v1"  # type: ignore[misc]


@pytest.mark.parametrize("bad_id", ["", "tin", "Tin_v1", "tin_v0", "tin|v1", "tin_v1x"])
def test_recipe_rejects_malformed_id(bad_id):
    """A recipe id must look like name_v<N> so it can prefix keys unambiguously."""
    with pytest.raises(ValueError, match="recipe id"):
        MatchKeyRecipe(bad_id, "x", ("tin",), lambda record: None)


STATE_NAMES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI",
    "Wyoming": "WY", "District of Columbia": "DC", "Puerto Rico": "PR",
}  # fmt: skip


@pytest.mark.parametrize(("name", "code"), sorted(STATE_NAMES.items()))
def test_every_state_name_and_code_gives_the_same_key(name, code):
    """Each of the 50 states, DC and PR, by name or by code, gives one key with its code."""
    recipe = get_recipe(ADDR)
    key = recipe.key(rec(state=name.upper() if len(name) % 2 else name))
    assert key == recipe.key(rec(state=code.lower()))
    assert key is not None
    assert key.split("|")[3] == code


def test_state_table_has_no_fragment_entries():
    """Every state-table entry is a whole word or code, so a stray letter is never a state."""
    assert all(len(written) >= 2 for written in STATES)
    assert all(len(code) == 2 and code.isalpha() for code in STATES.values())
    assert {"P", "E", "N", ""}.isdisjoint(STATES)


def test_suffix_table_is_publication_28_sized_and_closed():
    """At least 40 suffixes; each standard abbreviation maps to its own suffix."""
    primaries = {primary for primary, _ in SUFFIXES.values()}
    assert len(primaries) >= 40
    for primary, abbreviation in SUFFIXES.values():
        assert SUFFIXES[abbreviation] == (primary, abbreviation)
        assert SUFFIXES[primary] == (primary, abbreviation)
