"""Match quality: tolerant recipes, the realistic subject profile, the linkage report and the
shipped quality data."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import linkage
from psi_core.io import TRUTH_COLUMNS
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES, get_recipe
from psi_core.recipes._nicknames import fold_nickname
from psi_core.recipes._tolerant import (
    house_number,
    soundex,
    tolerant_date,
    tolerant_name,
    tolerant_tin,
)
from psi_core.recipes.quality import QUALITY_PATH, expected_false_matches, rule_id
from psi_tools.synth import (
    PROFILES,
    RATES,
    TRUTH_DETAIL_COLUMNS,
    generate_subjects,
    infer_origin,
    truth_columns,
    write_population,
    write_subjects,
)

FORMATTING_DIGEST = "ba939957950f7a09a058ad3e66dde23392e8be3c86440e5d704f8a24a3e1cf80"
"""sha256 of subjects + truth CSV for population (3000, seed 5), subjects (800, 0.4, seed 6),
computed with the code before profiles existed."""


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("linkage") / "population.csv"
    write_population(5_000, 11, path)
    return path


# Tolerant forms.


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("Robert", "Smith"), ("Bob", "Smith")),
        (("Jose Luis", "Garcia Lopez"), ("José", "García")),
        (("Jose", "Garcia-Lopez"), ("Garcia Lopez", "Jose")),
        (("Ana", "De la Cruz"), ("ANA", "DELACRUZ")),
        (("", "GARCIA, JOSE"), ("Jose", "Garcia")),
        (("伟", "王"), ("Wei", "Wang")),
        (("Иван", "Петров"), ("Ivan", "Petrov")),
        (("Thị Mai", "Nguyễn"), ("Mai", "Nguyen")),
        (("Smith Jr", "John"), ("John", "Smith Jr.")),
        (("Min-jun", "Kim"), ("Minjun", "Kim")),
    ],
)
def test_tolerant_name_agrees_across_content_variations(a, b):
    """Nicknames, dropped middle names and second surnames, particles, scripts, swaps agree."""
    assert tolerant_name(*a) is not None
    assert tolerant_name(*a) == tolerant_name(*b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("John", "Smith"), ("John", "Smith Jr")),
        (("Jose", "Garcia"), ("Juan", "Garcia")),
        (("Min-jun", "Kim"), ("Min-ho", "Kim")),
        (("Jose", "Garcia"), ("Jose", "Lopez")),
    ],
)
def test_tolerant_name_still_tells_people_apart(a, b):
    """Generations, siblings and other surnames keep distinct names."""
    assert tolerant_name(*a) != tolerant_name(*b)


@pytest.mark.parametrize(
    ("given", "family"),
    [("", "Smith"), ("Jose", ""), ("J.", "Smith"), ("Mr", "Smith"), (None, None)],
)
def test_tolerant_name_refuses_a_name_it_cannot_use(given, family):
    assert tolerant_name(given, family) is None


def test_nickname_fold_joins_common_pairs_and_keeps_unknown_names():
    assert fold_nickname("BOB") == fold_nickname("ROBERT")
    assert fold_nickname("PEGGY") == fold_nickname("MARGARET")
    assert fold_nickname("ZXQV") == "ZXQV"


@pytest.mark.parametrize(
    "text", ["1980-04-12", "1980-12-04", "4/12/1980", "04-12-1980", "19800412", "04121980", "29323"]
)
def test_tolerant_date_accepts_layouts_and_day_month_swaps(text):
    assert tolerant_date(text) == "1980-04-12"


@pytest.mark.parametrize(
    "text", ["", "1900-01-01", "1980-13-14", "1980-02-30", "not a date", "1800-01-02", "12345678"]
)
def test_tolerant_date_refuses_what_is_no_date(text):
    assert tolerant_date(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("012-34-5678", "012345678"),
        ("12345678", "012345678"),
        ("2345678", "002345678"),
        ("123456789.0", "123456789"),
        ("1.23457E+08", None),
        ("123456", None),
        ("000-12-3456", None),
        ("666123456", None),
    ],
)
def test_tolerant_tin(text, expected):
    assert tolerant_tin(text) == expected


@pytest.mark.parametrize(
    ("street", "expected"),
    [("0123 North Main Street Apt 4", "123"), ("PO Box 12", None), ("Main Street", None)],
)
def test_house_number(street, expected):
    assert house_number(street) == expected


@pytest.mark.parametrize(
    ("word", "code"),
    [("ROBERT", "R163"), ("RUPERT", "R163"), ("ASHCRAFT", "A261"), ("TYMCZAK", "T522"),
     ("PFISTER", "P236"), ("MUHAMMAD", "M530"), ("MOHAMMED", "M530"), ("LEE", "L000")],
)  # fmt: skip
def test_soundex_known_codes(word, code):
    assert soundex(word) == code


def test_v1_recipes_are_the_build_default_and_unchanged_by_the_new_ones():
    """The default index holds the _v1 recipes; the tolerant recipes are extra ids."""
    assert DEFAULT_RECIPE_IDS == ("name_address_v1", "name_dob_v1", "tin_v1")
    record = {
        "given_name": "Bob",
        "family_name": "Smith",
        "date_of_birth": "1980-04-12",
        "street": "123 Main St",
        "state": "IL",
        "zip": "62701",
        "tin": "123-45-6789",
    }
    assert get_recipe("name_dob_v1").key(record) == "name_dob_v1|BOB SMITH|1980-04-12"
    assert get_recipe("name_dob_v2").key(record) == "name_dob_v2|ROBERT SMITH|1980-04-12"


# Subject profiles.


def test_formatting_profile_reproduces_the_bytes_from_before_profiles(tmp_path):
    write_population(3_000, 5, tmp_path / "p.csv")
    write_subjects(tmp_path / "p.csv", 800, 0.4, 6, tmp_path / "s.csv", tmp_path / "t.csv")
    digest = hashlib.sha256(
        (tmp_path / "s.csv").read_bytes() + (tmp_path / "t.csv").read_bytes()
    ).hexdigest()
    assert digest == FORMATTING_DIGEST


def test_realistic_profile_is_seeded_and_its_truth_carries_origin_and_variations(
    population, tmp_path
):
    paths = []
    for run in (1, 2):
        out, truth = tmp_path / f"s{run}.csv", tmp_path / f"t{run}.csv"
        write_subjects(population, 2_000, 0.5, 3, out, truth, profile="realistic")
        paths.append(out.read_bytes() + truth.read_bytes())
    assert paths[0] == paths[1]
    header = (tmp_path / "t1.csv").read_text(encoding="utf-8").splitlines()[0]
    assert (
        tuple(header.split(","))
        == truth_columns("realistic")
        == (
            *TRUTH_COLUMNS,
            *TRUTH_DETAIL_COLUMNS,
        )
    )
    assert truth_columns("formatting") == TRUTH_COLUMNS


def test_realistic_profile_applies_each_variation_near_its_rate(population):
    truth = [
        t
        for batch in generate_subjects(population, 3_000, 0.5, 4, profile="realistic")
        for t in batch.truth
    ]
    tags = Counter(v for t in truth for v in t["variations"].split(";") if v)
    n = len(truth)
    for kind in ("typo", "moved", "day_month_swap", "spreadsheet"):
        expected = RATES[kind] * n
        assert 0.4 * expected < tags[kind] < 1.8 * expected, (kind, tags[kind], expected)
    for kind in ("nickname", "transliteration", "compound_surname", "unit", "hyphenation"):
        assert tags[kind] > 0, kind
    near = Counter(t["near_miss"] for t in truth if t["near_miss"])
    assert set(near) == {
        "same_name",
        "same_name_dob",
        "same_name_address",
        "household",
        "zip_collision",
        "twin",
    }
    assert all(t["near_miss"] == "" for t in truth if t["record_id"])
    assert {t["origin"] for t in truth} >= {"anglo", "hispanic", "chinese", "korean"}


def test_realistic_profile_costs_the_v1_recipes_recall(population):
    """Content variations are real differences: name_address_v1 misses members it would
    find under the formatting profile."""
    from psi_tools.synth import generate_population

    records = {r["record_id"]: r for batch in generate_population(5_000, 11) for r in batch}
    recipe = RECIPES["name_address_v1"]
    recall = {}
    for profile in PROFILES:
        found = members = 0
        for batch in generate_subjects(population, 1_000, 1.0, 5, profile=profile):
            for subject, truth in zip(batch.subjects, batch.truth, strict=True):
                members += 1
                key = recipe.key(subject)
                found += key is not None and key == recipe.key(records[truth["record_id"]])
        recall[profile] = found / members
    assert recall["formatting"] > 0.97
    assert recall["realistic"] < recall["formatting"] - 0.05


def test_unknown_profile_is_refused(population, tmp_path):
    with pytest.raises(ValueError, match="profile"):
        generate_subjects(population, 10, 0.5, 1, profile="perfect")
    assert not (tmp_path / "s.csv").exists()


def test_origin_is_inferred_from_the_name_tables():
    assert infer_origin("José", "García López") == "hispanic"
    assert infer_origin("MIN-JUN", "KIM") == "korean"
    assert infer_origin("Jian", "Han") == "chinese"
    assert infer_origin("Zork", "Quux") == "unknown"


# Linkage report and the quality data.


def test_linkage_report_smoke(tmp_path):
    """A small run writes the three outputs, and rule figures follow from the recipes'."""
    document = linkage.run(
        ["--population", "3000", "--subjects", "600", "--seed", "3", "--out", str(tmp_path)]
    )
    for name in ("linkage.json", "linkage.md", "linkage.png"):
        assert (tmp_path / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "linkage.json").read_text(encoding="utf-8"))
    assert on_disk["subjects"] == 600
    by_id = {r["id"]: r for r in document["rules"]}
    assert set(RECIPES) <= set(by_id)
    a, b = "name_dob_v1", "tin_v1"
    any_ab = by_id[rule_id("any", [a, b])]["overall"]
    all_ab = by_id[rule_id("all", [a, b])]["overall"]
    ra, rb = by_id[a]["overall"], by_id[b]["overall"]
    assert any_ab["true_matches"] >= max(ra["true_matches"], rb["true_matches"])
    assert all_ab["true_matches"] <= min(ra["true_matches"], rb["true_matches"])
    assert any_ab["false_matches"] <= ra["false_matches"] + rb["false_matches"]
    for entry in document["rules"]:
        o = entry["overall"]
        assert 0.0 <= o["precision"] <= 1.0
        assert 0.0 <= o["recall"] <= 1.0
        assert o["false_match_rate"] == (o["false_matches"] / o["keyed"] if o["keyed"] else 0.0)
        assert entry["crypto_bound_per_subject"] < 1e-9
        assert "by_origin" in entry
        assert "by_variation" in entry
    md = (tmp_path / "linkage.md").read_text(encoding="utf-8")
    assert "Before and after" in md
    assert "Recall by name origin" in md


