"""The recipe type, the three recipes of this build and their registry."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import UnknownRecipeError
from ._address import canonical_state, canonical_street, canonical_zip5
from ._normalize import SEPARATOR, canonical_date, canonical_name, canonical_tin
from ._reasons import first_reason
from ._tolerant import (
    house_number,
    initials,
    sounded_name,
    tolerant_date,
    tolerant_name,
    tolerant_tin,
)

Record = Mapping[str, str | None]
"""One input row: column name -> cell text; an empty string or None means unknown."""

_RECIPE_ID = re.compile(r"[a-z][a-z0-9_]*_v[1-9][0-9]*", re.ASCII)


@dataclass(frozen=True, slots=True)
class MatchKeyRecipe:
    """A versioned rule that turns a record into one match-key string.

    ``key`` returns ``"<id>|<field>|<field>..."``: the recipe id first, so keys of
    different recipes never collide in one index, then the canonical fields, each a
    non-empty run of upper-case letters, digits, spaces and ``#`` that never contains
    ``|``. It returns None when the record cannot give a usable key (a required column
    is empty, a date is not a real date, a TIN is not nine digits, ...); that is an
    ordinary outcome, never an error.

    ``required`` names the columns the recipe reads. The output of a given id is frozen:
    any change to it, however small, needs a new id (``_v2``), because the custodian's
    index and the agency's queries must be built by the same rule.
    """

    id: str
    description: str
    required: tuple[str, ...]
    canonical_fields: Callable[[Record], tuple[str, ...] | None] = field(repr=False)

    def __post_init__(self) -> None:
        if _RECIPE_ID.fullmatch(self.id) is None:
            raise ValueError(f"recipe id {self.id!r} is not of the form name_v<N>")

    def key(self, record: Record) -> str | None:
        """The match-key string of ``record``, or None if it lacks what this recipe needs."""
        fields = self.canonical_fields(record)
        if fields is None:
            return None
        return SEPARATOR.join((self.id, *fields))

    def why_no_key(self, record: Record) -> str | None:
        """Why ``record`` gives no key: a code of ``NO_KEY_REASONS``, or None if it gives one.

        The first field (in key-string order) that is missing or unusable names the code,
        e.g. ``no_zip`` or ``tin_not_nine_digits``. Never changes what :meth:`key` returns.
        """
        if self.canonical_fields(record) is not None:
            return None
        return first_reason(self.id, self.required, record)


def _name_address(record: Record) -> tuple[str, ...] | None:
    name = canonical_name(record.get("given_name"), record.get("family_name"))
    if name is None:
        return None
    zip5 = canonical_zip5(record.get("zip"))
    if zip5 is None:
        return None
    state = canonical_state(record.get("state"))
    if state is None:
        return None
    street = canonical_street(record.get("street"))
    if street is None:
        return None
    return name, street, state, zip5


def _name_dob(record: Record) -> tuple[str, ...] | None:
    dob = canonical_date(record.get("date_of_birth"))
    if dob is None:
        return None
    name = canonical_name(record.get("given_name"), record.get("family_name"))
    if name is None:
        return None
    return name, dob


def _tin(record: Record) -> tuple[str, ...] | None:
    tin = canonical_tin(record.get("tin"))
    return None if tin is None else (tin,)


NAME_ADDRESS_V1 = MatchKeyRecipe(
    id="name_address_v1",
    description="Full name with street line, state and ZIP5; the city is not used.",
    required=("given_name", "family_name", "street", "state", "zip"),
    canonical_fields=_name_address,
)
"""``name_address_v1|<NAME>|<STREET>|<ST>|<ZIP5>``.

