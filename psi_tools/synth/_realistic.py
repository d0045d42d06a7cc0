"""The ``realistic`` subject profile: content differences, not only formatting.

The ``formatting`` profile (``_variation.vary``) changes only what a match-key recipe is
meant to undo. Real agency files also differ in content. Under ``realistic`` every
subject first goes through the content variations below, each drawn independently at its
documented rate among the subjects it can apply to (a nickname needs a given name that
has one), then through ``vary`` exactly as under ``formatting``, then through export
damage. Everything is seeded: the same seed gives the same bytes.

=================  =====  =============================================================
variation          rate   what changes (the custodian's record keeps the original)
=================  =====  =============================================================
typo               0.04   one keyboard slip in the given or family name (substitution
                          by a neighbouring key, deletion, transposition, doubling)
nickname           0.15   given name -> a short form from *this module's own table*
                          (Robert -> Bob, José -> Pepe, Venkatesh -> Venky), or a
                          multi-part given name -> one part ("José Luis" -> "José");
                          of subjects whose given name has one
transliteration    0.20   another romanization (Mohammed -> Muhammad, Park -> Pak,
                          Zhang -> Chang, Sergei -> Sergey) or, for some Chinese and
                          Russian names, the native script (王伟, Иван Петров); of
                          subjects whose name has one
accents            0.25   diacritics removed or added (part of ``vary``: formatting)
compound_surname   0.35   two-part surname given as one part (the first 80 %, the
                          second 20 %); of subjects with a two-part surname
swapped            0.08   given and family name fields swapped (part of ``vary``)
hyphenation        0.06   a hyphen removed, replaced by a space, or two parts joined
                          solid ("Min-jun" -> "Minjun", "Mary Ann" -> "Maryann")
moved              0.07   a newer address: another house on another street, in the
                          same ZIP (half) or another ZIP of the same city
unit               0.10   a unit dropped; 0.03 of subjects without one gain one
day_month_swap     0.03   day and month of the birth date swapped (day <= 12)
spreadsheet        0.05   export damage: ZIP or TIN leading zeros lost, TIN in
                          scientific notation or with ".0", birth date as a
                          spreadsheet serial number or M/D/YYYY
=================  =====  =============================================================

Near misses (non-members built to look like a member): the ``formatting`` profile's
:data:`~psi_tools.synth._subjects.NEAR_MISS_SHARE` of non-members (same name; same name
and birth date; same name and address), and under ``realistic`` also, of the remaining
non-members, 0.10 *household* (a relative at a member's address: same family name and
address, another given name and birth date), 0.10 *zip_collision* (a member's exact
name in the member's ZIP, at another house, born another day) and 0.03 *twin* (a
household relative born the same day: only the given name tells them apart).

The truth file of a ``realistic`` list adds ``origin`` (name origin, inferred from the
name tables), ``variations`` (the types applied, ``;``-separated; ``formatting`` when
``vary`` changed anything, ``dob_missing``/``tin_missing`` when it blanked a field) and
``near_miss`` (the kind, empty for others).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Final

from psi_tools.synth import _addresses as addr
from psi_tools.synth._names import ORIGINS
from psi_tools.synth._text import strip_accents

PROFILES: Final = ("realistic", "formatting")
DEFAULT_PROFILE: Final = "realistic"
TRUTH_DETAIL_COLUMNS: Final = ("origin", "variations", "near_miss")

RATES: Final[dict[str, float]] = {
    "typo": 0.04,
    "nickname": 0.15,
    "transliteration": 0.20,
    "compound_surname": 0.35,
    "hyphenation": 0.06,
    "moved": 0.07,
    "unit": 0.10,
    "unit_added": 0.03,
    "day_month_swap": 0.03,
    "spreadsheet": 0.05,
}
"""Rate of each content variation among the subjects it can apply to (see the table)."""

NEAR_MISS_EXTRA: Final[dict[str, float]] = {"household": 0.10, "zip_collision": 0.10, "twin": 0.03}
"""Share of the non-members left after the formatting near misses that become each kind."""

NICKNAMES: Final[dict[str, tuple[str, ...]]] = {
    "james": ("Jim", "Jimmy"),
    "john": ("Johnny", "Jack"),
    "robert": ("Bob", "Rob", "Bobby"),
    "michael": ("Mike", "Mikey"),
    "william": ("Bill", "Will", "Billy"),
    "david": ("Dave",),
    "richard": ("Rick", "Rich", "Dick"),
    "joseph": ("Joe", "Joey"),
    "thomas": ("Tom", "Tommy"),
    "charles": ("Chuck", "Charlie"),
    "christopher": ("Chris",),
    "daniel": ("Dan", "Danny"),
    "matthew": ("Matt",),
    "anthony": ("Tony",),
    "donald": ("Don",),
    "steven": ("Steve",),
    "andrew": ("Andy", "Drew"),
    "joshua": ("Josh",),
    "kenneth": ("Ken", "Kenny"),
    "timothy": ("Tim",),
    "ronald": ("Ron",),
    "edward": ("Ed", "Eddie", "Ted"),
    "jeffrey": ("Jeff",),
    "patricia": ("Pat", "Patty", "Trish"),
    "jennifer": ("Jen", "Jenny"),
    "elizabeth": ("Liz", "Beth", "Betsy"),
    "barbara": ("Barb",),
    "susan": ("Sue", "Suzy"),
    "jessica": ("Jess",),
    "margaret": ("Maggie", "Peggy", "Meg"),
    "kimberly": ("Kim",),
    "deborah": ("Deb", "Debbie"),
    "stephanie": ("Steph",),
    "rebecca": ("Becky",),
    "melissa": ("Missy",),
    "amanda": ("Mandy",),
    "dorothy": ("Dot",),
    "sandra": ("Sandy",),
    "michelle": ("Shelly",),
    "jose": ("Pepe",),
    "francisco": ("Paco", "Pancho"),
    "jesus": ("Chuy",),
    "guadalupe": ("Lupe",),
    "alejandro": ("Alex",),
    "manuel": ("Manny",),
    "antonio": ("Tony", "Toño"),
    "ricardo": ("Rick",),
    "fernando": ("Nando",),
    "rafael": ("Rafa",),
    "alejandra": ("Ale",),
    "beatriz": ("Bea",),
    "veronica": ("Vero",),
    "gabriela": ("Gaby",),
    "isabel": ("Chabela", "Isa"),
    "venkatesh": ("Venky",),
    "srinivas": ("Srini",),
    "padmavathi": ("Padma",),
    "abhishek": ("Abhi",),
    "krishna": ("Kris",),
    "mohammed": ("Mo",),
    "abdullah": ("Abdul",),
    "oleksandr": ("Sasha",),
    "vladimir": ("Vova",),
    "nikolai": ("Kolya",),
    "katarzyna": ("Kasia",),
    "malgorzata": ("Gosia",),
    "oluwaseun": ("Seun",),
    "chukwuemeka": ("Emeka",),
    "oluwakemi": ("Kemi",),
    "funmilayo": ("Funmi",),
}
"""This generator's own nickname table, written for it: the recipes use the ``nicknames``
package, and a corpus made from that table would flatter it."""

ROMANIZATIONS: Final[dict[str, tuple[str, ...]]] = {
    "mohammed": ("Muhammad", "Mohamed", "Mohammad"),
    "ahmed": ("Ahmad",),
    "hussein": ("Husain", "Hussain"),
    "youssef": ("Yousef", "Yusuf"),
    "khalid": ("Khaled",),
    "mustafa": ("Mostafa",),
    "omar": ("Umar",),
    "hassan": ("Hasan",),
    "abdullah": ("Abdallah",),
    "mahmoud": ("Mahmud",),
    "suleiman": ("Sulaiman",),
    "othman": ("Uthman", "Osman"),
    "fatima": ("Fatma", "Fatemeh"),
    "aisha": ("Ayesha", "Aysha"),
    "zainab": ("Zeinab",),
    "yasmin": ("Yasmine",),
    "lee": ("Yi", "Rhee"),
    "park": ("Pak", "Bak"),
    "choi": ("Choe",),
    "jung": ("Chung", "Jeong"),
    "kang": ("Gang",),
    "cho": ("Jo",),
    "yoon": ("Yun",),
    "lim": ("Im", "Rim"),
    "shin": ("Sin",),
    "kwon": ("Gwon",),
    "seo": ("Suh",),
    "kim": ("Gim",),
    "zhang": ("Chang", "Cheung"),
    "chen": ("Chan", "Chin"),
    "zhou": ("Chou", "Chow"),
    "xu": ("Hsu",),
    "huang": ("Wong",),
    "liu": ("Lau",),
    "zhao": ("Chao",),
    "zheng": ("Cheng",),
    "xie": ("Hsieh",),
    "jiang": ("Chiang",),
    "sergei": ("Sergey",),
    "alexei": ("Aleksei", "Alexey"),
    "dmitri": ("Dmitry", "Dmitrii"),
    "yelena": ("Elena", "Jelena"),
    "tatiana": ("Tatyana",),
    "nikolai": ("Nikolay",),
    "oleksandr": ("Aleksandr", "Alexander"),
    "olga": ("Olha",),
    "chowdhury": ("Choudhury",),
    "chaudhary": ("Choudhary",),
}
"""Other romanizations of one name, this generator's own table."""

