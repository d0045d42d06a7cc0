"""Agency subject lists drawn from a population file, with a truth file.

A fraction ``overlap`` of the subjects are population members (sampled without
replacement); the rest are people from a separate generator stream, a share of them
*near misses* that carry a member's name together with that member's date of birth
(different address), that member's address (different date of birth), or neither. Every
subject then passes through :func:`psi_tools.synth._variation.vary`.

The population file is streamed once; memory grows with ``n`` (about 150 bytes a subject,
held in Arrow tables), never with the population.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psi_core.errors import InvalidInputError
from psi_core.io import (
    DEFAULT_BATCH_ROWS,
    RECORD_COLUMNS,
    SUBJECT_COLUMNS,
    TRUTH_COLUMNS,
    InputFile,
    InputOptions,
    RowWriter,
    read_rows,
)
from psi_tools.synth import _realistic
from psi_tools.synth._population import (
    BLOCK_ROWS,
    STREAM_OUTSIDERS,
    check_count,
    population_columns,
)
from psi_tools.synth._report import SynthReport
from psi_tools.synth._variation import DECISIONS, vary

NEAR_MISS_SHARE: Final = 0.25
"""Share of non-members that are near misses of a population member."""

_NEAR_MISS_KINDS_P: Final = (0.5, 0.25, 0.25)
_DIFFERENT, _SAME_DOB, _SAME_ADDRESS = range(3)
_NEAR_MISS_LABELS: Final = ("same_name", "same_name_dob", "same_name_address")
_ADDRESS: Final = ("street", "city", "state", "zip")
_PERSON: Final = RECORD_COLUMNS[1:]

_PURPOSE_SAMPLE: Final = 10
_PURPOSE_ORDER: Final = 11
_PURPOSE_VARY: Final = 12
_PURPOSE_REALISTIC: Final = 13


class SubjectBatch(NamedTuple):
    """Consecutive subjects (``SUBJECT_COLUMNS``) and their truth rows (``TRUTH_COLUMNS``).

    ``truth[i]`` belongs to ``subjects[i]``; its ``record_id`` is ``""`` for a non-member.
    """

    subjects: list[dict[str, str]]
    truth: list[dict[str, str]]


@dataclass(frozen=True)
class SubjectPlan:
    """How many subjects of each kind a call makes, fixed before any row is read."""

    rows: int
    members: int
    non_members: int
    near_misses: int
    population_rows: int


POPULATION_NEEDS: Final = ("record_id",)
"""The population columns that must be present; the others read as empty when absent."""


def plan_subjects(
    population_path: str | os.PathLike[str],
    n: int,
    overlap: float,
    seed: int,
    *,
    options: InputOptions | None = None,
) -> SubjectPlan:
    """Check the arguments against the population and count each kind of subject.

    ``members = round(n * overlap)``; ``near_misses = round(non_members *``
    :data:`NEAR_MISS_SHARE` ``)`` (0 for an empty population). Raises :class:`ValueError` for
    a negative ``n`` or ``seed`` or an ``overlap`` outside [0, 1], and
    :class:`InvalidInputError` when the population has fewer rows than ``members``.
    """
    check_count("n", n)
    check_count("seed", seed)
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be between 0 and 1, got {overlap}")
    with InputFile(population_path, options) as source:
        source.plan(RECORD_COLUMNS, POPULATION_NEEDS)
        population_rows = source.count_rows()
    members = round(n * overlap)
    if members > population_rows:
        raise InvalidInputError(
            f"{os.fspath(population_path)}: {population_rows} rows, but overlap {overlap} of "
            f"{n} subjects needs {members} members"
        )
    non_members = n - members
    near_misses = round(non_members * NEAR_MISS_SHARE) if population_rows else 0
    return SubjectPlan(n, members, non_members, near_misses, population_rows)


def generate_subjects(
    population_path: str | os.PathLike[str],
    n: int,
    overlap: float,
    seed: int,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    profile: str = "formatting",
    options: InputOptions | None = None,
) -> Iterator[SubjectBatch]:
    """Yield ``n`` subjects and their truth in batches of ``batch_rows``.

    The output is a pure function of the population file's rows, ``n``, ``overlap`` and
    ``seed``; ``batch_rows`` changes only how it is cut. Subject ``i`` in output order
    has the id ``S`` followed by ``i`` in at least 7 digits; members and non-members are
    shuffled together. Arguments are checked (see :func:`plan_subjects`) before this
    returns; the population is read on the first ``next()``, and an unreadable row in it
    is raised as :class:`~psi_core.errors.RowError`.

    ``profile`` is ``"formatting"`` (the default here, and the only profile before
    profiles existed: its output is unchanged) or ``"realistic"`` (the ``psi synth
    subjects`` default; see :mod:`psi_tools.synth._realistic`), whose truth rows also
    carry :data:`~psi_tools.synth._realistic.TRUTH_DETAIL_COLUMNS`.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    _check_profile(profile)
    plan = plan_subjects(population_path, n, overlap, seed, options=options)
    blocks = _subject_blocks(
        os.fspath(population_path), plan, seed, profile=profile, options=options
    )
    return _rebatch(blocks, batch_rows)


