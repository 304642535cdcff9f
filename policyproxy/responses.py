"""The one place that renders what a client sees when the proxy answers itself (DESIGN.md section 4).

Blocks (403 with ``x-proxy-error``, 400 ``pii_blocked``), malformed requests (400, 405, 431), proxy
authentication (407), slow heads (408), WebSockets that cannot be inspected (426), upstream failures
(502, 504) and SOCKS5 replies. Pure: an ``Answer`` is bytes and a status; the shell writes it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from policyproxy.policy.model import Decision
from policyproxy.proxy import socks5_codec as socks
from policyproxy.reasons import Protocol, Reason, Source
from policyproxy.safe_text import printable

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
    Reason.SECRET_UNAVAILABLE: "blocked-by-policy",
    Reason.TLS_HANDSHAKE_FAILED: "blocked-by-policy",
    Reason.STORE_UNAVAILABLE: "blocked-by-policy",
    Reason.HOOK_MATCHED: "blocked-by-policy",
    Reason.REDACTED: "blocked-by-policy",
    Reason.ALLOWED: "blocked-by-policy",
}

CONNECT_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"   # interim answer to ``Expect: 100-continue``
_TEXT = "text/plain; charset=utf-8"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def block_status(reason: Reason) -> int:
    """403 for a policy deny; 400 for ``pii_blocked``; 503 when an injected secret or the shared
    mapping store is unavailable (the request was allowed: a retry once it is back will work)."""
    if reason is Reason.PII_BLOCKED:
        return 400
    return 503 if reason in (Reason.SECRET_UNAVAILABLE, Reason.STORE_UNAVAILABLE) else 403


@dataclass(frozen=True, slots=True)
class Remedy:
    """How to allow what a deny refused: the rule that decided, the config key to change (in
    requirements.toml when ``managed``: a platform team's to change) and the ``explain`` line that
    reproduces the decision."""

    rule: str
    config_key: str
    explain: str
    managed: bool = False

    @property
    def where(self) -> str:
        return "requirements.toml (managed; ask its owners)" if self.managed else "the profile"


def remedy(decision: Decision) -> Remedy | None:
    """The ``Remedy`` of a deny; None for an allow. Pure: the same decision, the same text."""
    profile = f"permissions.{decision.profile}.network"
    managed = decision.source is Source.REQUIREMENTS
    host_key = f'{profile}.domains.{_quoted(decision.host)}'
    reason = decision.reason
    if reason is Reason.NOT_ALLOWED:
        rule, key = "no allow pattern matches " + decision.host, host_key + ' = "allow"'
    elif reason is Reason.DENIED:
        rule = f"deny pattern {decision.rule!r}"
        key = "network.denied_domains" if managed else f"{profile}.domains.{_quoted(decision.rule or decision.host)}"
    elif reason is Reason.NOT_ALLOWED_LOCAL:
        rule = "local or private addresses are denied"
        key = "network.allow_local_binding" if managed else f'{profile}.allow_local_binding (or {host_key} = "allow" ' \
            "for an IP literal)"
    elif reason is Reason.METHOD_NOT_ALLOWED:
        rule = "limited mode (GET, HEAD and OPTIONS only)"
        key = "network.mode" if managed else f"{profile}.mode"
    elif reason is Reason.MITM_REQUIRED:
        rule, key = "limited mode must inspect this traffic", f"{profile}.mitm.enabled"
    elif reason is Reason.MITM_HOOK_DENIED:
        rule = (f"hook {decision.hook!r}" if decision.hook else f"no hook on {decision.host} matches")
        key = f"{profile}.mitm.hooks"
    elif reason is Reason.INSPECTION_FAILED or reason is Reason.PII_BLOCKED:
        rule, key = "redaction", f"{profile}.redaction"
    elif reason is Reason.SECRET_UNAVAILABLE:
        rule = f"hook {decision.hook!r}" if decision.hook else "hook"
        key = f"{profile}.mitm.actions (secret_file or secret_command of the hook's actions)"
    elif reason is Reason.STORE_UNAVAILABLE:
        rule, key = "the shared mapping store is unreachable (fail closed)", f"{profile}.redaction.mapping_store"
    elif reason is Reason.TLS_HANDSHAKE_FAILED:
        return Remedy("TLS interception", "(client trust) policyproxy ca export",
                      explain_line(decision), False)
    else:   # ALLOWED, HOOK_MATCHED, REDACTED
        return None
    return Remedy(rule, key, explain_line(decision), managed)


def explain_line(decision: Decision) -> str:
    """``policyproxy explain --profile P METHOD URL`` for this decision (path without the query)."""
    scheme = "http" if decision.protocol is Protocol.HTTP or (decision.port == 80 and decision.protocol
                                                              is not Protocol.HTTPS_MITM) else "https"
    host = f"[{decision.host}]" if ":" in decision.host else decision.host
    default = 80 if scheme == "http" else 443
    authority = host if decision.port == default else f"{host}:{decision.port}"
    url = f"{scheme}://{authority}{decision.path or '/'}"
    socks = " --socks5" if decision.protocol is Protocol.SOCKS5_TCP else ""
    return (f"policyproxy explain --profile {shlex.quote(decision.profile)}{socks} "
            f"{shlex.quote(decision.method or 'GET')} {shlex.quote(url)}")


def _quoted(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _header_value(text: str) -> str:
    """ASCII, one line: safe in a header whatever the host or path the client sent."""
    return printable(text).encode("ascii", "backslashreplace").decode("ascii")


def block_answer(decision: Decision) -> Answer:
    """403 with ``x-proxy-error``: JSON on plain HTTP, text lines on CONNECT and inside MITM; each
    names the rule that decided, the config key that would allow it and the ``explain`` line."""
    message = decision.message or f"blocked: {decision.reason.value}"
    fix = remedy(decision)
    headers = [("x-proxy-error", PROXY_ERROR[decision.reason])]
    if fix is not None:
        headers += [("x-policyproxy-rule", _header_value(fix.rule)),
                    ("x-policyproxy-config-key", _header_value(fix.config_key)),
                    ("x-policyproxy-explain", _header_value(fix.explain))]
    if decision.protocol in (Protocol.HTTP, Protocol.GATEWAY):
        document: dict[str, object] = {
            "status": "blocked",
            "host": decision.host,
            "reason": decision.reason.value,
            "decision": decision.verdict.value,
            "source": decision.source.value,
            "protocol": decision.protocol.value,
            "port": decision.port,
            "message": message,
        }
        if fix is not None:
            document.update({"rule": fix.rule, "config_key": fix.config_key, "config_in": fix.where,
                             "explain": fix.explain})
        body = json.dumps(document).encode()
        content_type = "application/json"
    else:
        lines = [f"policyproxy: {message}"]
        if fix is not None:
            lines += [f"rule: {fix.rule}", f"to allow, change {fix.config_key} in {fix.where}",
                      f"reproduce: {fix.explain}"]
        body = "".join(printable(line) + "\n" for line in lines).encode()
        content_type = _TEXT
    headers.append(("content-type", content_type))
    return Answer(block_status(decision.reason), tuple(headers), body)


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
