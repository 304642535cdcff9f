"""The ``[otel]`` table, in Codex's shapes and the flat one.

Accepted:  exporter = "none" | "otlp-grpc" | "otlp-http" (+ endpoint, protocol, headers)
           exporter = { otlp-grpc = { endpoint = "...", headers = {...} } }
           [otel.exporter."otlp-http"] endpoint = "...", protocol = "binary", headers = {...}
Codex-only keys (environment, log_user_prompt, trace_exporter, metrics_exporter) are accepted.
"""

from __future__ import annotations

from typing import Any

from policyproxy.config.reader import Reader
from policyproxy.config.schema import OtelSpec
from policyproxy.config.source import KeyPath
from policyproxy.reasons import Source

EXPORTERS = ("none", "otlp-grpc", "otlp-http")
OTEL_KEYS = frozenset({"exporter", "endpoint", "protocol", "headers", "resource_attributes",
                       "environment", "log_user_prompt", "trace_exporter", "metrics_exporter", "max_queue_size"})
EXPORTER_TABLE_KEYS = frozenset({"endpoint", "protocol", "headers", "tls"})
_PROTOCOLS = {"binary": "binary", "http/protobuf": "binary", "protobuf": "binary", "grpc": "grpc"}


def parse_otel(r: Reader, raw: object, source: Source = Source.PROFILE) -> OtelSpec:
    path: KeyPath = ("otel",)
    table: dict[str, Any] = dict(r.table(raw, path, OTEL_KEYS))
    exporter_value = table.get("exporter", "none")
    exporter = "none"
    if isinstance(exporter_value, str):
        exporter = exporter_value
        inner: dict[str, Any] = {}
    elif isinstance(exporter_value, dict) and len(exporter_value) == 1:
        exporter, body = next(iter(exporter_value.items()))
        inner = dict(r.table(body, (*path, "exporter", exporter), EXPORTER_TABLE_KEYS))
    else:
        r.error((*path, "exporter"),
                'must be "none", "otlp-grpc", "otlp-http" or a table with one of those as its only key')
        inner = {}
    if exporter not in EXPORTERS:
        r.error((*path, "exporter"), f"must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
        exporter = "none"
    merged = {**{k: v for k, v in table.items() if k in EXPORTER_TABLE_KEYS}, **inner}
    at = (*path, "exporter", exporter) if inner else path
    endpoint = r.get(merged, "endpoint", at, str, None)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        r.error((*at, "endpoint"), f"must be an http:// or https:// URL, got {endpoint!r}")
    protocol = r.get(merged, "protocol", at, str, None)
    if protocol is not None:
        if protocol == "json" or protocol == "http/json":
            r.error((*at, "protocol"), "OTLP/JSON is not supported; use \"binary\" (HTTP/protobuf)")
            protocol = None
        elif protocol not in _PROTOCOLS:
            r.error((*at, "protocol"), f'must be "binary" or "grpc", got {protocol!r}')
            protocol = None
        else:
            protocol = _PROTOCOLS[protocol]
    headers = _string_map(r, merged.get("headers", {}), (*at, "headers"))
    resource = _string_map(r, table.get("resource_attributes", {}), (*path, "resource_attributes"))
    return OtelSpec(
        exporter=exporter,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        resource_attributes=resource,
        environment=r.get(table, "environment", path, str, None),
        source=source,
        exporter_set="exporter" in table,
        max_queue_size=_queue_size(r, table, path),
        **_metrics(r, table, path, exporter, endpoint),
    )


def _string_map(r: Reader, raw: object, path: KeyPath) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in r.table(raw, path).items():
        if not isinstance(value, str):
            r.error((*path, key), "must be a string")
        else:
            out.append((key, value))
    return tuple(out)


def _queue_size(r: Reader, table: dict[str, Any], path: KeyPath) -> int:
    size: int = r.get(table, "max_queue_size", path, int, 8192)
    if size < 1:
        r.error((*path, "max_queue_size"), "must be a positive number of records")
        return 8192
    return size


def _metrics(r: Reader, table: dict[str, Any], path: KeyPath, logs_exporter: str,
             logs_endpoint: str | None) -> dict[str, Any]:
    """``metrics_exporter``: the same shapes as ``exporter``; the endpoint defaults to the logs one."""
    raw = table.get("metrics_exporter", "none")
    at = (*path, "metrics_exporter")
    endpoint = None
    if isinstance(raw, str):
        name = raw
    elif isinstance(raw, dict) and len(raw) == 1:
        name, body = next(iter(raw.items()))
        endpoint = r.get(r.table(body, (*at, name), {"endpoint", "headers", "protocol"}), "endpoint",
                         (*at, name), str, None)
    else:
        r.error(at, 'must be "none", "otlp-grpc", "otlp-http" or a table with one of those as its only key')
        return {}
    if name not in EXPORTERS:
        r.error(at, f"must be one of {', '.join(EXPORTERS)}, got {name!r}")
        return {}
    if endpoint is None and name == logs_exporter:
        endpoint = logs_endpoint
    return {"metrics_exporter": name, "metrics_endpoint": endpoint}
