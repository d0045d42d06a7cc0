"""The ways an agency's copy of a person differs from the custodian's record.

Every change here is one a match-key recipe is meant to undo (case, diacritics, name
order, "FAMILY, GIVEN", hyphens, USPS long forms, "#4" for "APT 4", ZIP+4, spelled-out
state, stray spaces and punctuation, TIN without dashes) or a field the agency does not
know (date of birth or TIN left empty). Up to case, diacritics, punctuation, spacing and
USPS spelling, :func:`vary` keeps every name token, the house number and unit, the city,
the first five digits of the ZIP, and the date of birth and TIN digits when it keeps them
at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from psi_tools.synth import _addresses as addr
from psi_tools.synth._names import ORIGINS
from psi_tools.synth._text import strip_accents

DECISIONS: Final = 20
"""How many uniform draws in ``[0, 1)`` :func:`vary` takes per row."""

(
    _EXACT,
    _NAME_ACCENTS,
    _NAME_CASE,
    _NAME_HYPHEN,
    _NAME_LAYOUT,
    _NAME_SPACES,
    _NAME_PUNCTUATION,
    _SUFFIX,
    _DIRECTIONAL,
    _UNIT,
    _UNIT_FORM,
    _ADDRESS_CASE,
    _ADDRESS_PUNCTUATION,
    _ZIP4,
    _ZIP4_DIGITS,
    _STATE,
    _TIN_FORM,
    _DOB_MISSING,
    _TIN_MISSING,
    _NOISE_PLACE,
) = range(DECISIONS)

_SPLIT: Final = re.compile(r"([ \-])")
_SUFFIXES: Final = addr.STREET_SUFFIXES
_GENERATIONS: Final = ("JR", "SR")


def _accented_forms() -> dict[str, str]:
    forms: dict[str, str] = {}
    for table in ORIGINS.values():
        for name in (*table.male, *table.female, *table.family):
            for token in _SPLIT.split(name):
                key = strip_accents(token).casefold()
                if key != token.casefold():
                    forms.setdefault(key, token)
    return forms


_ACCENTED: Final = _accented_forms()


def _case_like(word: str, model: str) -> str:
    if model.isupper():
        return word.upper()
    if model.islower():
        return word.lower()
    return word


def _add_accents(name: str) -> str:
    parts = _SPLIT.split(name)
    return "".join(_case_like(_ACCENTED.get(p.casefold(), p), p) for p in parts)


def _recase(text: str, draw: float, *, address: bool = False) -> str:
    if draw < 0.3:
        return text.lower()
    if draw < 0.8:
        return addr.title_words(text.lower()) if address else text.title()
    return text.upper()


def _long_form(long: str, model: str) -> str:
    return long.upper() if model.isupper() else long


def vary(row: dict[str, str], u: Sequence[float]) -> dict[str, str]:
    """Return a copy of a person row as an agency might have typed it.

    ``row`` holds the person columns (``given_name`` ... ``tin``); other keys are copied
    unchanged. ``u`` holds :data:`DECISIONS` uniform draws that fix every choice, so the
    result is a pure function of ``(row, u)``.
    """
    out = dict(row)
    if u[_EXACT] < 0.1:
        return out
    given, family = out["given_name"], out["family_name"]

    if u[_NAME_ACCENTS] < 0.25:
        if given.isascii() and family.isascii():
            given, family = _add_accents(given), _add_accents(family)
        else:
            given, family = strip_accents(given), strip_accents(family)
    if u[_NAME_CASE] < 0.55:
        draw = u[_NAME_CASE] / 0.55
        given, family = _recase(given, draw), _recase(family, draw)
    generation = family.rsplit(" ", 1)[-1].upper() in _GENERATIONS
    if u[_NAME_HYPHEN] < 0.3 and not generation:
        if " " in family:
            family = family.replace(" ", "-", 1)
        elif "-" in family:
            family = family.replace("-", " ")
    if u[_NAME_SPACES] < 0.1:
        if u[_NOISE_PLACE] < 0.5:
            family = family.replace(" ", "  ") if " " in family else f" {family} "
        else:
            given = f"{given}  " if u[_NOISE_PLACE] < 0.75 else f"  {given}"
    if u[_NAME_PUNCTUATION] < 0.05:
        given = f"{given}." if u[_NOISE_PLACE] < 0.5 else f"{given},"
    if u[_NAME_LAYOUT] < 0.07 and given:
        family, given = f"{family}, {given}", ""
    elif u[_NAME_LAYOUT] < 0.15:
        given, family = family, given
    out["given_name"], out["family_name"] = given, family

    out["street"] = _vary_street(out["street"], u)
    state = out["state"]
    if u[_ADDRESS_CASE] < 0.3:
        draw = u[_ADDRESS_CASE] / 0.3
        out["street"] = _recase(out["street"], draw, address=True)
        out["city"] = _recase(out["city"], draw, address=True)
    if u[_STATE] < 0.2 and state in addr.STATE_NAMES:
        name = addr.STATE_NAMES[state]
        out["state"] = name.upper() if out["city"].isupper() else name
    if u[_ZIP4] < 0.3 and len(out["zip"]) == 5:
        out["zip"] = f"{out['zip']}-{int(u[_ZIP4_DIGITS] * 9999) + 1:04d}"

    tin = out["tin"]
    if u[_TIN_MISSING] < 0.12:
        out["tin"] = ""
    elif u[_TIN_FORM] < 0.4:
        out["tin"] = tin.replace("-", "")
    elif u[_TIN_FORM] < 0.45:
        out["tin"] = tin.replace("-", " ")
    if u[_DOB_MISSING] < 0.08:
        out["date_of_birth"] = ""
    return out


def _vary_street(street: str, u: Sequence[float]) -> str:
    tokens = street.split(" ")
    if len(tokens) < 3 or tokens[0].upper() == "PO":
        return street
    unit_at = next(
        (i for i in range(2, len(tokens)) if tokens[i].upper() in addr.UNIT_DESIGNATORS),
        len(tokens),
    )
    suffix_at = unit_at - 1
    model = tokens[1]
    if u[_SUFFIX] < 0.35 and tokens[suffix_at].upper() in _SUFFIXES:
        long = _SUFFIXES[tokens[suffix_at].upper()]
        tokens[suffix_at] = _long_form(long, model)
    if u[_DIRECTIONAL] < 0.35 and tokens[1].upper() in addr.DIRECTIONALS and suffix_at > 2:
        tokens[1] = _long_form(addr.DIRECTIONALS[tokens[1].upper()], model)
    if unit_at < len(tokens) - 1 and u[_UNIT] < 0.45:
        designator, number = tokens[unit_at], " ".join(tokens[unit_at + 1 :])
        form = u[_UNIT_FORM]
        if form < 0.4:
            unit = [f"#{number}"]
        elif form < 0.55:
            unit = ["#", number]
        elif form < 0.8:
            unit = [f"{designator}.", number]
        else:
            long = addr.UNIT_DESIGNATORS[designator.upper()]
            unit = [_long_form(long, model), number]
        tokens[unit_at:] = unit
    if u[_ADDRESS_PUNCTUATION] < 0.15:
        if u[_NOISE_PLACE] < 0.4 and unit_at < len(tokens):
            tokens[unit_at - 1] += ","
        elif u[_NOISE_PLACE] < 0.7:
            for i in sorted({1, suffix_at}):
                if tokens[i].upper() in addr.DIRECTIONALS or tokens[i].upper() in _SUFFIXES:
                    tokens[i] += "."
        else:
            tokens[0] = f" {tokens[0]}"
            tokens[-1] = f"{tokens[-1]}  "
    return " ".join(tokens)
