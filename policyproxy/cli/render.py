"""Readable views of the configuration: ``check``'s summary and ``config show``'s TOML.

Secrets appear only as their source (``env:NAME`` / ``file:/path``); OTLP header values are masked.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote, urlsplit

import tomli_w

from policyproxy.config.schema import HookSpec, NetworkSpec, RedactionSpec, SecretRef, Settings
from policyproxy.policy.decide import Policy
from policyproxy.policy.model import Decision
from policyproxy.reasons import Verdict
from policyproxy.responses import remedy
from policyproxy.safe_text import printable
from policyproxy.telemetry.otel import OtelError, describe_destination


def listener_credentials(url: str) -> tuple[str, str] | None:
    """Username and password a listener requires, from its URL (``scheme://user:pass@host:port``), if any."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return unquote(parts.username), unquote(parts.password or "")


def masked_url(url: str) -> str:
    """``url`` with a listener password shown as ``***`` (for ``check`` and banners)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def listener_auth(net: NetworkSpec) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """(HTTP, SOCKS5) credentials the listeners require. Either listener having credentials means both
    require them: a listener without its own takes the other's, so no unauthenticated door leads to the
    same policy and the same injected secrets."""
    http = listener_credentials(net.proxy_url)
    socks = listener_credentials(net.socks_url)
    return http or socks, socks or http


def listener_auth_summary(net: NetworkSpec) -> str:
    """One line for ``check`` and the banner: who must authenticate where (never the password)."""
    http, socks = listener_auth(net)

    def one(name: str, credentials: tuple[str, str] | None, own: bool) -> str:
        if credentials is None:
            return f"{name} none"
        return f"{name} user {credentials[0]!r}" + ("" if own else " (the other listener's credentials)")

    parts = [one("http", http, listener_credentials(net.proxy_url) is not None)]
    if net.enable_socks5:
        parts.append(one("socks5", socks, listener_credentials(net.socks_url) is not None))
    return ", ".join(parts) + ("" if http else " (any local process can use the proxy)")


def render_policy(settings: Settings, policy: Policy) -> str:
    net = settings.network
    lines = [
        f"config:       {settings.config_file}",
        f"requirements: {settings.requirements_file or 'none'}",
        f"profile:      {settings.profile}",
        f"listeners:    {masked_url(net.proxy_url)}"
        + (f", {masked_url(net.socks_url)}" if net.enable_socks5 else " (socks5 off)"),
        f"listener auth: {listener_auth_summary(net)}",
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
    try:   # where events go, as serve decides it: the [otel] table or the OTEL_* environment
        lines.append(f"otel:         {describe_destination(otel)}"
                     + (f" [{otel.source.value}]" if otel.exporter != "none" else ""))
    except OtelError as exc:
        lines.append(f"otel:         refused: {exc}")
    apis = dict(settings.gateway_apis)
    lines.append("gateway:      " + ", ".join(f"/{name}/ -> {url}" + (f" (api {apis[name]})" if name in apis else "")
                                              for name, url in settings.gateway_routes))
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


def wildcard_warning(settings: Settings) -> str | None:
    """A profile that allows ``"*"`` next to hooks or redaction: say what the proxy cannot see."""
    net = settings.network
    inspected = [f"hooks ({', '.join(sorted({h.host for h in net.hooks}))})"] if net.hooks else []
    if net.redaction is not None and net.redaction.enabled:
        inspected.append("redaction")
    if not inspected or not any(r.pattern == "*" and r.verdict is Verdict.ALLOW for r in net.domains):
        return None
    return (f'"*" is allowed next to {" and ".join(inspected)}: a client that reaches an inspected host by an '
            "IP literal or another name is refused when its TLS server name (SNI) names that host, but the "
            "proxy cannot see a name without SNI, behind ECH, or in plain HTTP to an IP, and then tunnels "
            "it uninspected (SECURITY.md, 'Other names for an inspected host')")


def decision_line(decision: Decision, status: int | None, client: str) -> str:
    """``serve -v``'s console line for one decision (escaped: hosts and paths come off the wire); a deny
    also names the rule, the config key to change and the ``explain`` line that reproduces it."""
    target = f"{decision.host}:{decision.port}{decision.path or ''}"
    text = (f"{decision.verdict.value} {decision.reason.value} {decision.protocol.value} "
            f"{decision.method or 'CONNECT'} {target} -> {status if status is not None else '-'} from {client}")
    if decision.hook:
        text += f" hook={decision.hook}"
    fix = remedy(decision)
    if fix is not None:
        text += f" ({decision.message}) rule: {fix.rule}; change {fix.config_key} in {fix.where}; {fix.explain}"
    return printable(text)


def summary(settings: Settings, policy: Policy) -> dict[str, Any]:
    """``check --json``'s compiled summary: the effective profile as data (secrets by source only)."""
    return {
        "config": str(settings.config_file) if settings.config_file else None,
        "requirements": str(settings.requirements_file) if settings.requirements_file else None,
        "profile": settings.profile,
        "mitm": "on where needed" if policy.mitm_enabled else "disabled",
        "hooks": [{"name": h.name, "host": h.host, "source": h.source.value} for h in settings.network.hooks],
        "ignored_keys": list(settings.ignored_keys),
        "effective": settings_to_toml(settings),
    }


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
    """sha256 of the effective config as ``config show`` renders it (secrets by source only, listener
    passwords as ``***``, so a published digest cannot be used to guess them): the one digest shown by
    /api/status, reload events and checked by ``run`` before reusing a proxy."""
    return "sha256:" + hashlib.sha256(tomli_w.dumps(settings_to_toml(settings)).encode()).hexdigest()


def settings_to_toml(settings: Settings) -> dict[str, Any]:
    """The effective profile as a config document that loads back to the same settings (but for listener
    passwords, shown as ``***``, and secrets, shown by source)."""
    net = settings.network
    network: dict[str, Any] = {
        "enabled": net.enabled,
        "proxy_url": masked_url(net.proxy_url),   # a listener password is a secret: never printed or hashed
        "enable_socks5": net.enable_socks5,
        "socks_url": masked_url(net.socks_url),
        "mode": net.mode.value,
        "allow_local_binding": net.allow_local_binding,
        "allow_upstream_proxy": net.allow_upstream_proxy,
        "dangerously_allow_non_loopback_proxy": net.dangerously_allow_non_loopback_proxy,
        "domains": {rule.pattern: rule.verdict.value for rule in net.domains},
    }
    mitm: dict[str, Any] = {}
    if net.mitm_enabled is not None:
        mitm["enabled"] = net.mitm_enabled
    if not net.mitm_http2:
        mitm["http2"] = False
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
            "endpoints": [{"endpoint": e, "api": dict(red.endpoint_apis)[e]} if e in dict(red.endpoint_apis) else e
                          for e in red.endpoints],
            "default_action": red.default_action.value,
            "max_body_bytes": red.max_body_bytes,
            "detectors": {name: action.value for name, action in red.detectors},
            "patterns": {p.name: {"regex": p.regex, "action": p.action.value} for p in red.patterns},
            "allow_values": ["***" for _ in red.allow_values],   # the values themselves are not shown
            "allow_patterns": list(red.allow_patterns),
            "allow_sha256": list(red.allow_sha256),
            "mapping_ttl_seconds": red.mapping_ttl_seconds,
            "responses": red.responses.value,
            "websocket": red.websocket.value,
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
        "gateway": {"routes": {name: {"url": url, "api": dict(settings.gateway_apis)[name]}
                               if name in dict(settings.gateway_apis) else url
                               for name, url in settings.gateway_routes}},
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
            {"name": i.name, **_secret_source(i.secret), **({"prefix": i.prefix} if i.prefix else {})}
            for i in action.inject_request_headers
        ]
    return table


def _secret_source(ref: SecretRef) -> dict[str, Any]:
    """Where a secret comes from, as config keys (never its value)."""
    if ref.env_var is not None:
        return {"secret_env_var": ref.env_var}
    if ref.file is not None:
        return {"secret_file": ref.file}
    return {"secret_command": list(ref.command or ()), "secret_ttl_seconds": ref.ttl_seconds}
