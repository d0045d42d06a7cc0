"""Synthetic populations and subject lists: determinism, realism, and a truthful truth file."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from psi_core.errors import InputFileError, InvalidInputError, NotFoundError, RowError
from psi_core.io import RECORD_COLUMNS, SUBJECT_COLUMNS, TRUTH_COLUMNS, RowWriter, read_rows
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES
from psi_tools.synth import (
    NEAR_MISS_SHARE,
    ORIGINS,
    generate_population,
    generate_subjects,
    plan_subjects,
    write_population,
    write_subjects,
)
from psi_tools.synth._addresses import CITIES
from psi_tools.synth._text import strip_accents

POPULATION = 20_000
SUBJECTS = 4_000
OVERLAP = 0.4

SSN = re.compile(r"(\d{3})-(\d{2})-(\d{4})")
FOLD = re.compile(r"[^A-Z0-9]+")


def rows_of(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    return [row for batch in read_rows(path, columns) for row in batch]


def folded_tokens(*names: str) -> list[str]:
    """Name tokens with case, accents, punctuation and order removed."""
    text = strip_accents(" ".join(names)).upper()
    return sorted(t for t in FOLD.split(text) if t)


def digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


@pytest.fixture(scope="module")
def population_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "population.parquet"
    write_population(POPULATION, 11, path)
    return path


@pytest.fixture(scope="module")
def population(population_path) -> list[dict[str, str]]:
    return rows_of(population_path, RECORD_COLUMNS)


@pytest.fixture(scope="module")
def subjects(population_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("subjects")
    report = write_subjects(
        population_path, SUBJECTS, OVERLAP, 5, folder / "subjects.csv", folder / "truth.csv"
    )
    return (
        report,
        rows_of(folder / "subjects.csv", SUBJECT_COLUMNS),
        rows_of(folder / "truth.csv", TRUTH_COLUMNS),
    )


# Population --------------------------------------------------------------------------


def test_population_same_seed_same_bytes(tmp_path):
    """Two runs with the same n and seed write byte-identical files."""
    write_population(3_000, 1, tmp_path / "a.csv")
    write_population(3_000, 1, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_population_different_seed_differs(tmp_path):
    """Another seed gives other people, not a relabelling of the same ones."""
    write_population(2_000, 1, tmp_path / "a.csv")
    write_population(2_000, 2, tmp_path / "b.csv")
    first = rows_of(tmp_path / "a.csv", RECORD_COLUMNS)
    second = rows_of(tmp_path / "b.csv", RECORD_COLUMNS)
    same = sum(
        a["tin"] == b["tin"] and a["street"] == b["street"]
        for a, b in zip(first, second, strict=True)
    )
    assert same < 20


@pytest.mark.parametrize("batch_rows", [1, 999, 4096, 100_000])
def test_population_batch_size_does_not_change_output(tmp_path, batch_rows):
    """The bytes written and the rows generated do not depend on batch_rows."""
    write_population(5_000, 3, tmp_path / "ref.parquet")
    write_population(5_000, 3, tmp_path / "other.parquet", batch_rows=batch_rows)
    assert (tmp_path / "ref.parquet").read_bytes() == (tmp_path / "other.parquet").read_bytes()
    batches = list(generate_population(5_000, 3, batch_rows=batch_rows))
    assert all(len(b) == batch_rows for b in batches[:-1])
    assert [r for b in batches for r in b] == rows_of(tmp_path / "ref.parquet", RECORD_COLUMNS)


def test_population_smaller_n_is_a_prefix():
    """Row i is a function of (seed, i): a smaller population is a prefix of a larger one."""
    small = [r for b in generate_population(4_100, 9) for r in b]
    large = [r for b in generate_population(9_000, 9) for r in b]
    assert small == large[:4_100]


def test_population_columns_and_ids(population):
    """Every row has exactly RECORD_COLUMNS, string values, and ids R + 9 digits in order."""
    assert len(population) == POPULATION
    assert all(tuple(r) == RECORD_COLUMNS for r in population)
    assert [r["record_id"] for r in population[:3]] == ["R000000000", "R000000001", "R000000002"]
    assert len({r["record_id"] for r in population}) == POPULATION
    assert all(r["given_name"] and r["family_name"] and r["street"] for r in population)


def test_every_origin_is_present(population):
    """Family names of every origin in the name tables appear in a population."""
    families = Counter(folded_tokens(r["family_name"])[0] for r in population)
    for origin, table in ORIGINS.items():
        names = {folded_tokens(n)[0] for n in table.family}
        assert sum(families[n] for n in names) >= 20, origin


def test_names_keep_diacritics_and_compound_surnames(population):
    """Vietnamese and Polish diacritics survive, and some Hispanic surnames have two parts."""
    text = " ".join(r["family_name"] + " " + r["given_name"] for r in population).upper()
    assert "NGUYỄN" in text
    assert re.search("[ŁŚŻŹĆŃ]", text)
    hispanic = {n.upper() for n in ORIGINS["hispanic"].family}
    compound = [
        r
        for r in population
        if r["family_name"].upper().split(" ")[0] in hispanic
        and len(r["family_name"].split(" ")) >= 2
    ]
    assert len(compound) > 100


def test_households_share_an_address_and_a_family_name(population):
    """Several people live at one address; in most such households a family name repeats."""
    by_address: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in population:
        by_address[(row["street"], row["city"], row["zip"])].append(row)
    shared = [people for people in by_address.values() if len(people) > 1]
    assert len(shared) > POPULATION / 6
    assert max(len(p) for p in shared) >= 5
    with_family = sum(
        len({folded_tokens(p["family_name"])[0] for p in people}) < len(people) for people in shared
    )
    assert with_family > 0.7 * len(shared)
    dates = [{p["date_of_birth"] for p in people if p["date_of_birth"]} for people in shared]
    assert sum(len(d) > 1 for d in dates) > 0.9 * len(shared)


def test_junior_and_senior_pairs_exist(population):
    """Some fathers and sons share a given and family name, told apart by JR/SR."""
    juniors = [r for r in population if r["family_name"].upper().endswith(" JR")]
    assert len(juniors) > 50
    by_address = defaultdict(list)
    for row in population:
        by_address[row["street"], row["zip"]].append(row)
    for junior in juniors[:20]:
        father = [
            r
            for r in by_address[junior["street"], junior["zip"]]
            if r["given_name"] == junior["given_name"] and r is not junior
        ]
        assert father, junior["record_id"]


def test_given_names_are_distinct_within_a_household_except_juniors(population):
    """Two members of a household share a given name only as JR/SR (no name_address clashes)."""
    keys = Counter(RECIPES["name_address_v1"].key(r) for r in population)
    assert [k for k, count in keys.items() if k and count > 1] == []


def test_tins_are_well_formed_unique_and_shared_realistically(population):
    """SSNs avoid 000/666/9xx areas, ITINs are 9xx-70..88, ~8% ITIN, ~5% empty, none reused."""
    tins = [r["tin"] for r in population]
    present = [t for t in tins if t]
    assert len(set(present)) == len(present)
    itins = 0
    for tin in present:
        match = SSN.fullmatch(tin)
        assert match, tin
        area, group, serial = (int(part) for part in match.groups())
        assert group != 0 and serial != 0
        if area >= 900:
            itins += 1
            assert 70 <= group <= 88
        else:
            assert area not in (0, 666)
    assert 0.065 < itins / POPULATION < 0.095
    assert 0.04 < (len(tins) - len(present)) / POPULATION < 0.06


def test_dates_of_birth_are_real_past_dates(population):
    """Dates are valid YYYY-MM-DD, not after the reference day, ~3% empty, ages 0..110."""
    dates = [r["date_of_birth"] for r in population]
    missing = dates.count("")
    assert 0.02 < missing / POPULATION < 0.04
    parsed = [dt.date.fromisoformat(d) for d in dates if d]
    assert min(parsed) >= dt.date(1914, 1, 1)
    assert max(parsed) <= dt.date(2024, 12, 31)
    assert sum(p.year >= 2007 for p in parsed) > 0.1 * len(parsed)


def test_city_state_and_zip_agree(population):
    """Each row's city, state and ZIP prefix belong to one real city of the embedded list."""
    known = {(c.name, c.state, c.zip3) for c in CITIES}
    for row in population:
        assert (row["city"].upper(), row["state"], row["zip"][:3]) in known
        assert re.fullmatch(r"\d{5}", row["zip"])