@pytest.mark.parametrize(
    ("kind", "recipes", "k", "expected"),
    [
        ("any", ["tin_v1", "name_dob_v1"], None, "any(name_dob_v1,tin_v1)"),
        ("all", ["tin_v1", "name_dob_v1"], None, "all(name_dob_v1,tin_v1)"),
        ("at_least", ["c_v1", "a_v1", "b_v1"], 2, "at_least_2(a_v1,b_v1,c_v1)"),
        ("at_least", ["c_v1", "a_v1", "b_v1"], 1, "any(a_v1,b_v1,c_v1)"),
        ("at_least", ["c_v1", "a_v1", "b_v1"], 3, "all(a_v1,b_v1,c_v1)"),
        ("all", ["tin_v1"], None, "tin_v1"),
    ],
)
def test_rule_ids_are_canonical(kind, recipes, k, expected):
    assert rule_id(kind, recipes, k) == expected


@pytest.mark.parametrize(
    ("kind", "recipes", "k"),
    [("some", ["tin_v1"], None), ("any", [], None), ("at_least", ["a_v1", "b_v1"], 3)],
)
def test_bad_rules_are_refused(kind, recipes, k):
    with pytest.raises(ValueError, match=r"\w"):
        rule_id(kind, recipes, k)


def test_shipped_quality_data_covers_every_recipe_and_the_default_rules():
    document = json.loads(QUALITY_PATH.read_text(encoding="utf-8"))
    assert document["primary"] == "synthetic"
    assert {"synthetic", "pseudopeople"} <= set(document["corpora"])
    synthetic = document["corpora"]["synthetic"]
    assert synthetic["profile"] == "realistic"
    assert synthetic["notes"]["seed"] is not None
    rules = synthetic["rules"]
    assert set(RECIPES) <= set(rules)
    for kind, k in (("any", None), ("all", None), ("at_least", 2)):
        assert rule_id(kind, DEFAULT_RECIPE_IDS, k) in rules


