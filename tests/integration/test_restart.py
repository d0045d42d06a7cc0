"""A restart of the agency loses nothing and recomputes nothing that was finished."""

from __future__ import annotations

import pytest

from psi_agency.store import RUNNING, AgencyStore
from psi_core.policy import ADMITTED, AuditLog
from psi_core.protocol import BlindedQuery
from psi_proto.v1 import agency_pb2, common_pb2
from tests.factories import as_subjects, make_records
from tests.integration.conftest import make_deployment, tear_down

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(tmp_path):
    deployment = make_deployment(tmp_path, with_agency=False)
    yield deployment
    tear_down(deployment)


def _fetches(deployment) -> list[dict]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        return [e.event_data() for e in log.entries() if e.event_data()["kind"] == "fetch_index"]


def _begin(store: AgencyStore, query_id: str, token: bytes) -> None:
    store.begin_query(
        query_id,
        mode="membership",
        recipe="tin_v1",
        authorization=token,
        case_id="CASE-1",
        requested_by="test",
    )


def _wait(client, query_id):
    for status in client.watch(query_id):  # noqa: B007
        pass
    return status


def test_finished_query_and_index_survive_a_restart(fresh):
    """After a restart the query, its matches and the verified index are still there."""
    state = fresh.root / "agency"
    fresh.agency = fresh.start_agency(state)
    client = fresh.agency_client()
    subjects = as_subjects(fresh.records[:12])
    status = client.submit(
        agency_pb2.QueryHeader(
            authorization=fresh.token(), mode=common_pb2.QUERY_MODE_MEMBERSHIP, recipe="tin_v1"
        ),
        [[agency_pb2.Subject(**s) for s in subjects]],
    )
    before = {m.subject.subject_id for m in client.matches(_wait(client, status.query_id).query_id)}
    fresh.agency.stop()

    fresh.agency = fresh.start_agency(state)
    client = fresh.agency_client()
    after_status = client.get(status.query_id)
    assert after_status.state == agency_pb2.QUERY_STATE_SUCCEEDED
    assert {m.subject.subject_id for m in client.matches(status.query_id)} == before
    assert len(before) == 12
    assert len(_fetches(fresh)) == 1, "the verified index must not be downloaded again"


def test_acknowledged_but_unfinished_query_runs_after_restart(fresh):
    """A query stored as QUEUED when the service stopped is run when it starts again."""
    state = fresh.root / "agency"
    fresh.agency = fresh.start_agency(state)
    fresh.agency.stop()
    store = AgencyStore(state / "agency.sqlite")
    _begin(store, "q-crashed", fresh.token())
    store.add_subjects("q-crashed", 0, as_subjects(fresh.records[:5]))
    store.seal_query("q-crashed", 5)
    _begin(store, "q-cut-off", fresh.token())
    store.close()

    fresh.agency = fresh.start_agency(state)
    client = fresh.agency_client()
    status = _wait(client, "q-crashed")
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED
    assert status.match_count == 5
    from psi_core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        client.get("q-cut-off")


def _evaluations(deployment) -> list[dict]:
    with AuditLog(deployment.custodian_state / "custodian.sqlite") as log:
        return [
            e.event_data()
            for e in log.entries()
            if e.event_data()["kind"] == "evaluate" and e.event_data().get("stage") != ADMITTED
        ]


MULTI_KEY = {
    "recipes": ["name_dob_v1", "tin_v1"],
    "rule": agency_pb2.MatchRule(kind=agency_pb2.MATCH_RULE_KIND_ALL),
}


