"""``/metrics``: Prometheus text from ``prometheus_client``, one private registry per proxy (tests
start many proxies in one process; the global registry would mix them).

Counters the sink and the reload code bump (decisions, redactions, added latency, reloads), and
values read at scrape time from the proxy (open connections) and the telemetry sink (OTLP queue
depth, dropped and failed exports).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Added latency in seconds: the proxy's own time on a forwarded request (sub-ms to a slow scan).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Probes(Collector):
    """Values owned elsewhere, read when Prometheus scrapes (never stored twice)."""

    def __init__(self, connections: Callable[[], Mapping[str, int]],
                 telemetry: Callable[[], Mapping[str, int]]) -> None:
        self.connections = connections
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        open_now = GaugeMetricFamily("policyproxy_open_connections", "Open client connections by kind",
                                     labels=["kind"])
        for kind, count in sorted(self.connections().items()):
            open_now.add_metric([kind], count)
        yield open_now
        stats = self.telemetry()
        yield GaugeMetricFamily("policyproxy_otlp_queue_depth", "Event records waiting for the OTLP collector",
                                value=stats.get("otlp_queue", 0))
        yield CounterMetricFamily("policyproxy_otlp_dropped", "Event records dropped for a full OTLP queue",
                                  value=stats.get("otlp_dropped", 0))
        yield CounterMetricFamily("policyproxy_otlp_export_failed",
                                  "Event records the OTLP exporter failed to deliver (refused or unreachable)",
                                  value=stats.get("otlp_failed", 0))
        yield CounterMetricFamily("policyproxy_events_dropped",
                                  "Events dropped before the audit log (the telemetry thread fell behind)",
                                  value=stats.get("dropped_pending", 0))


class AdminMetrics:
    def __init__(self, connections: Callable[[], Mapping[str, int]] = dict,
                 telemetry: Callable[[], Mapping[str, int]] = dict) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.decisions = Counter("policyproxy_decisions", "Policy decisions by decision and reason",
                                 ["decision", "reason"], registry=self.registry)
        self.redactions = Counter("policyproxy_redactions", "Values redacted in request bodies, by detector",
                                  ["detector"], registry=self.registry)
        self.added_latency = Histogram("policyproxy_added_latency_seconds",
                                       "Time the proxy adds to a forwarded request", buckets=LATENCY_BUCKETS,
                                       registry=self.registry)
        self.reloads = Counter("policyproxy_reloads", "Configuration reloads (SIGHUP) by result", ["result"],
                               registry=self.registry)
        for result in ("applied", "refused"):
            self.reloads.labels(result)
        self.registry.register(_Probes(connections, telemetry))
        # ``labels()`` validates and locks on every call; the children are kept (a few dozen at most:
        # verdicts x reasons, one per detector), so a decision costs a dict lookup and an ``inc``.
        self._decided: dict[tuple[str, str], Any] = {}
        self._redacted: dict[str, Any] = {}

    def decided(self, decision: str, reason: str, redactions: Mapping[str, int], added_ms: float | None) -> None:
        child = self._decided.get((decision, reason))
        if child is None:
            child = self._decided[decision, reason] = self.decisions.labels(decision, reason)
        child.inc()
        for detector, count in redactions.items():
            counter = self._redacted.get(detector)
            if counter is None:
                counter = self._redacted[detector] = self.redactions.labels(detector)
            counter.inc(count)
        if added_ms is not None:
            self.added_latency.observe(added_ms / 1000)

    def reloaded(self, applied: bool) -> None:
        self.reloads.labels("applied" if applied else "refused").inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