def test_expected_false_matches_scales_with_the_keyed_subjects():
    one = expected_false_matches("name_address_v1", 1_000)
    two = expected_false_matches("name_address_v1", 2_000)
    assert one is not None
    assert two is not None
    assert one.false_match_rate > 0
    assert math.isclose(two.expected, 2 * one.expected)
    assert one.corpus == "synthetic"
    assert one.upper_rate >= one.false_match_rate
    zero = expected_false_matches("tin_v1", 500)
    assert zero is not None
    assert zero.upper_rate > 0
    other = expected_false_matches("tin_v1", 500, corpus="pseudopeople")
    assert other is not None
    assert other.corpus == "pseudopeople"


def test_expected_false_matches_for_unmeasured_rules_and_bad_counts():
    assert expected_false_matches("any(evil_v1,tin_v1)", 10) is None
    assert expected_false_matches("tin_v1", 10, corpus="nowhere") is None
    with pytest.raises(ValueError, match="non-negative"):
        expected_false_matches("tin_v1", -1)


def test_pseudopeople_adapter_helpers():
    pp = pytest.importorskip("psi_tools.pseudopeople_corpus", reason="pseudopeople not installed")
    assert pp.town_zip("00000") == pp.TOWN_ZIP
    assert pp.town_zip("10000") == "1" + pp.TOWN_ZIP[1:]
    assert pp.town_zip("0000O")[-1] == "O"
    assert pp.iso_date("19800412", "ymd") == "1980-04-12"
    assert pp.iso_date("04/12/1980", "m/d/y") == "1980-04-12"
    assert pp.iso_date("04121980", "mdy") == "1980-04-12"
    assert pp.iso_date("02301980", "mdy") == "02301980"