def test_streets_are_in_usps_standard_form(population):
    """Streets use USPS abbreviations (ST, AVE, N, APT), never the long words."""
    streets = [r["street"].upper() for r in population]
    assert not any(re.search(r"\b(STREET|AVENUE|NORTH|APARTMENT)\b", s) for s in streets)
    assert sum(" APT " in s for s in streets) > POPULATION / 10
    assert sum(s.startswith("PO BOX ") for s in streets) > 0


# Subjects ----------------------------------------------------------------------------


def test_subjects_have_n_rows_and_matching_truth(subjects):
    """Exactly n subjects, one truth row each, in the same order, ids S + 7 digits."""
    report, rows, truth = subjects
    assert report.rows == len(rows) == len(truth) == SUBJECTS
    assert [r["subject_id"] for r in rows] == [t["subject_id"] for t in truth]
    assert rows[0]["subject_id"] == "S0000000"
    assert all(tuple(r) == SUBJECT_COLUMNS for r in rows)


def test_member_fraction_equals_overlap(subjects):
    """round(n * overlap) subjects are members; the report's counts agree with the truth file."""
    report, _, truth = subjects
    members = sum(bool(t["record_id"]) for t in truth)
    assert members == round(SUBJECTS * OVERLAP) == report.members
    assert report.non_members == SUBJECTS - members
    assert report.near_misses == round(report.non_members * NEAR_MISS_SHARE)