NATIVE: Final[dict[str, str]] = {
    "wang": "王",
    "li": "李",
    "zhang": "张",
    "liu": "刘",
    "chen": "陈",
    "yang": "杨",
    "huang": "黄",
    "zhao": "赵",
    "wu": "吴",
    "zhou": "周",
    "wei": "伟",
    "jian": "建",
    "ming": "明",
    "lei": "磊",
    "jun": "军",
    "tao": "涛",
    "qiang": "强",
    "yong": "勇",
    "jie": "杰",
    "fang": "芳",
    "jing": "静",
    "yan": "燕",
    "ling": "玲",
    "min": "敏",
    "lan": "兰",
    "mei": "梅",
    "hong": "红",
    "ivan": "Иван",
    "sergei": "Сергей",
    "dmitri": "Дмитрий",
    "nikolai": "Николай",
    "vladimir": "Владимир",
    "olga": "Ольга",
    "natalia": "Наталья",
    "irina": "Ирина",
    "svetlana": "Светлана",
    "ivanov": "Иванов",
    "petrov": "Петров",
    "smirnov": "Смирнов",
    "kuznetsov": "Кузнецов",
    "popov": "Попов",
    "sokolov": "Соколов",
}
"""Native-script spellings (written when both given and family name have one)."""

_KEYBOARD: Final = (
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
)
_GENERATIONS: Final = ("JR", "SR")
_COMPOUND_PARTICLES: Final = frozenset({"de", "del", "la", "st.", "st", "ben", "van", "von", "da"})


