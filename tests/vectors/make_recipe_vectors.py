"""Write ``recipes.json``: the key every match-key recipe gives for a curated list of records.

Provenance: the vectors are not derived from an outside standard; they record what this
code produced when they were generated, for the inputs listed in ``RECORDS`` below (one
row per normalization rule worth pinning: accents, name order, USPS words, units, ZIP+4,
state names, unusable fields). ``tests/unit/test_recipes.py`` checks that every recipe
still produces them, so any change to a recipe's output is caught. Such a change needs a
new recipe id (``name_address_v2``), because an index built by the old rule cannot be
queried with the new one.

Usage::

    python tests/vectors/make_recipe_vectors.py            # add vectors; refuse changes
    python tests/vectors/make_recipe_vectors.py --check    # exit 1 if the file is stale
    python tests/vectors/make_recipe_vectors.py --allow-change   # overwrite changed keys

Without ``--allow-change`` the script refuses to alter a key already recorded for an
existing recipe id: add the new version instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path

from psi_core.recipes import RECIPES

OUTPUT = Path(__file__).with_name("recipes.json")

_BASE: dict[str, str] = {
    "record_id": "r",
    "given_name": "Jose",
    "family_name": "Garcia",
    "date_of_birth": "1980-04-12",
    "street": "123 N Main St Apt 4",
    "city": "Springfield",
    "state": "IL",
    "zip": "62701",
    "tin": "123-45-6789",
}

RECORDS: list[tuple[str, dict[str, str | None]]] = [
    ("baseline", {}),
    ("accents", {"given_name": "José", "family_name": "García-López"}),
    ("umlaut", {"given_name": "Jürgen", "family_name": "Müller"}),
    ("vietnamese", {"given_name": "Thị Mai", "family_name": "Nguyễn"}),
    ("stroke-letters", {"given_name": "Łukasz Søren", "family_name": "Æbelø"}),
    ("sharp-s", {"given_name": "Hans", "family_name": "Strauß"}),
    ("fullwidth", {"given_name": "ＪＯＳＥ", "family_name": "ｇａｒｃｉａ"}),
    ("cyrillic-kept", {"given_name": "Иван", "family_name": "Петров"}),
    ("last-first-one-field", {"given_name": "", "family_name": "GARCIA LOPEZ, JOSE"}),
    ("apostrophe", {"given_name": "Sean", "family_name": "O'Brien"}),
    ("particle-space", {"given_name": "Sean", "family_name": "O Brien"}),
    ("generational", {"given_name": "John Q.", "family_name": "Smith, Junior"}),
    ("honorific", {"given_name": "Dr. Mary", "family_name": "Smith-Jones"}),
    ("lone-surname", {"given_name": "", "family_name": "Smith"}),
    ("initial-only", {"given_name": "J.", "family_name": "Smith"}),
    ("usps-words", {"street": "123 North Main Street"}),
    ("unit-hash", {"street": "123 N. Main St. #4"}),
    ("unit-before-number", {"street": "Apt 4, 123 N Main St"}),
    ("suite", {"street": "500 W Madison Street Suite 0200"}),
    ("postdirectional", {"street": "1600 Pennsylvania Avenue North West"}),
    ("dc-letter-street", {"street": "1234 N St NW"}),
    ("ordinal-words", {"street": "45 West Twenty-Third Street, 2nd Floor"}),
    ("route", {"street": "9800 U.S. Highway 1"}),
    ("saint", {"street": "12 Saint James Place"}),
    ("avenue-name", {"street": "220 Avenue of the Americas"}),
    ("po-box", {"street": "P.O. Box 1234"}),
    ("street-no-number", {"street": "Main Street"}),
    ("zip-plus-4", {"zip": "62701-1234", "state": "Illinois"}),
    ("zip-9-digits", {"zip": "627011234", "state": "ill."}),
    ("zip-4-digits", {"zip": "2134"}),
    ("state-unknown", {"state": "Ontario"}),
    ("city-ignored", {"city": "Sprngfeld"}),
    ("leap-day", {"date_of_birth": "2000-02-29"}),
    ("not-a-date", {"date_of_birth": "1981-02-29"}),
    ("other-date-layout", {"date_of_birth": "04/12/1980"}),
    ("placeholder-date", {"date_of_birth": "1900-01-01"}),
    ("tin-digits", {"tin": "123456789"}),
    ("tin-itin", {"tin": "912-70-1234"}),
    ("tin-zero-group", {"tin": "123-00-6789"}),
    ("tin-short", {"tin": "12345678"}),
    ("all-missing", {k: None for k in _BASE if k != "record_id"}),
    ("nickname", {"given_name": "Bob", "family_name": "Smith"}),
    ("nickname-formal", {"given_name": "Robert", "family_name": "Smith"}),
    ("middle-name", {"given_name": "Jose Luis", "family_name": "Garcia Lopez"}),
    ("second-surname-only", {"given_name": "Jose", "family_name": "Lopez"}),
    ("particles", {"given_name": "Ana", "family_name": "De la Cruz"}),
    ("hyphenated-given", {"given_name": "Min-jun", "family_name": "Kim"}),
    ("vietnamese-marker", {"given_name": "Van Minh", "family_name": "Nguyen"}),
    ("swapped-generational", {"given_name": "Smith Jr", "family_name": "John"}),
    ("han-script", {"given_name": "伟", "family_name": "王"}),
    ("cyrillic-transliterated", {"given_name": "Иван", "family_name": "Петров"}),
    ("soundex-romanization", {"given_name": "Muhammad", "family_name": "Hussain"}),
    ("day-month-swapped", {"date_of_birth": "1980-12-04"}),
    ("us-date-layout", {"date_of_birth": "4/12/1980"}),
    ("compact-date", {"date_of_birth": "19800412"}),
    ("spreadsheet-serial-date", {"date_of_birth": "29323"}),
    ("tin-lost-zeros", {"tin": "12345678"}),
    ("tin-float", {"tin": "123456789.0"}),
    ("tin-scientific", {"tin": "1.23457E+08"}),
    ("house-unit-dropped", {"street": "123 N Main St"}),
    ("house-leading-zero", {"street": "0123 North Main Street"}),
]


def build() -> dict[str, object]:
    """The vector document for the current code: each record once, then one key per recipe."""
    records: dict[str, dict[str, str | None]] = {}
    vectors = []
    for name, overrides in RECORDS:
        record = {**_BASE, **overrides, "record_id": name}
        records[name] = record
        for recipe_id, recipe in sorted(RECIPES.items()):
            vectors.append({"name": name, "recipe": recipe_id, "key": recipe.key(record)})
    return {
        "comment": "Generated by make_recipe_vectors.py; see its docstring. Do not edit.",
        "unicode_version": unicodedata.unidata_version,
        "records": records,
        "vectors": vectors,
    }


def rows(document: dict[str, object]) -> list[dict[str, object]]:
    """The vectors with their records joined in (``name``, ``recipe``, ``record``, ``key``).

    Reads both layouts: records listed once (current) or repeated in every vector (before).
    """
    records = document.get("records", {})
    vectors = document.get("vectors", [])
    assert isinstance(records, dict)
    assert isinstance(vectors, list)
    return [{**v, "record": v.get("record") or records[v["name"]]} for v in vectors]


def _changed(old: dict[str, object], new: dict[str, object]) -> list[str]:
    def index(document: dict[str, object]) -> dict[tuple[str, str], object]:
        return {
            (json.dumps(v["record"], sort_keys=True), v["recipe"]): v["key"] for v in rows(document)
        }

    before, after = index(old), index(new)
    return [
        f"{recipe}: {json.loads(record)['record_id']}"
        for (record, recipe), key in before.items()
        if (record, recipe) in after and after[(record, recipe)] != key
    ]


def main(argv: list[str] | None = None) -> int:
    """Write, or with --check verify, the recipe vectors; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the file")
    parser.add_argument(
        "--allow-change", action="store_true", help="overwrite keys of existing recipe ids"
    )
    args = parser.parse_args(argv)
    new = build()
    text = json.dumps(new, indent=1, ensure_ascii=False) + "\n"
    old = json.loads(OUTPUT.read_text(encoding="utf-8")) if OUTPUT.exists() else {}
    changed = _changed(old, new)
    if args.check:
        stale = not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text
        for line in changed:
            print(f"changed: {line}", file=sys.stderr)
        return 1 if stale else 0
    if changed and not args.allow_change:
        for line in changed:
            print(f"changed: {line}", file=sys.stderr)
        print("a recipe's output changed: give it a new version id", file=sys.stderr)
        return 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(RECORDS) * len(RECIPES)} vectors to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
