"""Multi-key queries end to end: several recipes, a rule, one charge per subject."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from psi_agency.cli import main as agency_cli
from psi_agency.quality import METADATA_EXPECTED, METADATA_RULE
from psi_core.errors import InvalidInputError
from psi_core.io import read_rows
from psi_core.policy import AuditLog, AuthorizationLedger, read_claims_unverified
from psi_core.protocol import BlindedQuery, MatchRule, RequestDigest, SubjectKeys
from psi_core.recipes import expected_false_matches, get_recipe
from psi_proto.v1 import agency_pb2, agency_pb2_grpc, common_pb2, custodian_pb2, custodian_pb2_grpc
from tests.factories import as_subjects, make_records, write_subjects

pytestmark = pytest.mark.integration

MEMBERSHIP, CARDINALITY = common_pb2.QUERY_MODE_MEMBERSHIP, common_pb2.QUERY_MODE_CARDINALITY
RULES = {
    "any": agency_pb2.MatchRule(kind=agency_pb2.MATCH_RULE_KIND_ANY),
    "all": agency_pb2.MatchRule(kind=agency_pb2.MATCH_RULE_KIND_ALL),
    "at-least-2": agency_pb2.MatchRule(kind=agency_pb2.MATCH_RULE_KIND_AT_LEAST, at_least=2),
}
THREE = ("name_address_v1", "name_dob_v1", "tin_v1")
TIMEOUT = 60


def _subjects(deployment) -> list[dict[str, str]]:
    """Members matching under every recipe, under some only, under none; and strangers."""
    subjects = as_subjects(deployment.records[:14])
    strangers = as_subjects(make_records(4, seed=99, prefix="X"), prefix="T")
    for subject in subjects[4:6]:
        subject["given_name"] = "Zebedee"  # only tin_v1 matches
    for subject, stranger in zip(subjects[6:8], strangers, strict=False):
        subject["tin"] = stranger["tin"]  # both name recipes, not tin_v1
    subjects[8]["tin"] = ""  # both name recipes, no tin key at all
    subjects[9]["street"] = "1 Nowhere Rd"  # name_dob_v1 and tin_v1
    subjects[10]["date_of_birth"] = ""  # name_address_v1 and tin_v1
    subjects[11]["zip"], subjects[11]["date_of_birth"] = "", ""  # tin_v1 only
    return subjects + strangers


def _per_recipe(deployment, subjects) -> dict[str, set[str]]:
    """For each recipe, the subjects whose key is in the population (the plaintext truth)."""
    found = {}
    for recipe_id in THREE:
        recipe = get_recipe(recipe_id)
        population = {recipe.key(r) for r in deployment.records} - {None}
        found[recipe_id] = {s["subject_id"] for s in subjects if recipe.key(s) in population}
    return found


def _submit(deployment, subjects, recipes, rule=None, *, mode=MEMBERSHIP, token=None):
    client = deployment.agency_client()
    header = agency_pb2.QueryHeader(
        authorization=token or deployment.token(), mode=mode, recipes=list(recipes)
    )
    if rule is not None:
        header.rule.CopyFrom(RULES[rule])
    status = client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]])
    *updates, final = client.watch(status.query_id)
    # Progress is in keyed subjects, however many keys each subject gave.
    assert all(u.processed_count <= u.keyed_subject_count for u in [*updates, final])
    if final.state == agency_pb2.QUERY_STATE_SUCCEEDED:
        assert final.processed_count == final.keyed_subject_count
    return client, final


def _evaluations(deployment) -> list[dict]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        return [e.event_data() for e in log.entries() if e.event_data()["kind"] == "evaluate"]


def _usage(deployment, token: bytes):
    claims = read_claims_unverified(token)
    assert claims is not None
    with AuthorizationLedger(deployment.custodian_state / "custodian.sqlite") as ledger:
        return ledger.usage(claims.token_id)


@pytest.mark.parametrize("rule", ["any", "all", "at-least-2"])
def test_each_rule_matches_exactly_and_names_the_recipes_that_matched(deployment, rule):
    """Matches are the subjects the rule accepts on the plaintext truth, each with the
    recipes whose keys matched; the status carries the rule and its quality."""
    subjects = _subjects(deployment)
    truth = _per_recipe(deployment, subjects)
    client, status = _submit(deployment, subjects, THREE, rule)
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    needed = MatchRule.of(THREE, rule).required
    expected = {
        s["subject_id"]: tuple(r for r in THREE if s["subject_id"] in truth[r]) for s in subjects
    }
    expected = {sid: recipes for sid, recipes in expected.items() if len(recipes) >= needed}
    matches = list(client.matches(status.query_id))
    assert {m.subject.subject_id: tuple(m.matched_recipes) for m in matches} == expected
    assert {len(r) for r in expected.values()} >= ({1, 2, 3} if rule == "any" else {3})
    assert status.match_count == len(expected)
    assert list(status.recipes) == list(THREE)
    assert status.rule_id == MatchRule.of(THREE, rule).rule_id
    assert all(m.recipe == status.rule_id for m in matches)
    assert status.HasField("quality")
    assert status.quality.cryptographic_bound == pytest.approx(
        status.false_positive_bound.expected_false_matches
    )
    assert status.quality.expected_false_matches >= status.quality.cryptographic_bound > 0
    shipped = expected_false_matches(status.rule_id, status.keyed_subject_count)
    assert shipped is not None and status.quality.measured
    assert status.quality.semantic_expected == pytest.approx(shipped.expected)
    assert f"corpus {shipped.corpus}, profile {shipped.profile}" in status.quality.source


def test_a_multi_key_query_is_charged_once_per_subject(deployment):
    """r recipes, s subjects: the token is charged s subjects (not its r*s keys) and one
    query; the custodian learns the keys per recipe. A token for exactly s subjects is
    enough; a subject sent twice (same person, other id) is charged once."""
    subjects = _subjects(deployment)
    twice = {**subjects[0], "subject_id": "again"}
    keys = SubjectKeys.build([get_recipe(r) for r in THREE], [*subjects, twice])
    charged = len(subjects)
    assert keys.charged_subjects == charged and len(keys.keys) > 2 * charged
    token = deployment.token(max_subjects=charged, max_queries=1)
    _, status = _submit(deployment, [*subjects, twice], THREE, "any", token=token)
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    usage = _usage(deployment, token)
    assert (usage.subjects_used, usage.queries_used) == (charged, 1)
    event = _evaluations(deployment)[-1]
    assert event["subjects"] == charged
    assert event["points"] == len(keys.keys)
    assert event["recipe_keys"] == dict(zip(THREE, keys.segment_counts, strict=True))
    assert event["recipe"] == ",".join(THREE)


def test_the_old_single_recipe_field_still_works_and_both_forms_agree(deployment):
    """`recipe` alone and `recipes` with one entry are the same query."""
    subjects = _subjects(deployment)
    client = deployment.agency_client()
    header = agency_pb2.QueryHeader(
        authorization=deployment.token(), mode=MEMBERSHIP, recipe="tin_v1"
    )
    status = client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]])
    *_, old = client.watch(status.query_id)
    _, new = _submit(deployment, subjects, ["tin_v1"])
    old_matches = [
        (m.subject.subject_id, tuple(m.matched_recipes)) for m in client.matches(old.query_id)
    ]
    new_matches = [
        (m.subject.subject_id, tuple(m.matched_recipes)) for m in client.matches(new.query_id)
    ]
    assert old_matches == new_matches and old_matches
    assert {r for _, r in old_matches} == {("tin_v1",)}
    assert (old.recipe, old.rule_id, list(old.recipes)) == ("tin_v1", "tin_v1", ["tin_v1"])
    distinct = {get_recipe("tin_v1").key(s) for s in subjects} - {None}
    assert _evaluations(deployment)[-1]["subjects"] == len(distinct) < old.keyed_subject_count


@pytest.mark.parametrize(
    ("fields", "rule", "phrase"),
    [
        ({"recipe": "tin_v1", "recipes": ["name_dob_v1"]}, None, "not both"),
        ({"recipes": ["tin_v1", "name_dob_v1"]}, None, "needs a rule"),
        ({"recipes": ["tin_v1", "tin_v1"]}, "any", "once per query"),
        ({"recipes": ["tin_v1", "name_dob_v1"]}, "at-least-3", "between 1 and 2"),
        ({"recipes": ["tin_v1", "nope_v9"]}, "any", "nope_v9"),
        (
            {"recipes": ["tin_v1", "name_dob_v1"], "mode": CARDINALITY},
            "any",
            "cardinality query takes one recipe",
        ),
    ],
)
def test_bad_multi_key_submissions_are_refused(deployment, fields, rule, phrase):
    header = agency_pb2.QueryHeader(
        authorization=deployment.token(), mode=fields.pop("mode", MEMBERSHIP), **fields
    )
    if rule == "at-least-3":
        header.rule.CopyFrom(
            agency_pb2.MatchRule(kind=agency_pb2.MATCH_RULE_KIND_AT_LEAST, at_least=3)
        )
    elif rule is not None:
        header.rule.CopyFrom(RULES[rule])
    subject = agency_pb2.Subject(**as_subjects(deployment.records[:1])[0])
    with pytest.raises(InvalidInputError, match=phrase):
        deployment.agency_client().submit(header, [[subject]])


def test_cardinality_takes_one_recipe_and_carries_its_quality(deployment):
    """One recipe named through `recipes` in cardinality mode: the count, and its quality."""
    subjects = _subjects(deployment)
    _, status = _submit(deployment, subjects, ["tin_v1"], mode=CARDINALITY)
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert status.match_count == len(_per_recipe(deployment, subjects)["tin_v1"])
    assert status.HasField("quality") and status.quality.cryptographic_bound > 0


def test_list_matches_metadata_carries_the_expected_false_matches(deployment):
    subjects = _subjects(deployment)
    _, status = _submit(deployment, subjects, ["name_dob_v1", "tin_v1"], "all")
    stub = agency_pb2_grpc.AgencyStub(deployment.channel(deployment.agency_address, "case-client"))
    call = stub.ListMatches(
        agency_pb2.ListMatchesRequest(query_id=status.query_id), timeout=TIMEOUT
    )
    metadata = dict(call.initial_metadata())
    assert float(metadata[METADATA_EXPECTED]) == pytest.approx(
        status.quality.expected_false_matches
    )
    assert metadata[METADATA_RULE] == "all(name_dob_v1,tin_v1)"
    assert len(list(call)) == status.match_count > 0


# -- the custodian's side: declarations ---------------------------------------------------

TIN, DOB = get_recipe("tin_v1"), get_recipe("name_dob_v1")


@pytest.fixture(scope="module")
def custodian(deployment):
    stub = custodian_pb2_grpc.CustodianStub(
        deployment.channel(deployment.custodian_address, "agency-client")
    )
    info = stub.GetInfo(custodian_pb2.GetInfoRequest(), timeout=TIMEOUT)
    return stub, info.epoch_id


def _request(deployment) -> list[bytes]:
    """Points of a two-recipe request over 3 members, segment after segment."""
    keys = SubjectKeys.build([DOB, TIN], as_subjects(deployment.records[20:23]))
    return BlindedQuery().blind(keys.keys)


def _evaluate(stub, header: custodian_pb2.EvaluateHeader, points: list[bytes]) -> list[bytes]:
    requests = [
        custodian_pb2.EvaluateRequest(header=header),
        custodian_pb2.EvaluateRequest(chunk=custodian_pb2.PointChunk(points=points)),
    ]
    return [p for answer in stub.Evaluate(iter(requests), timeout=TIMEOUT) for p in answer.points]


def _code(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _counts(*pairs: tuple[str, int]) -> list[custodian_pb2.RecipeKeyCount]:
    return [custodian_pb2.RecipeKeyCount(recipe=r, key_count=n) for r, n in pairs]


INVALID = grpc.StatusCode.INVALID_ARGUMENT
DECLARATIONS = [
    ("below", {"subject_count": 2}, INVALID, "below the 3 keys"),
    ("sum", {"recipe_keys": _counts(("name_dob_v1", 3), ("tin_v1", 2))}, INVALID, "add up"),
    ("twice", {"recipe_keys": _counts(("tin_v1", 3), ("tin_v1", 3))}, INVALID, "more than once"),
    ("zero", {"recipe_keys": _counts(("name_dob_v1", 6), ("tin_v1", 0))}, INVALID, "at least 1"),
    ("both", {"recipe": "tin_v1"}, INVALID, "not both"),
    ("cardinality", {"mode": CARDINALITY}, INVALID, "cardinality mode takes one recipe"),
    (
        "not-held",
        {"recipe_keys": _counts(("name_dob_v1", 3), ("nope_v1", 3))},
        grpc.StatusCode.FAILED_PRECONDITION,
        "not in this custodian's index",
    ),
    (
        "over-cap",
        {"subject_count": 10**12},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "subject_count must be at most",
    ),
]


def test_inconsistent_declarations_are_refused_before_any_charge(deployment, custodian):
    """Each inconsistent header is refused with its code, and the token is never charged:
    afterwards a one-query token still runs the honest request, charged per subject."""
    stub, epoch_id = custodian
    points = _request(deployment)
    token = deployment.token(max_queries=1, max_subjects=3)
    honest = {
        "authorization": token,
        "mode": MEMBERSHIP,
        "epoch_id": epoch_id,
        "point_count": 6,
        "recipe_keys": _counts(("name_dob_v1", 3), ("tin_v1", 3)),
        "subject_count": 3,
    }
    for name, changes, code, phrase in DECLARATIONS:
        header = custodian_pb2.EvaluateHeader(**{**honest, **changes})
        error = _code(lambda header=header: _evaluate(stub, header, points))
        assert (error.code(), name) == (code, name)
        assert phrase in error.details(), (name, error.details())
    assert _usage(deployment, token) is None
    assert len(_evaluate(stub, custodian_pb2.EvaluateHeader(**honest), points)) == 6
    usage = _usage(deployment, token)
    assert (usage.subjects_used, usage.queries_used) == (3, 1)


def test_a_replay_repeats_the_whole_declaration_or_is_charged(deployment, custodian):
    """The very request again is uncharged; the same points under another declaration
    (another subject count) are a new request, refused once the token is used up."""
    stub, epoch_id = custodian
    points = _request(deployment)
    token = deployment.token(max_queries=1)
    header = custodian_pb2.EvaluateHeader(
        authorization=token,
        mode=MEMBERSHIP,
        epoch_id=epoch_id,
        point_count=6,
        recipe_keys=_counts(("name_dob_v1", 3), ("tin_v1", 3)),
        subject_count=3,
    )
    first = _evaluate(stub, header, points)
    digest = RequestDigest()
    digest.update(points)
    header.replay_of_sha256 = digest.digest()
    assert _evaluate(stub, header, points) == first
    assert _evaluations(deployment)[-1]["charged"] is False
    header.subject_count = 4
    error = _code(lambda: _evaluate(stub, header, points))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_cli_runs_a_multi_key_query_and_writes_the_matched_recipes(
    deployment, tmp_path, capsys
):
    """`psi-agency query --recipe a --recipe b --rule any`: ';'-joined recipes in --out,
    the rule and the expected false matches in the summary."""
    subjects = _subjects(deployment)
    truth = _per_recipe(deployment, subjects)
    token = tmp_path / "case.token"
    token.write_bytes(deployment.token())
    out = tmp_path / "matches.csv"
    code = agency_cli(
        [
            "query", "--server", deployment.agency_address,
            "--tls-dir", str(deployment.pki.root),
            "--subjects", str(write_subjects(tmp_path / "subjects.csv", subjects)),
            "--recipe", "tin_v1", "--recipe", "name_dob_v1", "--rule", "any",
            "--authorization", str(token), "--out", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    rows = [row for batch in read_rows(out, ("subject_id", "recipe")) for row in batch]
    expected = {
        sid: ";".join(r for r in ("name_dob_v1", "tin_v1") if sid in truth[r])
        for sid in truth["name_dob_v1"] | truth["tin_v1"]
    }
    assert {row["subject_id"]: row["recipe"] for row in rows} == expected
    assert "name_dob_v1;tin_v1" in expected.values()
    assert "rule any(name_dob_v1,tin_v1)" in printed
    assert "expected false matches" in printed