e.g. ``name_address_v1|GARCIA JOSE|123 N MAIN ST # 4|IL|62701``. The city is left out on
purpose: people write it inconsistently (USPS "acceptable" vs preferred names, Brooklyn vs
New York, neighbourhoods, St/Saint), while ZIP5 already fixes the delivery area and the
state is a cheap guard against a mistyped ZIP that lands in another state.
"""

NAME_DOB_V1 = MatchKeyRecipe(
    id="name_dob_v1",
    description="Full name with date of birth.",
    required=("given_name", "family_name", "date_of_birth"),
    canonical_fields=_name_dob,
)
"""``name_dob_v1|<NAME>|<YYYY-MM-DD>``, e.g. ``name_dob_v1|GARCIA JOSE|1980-04-12``."""

TIN_V1 = MatchKeyRecipe(
    id="tin_v1",
    description="Taxpayer identification number (SSN or ITIN), nine digits.",
    required=("tin",),
    canonical_fields=_tin,
)
"""``tin_v1|<9 digits>``, e.g. ``tin_v1|123456789``."""


def _tolerant_name(record: Record) -> str | None:
    return tolerant_name(record.get("given_name"), record.get("family_name"))


def _name_address_v2(record: Record) -> tuple[str, ...] | None:
    name = _tolerant_name(record)
    if name is None:
        return None
    zip5 = canonical_zip5(record.get("zip"))
    state = canonical_state(record.get("state"))
    street = canonical_street(record.get("street"))
    if zip5 is None or state is None or street is None:
        return None
    return name, street, state, zip5


def _name_dob_v2(record: Record) -> tuple[str, ...] | None:
    dob = tolerant_date(record.get("date_of_birth"))
    name = _tolerant_name(record) if dob is not None else None
    return None if name is None or dob is None else (name, dob)


def _name_house(record: Record) -> tuple[str, ...] | None:
    house = house_number(record.get("street"))
    zip5 = canonical_zip5(record.get("zip"))
    name = _tolerant_name(record) if house and zip5 else None
    return None if name is None or house is None or zip5 is None else (name, house, zip5)


def _house_dob(record: Record) -> tuple[str, ...] | None:
    house = house_number(record.get("street"))
    zip5 = canonical_zip5(record.get("zip"))
    dob = tolerant_date(record.get("date_of_birth"))
    return None if house is None or zip5 is None or dob is None else (house, zip5, dob)


def _sound_dob(record: Record) -> tuple[str, ...] | None:
    dob = tolerant_date(record.get("date_of_birth"))
    name = sounded_name(record.get("given_name"), record.get("family_name")) if dob else None
    return None if name is None or dob is None else (name, dob)


def _tin_v2(record: Record) -> tuple[str, ...] | None:
    tin = tolerant_tin(record.get("tin"))
    return None if tin is None else (tin,)


def _tin_initials(record: Record) -> tuple[str, ...] | None:
    tin = tolerant_tin(record.get("tin"))
    letters = initials(record.get("given_name"), record.get("family_name")) if tin else None
    return None if tin is None or letters is None else (tin, letters)


NAME_ADDRESS_V2 = MatchKeyRecipe(
    id="name_address_v2",
    description="Tolerant name (transliterated, nickname-folded, first given and family "
    "token) with street line, state and ZIP5.",
    required=("given_name", "family_name", "street", "state", "zip"),
    canonical_fields=_name_address_v2,
)
"""``name_address_v2|<TOLERANT NAME>|<STREET>|<ST>|<ZIP5>``.

