"""Multi-key rules, the subject-by-recipe table and the custodian's declaration check."""

from __future__ import annotations

import numpy as np
import pytest

from psi_core.errors import InvalidInputError, PeerError
from psi_core.protocol import AT_LEAST, KeyDeclaration, MatchRule, SubjectKeys, count_found
from psi_core.recipes import get_recipe, rule_id
from tests.factories import as_subjects, make_records

RECIPES = [get_recipe("name_dob_v1"), get_recipe("tin_v1")]


@pytest.mark.parametrize(
    ("recipes", "text", "rule_id", "required"),
    [
        (["tin_v1"], "any", "tin_v1", 1),
        (["tin_v1"], "all", "tin_v1", 1),
        (["tin_v1", "name_dob_v1"], "any", "any(name_dob_v1,tin_v1)", 1),
        (["tin_v1", "name_dob_v1"], "ALL", "all(name_dob_v1,tin_v1)", 2),
        (["tin_v1", "name_dob_v1"], "at-least-1", "any(name_dob_v1,tin_v1)", 1),
        (["tin_v1", "name_dob_v1"], "at-least-2", "all(name_dob_v1,tin_v1)", 2),
        (["c", "b", "a"], "at-least-2", "at_least_2(a,b,c)", 2),
    ],
)
def test_rule_ids_are_canonical(recipes, text, rule_id, required):
    """Recipes are sorted, and equivalent rules (at least 1 = any) share one id."""
    rule = MatchRule.of(recipes, text)
    assert rule.rule_id == rule_id
    assert rule.required == required
    assert MatchRule.from_id(rule_id).rule_id == rule_id
    assert MatchRule.from_id(rule_id).required == required


@pytest.mark.parametrize(
    ("recipes", "text", "phrase"),
    [
        ([], "any", "at least one recipe"),
        (["tin_v1", "tin_v1"], "any", "once per query"),
        (["a", "b"], "some", "unknown rule"),
        (["a", "b"], "at-least-3", "between 1 and 2"),
        (["a", "b"], "at-least-0", "between 1 and 2"),
    ],
)
def test_bad_rules_are_refused(recipes, text, phrase):
    with pytest.raises(InvalidInputError, match=phrase):
        MatchRule.of(recipes, text)


def test_at_least_keeps_its_k():
    rule = MatchRule.of(["a", "b", "c"], "at-least-2")
    assert (rule.kind, rule.k, rule.text) == (AT_LEAST, 2, "at-least-2")


def _subjects() -> list[dict[str, str]]:
    subjects = as_subjects(make_records(6, seed=3))
    subjects[1]["tin"] = ""  # name_dob only
    subjects[2]["date_of_birth"] = ""  # tin only
    subjects[3]["tin"], subjects[3]["date_of_birth"] = "", ""  # no key at all
    subjects[5] = {**subjects[0], "subject_id": "again"}  # the same person twice
    return subjects


def test_subject_keys_lay_out_one_segment_per_recipe():
    """Distinct keys per recipe, recipe after recipe; one charge per distinct keyed person."""
    keys = SubjectKeys.build(RECIPES, _subjects())
    assert keys.recipes == ("name_dob_v1", "tin_v1")
    assert keys.segment_counts == (3, 3)
    assert [k.split("|")[0] for k in keys.keys] == ["name_dob_v1"] * 3 + ["tin_v1"] * 3
    assert keys.keyed_subjects == 5
    assert keys.charged_subjects == 4
    declared = keys.declaration()
    assert declared == KeyDeclaration((("name_dob_v1", 3), ("tin_v1", 3)), 4)
    declared.check(point_count=6, mode="membership")


def test_hits_apply_each_rule():
    """Which subjects each rule matches, and which recipes matched for each."""
    keys = SubjectKeys.build(RECIPES, _subjects())
    # name_dob keys: s0, s1, s4; tin keys: s0, s2, s4. Found: name_dob of s0 and s1,
    # tin of s0 and s2; s4 nothing.
    found = [np.array([True, True, False, True]), np.array([True, False])]
    hits = keys.hits(found)
    assert hits.matched(MatchRule.of(["tin_v1", "name_dob_v1"], "any")) == [0, 1, 2, 5]
    assert hits.matched(MatchRule.of(["tin_v1", "name_dob_v1"], "all")) == [0, 5]
    assert hits.recipes_of(0) == ("name_dob_v1", "tin_v1")
    assert hits.recipes_of(1) == ("name_dob_v1",)
    assert hits.recipes_of(2) == ("tin_v1",)
    assert hits.recipes_of(3) == ()
    assert count_found(found) == 4
    with pytest.raises(InvalidInputError, match="other recipes"):
        hits.matched(MatchRule.of(["tin_v1"]))


def test_hits_refuse_an_answer_of_the_wrong_length():
    keys = SubjectKeys.build(RECIPES, _subjects())
    with pytest.raises(PeerError, match="5 answers for 6 keys"):
        keys.hits([np.ones(5, dtype=bool)])


