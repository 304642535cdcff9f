"""Readable views of the configuration: ``check``'s summary and ``config show``'s TOML.

Secrets appear only as their source (``env:NAME`` / ``file:/path``); OTLP header values are masked.
"""

from __future__ import annotations

import hashlib
from typing import Any

import tomli_w

from policyproxy.config.schema import HookSpec, RedactionSpec, Settings
from policyproxy.policy.decide import Policy
from policyproxy.reasons import Verdict
from policyproxy.safe_text import printable


def render_policy(settings: Settings, policy: Policy) -> str:
    net = settings.network
    lines = [
        f"config:       {settings.config_file}",
        f"requirements: {settings.requirements_file or 'none'}",
        f"profile:      {settings.profile}",
        f"listeners:    {net.proxy_url}" + (f", {net.socks_url}" if net.enable_socks5 else " (socks5 off)"),
        f"mode:         {net.mode.value}",
        f"local targets: {'allowed' if net.allow_local_binding else 'denied'}",
        f"mitm:         {'on where needed' if policy.mitm_enabled else 'disabled'}",
        "domains (deny always wins):",
    ]
    rules = sorted(net.domains, key=lambda r: r.verdict is Verdict.ALLOW)
    for rule in rules:
        lines.append(f"  {rule.verdict.value:<5} {rule.pattern:<40} ({rule.source.value})")
    if not rules:
        lines.append("  (none: every destination is denied)")
    lines.append("hooks (declaration order, first match wins):" if net.hooks else "hooks: none")
    actions = {a.name: a for a in net.actions}
    for hook in net.hooks:
        lines.append(f"  {hook.name} ({hook.source.value}): {_hook_line(hook)}")
        for name in hook.actions:
            action = actions.get(name)
            if action is None:
                continue
            ops = [f"strip {', '.join(action.strip_request_headers)}"] if action.strip_request_headers else []
            ops += [f"inject {i.name} from {i.secret.describe()}" for i in action.inject_request_headers]
            lines.append(f"    -> {name}: {'; '.join(ops)}")
    lines.append(_redaction_line(net.redaction))
    otel = settings.otel
    lines.append(f"otel:         {otel.exporter}" + (f" -> {otel.endpoint}" if otel.endpoint else "")
                 + (f" ({otel.source.value})" if otel.exporter != "none" else ""))
    lines.append("gateway:      " + ", ".join(f"/{name}/ -> {url}" for name, url in settings.gateway_routes))
    audit = settings.audit
    lines.append(f"audit log:    {'off' if not audit.enabled else (audit.path or '$POLICYPROXY_HOME/audit.jsonl')}"
                 f" (rotates at {audit.max_bytes // (1024 * 1024)} MiB, keeps {audit.backups})")
    admin = settings.admin
    lines.append(f"admin:        {'off' if admin.listen == 'off' else 'http://' + admin.listen + '/'}"
                 + (f" (bearer token from {admin.token.describe()})" if admin.token else ""))
    if settings.ignored_keys:
        lines.append("ignored (not policyproxy's): " + ", ".join(settings.ignored_keys))
    lines.append("OK")
    return "\n".join(printable(line) for line in lines)


def _hook_line(hook: HookSpec) -> str:
    text = f"{'|'.join(hook.methods)} {hook.host} {' '.join(hook.path_prefixes)}"
    if hook.query:
        text += " query " + ", ".join(f"{k}={list(v)}" for k, v in hook.query)
    if hook.headers:
        text += " headers " + ", ".join(f"{k}={list(v)}" for k, v in hook.headers)
    return text


def _redaction_line(spec: RedactionSpec | None) -> str:
    if spec is None or not spec.enabled:
        return "redaction:    off"
    overrides = ", ".join(f"{name}={action.value}" for name, action in spec.detectors)
    return (f"redaction:    on, default {spec.default_action.value}; endpoints {', '.join(spec.endpoints)}"
            + (f"; detectors {overrides}" if overrides else "")
            + (f"; patterns {', '.join(p.name for p in spec.patterns)}" if spec.patterns else "")
            + f"; responses {spec.responses.value}"
            + ("; placeholder explainer on" if spec.explain_placeholders else ""))


