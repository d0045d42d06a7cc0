"""Synthetic taxpayer populations, generated in fixed blocks of rows.

Row ``i`` of a population is a pure function of ``(seed, i)``: rows are made in blocks of
:data:`BLOCK_ROWS`, block ``b`` from its own generator seeded with ``(seed, stream, b)``, so
any batch size, and any ``n``, gives the same rows (a population of ``n`` rows is a prefix
of every larger one with the same seed). A second *stream* of the same generator makes
people who are not in the population (the agency's non-members).

Households share an address and, in families, a family name; some families have a father
and son with the same name, told apart by "JR"/"SR" after the family name. Most rows are
upper case and some households are written in title case; some households are written
without diacritics, as an ASCII-only system would.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from psi_core.io import DEFAULT_BATCH_ROWS, RECORD_COLUMNS, RowWriter
from psi_tools.synth import _addresses as addr
from psi_tools.synth._names import ORIGIN_WEIGHTS, ORIGINS
from psi_tools.synth._report import SynthReport
from psi_tools.synth._text import strip_accents
from psi_tools.synth._tins import (
    ITIN_SPACE,
    SSN_SPACE,
    TinPermutation,
    itin_parts,
    ssn_parts,
    tin_keys,
)

BLOCK_ROWS: Final = 4096
"""Rows per generator block; part of the output's definition, so never change it."""

REFERENCE_DATE: Final = np.datetime64("2024-12-31", "D")
"""Ages are measured back from this day (never from today, so output stays fixed)."""

STREAM_POPULATION: Final = 0
STREAM_OUTSIDERS: Final = 1

_PURPOSE_ROWS: Final = 0
_PURPOSE_TIN_KEYS: Final = 1

_HOUSEHOLD_SIZES: Final = np.array([1, 2, 3, 4, 5, 6])
_HOUSEHOLD_P: Final = np.array([0.28, 0.34, 0.15, 0.13, 0.06, 0.04])
_ROOMMATE_SHARE: Final = 0.12
_JUNIOR_SHARE: Final = 0.12
_TITLE_CASE_SHARE: Final = 0.2
_ASCII_SHARE: Final = 0.12
_OWN_SURNAME_SHARE: Final = 0.25
_SPOUSE_SHARE: Final = 0.8
_DOB_MISSING: Final = 0.03
_TIN_MISSING: Final = 0.05
_ITIN_SHARE: Final = 0.08
_DIRECTIONAL_SHARE: Final = 0.2
_UNIT_SHARE: Final = 0.28
_PO_BOX_SHARE: Final = 0.015

RECORD_FIELDS: Final = RECORD_COLUMNS[1:]

Columns = dict[str, list[str]]

# A name is written in one of four styles: index = title_case + 2 * ascii_only.
_STYLES: Final[tuple[Callable[[str], str], ...]] = (
    str.upper,
    lambda name: name,
    lambda name: strip_accents(name).upper(),
    strip_accents,
)


def _zipf(count: int, exponent: float = 0.8) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    return weights / weights.sum()