def test_members_are_shuffled_among_non_members(subjects):
    """Members are spread through the file rather than coming first."""
    _, _, truth = subjects
    positions = [i for i, t in enumerate(truth) if t["record_id"]]
    assert abs(sum(positions) / len(positions) - SUBJECTS / 2) < SUBJECTS / 20
    assert any(t["record_id"] for t in truth[-100:])


def test_members_are_perturbed_copies_of_their_record(subjects, population):
    """A member's record exists; its name tokens, digits of DOB, ZIP5 and TIN are the same."""
    _, rows, truth = subjects
    records = {r["record_id"]: r for r in population}
    changed = 0
    seen: set[str] = set()
    for subject, t in zip(rows, truth, strict=True):
        if not t["record_id"]:
            continue
        assert t["record_id"] not in seen
        seen.add(t["record_id"])
        record = records[t["record_id"]]
        assert folded_tokens(subject["given_name"], subject["family_name"]) == folded_tokens(
            record["given_name"], record["family_name"]
        )
        assert subject["date_of_birth"] in ("", record["date_of_birth"])
        assert digits(subject["tin"]) in ("", digits(record["tin"]))
        assert subject["zip"][:5] == record["zip"]
        assert subject["city"].upper() == record["city"].upper()
        changed += any(subject[c] != record[c] for c in RECORD_COLUMNS[1:])
    assert changed > 0.8 * len(seen)


def test_every_member_still_matches_its_record_under_the_recipes(subjects, population):
    """The variations are ones the recipes undo: each member shares every key it can form.

    The first-generation recipes, for which the formatting profile was written; the
    tolerant ones trade a little of this for content tolerance (docs/LINKAGE.md).
    """
    _, rows, truth = subjects
    records = {r["record_id"]: r for r in population}
    for subject, t in zip(rows, truth, strict=True):
        if t["record_id"]:
            record = records[t["record_id"]]
            keys = [(RECIPES[r].key(subject), RECIPES[r].key(record)) for r in DEFAULT_RECIPE_IDS]
            assert any(a is not None and a == b for a, b in keys), subject["subject_id"]
            assert all(a is None or b is None or a == b for a, b in keys), subject["subject_id"]


def test_subjects_show_every_kind_of_variation(subjects):
    """Agency spellings occur: long USPS words, #, ZIP+4, state names, name layouts, bare TINs."""
    _, rows, _ = subjects
    streets = " ".join(r["street"] for r in rows)
    for word in ("Street", "Avenue", "North", "#", "Apartment"):
        assert word.upper() in streets.upper(), word
    assert any(re.fullmatch(r"\d{5}-\d{4}", r["zip"]) for r in rows)
    assert any(len(r["state"]) > 2 for r in rows)
    assert any("," in r["family_name"] and not r["given_name"] for r in rows)
    assert any(r["given_name"].islower() for r in rows)
    assert any(re.fullmatch(r"\d{9}", r["tin"]) for r in rows)
    assert any("-" in r["family_name"] for r in rows)
    assert 0.05 < sum(not r["date_of_birth"] for r in rows) / len(rows) < 0.2


