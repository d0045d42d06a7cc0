"""Text folding and the name, date and TIN canonical forms shared by the recipes.

Folding (``fold_name``, ``fold_street``) turns free text into upper-case tokens:

1. Unicode NFKC, case folding, upper-casing, then NFKD.
2. Combining marks dropped (accents: "José" -> "JOSE", "Nguyễn" -> "NGUYEN"); letters
   NFKD does not decompose are spelled out ("ß" -> "SS", "Ø" -> "O", "Ł" -> "L",
   "Æ" -> "AE", "Đ" -> "D", "Þ" -> "TH"); decimal digits of any script become ASCII.
3. Apostrophes and the middle dot are deleted ("O'Brien" -> "OBRIEN"); every other
   punctuation, symbol, control or separator character splits tokens ("García-López" ->
   "GARCIA LOPEZ"). ``fold_street`` keeps ``#`` as a token of its own.

A token is therefore a non-empty run of letters and digits (plus the lone ``#`` in streets),
so the key separator ``|`` and the space can never occur inside one. Letters outside Latin
(Cyrillic, Han, ...) are kept as written, upper-cased: there is no transliteration.

The output depends on the Unicode database of the running Python (``unicodedata``); both
parties must run the same Python minor version, and an upgrade that changes it is checked
by the recipe vectors.

The canonical forms are pure functions of their text, and names, birth dates and streets
repeat across the records of a population and across the recipes of one record, so each
keeps an LRU cache of recent answers (``CACHE_ENTRIES``); the output is unchanged.
"""

from __future__ import annotations

import functools
import re
import unicodedata

SEPARATOR = "|"
#: Answers each canonical form remembers (a few MiB a process at most).
CACHE_ENTRIES = 1 << 16

_APOSTROPHES = "'`\u00b4\u2018\u2019\u201b\u02bc\u02bb\u02b9\u2032\uff07\u00b7\u2027"

_SPELLED_OUT: dict[str, str] = {
    "Ø": "O",
    "ø": "O",
    "Ł": "L",
    "ł": "L",
    "Æ": "AE",
    "æ": "AE",
    "Œ": "OE",
    "œ": "OE",
    "Þ": "TH",
    "þ": "TH",
    "Ð": "D",
    "ð": "D",
    "Đ": "D",
    "đ": "D",
    "Ħ": "H",
    "ħ": "H",
    "Ŧ": "T",
    "ŧ": "T",
    "ı": "I",
    "ĸ": "K",
    "ß": "SS",
    "ẞ": "SS",
    "ſ": "S",
}


class _FoldTable(dict[int, str | int | None]):
    """A ``str.translate`` table that classifies each code point once, on first sight.

    ASCII is filled in up front; any other character is classified by its Unicode
    category when first met and cached, so the table stays as small as the alphabet of
    the data. Concurrent filling from several threads writes identical values.
    """

    def __init__(self, keep: str) -> None:
        super().__init__()
        self._keep = keep
        for code in range(128):
            self[code] = self._classify(code)

    def __missing__(self, code: int) -> str | int | None:
        value = self._classify(code)
        self[code] = value
        return value

    def _classify(self, code: int) -> str | int | None:
        char = chr(code)
        if char in self._keep:
            return f" {char} "
        if char in _APOSTROPHES:
            return None
        if char in _SPELLED_OUT:
            return _SPELLED_OUT[char]
        category = unicodedata.category(char)
        if category[0] == "M":
            return None
        if category == "Nd":
            return str(unicodedata.digit(char))
        if category[0] in "LN":
            upper = char.upper()
            return code if upper == char else upper
        return " "


_NAME_TABLE = _FoldTable(keep="")
_STREET_TABLE = _FoldTable(keep="#")


def _fold(text: str, table: _FoldTable) -> list[str]:
    if text.isascii():
        return text.upper().translate(table).split()
    text = unicodedata.normalize("NFKC", text).casefold().upper()
    return unicodedata.normalize("NFKD", text).translate(table).split()


def fold_name(text: str) -> list[str]:
    """Fold free text (a name, city or state) into upper-case letter/digit tokens."""
    return _fold(text, _NAME_TABLE)