def _check_profile(profile: str) -> None:
    if profile not in _realistic.PROFILES:
        raise ValueError(
            f"unknown subject profile {profile!r}; use one of {', '.join(_realistic.PROFILES)}"
        )


def truth_columns(profile: str) -> tuple[str, ...]:
    """The columns of a truth file written under ``profile``."""
    _check_profile(profile)
    if profile == "formatting":
        return TRUTH_COLUMNS
    return (*TRUTH_COLUMNS, *_realistic.TRUTH_DETAIL_COLUMNS)


def _rebatch(blocks: Iterator[SubjectBatch], batch_rows: int) -> Iterator[SubjectBatch]:
    subjects: list[dict[str, str]] = []
    truth: list[dict[str, str]] = []
    for block in blocks:
        subjects.extend(block.subjects)
        truth.extend(block.truth)
        while len(subjects) >= batch_rows:
            yield SubjectBatch(subjects[:batch_rows], truth[:batch_rows])
            del subjects[:batch_rows], truth[:batch_rows]
    if subjects:
        yield SubjectBatch(subjects, truth)


_SCHEMA: Final = pa.schema([(c, pa.string()) for c in RECORD_COLUMNS])


def _batch(columns: Mapping[str, list[str]]) -> pa.RecordBatch:
    """Column lists as Arrow, which holds a row in a fraction of the Python objects' memory."""
    return pa.RecordBatch.from_pydict({c: columns[c] for c in RECORD_COLUMNS}, _SCHEMA)