def _key(text: str) -> str:
    return strip_accents(text).casefold()


def _neighbours() -> dict[str, str]:
    out: dict[str, str] = {}
    for r, row in enumerate(_KEYBOARD):
        for c, ch in enumerate(row):
            near = [row[c - 1] if c else "", row[c + 1] if c + 1 < len(row) else ""]
            for other in (r - 1, r + 1):
                if 0 <= other < len(_KEYBOARD) and c < len(_KEYBOARD[other]):
                    near.append(_KEYBOARD[other][c])
            out[ch] = "".join(near)
    return out


_NEAR_KEYS: Final = _neighbours()


def _origin_index() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for origin, table in ORIGINS.items():
        for name in (*table.male, *table.female, *table.family):
            bucket = index.setdefault(_key(name), [])
            if origin not in bucket:
                bucket.append(origin)
    return {k: tuple(v) for k, v in index.items()}


_ORIGIN_OF: Final = _origin_index()


def _family_core(family: str) -> str:
    words = family.split(" ")
    while len(words) > 1 and words[-1].upper() in _GENERATIONS:
        words.pop()
    return " ".join(words)


def infer_origin(given: str, family: str) -> str:
    """The name origin of a population row, from the name tables ("unknown" if none fits).

    Family and given names of one person come from one origin's table; a name listed by
    several origins ("Han", "Mai") is settled by the other name, then by table order.
    """
    core = _family_core(family)
    family_options = _ORIGIN_OF.get(_key(core))
    if family_options is None and " " in core:
        family_options = _ORIGIN_OF.get(_key(core.split(" ")[0]))
    given_options = _ORIGIN_OF.get(_key(given), ())
    if family_options:
        both = [o for o in family_options if o in given_options]
        return (both or list(family_options))[0]
    return given_options[0] if given_options else "unknown"


def _like(word: str, model: str) -> str:
    if model.isupper():
        return word.upper()
    if model.islower():
        return word.lower()
    return word


