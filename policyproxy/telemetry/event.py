"""Decision -> the flat attributes of one ``policyproxy.policy_decision`` event (DESIGN.md section 6).

Only names, codes and counts: never a header value, secret, body or query string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from policyproxy.errors import ConfigError, RequirementViolation
from policyproxy.policy.model import Decision
from policyproxy.reasons import Protocol
from policyproxy.responses import block_status

EVENT_NAME = "policyproxy.policy_decision"
RELOAD_EVENT = "policyproxy.reload"


def decision_attributes(decision: Decision, *, client: str | None = None, status: int | None = None,
                        connection_id: str | None = None,
                        redactions: Mapping[str, int] | None = None,
                        emitted: Mapping[str, int] | None = None,
                        genai: Mapping[str, Any] | None = None, user: str | None = None,
                        protocol_version: str | None = None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "network.policy.decision": decision.verdict.value,
        "network.policy.reason": decision.reason.value,
        "network.policy.source": decision.source.value,
        "network.policy.profile": decision.profile,
        "network.transport.protocol": decision.protocol.value,
        "server.address": decision.host,
        "server.port": decision.port,
        "http.request.method": decision.method or "none",
    }
    if decision.hook is not None:
        attrs["network.policy.hook"] = decision.hook
        attrs["network.policy.actions"] = list(decision.actions)
    if decision.path is not None:
        attrs["url.path"] = decision.path
    if protocol_version is not None:   # the client's HTTP version, when it is not HTTP/1.1 (so far: "2")
        attrs["network.protocol.version"] = protocol_version
    if client is not None:
        attrs["client.address"] = client
    if user is not None:
        attrs["enduser.id"] = user   # the authenticated listener user (HTTP Proxy-Authorization or SOCKS5)
    if status is None and not decision.allowed:
        status = block_status(decision.reason)
    if status is not None:
        attrs["http.response.status_code"] = status
    if decision.edits.strip:
        attrs["headers.stripped"] = list(decision.edits.strip)
    if decision.edits.inject:
        attrs["headers.injected"] = list(decision.edits.injected_names)
    if redactions:
        attrs["redaction.count"] = sum(redactions.values())
        attrs["redaction.detectors"] = dict(redactions)
    if emitted:   # found in what the model answered (redaction.responses): counts only, never values
        attrs["redaction.response.count"] = sum(emitted.values())
        attrs["redaction.response.detectors"] = dict(emitted)
    if genai:   # gen_ai.* of the OpenTelemetry GenAI conventions: names, models, token counts; never text
        attrs.update(genai)
    if connection_id is not None:
        attrs["policyproxy.connection.id"] = connection_id
    return attrs


def audit_record(attrs: Mapping[str, Any], when: datetime) -> dict[str, Any]:
    """The JSONL form: ``ts`` (RFC 3339, UTC, milliseconds) and ``event.name`` first. The caller
    reads the clock (this module stays pure)."""
    ts = when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"ts": ts, "event.name": EVENT_NAME, **attrs}


def reload_attributes(outcome: str, digest: str, profile: str, restart_keys: Sequence[str] = (),
                      errors: Sequence[ConfigError] = ()) -> dict[str, Any]:
    """One ``policyproxy.reload`` event: ``applied`` (with the keys that still need a restart) or
    ``refused`` (the running config, its digest, stays in force). Errors are named by file, line
    and key only, never by the value that was refused."""
    attrs: dict[str, Any] = {
        "policyproxy.reload.outcome": outcome,
        "policyproxy.config.digest": digest,
        "network.policy.profile": profile,
        "policyproxy.reload.restart_keys": list(restart_keys),
    }
    if errors:
        attrs["policyproxy.reload.errors"] = [f"{e.location} {e.key}".rstrip() for e in errors]
        attrs["policyproxy.reload.requirement_violation"] = any(isinstance(e, RequirementViolation) for e in errors)
    return attrs


START_EVENT = "policyproxy.start"
_OPENING = {Protocol.HTTPS_CONNECT: "CONNECT", Protocol.SOCKS5_TCP: "SOCKS5"}
STOP_EVENT = "policyproxy.stop"


def decision_summary(decision: Decision, client: str | None, user: str | None = None) -> str:
    """The one-line human summary a SIEM shows as the message (the OTel log record body), e.g.
    ``deny CONNECT evil.test:443 denied (evil.test is denied by 'evil.test') from 127.0.0.1``.
    Built from names, codes and the decision's own message (which names rules, never values)."""
    method = decision.method or _OPENING.get(decision.protocol, decision.protocol.value)
    where = f"{decision.host}:{decision.port}{decision.path or ''}"
    text = f"{decision.verdict.value} {method} {where} {decision.reason.value}"
    if decision.message:
        text += f" ({decision.message})"
    if client:
        text += f" from {client}"
    if user:
        text += f" as {user}"
    return text


def lifecycle_attributes(digest: str, profile: str, version: str,
                         listeners: Mapping[str, str]) -> dict[str, Any]:
    """``policyproxy.start`` / ``policyproxy.stop``: what ran, under which config (digest), where."""
    return {"policyproxy.config.digest": digest, "network.policy.profile": profile, "service.version": version,
            "policyproxy.listeners": [f"{kind}={address}" for kind, address in sorted(listeners.items())]}


def lifecycle_summary(name: str, attributes: Mapping[str, Any]) -> str:
    """The body of a lifecycle event: ``policyproxy.start profile 'p' sha256:... http=127.0.0.1:3128``."""
    parts = [name]
    if "network.policy.profile" in attributes:
        parts.append(f"profile {attributes['network.policy.profile']!r}")
    for key in ("policyproxy.reload.outcome", "policyproxy.config.digest"):
        if key in attributes:
            parts.append(str(attributes[key]))
    parts += [str(item) for item in attributes.get("policyproxy.listeners", ())]
    return " ".join(parts)