def fold_street(text: str) -> list[str]:
    """Fold a street line into tokens like ``fold_name``, keeping ``#`` as its own token."""
    return _fold(text, _STREET_TABLE)


_GENERATIONAL: dict[str, str] = {
    "JR": "JR",
    "JNR": "JR",
    "JUNIOR": "JR",
    "SR": "SR",
    "SNR": "SR",
    "SENIOR": "SR",
    "II": "II",
    "2ND": "II",
    "III": "III",
    "3RD": "III",
    "IV": "IV",
    "4TH": "IV",
}

_HONORIFICS = frozenset({"MR", "MRS", "MS", "MISS", "MX", "DR", "PROF", "REV", "ESQ", "PHD"})

_JOINED_PREFIXES = frozenset({"O", "D", "MC"})


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def canonical_name(given: str | None, family: str | None) -> str | None:
    """The name field of a key: the sorted tokens of given and family name, or None.

    Tokens of both fields are pooled and sorted, so field order, "LAST, FIRST" in one
    field and different splits of a multi-part name all agree. Honorifics (MR, MRS, DR,
    ESQ, ...) are dropped; generational suffixes are kept as tokens (JUNIOR/JR. -> JR,
    SENIOR -> SR, 2ND -> II, 3RD -> III, 4TH -> IV) because father and son often share an
    address. Middle names and initials are kept. When the family field begins with O, D
    or MC followed by more, the two are joined ("O Brien" -> "OBRIEN"), matching
    "O'Brien" and "OBrien".

    Returns None unless at least two tokens of two or more characters that are not
    generational suffixes remain: a lone surname or "J SMITH" is too weak to tell the
    people of one household apart.
    """
    tokens: list[str] = []
    if given:
        tokens.extend(fold_name(given))
    if family:
        family_tokens = fold_name(family)
        if len(family_tokens) >= 2 and family_tokens[0] in _JOINED_PREFIXES:
            family_tokens[0:2] = [family_tokens[0] + family_tokens[1]]
        tokens.extend(family_tokens)
    kept: list[str] = []
    substantive = 0
    for token in tokens:
        if token in _HONORIFICS:
            continue
        generational = _GENERATIONAL.get(token)
        if generational is not None:
            kept.append(generational)
            continue
        kept.append(token)
        if len(token) >= 2:
            substantive += 1
    if substantive < 2:
        return None
    kept.sort()
    return " ".join(kept)


_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PLACEHOLDER_DATES = frozenset({"1900-01-01"})


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def canonical_date(text: str | None) -> str | None:
    """The date-of-birth field: ``YYYY-MM-DD`` exactly as the file format has it, or None.

    Surrounding whitespace is ignored. None for any other layout, a date that does not
    exist (2023-02-29), a year outside 1900..2099, or the placeholder 1900-01-01 that
    systems write for "unknown" (it would otherwise join strangers who share a name).
    """
    if not text:
        return None
    match = _DATE.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    if not 1900 <= year <= 2099 or not 1 <= month <= 12 or day < 1:
        return None
    if day > _DAYS_IN_MONTH[month]:
        return None
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return None
    canonical = match[0]
    return None if canonical in _PLACEHOLDER_DATES else canonical


_TIN = re.compile(r"[0-9][0-9 .-]*", re.ASCII)
_TIN_NOISE = str.maketrans("", "", " .-")


def canonical_tin(text: str | None) -> str | None:
    """The TIN field: nine ASCII digits, or None.

    Spaces, dots and hyphens are ignored ("123-45-6789" = "123 45 6789" = "123456789");
    any other character makes the TIN unusable. Also None for an area 000 or 666, a group
    00 or a serial 0000 (never issued), which covers 000000000 and most placeholders.
    ITINs (area 9xx) are accepted.
    """
    if not text:
        return None
    text = text.strip()
    if _TIN.fullmatch(text) is None:
        return None
    digits = text.translate(_TIN_NOISE)
    if len(digits) != 9:
        return None
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or group == "00" or serial == "0000":
        return None
    return digits
