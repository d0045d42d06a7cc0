"""The pseudopeople corpus: a custodian file and agency subjects no one here wrote.

``pseudopeople`` (IHME) simulates a US population for testing record linkage, and ships
one simulated town as sample data (no download). This adapter turns it into what the
linkage report needs (:func:`load`). It is a measuring tool, not production code, and the
only module that imports ``pseudopeople`` (install the ``linkage`` extra).

Custodian records: the W-2 and 1099 forms of tax year 2020 (about 9,900 forms of 7,200
people), one record per form: first name, last name, mailing address (street number,
name and unit, or "PO BOX n"), state, ZIP and SSN. The middle initial is left out (the
record layout has one given-name field, and the subjects rarely carry it).

Enrichment, as a tax custodian would do it: forms carry no birth date, so each form's SSN
is looked up in the Social Security records (the Numident the custodian receives) and the
birth date of the first record with that SSN is copied. That Social Security extract is
generated with a different seed (``seed + 1``) than the one the agency's subjects come
from, so its noise is independent; a form whose SSN was mistyped joins the wrong person or
nobody, exactly as the real join would.

Agency subjects: Social Security records (names, birth date, SSN; no address; a sample
of at most ``max_ssa_subjects`` drawn at random with ``seed``, one record per person,
creation events first) and all of
the American Community Survey, Current Population Survey and WIC samples (names, birth
date, address; no SSN). Truth is by simulant id: a subject is a member when its simulant
has at least one form. Birth dates are converted from each source's documented layout
(YYYYMMDD, MM/DD/YYYY, MMDDYYYY) to the record format's YYYY-MM-DD when they parse in that
layout; a value the noise made unparseable is passed on as written.

ZIP codes and cities: the sample blanks every ZIP to 00000 and every city to "Anytown",
then noises them ("0000O", "10000", "Anytovvn"). A key cannot use 00000 (the recipes
refuse it), so the adapter writes the town's ZIP as ``TOWN_ZIP`` in place of each ``0``
and keeps every other character, so a noised ZIP stays exactly as wrong as it was
("10000" -> "18101" when the town is 98101, "0000O" -> "9810O", unusable). Cities are
passed through: no recipe reads them.

Name origin: the census's race/ethnicity of the simulant (joined by simulant id from the
noise-free decennial census; "unknown" when the simulant is not in it), the only origin
the corpus records. Variation types: the fields where the subject differs from the same
source generated without noise (``given_name``, ``family_name``, ``date_of_birth``,
``tin``, ``address``, ``zip``); the custodian's own noise is not tagged.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pseudopeople as psp

TOWN_ZIP = "98101"
"""The ZIP written for the sample's one town (a real Washington ZIP; the state is WA)."""


@dataclass(frozen=True)
class Corpus:
    """Records and subjects as ``RECORD_COLUMNS``/``SUBJECT_COLUMNS`` rows, with truth.

    ``record_truth[i]`` is the simulant id of ``records[i]``; ``subject_truth[i]`` holds
    ``truth_id`` (simulant id), ``member`` ("1" or ""), ``origin``, ``variations``
    (``;``-separated) and ``source`` for ``subjects[i]``.
    """

    records: list[dict[str, str]]
    record_truth: list[str]
    subjects: list[dict[str, str]]
    subject_truth: list[dict[str, str]]
    notes: dict[str, Any] = field(default_factory=dict)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        return str(int(value)) if value.is_integer() else str(value)
    text = str(value).strip()
    return "" if text in ("<NA>", "nan", "NaT", "None") else text


def town_zip(raw: str) -> str:
    """The sample's ZIP with ``TOWN_ZIP`` written in place of each ``0`` (see the docstring)."""
    if len(raw) != 5:
        return raw
    return "".join(t if z == "0" else z for z, t in zip(raw, TOWN_ZIP, strict=True))


_LAYOUTS = {
    "ymd": re.compile(r"(\d{4})(\d{2})(\d{2})"),
    "m/d/y": re.compile(r"(\d{2})/(\d{2})/(\d{4})"),
    "mdy": re.compile(r"(\d{2})(\d{2})(\d{4})"),
}


def iso_date(raw: str, layout: str) -> str:
    """``raw`` in ``layout`` as YYYY-MM-DD, or ``raw`` unchanged when it does not parse."""
    match = _LAYOUTS[layout].fullmatch(raw)
    if match is None:
        return raw
    a, b, c = (int(g) for g in match.groups())
    year, month, day = (a, b, c) if layout == "ymd" else (c, a, b)
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return raw


def _street(number: str, name: str, unit: str, po_box: str = "") -> str:
    if po_box:
        return f"PO BOX {po_box}"
    return " ".join(part for part in (number, name, unit) if part)