def test_non_members_are_new_people_and_some_are_near_misses(subjects, population):
    """Non-members have no record_id and no population TIN; some carry a member's name."""
    report, rows, truth = subjects
    tins = {digits(r["tin"]) for r in population if r["tin"]}
    names = {tuple(folded_tokens(r["given_name"], r["family_name"])) for r in population}
    outsiders = [s for s, t in zip(rows, truth, strict=True) if not t["record_id"]]
    assert len(outsiders) == report.non_members
    assert not any(digits(s["tin"]) in tins for s in outsiders if s["tin"])
    named = sum(tuple(folded_tokens(s["given_name"], s["family_name"])) in names for s in outsiders)
    assert named >= report.near_misses


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_subjects_are_deterministic_in_both_formats(population_path, tmp_path, suffix):
    """Same arguments give identical files in CSV and Parquet; batch size changes nothing."""
    out = []
    for run, batch_rows in enumerate([65_536, 333]):
        subjects_path = tmp_path / f"s{run}{suffix}"
        truth_path = tmp_path / f"t{run}{suffix}"
        write_subjects(
            population_path, 1_500, 0.5, 8, subjects_path, truth_path, batch_rows=batch_rows
        )
        out.append((subjects_path.read_bytes(), truth_path.read_bytes()))
    assert out[0] == out[1]
    batches = list(generate_subjects(population_path, 1_500, 0.5, 8, batch_rows=333))
    assert [len(b.subjects) for b in batches] == [333] * 4 + [168]
    assert [r for b in batches for r in b.subjects] == rows_of(
        tmp_path / f"s0{suffix}", SUBJECT_COLUMNS
    )


def test_subjects_with_another_seed_differ(population_path):
    """Another seed samples other members."""

    def members(seed: int) -> set[str]:
        return {
            t["record_id"]
            for b in generate_subjects(population_path, 500, 1.0, seed)
            for t in b.truth
        }

    assert len(members(1) & members(2)) < 100


@pytest.mark.parametrize("overlap", [0.0, 1.0])
def test_overlap_extremes(population_path, overlap):
    """overlap 0 gives no member, overlap 1 only members."""
    truth = [t for b in generate_subjects(population_path, 300, overlap, 4) for t in b.truth]
    assert sum(bool(t["record_id"]) for t in truth) == round(300 * overlap)


def test_progress_reports_every_row(population_path, tmp_path):
    """The progress callback is told, in increments, about every row written."""
    seen: list[int] = []
    write_population(5_000, 2, tmp_path / "p.csv", batch_rows=1_000, progress=seen.append)
    assert sum(seen) == 5_000
    seen.clear()
    write_subjects(
        population_path, 700, 0.3, 2, tmp_path / "s.csv", tmp_path / "t.csv", progress=seen.append
    )
    assert sum(seen) == 700


# Refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": -1},
        {"seed": -5},
        {"n": 2.5},
        {"seed": 2.0},
        {"seed": False},
        {"batch_rows": 0},
        {"n": True},
    ],
)
def test_population_refuses_bad_arguments(tmp_path, kwargs):
    """Negative or non-integer counts and seeds are ValueErrors; no file appears."""
    args = {"n": 10, "seed": 1, "out_path": tmp_path / "p.csv", **kwargs}
    with pytest.raises(ValueError, match="must be"):
        write_population(**args)
    with pytest.raises(ValueError, match="must be"):
        generate_population(args["n"], args["seed"], batch_rows=args.get("batch_rows", 10))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("n", "overlap", "seed", "batch_rows"),
    [
        (-1, 0.5, 1, 10),
        (2.5, 0.5, 1, 10),
        (True, 0.5, 1, 10),
        (10, 1.5, 1, 10),
        (10, -0.1, 1, 10),
        (10, float("nan"), 1, 10),
        (10, 0.5, -1, 10),
        (10, 0.5, 1.5, 10),
        (10, 0.5, 1, 0),
    ],
)
def test_subjects_refuse_bad_arguments(population_path, n, overlap, seed, batch_rows):
    """Counts, seeds, overlaps and batch sizes out of range are ValueErrors, before any read."""
    with pytest.raises(ValueError, match="must be"):
        generate_subjects(population_path, n, overlap, seed, batch_rows=batch_rows)


