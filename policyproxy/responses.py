"""The one place that renders what a client sees when the proxy answers itself (DESIGN.md section 4).

Blocks (403 with ``x-proxy-error``, 400 ``pii_blocked``), malformed requests (400, 405, 431), proxy
authentication (407), slow heads (408), WebSockets that cannot be inspected (426), upstream failures
(502, 504) and SOCKS5 replies. Pure: an ``Answer`` is bytes and a status; the shell writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from policyproxy.policy.model import Decision
from policyproxy.proxy import socks5_codec as socks
from policyproxy.reasons import Protocol, Reason

PHRASES = {200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
           407: "Proxy Authentication Required", 408: "Request Timeout", 426: "Upgrade Required",
           431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


BlockAnswer = Answer   # the name redaction/inspect.py imports

# Every reason spelled out (no fallback), so a new Reason cannot reach the wire unnamed. Reasons that
# only ever allow (allowed, hook_matched, redacted) still get the generic value.
PROXY_ERROR: dict[Reason, str] = {
    Reason.NOT_ALLOWED: "blocked-by-allowlist",
    Reason.NOT_ALLOWED_LOCAL: "blocked-by-allowlist",
    Reason.DENIED: "blocked-by-denylist",
    Reason.METHOD_NOT_ALLOWED: "blocked-by-method-policy",
    Reason.MITM_REQUIRED: "blocked-by-mitm-required",
    Reason.MITM_HOOK_DENIED: "blocked-by-mitm-hook",
    Reason.PII_BLOCKED: "blocked-by-policy",
    Reason.INSPECTION_FAILED: "blocked-by-policy",
    Reason.STORE_UNAVAILABLE: "blocked-by-policy",
    Reason.HOOK_MATCHED: "blocked-by-policy",
    Reason.REDACTED: "blocked-by-policy",
    Reason.ALLOWED: "blocked-by-policy",
}

CONNECT_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"   # interim answer to ``Expect: 100-continue``
_TEXT = "text/plain; charset=utf-8"


def block_status(reason: Reason) -> int:
    """400 for blocked PII, 503 (SDKs retry it) when the mapping store is unreachable, else 403."""
    if reason is Reason.PII_BLOCKED:
        return 400
    return 503 if reason is Reason.STORE_UNAVAILABLE else 403


def block_answer(decision: Decision) -> Answer:
    """403 with ``x-proxy-error``: JSON on plain HTTP, a text line on CONNECT and inside MITM."""
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
        content_type = _TEXT
    return Answer(block_status(decision.reason),
                  (("x-proxy-error", PROXY_ERROR[decision.reason]), ("content-type", content_type)), body)


def pii_blocked_answer(path: str, detectors: list[str]) -> Answer:
    """HTTP 400 in the provider's own error shape, naming detectors only, never values."""
    message = f"policyproxy blocked this request: it contains {', '.join(detectors)}"
    if "/messages" in path:
        body = {"type": "error", "error": {"type": "pii_blocked", "message": message, "detectors": detectors}}
    else:
        body = {"error": {"type": "pii_blocked", "code": "pii_blocked", "message": message, "param": None,
                          "detectors": detectors}}
    return Answer(400, (("x-proxy-error", PROXY_ERROR[Reason.PII_BLOCKED]), ("content-type", "application/json")),
                  json.dumps(body).encode())


def text_answer(status: int, message: str) -> Answer:
    """A one-line answer of the proxy's own: ``bad-request`` below 500, ``upstream-error`` from 500."""
    error = "upstream-error" if status >= 500 else "bad-request"
    return Answer(status, (("x-proxy-error", error), ("content-type", _TEXT)), f"policyproxy: {message}\n".encode())


def auth_required() -> Answer:
    return Answer(407, (("proxy-authenticate", 'Basic realm="policyproxy"'), ("content-type", _TEXT)),
                  b"policyproxy: proxy authentication required\n")


def head_timeout() -> Answer:
    return text_answer(408, "request head not received in time")


def websocket_refused(decision: Decision) -> Answer:
    """426 for an upgrade on a redaction endpoint (clients such as Codex fall back to HTTP at once)."""
    return Answer(426, (("x-proxy-error", PROXY_ERROR[decision.reason]), ("content-type", _TEXT)),
                  f"policyproxy: {decision.message}\n".encode())


def relayed_answer(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> Answer:
    """The upstream's own non-101 answer to a WebSocket upgrade (a redirect is never followed)."""
    return Answer(status, headers, body)


def to_bytes(answer: Answer) -> bytes:
    """An answer on a raw connection (before any HTTP server took it over); the connection then closes."""
    lines = [f"HTTP/1.1 {answer.status} {PHRASES.get(answer.status, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in answer.headers]
    lines += [f"content-length: {len(answer.body)}", "connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + answer.body


def socks_reply(code: int) -> bytes:
    """A SOCKS5 reply to CONNECT: ``SUCCEEDED``, ``NOT_ALLOWED`` (a deny), ``HOST_UNREACHABLE``, ..."""
    return socks.reply(code)


SOCKS_SUCCEEDED = socks_reply(socks.SUCCEEDED)
SOCKS_NOT_ALLOWED = socks_reply(socks.NOT_ALLOWED)
SOCKS_HOST_UNREACHABLE = socks_reply(socks.HOST_UNREACHABLE)