def _rows(frame: Any) -> list[dict[str, str]]:
    return [{k: _text(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _first_by(rows: Iterable[dict[str, str]], column: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        out.setdefault(row[column], row)
    return out


def _ssa_rows(seed: int, *, noise: bool = True) -> list[dict[str, str]]:
    config = None if noise else psp.NO_NOISE
    rows = _rows(psp.generate_social_security(seed=seed, config=config))
    rows.sort(key=lambda r: r["event_type"] != "creation")
    return rows


def _custodian(seed: int) -> tuple[list[dict[str, str]], list[str], dict[str, int]]:
    forms = _rows(psp.generate_taxes_w2_and_1099(seed=seed))
    numident = _first_by(_ssa_rows(seed + 1), "ssn")
    records: list[dict[str, str]] = []
    truth: list[str] = []
    enriched = 0
    for i, form in enumerate(forms):
        found = numident.get(form["ssn"]) if form["ssn"] else None
        dob = iso_date(found["date_of_birth"], "ymd") if found else ""
        enriched += bool(dob)
        records.append(
            {
                "record_id": f"W{i:06d}",
                "given_name": form["first_name"],
                "family_name": form["last_name"],
                "date_of_birth": dob,
                "street": _street(
                    form["mailing_address_street_number"],
                    form["mailing_address_street_name"],
                    form["mailing_address_unit_number"],
                    form["mailing_address_po_box"],
                ),
                "city": form["mailing_address_city"],
                "state": form["mailing_address_state"],
                "zip": town_zip(form["mailing_address_zipcode"]),
                "tin": form["ssn"],
            }
        )
        truth.append(form["simulant_id"])
    return records, truth, {"forms": len(forms), "forms_with_birth_date": enriched}


def _survey_subject(row: Mapping[str, str], layout: str) -> dict[str, str]:
    return {
        "given_name": row["first_name"],
        "family_name": row["last_name"],
        "date_of_birth": iso_date(row["date_of_birth"], layout),
        "street": _street(row["street_number"], row["street_name"], row["unit_number"]),
        "city": row["city"],
        "state": row["state"],
        "zip": town_zip(row["zipcode"]),
        "tin": "",
    }


def _ssa_subject(row: Mapping[str, str]) -> dict[str, str]:
    return {
        "given_name": row["first_name"],
        "family_name": row["last_name"],
        "date_of_birth": iso_date(row["date_of_birth"], "ymd"),
        "street": "",
        "city": "",
        "state": "",
        "zip": "",
        "tin": row["ssn"],
    }


_SURVEYS = (
    ("acs", psp.generate_american_community_survey, "m/d/y"),
    ("cps", psp.generate_current_population_survey, "m/d/y"),
    ("wic", psp.generate_women_infants_and_children, "mdy"),
)


def _variations(noisy: Mapping[str, str], clean: Mapping[str, str] | None) -> list[str]:
    if clean is None:
        return ["unaligned"]
    tags = []
    for tag, columns in (
        ("given_name", ("given_name",)),
        ("family_name", ("family_name",)),
        ("date_of_birth", ("date_of_birth",)),
        ("tin", ("tin",)),
        ("address", ("street",)),
        ("zip", ("zip",)),
    ):
        if any(noisy[c] != clean[c] for c in columns):
            tags.append(tag)
    return tags


def load(seed: int = 0, max_ssa_subjects: int = 10_000) -> Corpus:
    """The corpus for ``seed`` (pseudopeople's noise seed); see the module docstring."""
    records, record_truth, notes = _custodian(seed)
    members = set(record_truth)
    census = _first_by(
        _rows(psp.generate_decennial_census(seed=seed, config=psp.NO_NOISE)), "simulant_id"
    )
    subjects: list[dict[str, str]] = []
    truth: list[dict[str, str]] = []

    def add(source: str, subject: dict[str, str], clean: dict[str, str] | None, sim: str) -> None:
        subjects.append({"subject_id": f"P{len(subjects):06d}", **subject})
        person = census.get(sim)
        truth.append(
            {
                "truth_id": sim,
                "member": "1" if sim in members else "",
                "origin": person["race_ethnicity"] if person else "unknown",
                "variations": ";".join(_variations(subject, clean)),
                "source": source,
            }
        )

    clean_ssa = _first_by(_ssa_rows(seed, noise=False), "simulant_id")
    ssa = list(_first_by(_ssa_rows(seed), "simulant_id").values())
    if len(ssa) > max_ssa_subjects:
        ssa = random.Random(seed).sample(ssa, max_ssa_subjects)
    for row in ssa:
        clean = clean_ssa.get(row["simulant_id"])
        add("ssa", _ssa_subject(row), _ssa_subject(clean) if clean else None, row["simulant_id"])
    for source, generate, layout in _SURVEYS:
        clean_rows = _first_by(_rows(generate(seed=seed, config=psp.NO_NOISE)), "simulant_id")
        for row in _first_by(_rows(generate(seed=seed)), "simulant_id").values():
            clean = clean_rows.get(row["simulant_id"])
            add(
                source,
                _survey_subject(row, layout),
                _survey_subject(clean, layout) if clean else None,
                row["simulant_id"],
            )
    notes.update(
        {
            "pseudopeople_version": psp.__version__,
            "seed": seed,
            "town_zip": TOWN_ZIP,
            "subjects_by_source": {
                s: sum(t["source"] == s for t in truth) for s in ("ssa", "acs", "cps", "wic")
            },
        }
    )
    return Corpus(records, record_truth, subjects, truth, notes)
