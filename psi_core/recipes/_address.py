"""Canonical street line, state and ZIP for the address recipes.

The street line is parsed the way USPS Publication 28 lays out a delivery address::

    [house number] [predirectional] street name [suffix] [postdirectional] [unit ...]

and written back in that order with standard abbreviations. The parse is a heuristic with
no street database behind it, and that is enough: both parties run this same code, so
what matters is that the usual ways of writing one address give one string, and that two
different addresses never do. Rules, in the order they apply:

- "U S" (from "U.S.") becomes "US". Spelled ordinals become numbers ("FIFTH" -> "5TH",
  "TWENTY FIRST" -> "21ST") and numeric ordinals get their proper ending ("2D" -> "2ND").
  "2ND FL" becomes "FL 2".
- "PO BOX", "P O BOX", "POST OFFICE BOX", "POB" -> "PO BOX <number>", nothing else parsed.
- Secondary unit: from the first unit designator after the second token onward (or a
  leading "APT 4" before the house number). APT, UNIT, #, STE, RM, LOT, SPACE, TRAILER and
  NO all become ``#``; "APT #4", "# 4", "Unit 4", "Apt. 4" -> "# 4". The unit identifier
  is its tokens joined ("4-B" = "4 B" = "4B") without leading zeros ("04" = "4"). Tokens
  left after the suffix and postdirectional ("123 MAIN ST 4B") are a unit as well.
- The suffix is the last suffix word that has a street-name word before it, so "PARK
  AVENUE" -> "PARK AVE" and "AVENUE OF THE AMERICAS" keeps its first word a name. A route
  word followed by a number ("US HWY 1", "COUNTY ROAD 5") is part of the name, so
  "123 MAIN RD 4" keeps the 4 in the name where "123 MAIN RD APT 4" has a unit.
- A directional right after the house number is a predirectional, and one right after
  the suffix a postdirectional (both abbreviated: "NORTH" -> "N", "SOUTH WEST" -> "SW"),
  unless that would leave the street name empty ("123 NORTH ST", "N ST NW" in Washington
  DC), in which case it is the name.
- Words in the street name are spelled out, so each has one form in every position:
  suffix words and directionals to their full word ("AVE A" -> "AVENUE A", "MT VERNON" ->
  "MOUNT VERNON"), except ST (Saint or Street) and DR (Doctor or Drive), which stay as
  they are; "SAINT" -> "ST" and "DOCTOR" -> "DR" to meet them.
"""

from __future__ import annotations

import functools
import re

from ._normalize import CACHE_ENTRIES, fold_name, fold_street
from ._usps import (
    DIRECTIONAL_PAIRS,
    DIRECTIONALS,
    NAME_WORDS,
    ORDINAL_WORDS,
    ROUTE_SUFFIXES,
    STATES,
    SUFFIXES,
    TENS_WORDS,
    UNIT_DESIGNATORS,
)

_NAME_POSITION: dict[str, str] = {
    **{written: full for written, (full, _) in SUFFIXES.items()},
    **{written: full for written, (full, _) in DIRECTIONALS.items()},
    **NAME_WORDS,
}
_SUFFIX_ABBREVIATION: dict[str, str] = {written: abbr for written, (_, abbr) in SUFFIXES.items()}
_ROUTE_WORDS = frozenset(w for w, (_, abbr) in SUFFIXES.items() if abbr in ROUTE_SUFFIXES)
_DIRECTIONAL_ABBREVIATION: dict[str, str] = {w: abbr for w, (_, abbr) in DIRECTIONALS.items()}
_FLOOR_WORDS = frozenset(w for w, d in UNIT_DESIGNATORS.items() if d == "FL")
_ORDINAL_TRIGGERS = frozenset({*ORDINAL_WORDS, *TENS_WORDS})
_NUMERIC_ORDINAL = re.compile(r"0*([0-9]+)(?:ST|ND|RD|TH|D)", re.ASCII)
_PO_BOX_PREFIXES: tuple[list[str], ...] = (
    ["PO", "BOX"],
    ["P", "O", "BOX"],
    ["POST", "OFFICE", "BOX"],
    ["POB"],
    ["POBOX"],
)
_PO_BOX_STARTS = frozenset(prefix[0] for prefix in _PO_BOX_PREFIXES)
_HAS_DIGIT = re.compile(r"[0-9]", re.ASCII).search
_ZIP = re.compile(r"([0-9]{5})(?:[ -]?[0-9]{4})?", re.ASCII)