def _typo(name: str, rnd: random.Random) -> str:
    positions = [i for i, ch in enumerate(name) if ch.isalpha()]
    if len(positions) < 4:
        return name
    i = rnd.choice(positions[1:])
    ch = name[i]
    kind = rnd.randrange(4)
    if kind == 0:
        near = _NEAR_KEYS.get(strip_accents(ch).lower(), "")
        if near:
            return name[:i] + _like(rnd.choice(near), ch) + name[i + 1 :]
        kind = 1
    if kind == 1:
        return name[:i] + name[i + 1 :]
    if kind == 2 and i + 1 < len(name) and name[i + 1].isalpha() and name[i + 1] != ch:
        return name[:i] + name[i + 1] + ch + name[i + 2 :]
    return name[:i] + ch + name[i:]


def _nickname(given: str, rnd: random.Random) -> str | None:
    forms = NICKNAMES.get(_key(given))
    if forms:
        return _like(rnd.choice(forms), given)
    parts = given.split(" ")
    if len(parts) > 1:
        if _key(parts[0]) in {"van", "thi"}:
            return parts[-1]
        return parts[0]
    return None


def _transliterate(given: str, family: str, rnd: random.Random) -> tuple[str, str] | None:
    core = _family_core(family)
    tail = family[len(core) :]
    native_given, native_family = NATIVE.get(_key(given)), NATIVE.get(_key(core))
    if native_given and native_family and rnd.random() < 0.5:
        return native_given, native_family + tail
    options: list[tuple[str, str]] = []
    if _key(given) in ROMANIZATIONS:
        options.extend((_like(f, given), family) for f in ROMANIZATIONS[_key(given)])
    if _key(core) in ROMANIZATIONS:
        options.extend((given, _like(f, core) + tail) for f in ROMANIZATIONS[_key(core)])
    return rnd.choice(options) if options else None


def _two_part(family: str) -> tuple[str, str] | None:
    core = _family_core(family)
    words = core.split(" ")
    if len(words) != 2 or words[0].casefold() in _COMPOUND_PARTICLES:
        return None
    return words[0] + family[len(core) :], words[1] + family[len(core) :]


def _hyphenation(given: str, family: str, rnd: random.Random) -> tuple[str, str] | None:
    core = _family_core(family)
    tail = family[len(core) :]
    if "-" in given:
        return given.replace("-", rnd.choice(("", " "))), family
    if "-" in core:
        return given, core.replace("-", rnd.choice(("", " "))) + tail
    if " " in given:
        return given.replace(" ", rnd.choice(("", "-")), 1), family
    if " " in core and core.split(" ")[0].casefold() not in _COMPOUND_PARTICLES:
        return given, core.replace(" ", "", 1) + tail
    return None


def _new_street(street: str, rnd: random.Random) -> str:
    title = not street.isupper()
    number = str(int(rnd.lognormvariate(6.0, 1.3)) % 99999 + 1)
    name = rnd.choice(addr.STREET_NAMES)
    suffix = rnd.choice(list(addr.STREET_SUFFIXES))
    line = f"{number} {name} {suffix}"
    return addr.title_words(line.lower()) if title else line


def _unit_at(tokens: Sequence[str]) -> int | None:
    for i in range(2, len(tokens)):
        if tokens[i].upper() in addr.UNIT_DESIGNATORS:
            return i
    return None


def _has_other_spelling(given: str, family: str) -> bool:
    core = _key(_family_core(family))
    return any(k in ROMANIZATIONS or k in NATIVE for k in (_key(given), core))


def vary_content(person: dict[str, str], rnd: random.Random) -> list[str]:
    """Apply the content variations to ``person`` in place; return the types applied."""
    applied: list[str] = []
    given, family = person["given_name"], person["family_name"]
    if given and rnd.random() < RATES["nickname"] and (short := _nickname(given, rnd)):
        given = short
        applied.append("nickname")
    if (
        given
        and family
        and _has_other_spelling(given, family)
        and rnd.random() < RATES["transliteration"]
        and (changed := _transliterate(given, family, rnd))
    ):
        given, family = changed
        applied.append("transliteration")
    if (parts := _two_part(family)) and rnd.random() < RATES["compound_surname"]:
        family = parts[0] if rnd.random() < 0.8 else parts[1]
        applied.append("compound_surname")
    if rnd.random() < RATES["hyphenation"] and (changed := _hyphenation(given, family, rnd)):
        given, family = changed
        applied.append("hyphenation")
    if rnd.random() < RATES["typo"]:
        if rnd.random() < 0.6 and given:
            given = _typo(given, rnd)
        else:
            family = _typo(family, rnd)
        applied.append("typo")
    person["given_name"], person["family_name"] = given, family

    street = person["street"]
    is_box = street.upper().startswith("PO ")
    if street and not is_box and rnd.random() < RATES["moved"]:
        street = _new_street(street, rnd)
        if rnd.random() < 0.5 and len(person["zip"]) == 5:
            person["zip"] = f"{person['zip'][:3]}{rnd.randrange(100):02d}"
        applied.append("moved")
    tokens = street.split(" ")
    unit = _unit_at(tokens)
    if unit is not None and rnd.random() < RATES["unit"]:
        street = " ".join(tokens[:unit])
        applied.append("unit")
    elif street and not is_box and unit is None and rnd.random() < RATES["unit_added"]:
        street = f"{street} {'APT' if street.isupper() else 'Apt'} {rnd.randrange(1, 40)}"
        applied.append("unit")
    person["street"] = street

    dob = person["date_of_birth"]
    if len(dob) == 10 and rnd.random() < RATES["day_month_swap"]:
        year, month, day = dob.split("-")
        if int(day) <= 12 and day != month:
            person["date_of_birth"] = f"{year}-{day}-{month}"
            applied.append("day_month_swap")
    return applied