def _table(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(list(batches), _SCHEMA).combine_chunks()


def _tin_numbers(tins: pa.Array) -> np.ndarray:
    digits = pc.replace_substring_regex(tins, r"[\s-]", "")
    usable = pc.and_(pc.utf8_is_digit(digits), pc.equal(pc.utf8_length(digits), 9))
    return digits.filter(usable).cast(pa.int64()).to_numpy()


class _PopulationPicks(NamedTuple):
    members: pa.Table
    near_sources: pa.Table
    colliding_tins: frozenset[int]


def _pick_from_population(
    path: str,
    member_rows: np.ndarray,
    near_rows: np.ndarray,
    outsider_tins: np.ndarray,
    options: InputOptions | None,
) -> _PopulationPicks:
    """Stream the population once: copy the sampled rows, find TINs outsiders share.

    ``member_rows``, ``near_rows`` and ``outsider_tins`` must be sorted.
    """
    members: list[pa.RecordBatch] = []
    sources: list[pa.RecordBatch] = []
    colliding: set[int] = set()
    first = 0
    rows = read_rows(
        path, RECORD_COLUMNS, required=POPULATION_NEEDS, options=options, on_error="refuse"
    )
    for batch in rows:
        end = first + len(batch)
        for wanted, sink in ((member_rows, members), (near_rows, sources)):
            lo, hi = np.searchsorted(wanted, [first, end])
            if hi > lo:
                picked = [batch[i - first] for i in wanted[lo:hi].tolist()]
                sink.append(_batch({c: [row[c] for row in picked] for c in RECORD_COLUMNS}))
        if len(outsider_tins):
            numbers = _tin_numbers(pa.array([row["tin"] for row in batch], pa.string()))
            at = np.minimum(np.searchsorted(outsider_tins, numbers), len(outsider_tins) - 1)
            colliding.update(numbers[outsider_tins[at] == numbers].tolist())
        first = end
    found = sum(b.num_rows for b in members) + sum(b.num_rows for b in sources)
    if found != len(member_rows) + len(near_rows):
        raise InvalidInputError(
            f"{path}: has fewer readable rows ({first}) than its row count promised"
        )
    return _PopulationPicks(_table(members), _table(sources), frozenset(colliding))


@dataclass
class _Tally:
    tins_cleared: int = 0


def _subject_blocks(
    path: str,
    plan: SubjectPlan,
    seed: int,
    tally: _Tally | None = None,
    profile: str = "formatting",
    options: InputOptions | None = None,
) -> Iterator[SubjectBatch]:
    tally = tally if tally is not None else _Tally()
    sampler = np.random.default_rng([seed, _PURPOSE_SAMPLE])
    member_rows = np.sort(
        sampler.choice(plan.population_rows, size=plan.members, replace=False)
        if plan.members
        else np.empty(0, dtype=np.int64)
    )
    near_rows = (
        sampler.integers(0, plan.population_rows, size=plan.near_misses)
        if plan.near_misses
        else np.empty(0, dtype=np.int64)
    )
    near_kinds = sampler.choice(3, size=plan.near_misses, p=_NEAR_MISS_KINDS_P)
    near_unique, near_source = np.unique(near_rows, return_inverse=True)

    outsiders = _table(
        _batch(columns) for columns in population_columns(plan.non_members, seed, STREAM_OUTSIDERS)
    )
    outsider_tins = np.unique(_tin_numbers(outsiders.column("tin").combine_chunks()))
    picks = _pick_from_population(path, member_rows, near_unique, outsider_tins, options)

    order = np.random.default_rng([seed, _PURPOSE_ORDER]).permutation(plan.rows)
    for block_start in range(0, plan.rows, BLOCK_ROWS):
        slots = order[block_start : block_start + BLOCK_ROWS]
        rows = _rows_for_slots(slots, plan, picks, outsiders, near_source, near_kinds, tally)
        draws = (
            np.random.default_rng([seed, _PURPOSE_VARY, block_start // BLOCK_ROWS])
            .random((len(slots), DECISIONS))
            .tolist()
        )
        if profile == "realistic":
            rnd = random.Random(f"{seed}/{_PURPOSE_REALISTIC}/{block_start // BLOCK_ROWS}")
            yield _realistic_block(block_start, rows, draws, rnd)
            continue
        subjects: list[dict[str, str]] = []
        truth: list[dict[str, str]] = []
        for offset, ((record_id, person, _), u) in enumerate(zip(rows, draws, strict=True)):
            subject_id = f"S{block_start + offset:07d}"
            varied = vary(person, u)
            subjects.append({"subject_id": subject_id, **{c: varied[c] for c in _PERSON}})
            truth.append({"subject_id": subject_id, "record_id": record_id})
        yield SubjectBatch(subjects, truth)


_NEAR_MISS_MAKERS: Final = {
    "household": _realistic.make_household_relative,
    "zip_collision": _realistic.make_zip_collision,
    "twin": _realistic.make_twin,
}


def _realistic_block(
    block_start: int,
    rows: list[tuple[str, dict[str, str], str]],
    draws: list[list[float]],
    rnd: random.Random,
) -> SubjectBatch:
    """One block under the ``realistic`` profile (see :mod:`psi_tools.synth._realistic`)."""
    sources = [dict(person) for record_id, person, _ in rows if record_id]
    extra = tuple(_realistic.NEAR_MISS_EXTRA.items())
    subjects: list[dict[str, str]] = []
    truth: list[dict[str, str]] = []
    for offset, ((record_id, person, near), u) in enumerate(zip(rows, draws, strict=True)):
        if not record_id and not near and sources:
            draw = rnd.random()
            for kind, share in extra:
                if draw < share:
                    source = rnd.choice(sources)
                    make = _NEAR_MISS_MAKERS[kind]
                    make(person, source, rnd)
                    near = kind
                    break
                draw -= share
        origin = _realistic.infer_origin(person["given_name"], person["family_name"])
        applied = _realistic.vary_content(person, rnd)
        varied = vary(person, u)
        if any(varied[c] != person[c] for c in _PERSON):
            applied.append("formatting")
        if person["date_of_birth"] and not varied["date_of_birth"]:
            applied.append("dob_missing")
        if person["tin"] and not varied["tin"]:
            applied.append("tin_missing")
        applied.extend(_realistic.damage(varied, rnd))
        subject_id = f"S{block_start + offset:07d}"
        subjects.append({"subject_id": subject_id, **{c: varied[c] for c in _PERSON}})
        truth.append(
            {
                "subject_id": subject_id,
                "record_id": record_id,
                "origin": origin,
                "variations": ";".join(applied),
                "near_miss": near,
            }
        )
    return SubjectBatch(subjects, truth)


def _rows_for_slots(
    slots: np.ndarray,
    plan: SubjectPlan,
    picks: _PopulationPicks,
    outsiders: pa.Table,
    near_source: np.ndarray,
    near_kinds: np.ndarray,
    tally: _Tally,
) -> list[tuple[str, dict[str, str], str]]:
    """The unvaried person behind each slot, its truth ``record_id`` and near-miss kind."""
    is_member = slots < plan.members
    member_rows = picks.members.take(pa.array(slots[is_member])).to_pylist()
    outsider_slots = slots[~is_member] - plan.members
    outsider_rows = outsiders.take(pa.array(outsider_slots)).to_pylist()
    near = outsider_slots < plan.near_misses
    source_rows = iter(
        picks.near_sources.take(pa.array(near_source[outsider_slots[near]])).to_pylist()
    )
    kinds = iter(near_kinds[outsider_slots[near]].tolist())
    members_iter, outsiders_iter = iter(member_rows), iter(outsider_rows)
    out: list[tuple[str, dict[str, str], str]] = []
    for member, is_near in zip(is_member.tolist(), _spread(is_member, near), strict=True):
        if member:
            row = next(members_iter)
            out.append((row["record_id"], row, ""))
            continue
        person = next(outsiders_iter)
        label = ""
        if is_near:
            kind = next(kinds)
            _make_near_miss(person, next(source_rows), kind)
            label = _NEAR_MISS_LABELS[kind]
        tin = person["tin"].replace("-", "")
        if tin.isdigit() and int(tin) in picks.colliding_tins:
            person["tin"] = ""
            tally.tins_cleared += 1
        out.append(("", person, label))
    return out


def _spread(is_member: np.ndarray, near: np.ndarray) -> list[bool]:
    """``near`` (one flag per non-member) laid out over all slots (False for members)."""
    flags = np.zeros(len(is_member), dtype=bool)
    flags[~is_member] = near
    return flags.tolist()


def _make_near_miss(person: dict[str, str], source: dict[str, str], kind: int) -> None:
    person["given_name"] = source["given_name"]
    person["family_name"] = source["family_name"]
    if kind == _SAME_DOB and source["date_of_birth"]:
        person["date_of_birth"] = source["date_of_birth"]
    elif kind == _SAME_ADDRESS:
        for column in _ADDRESS:
            person[column] = source[column]
        if person["date_of_birth"] and person["date_of_birth"] == source["date_of_birth"]:
            year = int(person["date_of_birth"][:4])
            person["date_of_birth"] = f"{year - 1}{person['date_of_birth'][4:]}".replace(
                "-02-29", "-02-28"
            )


def write_subjects(
    population_path: str | os.PathLike[str],
    n: int,
    overlap: float,
    seed: int,
    out_path: str | os.PathLike[str],
    truth_path: str | os.PathLike[str],
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
    profile: str = "formatting",
    options: InputOptions | None = None,
) -> SynthReport:
    """Write :func:`generate_subjects`'s output to ``out_path`` and ``truth_path``.

    Each file is CSV or Parquet by its suffix and appears only once complete (see
    :class:`~psi_core.io.tabular.RowWriter`): on any error neither is left behind. The three
    paths must name three different files (:class:`ValueError` otherwise), so the
    population is never overwritten.
    ``progress``, if given, is called with the number of subject rows just written.
    ``profile`` is as for :func:`generate_subjects`.
    ``options`` say how to read the population (encoding, delimiter, sheet, column
    mapping); only ``record_id`` must be in it, absent columns read as empty.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    columns = truth_columns(profile)
    _check_distinct_paths(population_path, out_path, truth_path)
    plan = plan_subjects(population_path, n, overlap, seed, options=options)
    tally = _Tally()
    blocks = _subject_blocks(os.fspath(population_path), plan, seed, tally, profile, options)
    with (
        RowWriter(out_path, SUBJECT_COLUMNS) as subjects,
        RowWriter(truth_path, columns) as truth,
    ):
        for batch in _rebatch(blocks, batch_rows):
            subjects.write_rows(batch.subjects)
            truth.write_rows(batch.truth)
            if progress is not None:
                progress(len(batch.subjects))
    return SynthReport(
        path=Path(out_path),
        rows=plan.rows,
        members=plan.members,
        non_members=plan.non_members,
        near_misses=plan.near_misses,
        tins_cleared=tally.tins_cleared,
        truth_path=Path(truth_path),
    )


def _check_distinct_paths(*paths: str | os.PathLike[str]) -> None:
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError("the population, subject and truth paths must be three different files")