def test_synth_subjects_cli_defaults_to_the_realistic_profile(population, tmp_path, capsys):
    from psi_tools import cli

    base = ["synth", "subjects", "--population", str(population), "--n", "50", "--seed", "2"]
    for profile, columns in (("realistic", truth_columns("realistic")), ("formatting", None)):
        out, truth = tmp_path / f"{profile}.csv", tmp_path / f"{profile}-truth.csv"
        extra = [] if profile == "realistic" else ["--profile", "formatting"]
        argv = [*base, "--out", str(out), "--truth", str(truth), *extra]
        assert cli.main(argv) == 0
        header = truth.read_text(encoding="utf-8").splitlines()[0].split(",")
        assert tuple(header) == (columns or TRUTH_COLUMNS)
        assert profile in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pandas")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pseudopeople")
def test_pseudopeople_corpus_joins_truth_by_simulant():
    """pseudopeople's own use of pandas raises deprecation warnings: not ours to fix."""
    pp = pytest.importorskip("psi_tools.pseudopeople_corpus", reason="pseudopeople not installed")
    corpus = pp.load(seed=0, max_ssa_subjects=200)
    assert len(corpus.records) == len(corpus.record_truth) > 5_000
    assert corpus.notes["forms_with_birth_date"] > 0.8 * len(corpus.records)
    holders = set(corpus.record_truth)
    sources = Counter(t["source"] for t in corpus.subject_truth)
    assert sources["ssa"] == 200
    assert {"acs", "cps", "wic"} <= set(sources)
    for subject, truth in zip(corpus.subjects, corpus.subject_truth, strict=True):
        assert (truth["member"] == "1") == (truth["truth_id"] in holders)
        assert subject["zip"] != "00000"
        if truth["source"] == "ssa":
            assert not subject["street"]
        else:
            assert not subject["tin"]
    zips = Counter(r["zip"] for r in corpus.records)
    assert zips.most_common(1)[0][0] == pp.TOWN_ZIP
    assert "00000" not in zips