@pytest.mark.parametrize("clash", ["population", "same"])
def test_subjects_refuse_to_overwrite_their_inputs(population_path, tmp_path, clash):
    """Subject and truth paths must differ from each other and from the population."""
    subjects_path = population_path if clash == "population" else tmp_path / "s.csv"
    before = population_path.read_bytes()
    with pytest.raises(ValueError, match="three different files"):
        write_subjects(population_path, 10, 0.5, 1, subjects_path, tmp_path / "s.csv")
    assert population_path.read_bytes() == before
    assert list(tmp_path.iterdir()) == []


def test_subjects_refuse_a_corrupt_population(tmp_path):
    """A population file that is not Parquet is refused as invalid input."""
    path = tmp_path / "population.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        generate_subjects(path, 10, 0.5, 1)


def test_subjects_refuse_more_members_than_population(population_path, tmp_path):
    """An overlap that needs more members than the population holds is refused, no files left."""
    with pytest.raises(InvalidInputError, match="needs 30000 members"):
        write_subjects(population_path, 30_000, 1.0, 1, tmp_path / "s.csv", tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_subjects_refuse_missing_population(tmp_path):
    """A population path that does not exist is an input file error."""
    with pytest.raises(InputFileError, match="no such file"):
        plan_subjects(tmp_path / "none.parquet", 10, 0.5, 1)


def test_subjects_refuse_a_population_without_record_columns(tmp_path):
    """A subject file given as the population is refused for its missing columns."""
    path = tmp_path / "not_population.csv"
    path.write_text(",".join(SUBJECT_COLUMNS) + "\nS1,A,B,,1 MAIN ST,X,MA,02138,\n")
    with pytest.raises(InvalidInputError, match="missing required columns: record_id"):
        list(generate_subjects(path, 1, 1.0, 1))


def test_subjects_refuse_an_unreadable_population_row(tmp_path):
    """A bad row in the population is raised with its line; neither output file appears."""
    population = tmp_path / "population.csv"
    write_population(50, 1, population)
    lines = population.read_text().splitlines()
    lines[20] = "R000000019,short"
    population.write_text("\n".join(lines) + "\n")
    with pytest.raises(RowError, match="line 21"):
        write_subjects(population, 20, 0.5, 1, tmp_path / "s.csv", tmp_path / "t.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["population.csv"]


@pytest.mark.parametrize("name", ["subjects.txt", "subjects"])
def test_subjects_refuse_unknown_output_format(population_path, tmp_path, name):
    """An output path without a .csv/.parquet/.pq suffix is refused."""
    with pytest.raises(InvalidInputError, match="unknown file type"):
        write_subjects(population_path, 10, 0.5, 1, tmp_path / name, tmp_path / "t.csv")


def test_population_refuses_unknown_output_format(tmp_path):
    """write_population refuses an output suffix it cannot write."""
    with pytest.raises(InvalidInputError, match="unknown file type"):
        write_population(10, 1, tmp_path / "p.xlsx")


def test_population_writer_into_missing_directory_is_not_found(tmp_path):
    """Writing into a directory that does not exist raises NotFoundError."""
    with pytest.raises(NotFoundError):
        write_population(10, 1, tmp_path / "missing" / "p.csv")


def test_empty_population_allows_only_non_members(tmp_path):
    """With an empty population every subject is a plain non-member (no near misses)."""
    path = tmp_path / "empty.csv"
    with RowWriter(path, RECORD_COLUMNS):
        pass
    plan = plan_subjects(path, 10, 0.0, 1)
    assert (plan.members, plan.non_members, plan.near_misses) == (0, 10, 0)
    with pytest.raises(InvalidInputError):
        plan_subjects(path, 10, 0.1, 1)
