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

RECIPES: Mapping[str, MatchKeyRecipe] = MappingProxyType(
    {recipe.id: recipe for recipe in (NAME_ADDRESS_V1, NAME_DOB_V1, TIN_V1)}
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
