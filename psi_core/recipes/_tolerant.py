"""Tolerant canonical forms for the second-generation recipes (``*_v2`` and the house keys).

The ``_v1`` forms (``_normalize``) keep every name token and accept one date layout; they
miss a subject whose record differs by a nickname, a dropped second surname, a day and
month written the other way round or a TIN that lost its leading zeros in a spreadsheet.
These forms trade a little discrimination for that tolerance; ``benchmarks.linkage``
measures both sides of the trade, and ``docs/LINKAGE.md`` has the figures.

Name (``tolerant_name``): one *given token* and one *family token*, sorted, plus the
generational suffix if any.

1. Non-Latin scripts are transliterated with ``anyascii`` ("王伟" -> "WangWei", "Иван" ->
   "Ivan"), then folded like ``_v1`` (accents, case, punctuation).
2. "FAMILY, GIVEN" in the family field with the given field empty is split at the comma.
3. Given field: hyphens join ("Min-jun" = "Minjun"), honorifics, initials and the
   Vietnamese middle markers VAN and THI are dropped; the first token left is the given
   token. Middle names are thus ignored ("Jose Luis" = "Jose"). A generational suffix
   at its end is set aside as in step 4 (it lands there when the fields are swapped).
4. Family field: hyphens split; particles join the word after them ("De la Cruz" ->
   "DELACRUZ", "O Brien" -> "OBRIEN"); generational suffixes are set aside; the first
   token is the family token, so a second surname may be missing ("Garcia Lopez" =
   "Garcia" = "Garcia-Lopez").
5. Both tokens go through the nickname fold (``_nicknames``). Sorting the two is what
   lets given and family fields be swapped; a hyphenated given name swapped into the
   family field is split there, and misses.

Date (``tolerant_date``): ``YYYY-MM-DD``, ``YYYYMMDD``, ``M/D/YYYY``, ``MMDDYYYY`` or a
spreadsheet serial day number, written as ``YYYY-A-B`` where ``A <= B`` are month and day
sorted: "1980-04-12" and "1980-12-04" give one key, so a day-month swap (or a
day-first layout) still matches. The cost is that two people of one name born on 4 Dec
and 12 Apr of one year share the key.

Sounded name (``sounded_name``): the two tokens of the tolerant name each replaced by
their American Soundex code ("MOHAMMED" and "MUHAMMAD" -> "M530"), so a slip inside a
name or another romanization that sounds alike still agrees, at the price of merging
names that sound alike (ROBERT and RUPERT).

TIN (``tolerant_tin``): as ``_v1``, and also 7 or 8 digits padded with leading zeros
(a spreadsheet dropped them) and a trailing ".0" removed (exported as a float).
"""

from __future__ import annotations

import datetime as _dt
import re

from anyascii import anyascii

from ._address import canonical_street
from ._nicknames import fold_nickname
from ._normalize import _GENERATIONAL, _HONORIFICS, canonical_tin, fold_name

_PARTICLES = frozenset(
    {"O", "D", "MC", "MAC", "DE", "DEL", "DELA", "LA", "LAS", "LOS", "DA", "DAS", "DO", "DOS"}
    | {"DI", "DU", "LE", "VAN", "VON", "DER", "DEN", "TER", "ST", "SAN", "SANTA", "AL", "EL"}
    | {"BIN", "BEN", "ABU", "ABD"}
)
_GIVEN_MARKERS = frozenset({"VAN", "THI"})


def _ascii(text: str) -> str:
    return text if text.isascii() else anyascii(text)


def _given_tokens(given: str) -> tuple[str | None, str | None]:
    """The given token and a generational suffix found in the given field (swapped names)."""
    tokens = [t for t in fold_name(_ascii(given).replace("-", "")) if t not in _HONORIFICS]
    generation = None
    while tokens and tokens[-1] in _GENERATIONAL:
        generation = _GENERATIONAL[tokens.pop()]
    tokens = [t for t in tokens if len(t) >= 2 and t not in _GENERATIONAL]
    if len(tokens) > 1 and tokens[0] in _GIVEN_MARKERS:
        tokens = tokens[1:]
    return (tokens[0] if tokens else None), generation


def _family_tokens(family: str) -> tuple[str | None, str | None]:
    """The family token and the generational suffix (either may be None)."""
    tokens = [t for t in fold_name(_ascii(family)) if t not in _HONORIFICS]
    generation = None
    while tokens and tokens[-1] in _GENERATIONAL:
        generation = _GENERATIONAL[tokens.pop()]
    joined: list[str] = []
    pending = ""
    for token in tokens:
        if token in _PARTICLES:
            pending += token
            continue
        joined.append(pending + token)
        pending = ""
    if pending:
        joined.append(pending)
    joined = [t for t in joined if len(t) >= 2]
    return (joined[0] if joined else None), generation


