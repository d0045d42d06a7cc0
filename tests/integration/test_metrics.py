"""Both services' Prometheus endpoints, scraped over real HTTP while real queries run."""

from __future__ import annotations

import datetime as dt
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from psi_core.errors import PreconditionError
from psi_core.policy import read_claims_unverified
from psi_core.protocol import distinct_keys
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2
from psi_rpc.metrics import ServiceMetrics, serve_metrics, token_label
from psi_rpc.modes import MODE_ENUMS
from tests.factories import as_subjects, make_records
from tests.integration.conftest import Deployment, make_deployment, tear_down

pytestmark = pytest.mark.integration

DAY = dt.timedelta(days=1)


class Scraper:
    def __init__(self, metrics: ServiceMetrics) -> None:
        self.listener = serve_metrics("127.0.0.1:0", metrics)

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        url = f"http://127.0.0.1:{self.listener.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode("utf-8")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.samples().get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> Iterator[tuple[Deployment, Scraper, Scraper]]:
    custodian_metrics, agency_metrics = ServiceMetrics("custodian"), ServiceMetrics("agency")
    deployment = make_deployment(
        tmp_path_factory.mktemp("metrics"),
        custodian_metrics=custodian_metrics,
        agency_metrics=agency_metrics,
    )
    custodian, agency = Scraper(custodian_metrics), Scraper(agency_metrics)
    yield deployment, custodian, agency
    custodian.listener.stop()
    agency.listener.stop()
    tear_down(deployment)


def _query(deployment: Deployment, subjects, token: bytes) -> agency_pb2.QueryStatus:
    client = deployment.agency_client()
    header = agency_pb2.QueryHeader(
        authorization=token, mode=MODE_ENUMS["membership"], recipe="name_address_v1"
    )
    submitted = client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]])
    *_, final = client.watch(submitted.query_id)
    return final


def test_index_and_startup_calls_are_exported(monitored):
    """The served and synced index sizes are exported, and the agency's sync calls counted."""
    deployment, custodian, agency = monitored
    assert deployment.agency is not None
    manifest = deployment.agency.index.manifest
    assert custodian.value("psi_index_keys", epoch=manifest.epoch_id) == manifest.key_count
    assert agency.value("psi_index_keys", epoch=manifest.epoch_id) == manifest.key_count
    assert custodian.value("psi_rpc_calls_total", method="FetchIndex", code="OK") >= 1
    assert agency.value("psi_progress_ratio", task="index_sync") == 1.0


def test_a_query_moves_every_counter_by_the_right_amount(monitored):
    """One query of n subjects: n points evaluated, n subjects charged, one success."""
    deployment, custodian, agency = monitored
    subjects = as_subjects(deployment.records[:30]) + as_subjects(
        make_records(20, seed=5, prefix="X"), prefix="T"
    )
    recipe = get_recipe("name_address_v1")
    keys, _ = distinct_keys([recipe.key(s) for s in subjects])
    token = deployment.token()
    label = token_label(read_claims_unverified(token).token_id)
    points_before = custodian.value("psi_points_evaluated_total", mode="membership")
    evaluate_before = custodian.value("psi_rpc_calls_total", method="Evaluate", code="OK")
    succeeded_before = agency.value("psi_queries", state="SUCCEEDED")
    blind_before = agency.value("psi_phase_seconds_count", phase="blind")

    status = _query(deployment, subjects, token)

    assert status.state == agency_pb2.QUERY_STATE_SUCCEEDED, status.error_message
    assert custodian.value("psi_points_evaluated_total", mode="membership") == (
        points_before + len(keys)
    )
    assert custodian.value("psi_rpc_calls_total", method="Evaluate", code="OK") == (
        evaluate_before + 1
    )
    assert custodian.value("psi_budget_used", token=label, kind="queries") == 1
    assert custodian.value("psi_budget_used", token=label, kind="subjects") == len(keys)
    assert custodian.value("psi_budget_limit", token=label, kind="queries") == 100
    assert agency.value("psi_queries", state="SUCCEEDED") == succeeded_before + 1
    assert agency.value("psi_phase_seconds_count", phase="blind") == blind_before + 1
    assert agency.value("psi_rpc_calls_total", method="SubmitQuery", code="OK") >= 1


def test_a_refused_call_is_counted_under_its_status_code(monitored):
    """An expired authorization shows up as an UNAUTHENTICATED Evaluate on the custodian."""
    deployment, custodian, agency = monitored
    before = custodian.value("psi_rpc_calls_total", method="Evaluate", code="UNAUTHENTICATED")
    expired = deployment.token(ttl=dt.timedelta(minutes=5), now=dt.datetime.now(dt.UTC) - DAY)
    status = _query(deployment, as_subjects(deployment.records[:3]), expired)
    assert status.state == agency_pb2.QUERY_STATE_FAILED
    after = custodian.value("psi_rpc_calls_total", method="Evaluate", code="UNAUTHENTICATED")
    assert after == before + 1
    assert agency.value("psi_queries", state="FAILED") >= 1


def test_metrics_listen_only_on_loopback_unless_allowed():
    """A non-loopback metrics address is refused before anything listens."""
    with pytest.raises(PreconditionError, match="--metrics-allow-remote"):
        serve_metrics("0.0.0.0:0", ServiceMetrics("custodian"))
    with pytest.raises(PreconditionError, match="HOST:PORT"):
        serve_metrics("nonsense", ServiceMetrics("custodian"))