@pytest.mark.parametrize("recipes", [{"recipe": "tin_v1"}, MULTI_KEY], ids=["single", "multi"])
def test_query_answered_before_a_crash_is_run_again_without_a_second_charge(
    fresh, monkeypatch, recipes
):
    """The agency dies after the custodian answered but before the matches were stored.

    The state a crash leaves is rebuilt exactly: the query RUNNING, its blinding scalar
    kept. On restart the query runs again, declares itself a replay (for several recipes,
    the same keys per recipe and subjects), and succeeds on a token that allows one query
    only, with the same matches; the custodian's audit shows the second evaluation
    uncharged.
    """
    kept: dict[str, bytes] = {}
    keep = AgencyStore.keep_blinding_key

    def spy(store, query_id, scalar):
        kept[query_id] = scalar
        keep(store, query_id, scalar)

    monkeypatch.setattr(AgencyStore, "keep_blinding_key", spy)
    state = fresh.root / "agency"
    fresh.agency = fresh.start_agency(state)
    client = fresh.agency_client()
    strangers = as_subjects(make_records(4, seed=9, prefix="X"), prefix="T")
    subjects = as_subjects(fresh.records[:6]) + strangers
    status = client.submit(
        agency_pb2.QueryHeader(
            authorization=fresh.token(max_queries=1, max_subjects=len(subjects)),
            mode=common_pb2.QUERY_MODE_MEMBERSHIP,
            **recipes,
        ),
        [[agency_pb2.Subject(**s) for s in subjects]],
    )
    assert _wait(client, status.query_id).state == agency_pb2.QUERY_STATE_SUCCEEDED
    before = {m.subject.subject_id for m in client.matches(status.query_id)}
    fresh.agency.stop()

    store = AgencyStore(state / "agency.sqlite")
    assert store.blinding_key(status.query_id) is None, "a finished query keeps no scalar"
    store.update(status.query_id, state=RUNNING)
    store.keep_blinding_key(status.query_id, kept[status.query_id])
    store.close()

    fresh.agency = fresh.start_agency(state)
    client = fresh.agency_client()
    after = _wait(client, status.query_id)
    assert after.state == agency_pb2.QUERY_STATE_SUCCEEDED, after.error_message
    assert {m.subject.subject_id for m in client.matches(status.query_id)} == before
    assert len(before) == 6
    assert [e["charged"] for e in _evaluations(fresh)] == [True, False]
    with AuditLog(fresh.custodian_state / "custodian.sqlite") as log:
        summary = log.export_summary(fresh.root / "summary.json")
    (case,) = [c for c in summary["cases"] if c["kinds"].get("evaluate")]
    assert (case["queries"], case["uncharged_replays"]) == (2, 1)


def test_query_cut_off_before_the_custodian_answered_is_charged_when_run_again(fresh):
    """A kept scalar whose points the custodian never answered in full: the declared replay
    is unknown to the custodian, so the re-run is an ordinary, charged query."""
    state = fresh.root / "agency"
    fresh.agency = fresh.start_agency(state)
    fresh.agency.stop()
    store = AgencyStore(state / "agency.sqlite")
    _begin(store, "q-cut", fresh.token(max_queries=1))
    store.add_subjects("q-cut", 0, as_subjects(fresh.records[:3]))
    store.seal_query("q-cut", 3)
    store.update("q-cut", state=RUNNING)
    store.keep_blinding_key("q-cut", BlindedQuery().scalar)
    store.close()

    fresh.agency = fresh.start_agency(state)
    status = _wait(fresh.agency_client(), "q-cut")
    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert status.match_count == 3
    assert [e["charged"] for e in _evaluations(fresh)] == [True]


def test_interrupted_index_download_resumes_from_its_offset(fresh):
    """A partial index copy is completed from where it stopped, not fetched again."""
    state = fresh.root / "agency"
    epoch_dir = next((fresh.custodian_state / "index").iterdir())
    source = (epoch_dir / "fingerprints.u64").read_bytes()
    target = state / "index" / epoch_dir.name
    target.mkdir(parents=True)
    (target / "fingerprints.u64.partial").write_bytes(source[: 8 * 100])

    fresh.agency = fresh.start_agency(state)
    assert fresh.agency.index.base.values.tobytes() == source
    assert [f["offset"] for f in _fetches(fresh)] == [800]
