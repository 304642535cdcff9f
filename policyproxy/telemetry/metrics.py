"""Optional OpenTelemetry metrics beside the events (off unless ``[otel] metrics_exporter`` is set):
decisions by decision and reason, the latency the proxy adds, and open connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from policyproxy import __version__
from policyproxy.config.schema import OtelSpec

EXPORT_INTERVAL_MS = 10_000


class Metrics:
    def __init__(self, spec: OtelSpec, profile: str, open_connections: Callable[[], dict[str, int]]) -> None:
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        endpoint = spec.metrics_endpoint
        headers = dict(spec.headers) or None
        if spec.metrics_exporter == "otlp-grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

            insecure = endpoint.startswith("http://") if endpoint else None
            exporter: Any = GrpcExporter(endpoint=endpoint, insecure=insecure, headers=headers, timeout=3)
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

            if endpoint is not None and urlsplit(endpoint).path in ("", "/", "/v1/logs"):
                endpoint = endpoint.rsplit("/v1/logs", 1)[0].rstrip("/") + "/v1/metrics"
            exporter = HttpExporter(endpoint=endpoint, headers=headers, timeout=3)
        reader = PeriodicExportingMetricReader(exporter)   # OTEL_METRIC_EXPORT_INTERVAL, default 60 s
        resource = Resource.create({"service.name": "policyproxy", "service.version": __version__,
                                    "policyproxy.profile": profile, **dict(spec.resource_attributes)})
        self.provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        meter = self.provider.get_meter("policyproxy", __version__)
        self.decisions = meter.create_counter("policyproxy.decisions", unit="{decision}",
                                              description="Policy decisions by decision and reason")
        self.added = meter.create_histogram("policyproxy.added_latency", unit="ms",
                                            description="Time the proxy spends on a forwarded request")

        def observe(_options: Any) -> list[Any]:
            return [Observation(count, {"kind": kind}) for kind, count in open_connections().items()]

        meter.create_observable_gauge("policyproxy.connections.open", callbacks=[observe], unit="{connection}",
                                      description="Open client connections by kind")

    def record(self, attributes: dict[str, Any], added_ms: float | None) -> None:
        self.decisions.add(1, {"network.policy.decision": attributes["network.policy.decision"],
                               "network.policy.reason": attributes["network.policy.reason"]})
        if added_ms is not None:
            self.added.record(added_ms, {"network.transport.protocol": attributes["network.transport.protocol"]})

    def close(self, timeout: float) -> None:
        self.provider.shutdown(timeout_millis=timeout * 1000)