def test_a_recipe_that_gives_no_key_is_left_out_of_the_declaration():
    subjects = [{**s, "tin": ""} for s in _subjects()]
    declared = SubjectKeys.build(RECIPES, subjects).declaration()
    assert declared.segments == (("name_dob_v1", 3),)
    assert declared.is_single
    assert declared.ledger_recipe() == "name_dob_v1"


@pytest.mark.parametrize(
    ("segments", "subjects", "points", "mode", "phrase"),
    [
        ((), 1, 0, "membership", "names no recipe"),
        ((("a", 2), ("a", 2)), 2, 4, "membership", "more than once"),
        ((("a", 0), ("b", 2)), 2, 2, "membership", "at least 1"),
        ((("a", 2), ("b", 2)), 2, 5, "membership", "add up to 4"),
        ((("a", 3), ("b", 2)), 2, 5, "membership", "below the 3 keys"),
        ((("a", 2), ("b", 2)), 2, 4, "cardinality", "cardinality mode takes one recipe"),
    ],
)
def test_inconsistent_declarations_are_refused(segments, subjects, points, mode, phrase):
    with pytest.raises(InvalidInputError, match=phrase):
        KeyDeclaration(segments, subjects).check(point_count=points, mode=mode)


def test_the_ledger_names_the_whole_declaration():
    """A replay must repeat every count; a single-recipe declaration is its recipe id."""
    multi = KeyDeclaration((("a", 2), ("b", 3)), 4)
    assert multi.ledger_recipe() == "a=2,b=3;subjects=4"
    assert KeyDeclaration((("a", 2), ("b", 3)), 5).ledger_recipe() != multi.ledger_recipe()
    assert KeyDeclaration((("a", 3),), 3).ledger_recipe() == "a"
    assert KeyDeclaration((("a", 3),), 4).ledger_recipe() == "a=3;subjects=4"
    KeyDeclaration((("a", 3),), 4).check(point_count=3, mode="cardinality")


def test_secret_order_unlinks_a_subjects_keys_and_keeps_the_answer():
    """Each segment is permuted under the secret (the same secret, the same order, so a
    replay sends the same points); a subject's keys no longer share a position across
    recipes, and hits read through the permuted keys name the same subjects and recipes."""
    subjects = as_subjects(make_records(60, seed=4))
    keys = SubjectKeys.build(RECIPES, subjects)
    assert (keys.key_index[:, 0] == keys.key_index[:, 1]).all()
    ordered = keys.in_secret_order(b"\x01" * 32)
    assert ordered.keys == keys.in_secret_order(b"\x01" * 32).keys
    assert ordered.keys != keys.in_secret_order(b"\x02" * 32).keys
    assert [sorted(s) for s in ordered.segments] == [sorted(s) for s in keys.segments]
    assert np.count_nonzero(ordered.key_index[:, 0] == ordered.key_index[:, 1]) < 10
    for row in range(len(subjects)):
        for column, segment in enumerate(ordered.segments):
            assert (
                segment[ordered.key_index[row, column]]
                == keys.segments[column][keys.key_index[row, column]]
            )
    found_keys = {key for key in keys.keys if key.startswith("tin_v1") and key[-1] in "13579"}
    found_keys |= set(keys.segments[0][:7])
    rule = MatchRule.of(["tin_v1", "name_dob_v1"], "any")
    plain = keys.hits([np.array([k in found_keys for k in keys.keys])])
    secret = ordered.hits([np.array([k in found_keys for k in ordered.keys])])
    assert plain.matched(rule) == secret.matched(rule)
    assert [plain.recipes_of(i) for i in range(60)] == [secret.recipes_of(i) for i in range(60)]


def test_secret_order_keeps_subjects_without_a_key():
    keys = SubjectKeys.build(RECIPES, _subjects()).in_secret_order(b"k")
    assert keys.key_index[3].tolist() == [-1, -1]
    assert keys.keyed_subjects == 5 and keys.charged_subjects == 4


@pytest.mark.parametrize(
    ("recipes", "kind", "k"),
    [
        (["tin_v1"], "any", None),
        (["tin_v1", "name_dob_v1"], "any", None),
        (["tin_v1", "name_dob_v1"], "all", None),
        (["tin_v2", "house_dob_v1", "tin_v1", "sound_dob_v1"], "at_least", 2),
        (["tin_v2", "house_dob_v1", "tin_v1"], "at_least", 3),
        (["tin_v2", "house_dob_v1", "tin_v1"], "at_least", 1),
    ],
)
def test_rule_ids_agree_with_the_shipped_quality_data(recipes, kind, k):
    """A query's rule id is the one the quality data is keyed by, so it finds its figures."""
    text = kind if k is None else f"at-least-{k}"
    assert MatchRule.of(recipes, text).rule_id == rule_id(kind, recipes, k)