e.g. ``name_address_v2|GARCIA JOSE|123 N MAIN ST # 4|IL|62701`` for "Jose Luis Garcia
Lopez" as well as "Pepe Garcia"'s folded forms where the nickname table knows them. The
name rules are in :mod:`psi_core.recipes._tolerant`.
"""

NAME_DOB_V2 = MatchKeyRecipe(
    id="name_dob_v2",
    description="Tolerant name with date of birth, month and day sorted, several layouts.",
    required=("given_name", "family_name", "date_of_birth"),
    canonical_fields=_name_dob_v2,
)
"""``name_dob_v2|<TOLERANT NAME>|<YYYY-A-B>``, e.g. ``name_dob_v2|GARCIA JOSE|1980-04-12``
for 1980-04-12, 1980-12-04, 04/12/1980 and the spreadsheet serial 29323 alike."""

NAME_HOUSE_V1 = MatchKeyRecipe(
    id="name_house_v1",
    description="Tolerant name with house number and ZIP5 (street spelling and unit ignored).",
    required=("given_name", "family_name", "street", "zip"),
    canonical_fields=_name_house,
)
"""``name_house_v1|<TOLERANT NAME>|<HOUSE NUMBER>|<ZIP5>``, e.g.
``name_house_v1|GARCIA JOSE|123|62701``: a unit present on one side only, or a street
name spelled differently, still matches; a PO box gives no key."""

HOUSE_DOB_V1 = MatchKeyRecipe(
    id="house_dob_v1",
    description="House number, ZIP5 and date of birth (month and day sorted); no name.",
    required=("street", "zip", "date_of_birth"),
    canonical_fields=_house_dob,
)
"""``house_dob_v1|<HOUSE NUMBER>|<ZIP5>|<YYYY-A-B>``, e.g. ``house_dob_v1|123|62701|1980-04-12``:
immune to every name variation; twins at one address share it."""

SOUND_DOB_V1 = MatchKeyRecipe(
    id="sound_dob_v1",
    description="Soundex of the tolerant given and family tokens with the tolerant birth date.",
    required=("given_name", "family_name", "date_of_birth"),
    canonical_fields=_sound_dob,
)
"""``sound_dob_v1|<CODE> <CODE>|<YYYY-A-B>``, e.g. ``sound_dob_v1|G620 J200|1980-04-12``:
a typo inside a name or another romanization that sounds alike still matches."""

TIN_V2 = MatchKeyRecipe(
    id="tin_v2",
    description="TIN, also when a spreadsheet dropped its leading zeros or added '.0'.",
    required=("tin",),
    canonical_fields=_tin_v2,
)
"""``tin_v2|<9 digits>``: ``tin_v1`` plus 7-8 digit TINs padded with zeros and "123456789.0"."""

TIN_INITIALS_V1 = MatchKeyRecipe(
    id="tin_initials_v1",
    description="TIN with the initials of the tolerant given and family tokens, sorted.",
    required=("tin", "given_name", "family_name"),
    canonical_fields=_tin_initials,
)
"""``tin_initials_v1|<9 digits>|<2 letters>``, e.g. ``tin_initials_v1|123456789|GJ``: a TIN
borrowed or mistyped into another person's is not enough on its own."""

DEFAULT_RECIPE_IDS: tuple[str, ...] = ("name_address_v1", "name_dob_v1", "tin_v1")
"""What ``build-index`` uses when no recipe is named: the first-generation recipes, so an
index built before the newer ones existed and one built now hold the same keys."""

RECIPES: Mapping[str, MatchKeyRecipe] = MappingProxyType(
    {
        recipe.id: recipe
        for recipe in (
            NAME_ADDRESS_V1,
            NAME_DOB_V1,
            TIN_V1,
            NAME_ADDRESS_V2,
            NAME_DOB_V2,
            NAME_HOUSE_V1,
            HOUSE_DOB_V1,
            SOUND_DOB_V1,
            TIN_V2,
            TIN_INITIALS_V1,
        )
    }
)


def recipe_ids() -> tuple[str, ...]:
    """The ids of every recipe this build implements, sorted."""
    return tuple(sorted(RECIPES))


def get_recipe(recipe_id: str) -> MatchKeyRecipe:
    """The recipe named ``recipe_id``.

    Raises ``UnknownRecipeError`` (INVALID_ARGUMENT) naming the known ids when this build
    does not implement it.
    """
    recipe = RECIPES.get(recipe_id)
    if recipe is None:
        shown = recipe_id if len(recipe_id) <= 64 else recipe_id[:64] + "..."
        raise UnknownRecipeError(
            f"unknown match-key recipe {shown!r}; this build implements: " + ", ".join(recipe_ids())
        )
    return recipe


def forget_cached_forms() -> None:
    """Empty the canonical forms' caches (``_normalize.CACHE_ENTRIES``), so that a
    benchmark round measures a build from cold rather than from the previous round's."""
    for cached in (canonical_name, canonical_date, canonical_street):
        cached.cache_clear()