@dataclass(frozen=True)
class _Bank:
    """Names of several groups (origin, or origin and sex) flattened for fancy indexing."""

    values: np.ndarray
    offsets: np.ndarray
    cdfs: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, groups: list[tuple[str, ...]]) -> _Bank:
        flat = [name for group in groups for name in group]
        values = np.array([[style(n) for n in flat] for style in _STYLES], dtype=object)
        sizes = np.array([len(g) for g in groups])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(values, offsets, tuple(np.cumsum(_zipf(len(g))) for g in groups))

    def next_in_group(self, names: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The index of the name after each of ``names`` in its group, wrapping around."""
        sizes = np.array([len(cdf) for cdf in self.cdfs])[groups]
        first = self.offsets[groups]
        return first + (names - first + 1) % sizes

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """Draw one name index per element of ``groups`` (rank-weighted within its group)."""
        u = rng.random(len(groups))
        out = np.empty(len(groups), dtype=np.int64)
        for group, cdf in enumerate(self.cdfs):
            mask = groups == group
            if mask.any():
                ranks = np.minimum(np.searchsorted(cdf, u[mask], side="right"), len(cdf) - 1)
                out[mask] = self.offsets[group] + ranks
        return out


_TABLES: Final = list(ORIGINS.values())
_ORIGIN_P: Final = np.array([ORIGIN_WEIGHTS[o] for o in ORIGINS]) / sum(ORIGIN_WEIGHTS.values())
_COMPOUND_SHARE: Final = np.array([t.compound_share for t in _TABLES])
_GIVEN: Final = _Bank.of([names for t in _TABLES for names in (t.male, t.female)])
_FAMILY: Final = _Bank.of([t.family for t in _TABLES])

_CITY_P: Final = np.array([c.weight for c in addr.CITIES]) / sum(c.weight for c in addr.CITIES)
_CITY_NAMES: Final = (
    tuple(c.name for c in addr.CITIES),
    tuple(addr.title_words(c.name) for c in addr.CITIES),
)
_CITY_STATES: Final = np.array([c.state for c in addr.CITIES], dtype=object)
_CITY_ZIP3: Final = np.array([int(c.zip3) for c in addr.CITIES])
_STREET_P: Final = _zipf(len(addr.STREET_NAMES), 0.6)
_SUFFIX_P: Final = np.array(addr.SUFFIX_WEIGHTS) / sum(addr.SUFFIX_WEIGHTS)
_DIRECTIONAL_P: Final = np.array(addr.DIRECTIONAL_WEIGHTS) / sum(addr.DIRECTIONAL_WEIGHTS)
_UNIT_P: Final = np.array(addr.UNIT_WEIGHTS) / sum(addr.UNIT_WEIGHTS)


def _words(words: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(words), tuple(addr.title_words(w) for w in words)


_STREET_WORDS: Final = _words(addr.STREET_NAMES)
_SUFFIX_WORDS: Final = _words(list(addr.STREET_SUFFIXES))
_DIRECTIONAL_WORDS: Final = _words(list(addr.DIRECTIONALS))
_UNIT_WORDS: Final = _words(list(addr.UNIT_DESIGNATORS))
_PO_BOX: Final = ("PO BOX", "PO Box")
_JUNIOR: Final = ((" JR", " SR"), (" Jr", " Sr"))


@functools.lru_cache(maxsize=16)
def _tin_permutations(seed: int, stream: int) -> tuple[TinPermutation, TinPermutation]:
    rng = np.random.default_rng([seed, _PURPOSE_TIN_KEYS, stream])
    return TinPermutation(SSN_SPACE, tin_keys(rng)), TinPermutation(ITIN_SPACE, tin_keys(rng))


def person_block(seed: int, stream: int, block: int) -> Columns:
    """Generate block ``block`` of a stream: :data:`BLOCK_ROWS` people, column-wise.

    Returns :data:`RECORD_FIELDS` (no ``record_id``) as lists of ``str``. TINs are unique
    within a stream (see :mod:`psi_tools.synth._tins`) but not across streams.
    """
    rng = np.random.default_rng([seed, _PURPOSE_ROWS, stream, block])
    rows = BLOCK_ROWS
    sizes = rng.choice(_HOUSEHOLD_SIZES, size=rows, p=_HOUSEHOLD_P)
    ends = np.cumsum(sizes)
    households = int(np.searchsorted(ends, rows)) + 1
    sizes = sizes[:households].copy()
    sizes[-1] -= ends[households - 1] - rows
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    hh = np.repeat(np.arange(households), sizes)
    position = np.arange(rows) - starts[hh]

    # Household facts.
    origin_h = rng.choice(len(_TABLES), size=households, p=_ORIGIN_P)
    roommates_h = (rng.random(households) < _ROOMMATE_SHARE) & (sizes > 1)
    junior_h = (rng.random(households) < _JUNIOR_SHARE) & (sizes >= 3) & ~roommates_h
    title_h = rng.random(households) < _TITLE_CASE_SHARE
    ascii_h = rng.random(households) < _ASCII_SHARE
    surname_h = _FAMILY.sample(rng, origin_h)
    second_h = _FAMILY.sample(rng, origin_h)
    compound_h = rng.random(households) < _COMPOUND_SHARE[origin_h]
    head_age_h = 18.0 + rng.beta(2.0, 3.0, households) * 72.0
    head_age_h = np.where(junior_h, np.maximum(head_age_h, 42.0), head_age_h)
    head_age_h = np.where(sizes == 1, 18.0 + rng.beta(2.0, 2.5, households) * 77.0, head_age_h)
    street_h = _streets(rng, households, title_h)
    city_h = rng.choice(len(addr.CITIES), size=households, p=_CITY_P)
    zip_h = _CITY_ZIP3[city_h] * 100 + rng.integers(0, 100, households)

    # People.
    roommate = roommates_h[hh]
    family = ~roommate
    head = position == 0
    spouse = family & (position == 1) & (rng.random(rows) < _SPOUSE_SHARE)
    child = family & ~head & ~spouse
    junior = junior_h[hh] & (position == 2)
    origin = np.where(roommate, rng.choice(len(_TABLES), size=rows, p=_ORIGIN_P), origin_h[hh])
    male = rng.random(rows) < 0.5
    male[head & junior_h[hh]] = True
    head_male = male[starts[hh]]
    male = np.where(spouse, ~head_male, male)
    male[junior] = True
    given_group = origin * 2 + ~male
    given = _distinct_in_household(_GIVEN.sample(rng, given_group), given_group, position)
    given[junior] = given[starts[hh][junior]]
    own = roommate | (spouse & (rng.random(rows) < _OWN_SURNAME_SHARE))
    surname = np.where(own, _FAMILY.sample(rng, origin), surname_h[hh])
    second = np.where(own, _FAMILY.sample(rng, origin), second_h[hh])
    compound = np.where(own, rng.random(rows) < _COMPOUND_SHARE[origin], compound_h[hh])

    head_age = head_age_h[hh]
    age = np.where(spouse, np.maximum(head_age + rng.normal(0.0, 4.0, rows), 18.0), head_age)
    child_age = head_age - (18.0 + rng.random(rows) * 22.0)
    child_age = np.where(child_age < 0, rng.random(rows) * 17.0, child_age)
    child_age = np.where(junior, head_age - (20.0 + rng.random(rows) * 15.0), child_age)
    age = np.where(child, child_age, age)
    age = np.where(roommate, 19.0 + rng.random(rows) * 26.0, age)
    days = (age * 365.2425).astype(np.int64) + rng.integers(0, 365, rows)
    dob = np.datetime_as_string(REFERENCE_DATE - days.astype("timedelta64[D]"), unit="D")
    dob_missing = rng.random(rows) < _DOB_MISSING
    suffix_kind = np.where(
        junior, 1, np.where(head & junior_h[hh] & (rng.random(rows) < 0.5), 2, 0)
    )
    tin_draw = rng.random(rows)

    style = (title_h + 2 * ascii_h)[hh]
    given_names = _GIVEN.values[style, given].tolist()
    firsts = _FAMILY.values[style, surname].tolist()
    seconds = _FAMILY.values[style, second].tolist()
    title = title_h[hh].tolist()
    family_names = [
        (f"{first} {sec}" if comp else first) + (_JUNIOR[t][kind - 1] if kind else "")
        for first, sec, comp, kind, t in zip(
            firsts, seconds, compound.tolist(), suffix_kind.tolist(), title, strict=True
        )
    ]
    index = np.arange(block * BLOCK_ROWS, (block + 1) * BLOCK_ROWS, dtype=np.int64)
    return {
        "given_name": given_names,
        "family_name": family_names,
        "date_of_birth": np.where(dob_missing, "", dob).tolist(),
        "street": [street_h[h] for h in hh.tolist()],
        "city": [_CITY_NAMES[t][c] for t, c in zip(title, city_h[hh].tolist(), strict=True)],
        "state": _CITY_STATES[city_h[hh]].tolist(),
        "zip": [f"{z:05d}" for z in zip_h[hh].tolist()],
        "tin": _tins(seed, stream, index, tin_draw),
    }


def _distinct_in_household(
    given: np.ndarray, group: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """Move each repeated given name within a household to the next name of its group.

    Siblings are rarely given the same name; father and son ("JR") are set afterwards.
    """
    given = given.copy()
    for place in range(1, int(position.max()) + 1):
        rows = np.flatnonzero(position == place)
        while True:
            repeated = np.zeros(len(rows), dtype=bool)
            for back in range(1, place + 1):
                repeated |= given[rows] == given[rows - back]
            if not repeated.any():
                break
            moved = rows[repeated]
            given[moved] = _GIVEN.next_in_group(given[moved], group[moved])
    return given


def _streets(rng: np.random.Generator, count: int, title: np.ndarray) -> list[str]:
    """One street line per household, in USPS standard form."""
    number = np.clip(rng.lognormal(6.0, 1.3, count), 1, 99999).astype(np.int64)
    has_directional = rng.random(count) < _DIRECTIONAL_SHARE
    directional = rng.choice(len(_DIRECTIONAL_P), size=count, p=_DIRECTIONAL_P)
    name = rng.choice(len(_STREET_P), size=count, p=_STREET_P)
    suffix = rng.choice(len(_SUFFIX_P), size=count, p=_SUFFIX_P)
    has_unit = rng.random(count) < _UNIT_SHARE
    unit = rng.choice(len(_UNIT_P), size=count, p=_UNIT_P)
    unit_number = rng.integers(1, 40, count)
    unit_letter = np.where(rng.random(count) < 0.15, rng.integers(0, 4, count), -1)
    po_box = rng.random(count) < _PO_BOX_SHARE
    box = rng.integers(1, 20000, count)
    lines = []
    for t, n, has_d, d, s, x, has_u, u, un, ul, is_box, b in zip(
        title.tolist(),
        number.tolist(),
        has_directional.tolist(),
        directional.tolist(),
        name.tolist(),
        suffix.tolist(),
        has_unit.tolist(),
        unit.tolist(),
        unit_number.tolist(),
        unit_letter.tolist(),
        po_box.tolist(),
        box.tolist(),
        strict=True,
    ):
        if is_box:
            lines.append(f"{_PO_BOX[t]} {b}")
            continue
        line = f"{n} {_DIRECTIONAL_WORDS[t][d]} " if has_d else f"{n} "
        line += f"{_STREET_WORDS[t][s]} {_SUFFIX_WORDS[t][x]}"
        if has_u:
            line += f" {_UNIT_WORDS[t][u]} {un}{'ABCD'[ul] if ul >= 0 else ''}"
        lines.append(line)
    return lines


def _tins(seed: int, stream: int, index: np.ndarray, draw: np.ndarray) -> list[str]:
    ssn, itin = _tin_permutations(seed, stream)
    ssn_area, ssn_group, ssn_serial = ssn_parts(ssn(index % SSN_SPACE))
    itin_area, itin_group, itin_serial = itin_parts(itin(index % ITIN_SPACE))
    is_itin = draw < _ITIN_SHARE
    area = np.where(is_itin, itin_area, ssn_area).tolist()
    group = np.where(is_itin, itin_group, ssn_group).tolist()
    serial = np.where(is_itin, itin_serial, ssn_serial).tolist()
    missing = (draw >= 1.0 - _TIN_MISSING).tolist()
    return [
        "" if m else f"{a:03d}-{g:02d}-{s:04d}"
        for a, g, s, m in zip(area, group, serial, missing, strict=True)
    ]


def population_columns(n: int, seed: int, stream: int = STREAM_POPULATION) -> Iterator[Columns]:
    """Yield the first ``n`` rows of a stream block by block, with ``record_id`` added."""
    for block in range((n + BLOCK_ROWS - 1) // BLOCK_ROWS):
        columns = person_block(seed, stream, block)
        first = block * BLOCK_ROWS
        count = min(BLOCK_ROWS, n - first)
        if count < BLOCK_ROWS:
            columns = {k: v[:count] for k, v in columns.items()}
        yield {"record_id": [f"R{i:09d}" for i in range(first, first + count)], **columns}


def check_count(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is a non-negative integer (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def generate_population(
    n: int, seed: int, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[list[dict[str, str]]]:
    """Yield ``n`` taxpayer records (``RECORD_COLUMNS``) in batches of ``batch_rows``.

    Row ``i`` depends only on ``(seed, i)``: the same arguments always give the same rows,
    whatever ``batch_rows``, and a smaller ``n`` gives a prefix. ``record_id`` is ``R``
    followed by the row index in 9 digits. Raises :class:`ValueError` for a negative
    ``n`` or ``seed`` or a ``batch_rows`` below 1.
    """
    check_count("n", n)
    check_count("seed", seed)
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    return _population_rows(n, seed, batch_rows)


def _population_rows(n: int, seed: int, batch_rows: int) -> Iterator[list[dict[str, str]]]:
    pending: list[dict[str, str]] = []
    for columns in population_columns(n, seed):
        names = list(columns)
        pending.extend(
            dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
        )
        while len(pending) >= batch_rows:
            yield pending[:batch_rows]
            del pending[:batch_rows]
    if pending:
        yield pending


def write_population(
    n: int,
    seed: int,
    out_path: str | os.PathLike[str],
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> SynthReport:
    """Write :func:`generate_population`'s rows to ``out_path`` (CSV or Parquet by suffix).

    Memory is bounded by ``batch_rows`` whatever ``n``; the file appears only once
    complete (see :class:`~psi_core.io.tabular.RowWriter`), and its bytes do not depend on
    ``batch_rows``. ``progress``, if given, is called with the number of rows just written.
    """
    check_count("n", n)
    check_count("seed", seed)
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    with RowWriter(out_path, RECORD_COLUMNS) as writer:
        pending: list[Columns] = []

        def flush() -> None:
            merged = {c: [v for chunk in pending for v in chunk[c]] for c in RECORD_COLUMNS}
            writer.write_columns(merged)
            if progress is not None:
                progress(len(merged["record_id"]))
            pending.clear()

        for columns in population_columns(n, seed):
            pending.append(columns)
            if sum(len(chunk["record_id"]) for chunk in pending) >= batch_rows:
                flush()
        if pending:
            flush()
    return SynthReport(path=Path(out_path), rows=n)