def toml_text(settings: Settings) -> str:
    """``config show``'s document: still TOML (tomli_w writes only basic strings, where ``\\uXXXX`` is an
    escape), with every character a terminal would act on (C1, bidi, zero-width...) written as such an escape."""
    text = tomli_w.dumps(settings_to_toml(settings))
    if text.replace("\n", "").isprintable():
        return text
    return "".join(c if c == "\n" or c.isprintable() else
                   (f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}") for c in text)


def config_digest(settings: Settings) -> str:
    """sha256 of the effective config as ``config show`` renders it (secrets by source only): the one
    digest shown by /api/status, reload events and checked by ``run`` before reusing a proxy."""
    return "sha256:" + hashlib.sha256(tomli_w.dumps(settings_to_toml(settings)).encode()).hexdigest()


def settings_to_toml(settings: Settings) -> dict[str, Any]:
    """The effective profile as a config document that loads back to the same settings."""
    net = settings.network
    network: dict[str, Any] = {
        "enabled": net.enabled,
        "proxy_url": net.proxy_url,
        "enable_socks5": net.enable_socks5,
        "socks_url": net.socks_url,
        "mode": net.mode.value,
        "allow_local_binding": net.allow_local_binding,
        "allow_upstream_proxy": net.allow_upstream_proxy,
        "dangerously_allow_non_loopback_proxy": net.dangerously_allow_non_loopback_proxy,
        "domains": {rule.pattern: rule.verdict.value for rule in net.domains},
    }
    mitm: dict[str, Any] = {}
    if net.mitm_enabled is not None:
        mitm["enabled"] = net.mitm_enabled
    if net.hooks:
        mitm["hooks"] = {h.name: _hook_table(h) for h in net.hooks}
    if net.actions:
        mitm["actions"] = {a.name: _action_table(a) for a in net.actions}
    if mitm:
        network["mitm"] = mitm
    if net.redaction is not None:
        red = net.redaction
        network["redaction"] = {
            "enabled": red.enabled,
            "endpoints": list(red.endpoints),
            "default_action": red.default_action.value,
            "max_body_bytes": red.max_body_bytes,
            "detectors": {name: action.value for name, action in red.detectors},
            "patterns": {p.name: {"regex": p.regex, "action": p.action.value} for p in red.patterns},
            "allow_values": ["***" for _ in red.allow_values],   # the values themselves are not shown
            "allow_patterns": list(red.allow_patterns),
            "allow_sha256": list(red.allow_sha256),
            "mapping_ttl_seconds": red.mapping_ttl_seconds,
            "responses": red.responses.value,
            "explain_placeholders": red.explain_placeholders,
            "phone_regions": list(red.phone_regions),
        }
        if red.mapping_store:
            network["redaction"]["mapping_store"] = red.mapping_store   # never holds a password (config)
        for name, ref in (("mapping_store_password", red.mapping_store_password), ("mapping_key", red.mapping_key)):
            if ref is not None:   # the source only, never the value
                network["redaction"][f"{name}_env" if ref.env_var else f"{name}_file"] = ref.env_var or ref.file
        if red.mapping_store_ca_file:
            network["redaction"]["mapping_store_ca_file"] = red.mapping_store_ca_file
        if red.ner_model:
            network["redaction"]["ner_model"] = red.ner_model
    doc: dict[str, Any] = {
        "default_permissions": settings.profile,
        "permissions": {settings.profile: {"network": network}},
        "gateway": {"routes": dict(settings.gateway_routes)},
    }
    otel = settings.otel
    audit = settings.audit
    doc["audit"] = {"enabled": audit.enabled, "max_bytes": audit.max_bytes, "backups": audit.backups,
                    **({"path": audit.path} if audit.path else {})}
    admin = settings.admin
    doc["admin"] = {"listen": admin.listen}
    if admin.token is not None:
        doc["admin"].update({"token_env_var": admin.token.env_var} if admin.token.env_var else
                            {"token_file": admin.token.file})
    if otel.exporter != "none" or otel.environment or otel.metrics_exporter != "none":
        table: dict[str, Any] = {"exporter": otel.exporter, "max_queue_size": otel.max_queue_size}
        if otel.endpoint:
            table["endpoint"] = otel.endpoint
        if otel.protocol:
            table["protocol"] = otel.protocol
        if otel.headers:
            table["headers"] = {name: "***" for name, _ in otel.headers}
        if otel.resource_attributes:
            table["resource_attributes"] = dict(otel.resource_attributes)
        if otel.environment:
            table["environment"] = otel.environment
        if otel.metrics_exporter != "none":
            table["metrics_exporter"] = ({otel.metrics_exporter: {"endpoint": otel.metrics_endpoint}}
                                         if otel.metrics_endpoint else otel.metrics_exporter)
        doc["otel"] = table
    return doc


def _hook_table(hook: HookSpec) -> dict[str, Any]:
    table: dict[str, Any] = {"host": hook.host, "methods": list(hook.methods),
                             "path_prefixes": list(hook.path_prefixes)}
    if hook.query:
        table["query"] = {k: list(v) for k, v in hook.query}
    if hook.headers:
        table["headers"] = {k: list(v) for k, v in hook.headers}
    table["action"] = list(hook.actions)
    if hook.allow_plaintext_secrets:
        table["allow_plaintext_secrets"] = True
    return table


def _action_table(action: Any) -> dict[str, Any]:
    table: dict[str, Any] = {}
    if action.strip_request_headers:
        table["strip_request_headers"] = list(action.strip_request_headers)
    if action.inject_request_headers:
        table["inject_request_headers"] = [
            {"name": i.name, **({"secret_env_var": i.secret.env_var} if i.secret.env_var else
                                {"secret_file": i.secret.file}),
             **({"prefix": i.prefix} if i.prefix else {})}
            for i in action.inject_request_headers
        ]
    return table
