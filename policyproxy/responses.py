"""The one place that renders what a blocked client sees (DESIGN.md section 4)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from policyproxy.policy.model import Decision
from policyproxy.reasons import Protocol, Reason


@dataclass(frozen=True)
class BlockAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def block_status(reason: Reason) -> int:
    return 400 if reason is Reason.PII_BLOCKED else 403


def block_answer(decision: Decision) -> BlockAnswer:
    """403 with ``x-proxy-error``: JSON on plain HTTP, a text line on CONNECT and inside MITM."""
    error = decision.reason.proxy_error or "blocked-by-policy"
    message = decision.message or f"blocked: {decision.reason.value}"
    if decision.protocol in (Protocol.HTTP, Protocol.GATEWAY):
        body = json.dumps({
            "status": "blocked",
            "host": decision.host,
            "reason": decision.reason.value,
            "decision": decision.verdict.value,
            "source": decision.source.value,
            "protocol": decision.protocol.value,
            "port": decision.port,
            "message": message,
        }).encode()
        content_type = "application/json"
    else:
        body = f"policyproxy: {message}\n".encode()
        content_type = "text/plain; charset=utf-8"
    return BlockAnswer(block_status(decision.reason),
                       (("x-proxy-error", error), ("content-type", content_type)), body)


def pii_blocked_answer(path: str, detectors: list[str]) -> BlockAnswer:
    """HTTP 400 in the provider's own error shape, naming detectors only, never values."""
    message = f"policyproxy blocked this request: it contains {', '.join(detectors)}"
    if "/messages" in path:
        body = {"type": "error", "error": {"type": "pii_blocked", "message": message, "detectors": detectors}}
    else:
        body = {"error": {"type": "pii_blocked", "code": "pii_blocked", "message": message, "param": None,
                          "detectors": detectors}}
    return BlockAnswer(400, (("x-proxy-error", "blocked-by-policy"), ("content-type", "application/json")),
                       json.dumps(body).encode())
