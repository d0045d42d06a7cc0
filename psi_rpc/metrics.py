"""Prometheus metrics for both services, on an optional HTTP listener of their own.

This module is the one owner of ``prometheus_client``. Each running service has its own
:class:`ServiceMetrics` (its own registry), so two services in one process, as in the
tests, never mix their counters.

What is exported, and why each is safe to show an operator:

=====================================  =====================================================
metric                                 what
=====================================  =====================================================
``psi_rpc_calls_total``                calls by method and final status code (interceptor)
``psi_rpc_call_seconds``               call latency by method
``psi_points_evaluated_total``         blinded points the custodian re-encrypted, by mode
``psi_phase_seconds``                  time per protocol phase (custodian ``reencrypt``;
                                       agency ``blind``, ``evaluate``, ``unblind``, ``lookup``)
``psi_index_keys``                     keys of the served or synced index, by epoch
``psi_progress_ratio``                 build or index-sync progress, 0 to 1, by task
``psi_queries``                        agency queries by state (read at scrape time)
``psi_budget_used`` / ``_limit``       custodian budget per token and kind (subjects,
                                       queries), read at scrape time
=====================================  =====================================================

No label ever carries a subject, a key string or a point. Token ids are shown as the first
12 hex digits of their SHA-256 (an operator can match them to ``audit export`` without the
metrics endpoint exposing the id), and only the newest :data:`MAX_TOKENS` tokens are
exported so the series count stays bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from psi_core.errors import PreconditionError
from psi_rpc.server import is_loopback

__all__ = [
    "MAX_TOKENS",
    "MetricsServer",
    "ServiceMetrics",
    "TokenUse",
    "serve_metrics",
    "token_label",
]

MAX_TOKENS = 50
_PHASE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def token_label(token_id: str) -> str:
    """The label a token id is shown under: 12 hex digits of its SHA-256."""
    return hashlib.sha256(token_id.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class TokenUse:
    """One token's budget use, as the ledger reports it at scrape time."""

    token_id: str
    subjects_used: int
    subjects_limit: int
    queries_used: int
    queries_limit: int


class _ScrapeTimeCollector(Collector):
    """Gauges computed when Prometheus scrapes, from callables the service registers."""

    def __init__(self) -> None:
        self.query_states: Callable[[], dict[str, int]] | None = None
        self.token_use: Callable[[], Iterable[TokenUse]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.query_states is not None:
            family = GaugeMetricFamily("psi_queries", "agency queries by state", labels=["state"])
            for state, count in sorted(self.query_states().items()):
                family.add_metric([state], count)
            yield family
        if self.token_use is not None:
            used = GaugeMetricFamily(
                "psi_budget_used", "budget used per token", labels=["token", "kind"]
            )
            limit = GaugeMetricFamily(
                "psi_budget_limit", "budget granted per token", labels=["token", "kind"]
            )
            for use in list(self.token_use())[:MAX_TOKENS]:
                label = token_label(use.token_id)
                used.add_metric([label, "subjects"], use.subjects_used)
                used.add_metric([label, "queries"], use.queries_used)
                limit.add_metric([label, "subjects"], use.subjects_limit)
                limit.add_metric([label, "queries"], use.queries_limit)
            yield used
            yield limit


class ServiceMetrics:
    """The metrics of one running service (see the module doc for the list)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "psi_rpc_calls",
            "gRPC calls by method and final status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.call_seconds = Histogram(
            "psi_rpc_call_seconds",
            "gRPC call latency by method",
            ["method"],
            buckets=_PHASE_BUCKETS,
            registry=self.registry,
        )
        self.points_evaluated = Counter(
            "psi_points_evaluated",
            "blinded points re-encrypted by the custodian",
            ["mode"],
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "psi_phase_seconds",
            "time per protocol phase",
            ["phase"],
            buckets=_PHASE_BUCKETS,
            registry=self.registry,
        )
        self.index_keys = Gauge(
            "psi_index_keys",
            "keys in the served or synced index",
            ["epoch"],
            registry=self.registry,
        )
        self.progress = Gauge(
            "psi_progress_ratio", "build or sync progress, 0 to 1", ["task"], registry=self.registry
        )
        self._scrape = _ScrapeTimeCollector()
        self.registry.register(self._scrape)

    def report_query_states(self, read: Callable[[], dict[str, int]]) -> None:
        """Export ``read()`` (state name → count) as ``psi_queries`` at every scrape."""
        self._scrape.query_states = read

    def report_token_use(self, read: Callable[[], Iterable[TokenUse]]) -> None:
        """Export ``read()`` (newest first) as ``psi_budget_*`` at every scrape."""
        self._scrape.token_use = read

    def progress_callback(self, task: str) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback that sets ``psi_progress_ratio{task=...}``."""
        gauge = self.progress.labels(task)

        def update(done: int, total: int) -> None:
            gauge.set(done / total if total > 0 else 0.0)

        return update

    def record_call(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call (a :class:`psi_rpc.calls.CallObserver` listener)."""
        self.calls.labels(method, code).inc()
        self.call_seconds.labels(method).observe(seconds)


@dataclass
class MetricsServer:
    """A running metrics listener; ``port`` is the bound port (useful with port 0)."""

    port: int
    _shutdown: Callable[[], None]

    def stop(self) -> None:
        self._shutdown()


def serve_metrics(
    address: str, metrics: ServiceMetrics, *, allow_remote: bool = False
) -> MetricsServer:
    """Serve ``metrics`` over HTTP at ``address`` ("host:port"; port 0 picks one).

    The listener is plain HTTP with no authentication, so it is accepted only on a loopback
    address unless ``allow_remote`` (``--metrics-allow-remote``) says the operator put it
    behind their own network controls.
    """
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        raise PreconditionError(f"--metrics wants HOST:PORT, not {address!r}")
    if not allow_remote and not is_loopback(address):
        raise PreconditionError(
            f"refusing to serve metrics on {address}: the endpoint has no authentication, so it "
            "listens only on loopback unless --metrics-allow-remote is given"
        )
    server, thread = start_http_server(
        int(port_text), addr=host.strip("[]"), registry=metrics.registry
    )

    def shutdown() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return MetricsServer(port=server.server_port, _shutdown=shutdown)
