"""Why a record gives no key for a recipe: one stable reason code per record.

The codes are part of the API (``QueryStatus.no_key_counts``): they never change
meaning, and new ones are only added. Each recipe checks its fields in the order its key
string has them and reports the first that fails, so a record is counted once per
recipe. A reason is computed only for a record whose key is None; it never changes a key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from ._address import canonical_state, canonical_street, canonical_zip5
from ._normalize import canonical_date, canonical_name, canonical_tin

Record = Mapping[str, str | None]

NO_KEY_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "no_name": "no name",
        "name_unusable": "a name without two tokens of two or more letters",
        "no_street": "no street",
        "street_unusable": "a street line without a house number or street name",
        "no_state": "no state",
        "state_unknown": "a state that is not a US state, territory or its code",
        "no_zip": "no ZIP code",
        "zip_not_valid": "a ZIP code that is not five digits or ZIP+4 (or is 00000)",
        "no_birth_date": "no birth date",
        "birth_date_not_valid": (
            "a birth date not in YYYY-MM-DD, not a real date, outside 1900-2099 or a placeholder"
        ),
        "no_tin": "no TIN",
        "tin_not_nine_digits": "a TIN that is not nine digits (spaces, dots and dashes aside)",
        "tin_never_issued": "a TIN never issued (area 000 or 666, group 00 or serial 0000)",
        "incomplete": "a field the recipe reads is missing or unusable",
    }
)
"""Every reason code, with the words a person reads."""

_TIN_DIGITS = re.compile(r"[0-9][0-9 .-]*", re.ASCII)

Check = Callable[[Record], str | None]


def _blank(value: str | None) -> bool:
    return not value or not value.strip()


def _name(record: Record) -> str | None:
    given, family = record.get("given_name"), record.get("family_name")
    if canonical_name(given, family) is not None:
        return None
    return "no_name" if _blank(given) and _blank(family) else "name_unusable"


def _field(
    column: str, canonical: Callable[[str | None], str | None], missing: str, bad: str
) -> Check:
    def check(record: Record) -> str | None:
        value = record.get(column)
        if canonical(value) is not None:
            return None
        return missing if _blank(value) else bad

    return check


def _tin(record: Record) -> str | None:
    value = record.get("tin")
    if canonical_tin(value) is not None:
        return None
    if _blank(value):
        return "no_tin"
    text = (value or "").strip()
    digits = text.translate(str.maketrans("", "", " .-"))
    if _TIN_DIGITS.fullmatch(text) is None or len(digits) != 9:
        return "tin_not_nine_digits"
    return "tin_never_issued"


_STREET = _field("street", canonical_street, "no_street", "street_unusable")
_STATE = _field("state", canonical_state, "no_state", "state_unknown")
_ZIP = _field("zip", canonical_zip5, "no_zip", "zip_not_valid")
_BIRTH = _field("date_of_birth", canonical_date, "no_birth_date", "birth_date_not_valid")

CHECKS: Final[Mapping[str, tuple[Check, ...]]] = MappingProxyType(
    {
        "name_address_v1": (_name, _STREET, _STATE, _ZIP),
        "name_dob_v1": (_name, _BIRTH),
        "tin_v1": (_tin,),
    }
)
"""The checks of each recipe that has its own, in key-string order."""


def first_reason(recipe_id: str, required: tuple[str, ...], record: Record) -> str:
    """The code of the first check of ``recipe_id`` that ``record`` fails.

    A recipe without its own checks gets ``no_<column>`` for its first empty required
    column (``no_birth_date`` for ``date_of_birth``), else ``incomplete``.
    """
    for check in CHECKS.get(recipe_id, ()):
        reason = check(record)
        if reason is not None:
            return reason
    for column in required:
        if _blank(record.get(column)):
            code = "no_birth_date" if column == "date_of_birth" else f"no_{column}"
            if code in NO_KEY_REASONS:
                return code
            if column in ("given_name", "family_name"):
                return "no_name"
    return "incomplete"