def tolerant_name(given: str | None, family: str | None) -> str | None:
    """The tolerant name field (see the module docstring), or None when either part is missing."""
    given = (given or "").strip()
    family = (family or "").strip()
    if not given and "," in family:
        family, given = family.split(",", 1)
    if not given or not family:
        return None
    first, given_generation = _given_tokens(given)
    last, generation = _family_tokens(family)
    if first is None or last is None:
        return None
    tokens = sorted((fold_nickname(first), fold_nickname(last)))
    generation = generation or given_generation
    if generation is not None:
        tokens.append(generation)
    return " ".join(tokens)


_SOUNDEX_CODES = {
    **dict.fromkeys("BFPV", "1"),
    **dict.fromkeys("CGJKQSXZ", "2"),
    **dict.fromkeys("DT", "3"),
    "L": "4",
    **dict.fromkeys("MN", "5"),
    "R": "6",
}


def soundex(token: str) -> str:
    """American Soundex of one upper-case ASCII token ("ROBERT" -> "R163").

    The first letter, then the codes of the following consonants, a code repeated across
    H or W written once, vowels separating repeats, padded or cut to four characters.
    """
    letters = [c for c in token if "A" <= c <= "Z"]
    if not letters:
        return token
    out = [letters[0]]
    last = _SOUNDEX_CODES.get(letters[0], "")
    for c in letters[1:]:
        code = _SOUNDEX_CODES.get(c, "")
        if code and code != last:
            out.append(code)
        if c not in "HW":
            last = code
    return ("".join(out) + "000")[:4]


def sounded_name(given: str | None, family: str | None) -> str | None:
    """The tolerant name with each of its two tokens replaced by its Soundex, sorted."""
    name = tolerant_name(given, family)
    if name is None:
        return None
    tokens = name.split(" ")
    codes = sorted(soundex(t) for t in tokens[:2])
    return " ".join(codes + tokens[2:])


def family_token(family: str | None, given: str | None = None) -> str | None:
    """The family token alone (step 4 of the name rules), for the house keys."""
    family = (family or "").strip()
    if not (given or "").strip() and "," in family:
        family = family.split(",", 1)[0]
    return _family_tokens(family)[0] if family else None


_YMD = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_SLASHED = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", re.ASCII)
_EIGHT = re.compile(r"\d{8}", re.ASCII)
_SERIAL = re.compile(r"\d{4,5}(?:\.0+)?", re.ASCII)
_EXCEL_EPOCH = _dt.date(1899, 12, 30)
_PLACEHOLDERS = frozenset({(1900, 1, 1)})


def _parts(text: str) -> tuple[int, int, int] | None:
    """Year and the two other numbers of a date in one of the accepted layouts."""
    if m := _YMD.fullmatch(text):
        return int(m[1]), int(m[2]), int(m[3])
    if m := _SLASHED.fullmatch(text):
        return int(m[3]), int(m[1]), int(m[2])
    if _EIGHT.fullmatch(text):
        if 1900 <= int(text[:4]) <= 2099:
            return int(text[:4]), int(text[4:6]), int(text[6:])
        return int(text[4:]), int(text[:2]), int(text[2:4])
    if _SERIAL.fullmatch(text):
        day = _EXCEL_EPOCH + _dt.timedelta(days=int(float(text)))
        return day.year, day.month, day.day
    return None


def _exists(year: int, month: int, day: int) -> bool:
    try:
        _dt.date(year, month, day)
    except ValueError:
        return False
    return True


def tolerant_date(text: str | None) -> str | None:
    """``YYYY-A-B`` with month and day sorted (see the module docstring), or None."""
    if not text:
        return None
    parts = _parts(text.strip())
    if parts is None:
        return None
    year, a, b = parts
    if not 1900 <= year <= 2099 or (year, a, b) in _PLACEHOLDERS:
        return None
    if not (_exists(year, a, b) or _exists(year, b, a)):
        return None
    low, high = sorted((a, b))
    return f"{year:04d}-{low:02d}-{high:02d}"


_FLOAT_TAIL = re.compile(r"\.0+$", re.ASCII)


def tolerant_tin(text: str | None) -> str | None:
    """Nine TIN digits, restoring leading zeros a spreadsheet dropped; or None."""
    if not text:
        return None
    text = _FLOAT_TAIL.sub("", text.strip())
    digits = re.sub(r"[ .-]", "", text)
    if digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 8:
        text = digits.zfill(9)
    return canonical_tin(text)


def house_number(street: str | None) -> str | None:
    """The house number of a street line (its canonical first token), or None.

    None for a PO box or a line without a leading number.
    """
    line = canonical_street(street)
    if line is None or line.startswith("PO BOX"):
        return None
    first = line.split(" ", 1)[0]
    if not first[:1].isdigit():
        return None
    return first.lstrip("0") or "0"


def initials(given: str | None, family: str | None) -> str | None:
    """The first letters of the given and family tokens, sorted ("JG" for Jose Garcia)."""
    given = (given or "").strip()
    family = (family or "").strip()
    if not given and "," in family:
        family, given = family.split(",", 1)
    first = _given_tokens(given)[0] if given else None
    last = _family_tokens(family)[0] if family else None
    if first is None or last is None:
        return None
    return "".join(sorted((first[0], last[0])))
