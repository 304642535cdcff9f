"""Header rules for forwarding (RFC 9110 section 7.6.1), pure."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable

from policyproxy.grammar.headers import forwarded, hop_by_hop
from policyproxy.policy.model import HeaderEdits, SecretLookup


def request_headers(headers: Iterable[tuple[str, str]], edits: HeaderEdits, host: str,
                    lookup: SecretLookup) -> list[tuple[str, str]]:
    """What goes upstream: exactly what the hook matchers saw (``grammar.headers.forwarded``: hop-by-hop,
    ``Proxy-*``, ``Host`` and ``Expect`` removed), ``Host`` set, then the hook's edits (``lookup``
    resolves injected secrets; it raises ``SecretUnavailable`` when one has expired)."""
    out = [("Host", host), *forwarded(headers)]
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
