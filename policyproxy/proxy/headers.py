"""Header rules for forwarding (RFC 9110 section 7.6.1), pure."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable

from policyproxy.policy.model import HeaderEdits, SecretLookup

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
    "trailer", "transfer-encoding", "upgrade",
})


def hop_by_hop(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The hop-by-hop names: the fixed set plus every name listed in ``Connection``."""
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() in ("connection", "proxy-connection"):
            names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names


def request_headers(headers: Iterable[tuple[str, str]], edits: HeaderEdits, host: str,
                    lookup: SecretLookup) -> list[tuple[str, str]]:
    """What goes upstream: hop-by-hop and ``Expect`` removed, ``Host`` set, then the hook's edits
    (``lookup`` resolves injected secrets; it raises ``SecretUnavailable`` when one has expired)."""
    items = list(headers)
    drop = hop_by_hop(items) | {"host", "expect"}
    out = [("Host", host)] + [(k, v) for k, v in items if k.lower() not in drop]
    return edits.apply(out, lookup) if (edits.strip or edits.inject) else out


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    items = list(headers)
    drop = hop_by_hop(items) | {"content-length"}
    return [(k, v) for k, v in items if k.lower() not in drop]


def host_header(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def proxy_user(value: str | None, credentials: tuple[str, str]) -> str | None:
    """The user a ``Proxy-Authorization: Basic ...`` value proves, compared in constant time; else None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = f"{credentials[0]}\0{credentials[1]}".encode()
    return user if hmac.compare_digest(f"{user}\0{password}".encode(), expected) else None