def damage(subject: dict[str, str], rnd: random.Random) -> list[str]:
    """Export damage (spreadsheet round trips) applied in place to a varied subject."""
    if rnd.random() >= RATES["spreadsheet"]:
        return []
    digits = subject["tin"].replace("-", "").replace(" ", "")
    dob = subject["date_of_birth"]
    kinds: list[str] = []
    if subject["zip"].startswith("0"):
        kinds.append("zip_zeros")
    if digits.isdigit() and len(digits) == 9:
        kinds.extend(("tin_float", "tin_scientific"))
        if digits.startswith("0"):
            kinds.append("tin_zeros")
    if len(dob) == 10 and dob[4] == "-":
        kinds.extend(("dob_serial", "dob_us"))
    if not kinds:
        return []
    kind = rnd.choice(kinds)
    if kind == "zip_zeros":
        subject["zip"] = subject["zip"].lstrip("0")
    elif kind == "tin_zeros":
        subject["tin"] = digits.lstrip("0")
    elif kind == "tin_float":
        subject["tin"] = f"{digits}.0"
    elif kind == "tin_scientific":
        subject["tin"] = f"{int(digits):.5E}".replace("E+0", "E+")
    elif kind == "dob_serial":
        day = dt.date.fromisoformat(dob) - dt.date(1899, 12, 30)
        subject["date_of_birth"] = str(day.days)
    else:
        year, month, day = dob.split("-")
        subject["date_of_birth"] = f"{int(month)}/{int(day)}/{year}"
    return ["spreadsheet"]


def make_household_relative(
    person: dict[str, str], source: dict[str, str], rnd: random.Random
) -> None:
    """Turn ``person`` (a non-member) into a relative living at ``source``'s address."""
    origin = infer_origin(source["given_name"], source["family_name"])
    table = ORIGINS.get(origin, ORIGINS["anglo"])
    names = [n for n in (*table.male, *table.female) if _key(n) != _key(source["given_name"])]
    given = rnd.choice(names)
    if source["family_name"].isascii():
        given = strip_accents(given)
    if source["family_name"].isupper():
        given = given.upper()
    person["given_name"] = given
    person["family_name"] = _family_core(source["family_name"])
    for column in ("street", "city", "state", "zip"):
        person[column] = source[column]
    if person["date_of_birth"] == source["date_of_birth"]:
        person["date_of_birth"] = ""


def make_twin(person: dict[str, str], source: dict[str, str], rnd: random.Random) -> None:
    """Turn ``person`` into a twin of ``source``: same family name, address and birth date."""
    make_household_relative(person, source, rnd)
    person["date_of_birth"] = source["date_of_birth"]


def make_zip_collision(person: dict[str, str], source: dict[str, str], rnd: random.Random) -> None:
    """Turn ``person`` into a namesake of ``source`` in the same ZIP, at another house."""
    person["given_name"] = source["given_name"]
    person["family_name"] = source["family_name"]
    for column in ("city", "state", "zip"):
        person[column] = source[column]
    street = _new_street(source["street"], rnd)
    if street.split(" ")[0] == source["street"].split(" ")[0]:
        street = f"{int(street.split(' ')[0]) + 1} {street.split(' ', 1)[1]}"
    person["street"] = street
    if person["date_of_birth"] == source["date_of_birth"]:
        person["date_of_birth"] = ""
