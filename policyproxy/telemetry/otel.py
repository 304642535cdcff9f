"""Build the OpenTelemetry exporter from ``[otel]`` and the standard ``OTEL_*`` environment.

The SDK's exporters read OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT, _HEADERS, _COMPRESSION and _TIMEOUT
themselves; they do not read OTEL_EXPORTER_OTLP_(LOGS_)PROTOCOL, OTEL_LOGS_EXPORTER or
OTEL_SDK_DISABLED, so those are read here. A managed (requirements.toml) exporter ignores the
environment's attempts to turn it off.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

from policyproxy import __version__
from policyproxy.config.schema import OtelSpec
from policyproxy.reasons import Source
from policyproxy.telemetry.sink import OtelEmitter

DEFAULT_QUEUE = 8192
EXPORT_TIMEOUT = 3.0   # seconds for one export; the SDK's default of 10 s makes a hung collector hold shutdown


def exporter_choice(spec: OtelSpec, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(``none`` | ``otlp-grpc`` | ``otlp-http``, endpoint or None for the SDK's own env handling)."""
    managed = spec.source is Source.REQUIREMENTS
    if not managed and (env.get("OTEL_SDK_DISABLED", "").lower() == "true"
                        or env.get("OTEL_LOGS_EXPORTER", "").lower() == "none"):
        return "none", None
    if spec.exporter != "none":
        return spec.exporter, spec.endpoint
    if env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") \
            or env.get("OTEL_LOGS_EXPORTER", "").lower() == "otlp":
        protocol = (env.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "http/protobuf").lower()
        return ("otlp-grpc" if protocol == "grpc" else "otlp-http"), None
    return "none", None


def build_emitter(spec: OtelSpec, profile: str, env: Mapping[str, str] | None = None,
                  queue_size: int = DEFAULT_QUEUE) -> OtelEmitter | None:
    env = os.environ if env is None else env
    exporter_name, endpoint = exporter_choice(spec, env)
    if exporter_name == "none":
        return None
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    headers = dict(spec.headers) or None
    if exporter_name == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        insecure = endpoint.startswith("http://") if endpoint else None
        exporter = GrpcExporter(endpoint=endpoint, insecure=insecure, headers=headers, timeout=EXPORT_TIMEOUT)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

        if endpoint is not None and urlsplit(endpoint).path in ("", "/"):
            endpoint = endpoint.rstrip("/") + "/v1/logs"
        exporter = HttpExporter(endpoint=endpoint, headers=headers, timeout=EXPORT_TIMEOUT)
    resource = Resource.create({
        "service.name": "policyproxy", "service.version": __version__, "host.name": socket.gethostname(),
        "policyproxy.profile": profile, **dict(spec.resource_attributes),
        **({"deployment.environment": spec.environment} if spec.environment else {}),
    })
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    processor = BatchLogRecordProcessor(exporter, schedule_delay_millis=200, max_queue_size=queue_size,
                                        max_export_batch_size=min(1024, queue_size), export_timeout_millis=5000)
    provider.add_log_record_processor(processor)
    return OtelEmitter(provider, processor, queue_size)
