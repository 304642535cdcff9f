"""Decision -> the flat attributes of one ``policyproxy.policy_decision`` event (DESIGN.md section 6).

Only names, codes and counts: never a header value, secret, body or query string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from policyproxy.errors import ConfigError, RequirementViolation
from policyproxy.policy.model import Decision
from policyproxy.responses import block_status

EVENT_NAME = "policyproxy.policy_decision"
RELOAD_EVENT = "policyproxy.reload"


def decision_attributes(decision: Decision, *, client: str | None = None, status: int | None = None,
                        connection_id: str | None = None,
                        redactions: Mapping[str, int] | None = None,
                        emitted: Mapping[str, int] | None = None,
                        genai: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
    if client is not None:
        attrs["client.address"] = client
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
