"""Build the OpenTelemetry exporter from ``[otel]`` and the standard ``OTEL_*`` environment.

The SDK's exporters read OTEL_EXPORTER_OTLP_(LOGS_)ENDPOINT, _HEADERS, _COMPRESSION and _TIMEOUT
themselves; they do not read OTEL_EXPORTER_OTLP_(LOGS_)PROTOCOL, OTEL_LOGS_EXPORTER or
OTEL_SDK_DISABLED, so those are read here. A managed (requirements.toml) exporter ignores the
environment's attempts to turn it off.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from policyproxy import __version__
from policyproxy.config.schema import OtelSpec
from policyproxy.errors import PolicyProxyError
from policyproxy.reasons import Source
from policyproxy.telemetry.sink import CountingExporter, OtelEmitter

DEFAULT_QUEUE = 8192
EXPORT_TIMEOUT = 3.0   # seconds for one export; the SDK's default of 10 s makes a hung collector hold shutdown


class OtelError(PolicyProxyError):
    """The OTLP exporter cannot be built as the environment asks; the message names the variable."""


_ENV_PROTOCOLS = {"grpc": "otlp-grpc", "http/protobuf": "otlp-http"}


def exporter_choice(spec: OtelSpec, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(``none`` | ``otlp-grpc`` | ``otlp-http``, endpoint or None for the SDK's own env handling)."""
    return _choice(spec, env)[:2]


def _choice(spec: OtelSpec, env: Mapping[str, str]) -> tuple[str, str | None, str]:
    """The exporter, its endpoint, and what decided it (for the banner and ``check``).

    ``OTEL_EXPORTER_OTLP_(LOGS_)PROTOCOL=http/json`` is refused: the installed SDK (1.45) has no OTLP/JSON
    log encoder (only ``opentelemetry-exporter-otlp-proto-*``), and silently sending protobuf to a JSON
    endpoint loses every event; the config file refuses ``protocol = "json"`` the same way."""
    managed = spec.source is Source.REQUIREMENTS
    if not managed:
        if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return "none", None, "OTEL_SDK_DISABLED=true"
        if env.get("OTEL_LOGS_EXPORTER", "").lower() == "none":
            return "none", None, "OTEL_LOGS_EXPORTER=none"
    if spec.exporter != "none":
        return spec.exporter, spec.endpoint, "requirements.toml [otel]" if managed else "[otel]"
    variable = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" if env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") else \
        "OTEL_EXPORTER_OTLP_ENDPOINT" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else \
        "OTEL_LOGS_EXPORTER=otlp" if env.get("OTEL_LOGS_EXPORTER", "").lower() == "otlp" else None
    if variable is None:
        return "none", None, "no [otel] exporter and no OTEL_EXPORTER_OTLP_* endpoint"
    name = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL" if env.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL") else \
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = (env.get(name) or "http/protobuf").strip().lower()
    if protocol not in _ENV_PROTOCOLS:
        hint = " (the installed OpenTelemetry SDK has no OTLP/JSON log encoder)" if protocol == "http/json" else ""
        raise OtelError(f'{name}={protocol!r} is not supported{hint}; use "grpc" or "http/protobuf"')
    endpoint = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    how = f"{name}={protocol}" if env.get(name) else "http/protobuf by default"
    return _ENV_PROTOCOLS[protocol], None, f"{variable}{'' if endpoint is None else ' ' + endpoint}, {how}"


def mask_userinfo(text: str) -> str:
    """A URL with its password shown as ``***`` (a listener or collector URL may carry one); other
    text unchanged."""
    parts = urlsplit(text) if "://" in text else None
    if parts is None or "@" not in parts.netloc:
        return text
    user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def describe_destination(spec: OtelSpec, env: Mapping[str, str] | None = None) -> str:
    """Where events go, for the banner and ``check``: ``otlp-http http://c:4318 (from OTEL_...)`` or
    ``off (OTEL_SDK_DISABLED=true)``. Never a header value."""
    env = os.environ if env is None else env
    exporter, endpoint, why = _choice(spec, env)
    if exporter == "none":
        return f"off ({why})"
    if endpoint is None and why.startswith(("[otel]", "requirements")):
        endpoint = "the SDK default endpoint"
    return mask_userinfo(f"{exporter}{' ' + endpoint if endpoint else ''}") + f" (from {mask_why(why)})"


def mask_why(why: str) -> str:
    return " ".join(mask_userinfo(word.rstrip(",")) + ("," if word.endswith(",") else "") for word in why.split(" "))


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
    counting = CountingExporter(exporter)
    processor = BatchLogRecordProcessor(counting, schedule_delay_millis=200, max_queue_size=queue_size,
                                        max_export_batch_size=min(1024, queue_size), export_timeout_millis=5000)
    provider.add_log_record_processor(processor)
    return OtelEmitter(provider, processor, queue_size, counting)


def collector_readiness(spec: OtelSpec, env: Mapping[str, str] | None = None
                        ) -> Callable[[], Awaitable[list[str]]] | None:
    """A ``/readyz`` check: the OTLP collector events go to accepts a TCP connection (1 s bound).
    None when events go nowhere. The exporter itself never blocks proxying; this tells an operator
    (or an orchestrator) that events are being dropped before the SIEM notices the silence."""
    env = os.environ if env is None else env
    exporter, endpoint = exporter_choice(spec, env)
    if exporter == "none":
        return None
    default_port = 4317 if exporter == "otlp-grpc" else 4318
    text = endpoint or env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") \
        or f"http://localhost:{default_port}"
    parts = urlsplit(text if "//" in text else "//" + text)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or (443 if parts.scheme == "https" else default_port)
    except ValueError:
        port = default_port

    async def check() -> list[str]:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, asyncio.TimeoutError) as exc:
            return [f"otel: the collector at {host}:{port} is unreachable ({type(exc).__name__}); "
                    "events are kept in the audit log and counted as failed exports"]
        writer.close()
        return []

    return check