def _ordinal(number: int) -> str:
    if 10 <= number % 100 <= 20:
        return f"{number}TH"
    return f"{number}{('TH', 'ST', 'ND', 'RD')[number % 10] if number % 10 < 4 else 'TH'}"


def _pre_pass(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        token = tokens[i]
        number: int | None = None
        if token in _ORDINAL_TRIGGERS:
            tens = TENS_WORDS.get(token)
            unit = ORDINAL_WORDS.get(tokens[i + 1], 10) if i + 1 < n else 10
            if tens is not None and unit < 10:
                number = tens + unit
                i += 1
            else:
                number = ORDINAL_WORDS.get(token)
        elif token[0].isdigit() and token[-1] in "DHT":
            match = _NUMERIC_ORDINAL.fullmatch(token)
            if match is not None:
                number = int(match[1])
        elif token == "U" and i + 1 < n and tokens[i + 1] == "S":
            token = "US"
            i += 1
        i += 1
        if number is None:
            out.append(token)
        elif i < n and tokens[i] in _FLOOR_WORDS:
            out.extend(("FL", str(number)))
            i += 1
        else:
            out.append(_ordinal(number))
    return out


def _po_box(tokens: list[str]) -> list[str] | None:
    if tokens[0] not in _PO_BOX_STARTS:
        return None
    for prefix in _PO_BOX_PREFIXES:
        if tokens[: len(prefix)] == prefix:
            rest = tokens[len(prefix) :]
            return ["PO", "BOX", "".join(rest)] if rest else []
    return None


def _leading_directional(tokens: list[str]) -> tuple[str | None, int]:
    if len(tokens) >= 2:
        pair = DIRECTIONAL_PAIRS.get((tokens[0], tokens[1]))
        if pair is not None:
            return pair, 2
    return _DIRECTIONAL_ABBREVIATION.get(tokens[0]), 1


def _trailing_directional(tokens: list[str]) -> tuple[str | None, int]:
    if len(tokens) >= 2:
        pair = DIRECTIONAL_PAIRS.get((tokens[-2], tokens[-1]))
        if pair is not None:
            return pair, 2
    return _DIRECTIONAL_ABBREVIATION.get(tokens[-1]), 1


def _leaves_a_name(rest: list[str]) -> bool:
    """Whether ``rest`` still holds a street name once a predirectional is taken off."""
    if not rest:
        return False
    post, width = _trailing_directional(rest)
    core = rest[:-width] if post is not None and len(rest) > width else rest
    return not (len(core) == 1 and core[0] in SUFFIXES)


def _suffix_index(body: list[str]) -> int:
    for k in range(len(body) - 1, 0, -1):
        word = body[k]
        if word not in SUFFIXES:
            continue
        if word in _ROUTE_WORDS and k + 1 < len(body) and _HAS_DIGIT(body[k + 1]):
            continue
        return k
    return 0


def _primary(tokens: list[str]) -> tuple[list[str], list[str]]:
    """The canonical primary address tokens, and the tokens left over after it."""
    out: list[str] = []
    body = tokens
    if _HAS_DIGIT(body[0]):
        out.append(body[0])
        body = body[1:]
    if not body:
        return out, []
    pre, width = _leading_directional(body)
    if pre is not None and _leaves_a_name(body[width:]):
        out.append(pre)
        body = body[width:]
    k = _suffix_index(body)
    if k:
        out.extend([_NAME_POSITION.get(word, word) for word in body[:k]])
        out.append(_SUFFIX_ABBREVIATION[body[k]])
        after = body[k + 1 :]
        if after:
            post, width = _leading_directional(after)
            if post is not None:
                out.append(post)
                after = after[width:]
        return out, after
    post = None
    if len(body) >= 2:
        post, width = _trailing_directional(body)
        if post is not None and len(body) > width:
            body = body[:-width]
        else:
            post = None
    out.extend([_NAME_POSITION.get(word, word) for word in body])
    if post is not None:
        out.append(post)
    return out, []


def _secondary(tokens: list[str], designator: str | None, out: list[str]) -> None:
    """Append canonical ``designator identifier`` pairs for unit ``tokens`` to ``out``."""
    identifier: list[str] = []
    for token in tokens:
        canonical = UNIT_DESIGNATORS.get(token)
        if canonical is None:
            identifier.append(token)
        elif not identifier and designator is not None and canonical == "#":
            continue
        else:
            _append_unit(designator, identifier, out)
            designator, identifier = canonical, []
    _append_unit(designator, identifier, out)


def _append_unit(designator: str | None, identifier: list[str], out: list[str]) -> None:
    if not identifier:
        return
    joined = "".join(identifier)
    if joined.isdigit():
        joined = joined.lstrip("0") or "0"
    out.append(designator or "#")
    out.append(joined)


def _unit_start(tokens: list[str]) -> int:
    for k in range(2, len(tokens)):
        if tokens[k] in UNIT_DESIGNATORS:
            rest = tokens[k + 1 :]
            if len(rest) == 1 and rest[0] in SUFFIXES:
                continue
            return k
    return len(tokens)


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def canonical_street(text: str | None) -> str | None:
    """The street field of a key: a Publication 28 style line, or None.

    See the module docstring for the rules. None when the line is empty or has no digit at
    all: a street without a house or box number does not identify a household.
    """
    if not text:
        return None
    tokens = fold_street(text)
    if not tokens:
        return None
    tokens = _pre_pass(tokens)
    po_box = _po_box(tokens)
    if po_box is not None:
        return " ".join(po_box) if po_box and _HAS_DIGIT(po_box[2]) else None
    if (
        len(tokens) >= 3
        and tokens[0] in UNIT_DESIGNATORS
        and _HAS_DIGIT(tokens[2])
        and tokens[1] not in UNIT_DESIGNATORS
    ):
        tokens = [*tokens[2:], tokens[0], tokens[1]]
    split = _unit_start(tokens)
    primary, leftover = _primary(tokens[:split]) if split else ([], [])
    if not primary:
        return None
    out = primary
    if leftover:
        _secondary(leftover, "#", out)
    if split < len(tokens):
        _secondary(tokens[split:], None, out)
    line = " ".join(out)
    return line if _HAS_DIGIT(line) else None


def canonical_state(text: str | None) -> str | None:
    """The two-letter USPS code for a state, district, territory or military state; or None.

    Accepts codes, full names and common abbreviations in any case and punctuation
    ("Illinois", "ill.", "IL" -> "IL"; "D.C." -> "DC"). None for anything else.
    """
    if not text:
        return None
    tokens = fold_name(text)
    if not tokens:
        return None
    return STATES.get(" ".join(tokens)) or STATES.get("".join(tokens))


def canonical_zip5(text: str | None) -> str | None:
    """The five-digit ZIP of a ZIP or ZIP+4 ("62701", "62701-1234", "627011234"), or None.

    None for any other layout (including four-digit ZIPs that lost a leading zero: they
    cannot be told from a typo) and for 00000.
    """
    if not text:
        return None
    match = _ZIP.fullmatch(text.strip())
    if match is None or match[1] == "00000":
        return None
    return match[1]
