"""Text helpers shared by the population and the subject variations."""

from __future__ import annotations

import unicodedata
from typing import Final

_NO_DECOMPOSITION: Final = str.maketrans(
    {
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Ð": "D",
        "ð": "d",
        "Ø": "O",
        "ø": "o",
        "ß": "ss",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
        "ı": "i",
    }
)


def strip_accents(text: str) -> str:
    """Remove diacritics the way an ASCII-only data-entry system would ("Łódź" -> "Lodz").

    Combining marks are dropped after NFD decomposition, and letters that do not decompose
    (Ł, Đ, Ø, ß, ...) are replaced by their usual ASCII spelling. Other characters are
    kept, so the result is ASCII only for Latin-script input.
    """
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text.translate(_NO_DECOMPOSITION))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped)
