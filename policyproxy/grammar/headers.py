"""Which request headers travel upstream: the one hop-by-hop rule (RFC 9110 section 7.6.1).

Hook header matchers are checked against ``forwarded(headers)``, and the proxy builds the upstream
request from the same function, so a matcher can only be satisfied by a header the upstream
receives: ``Connection: x-github-api-version`` drops that header, so it cannot satisfy a matcher.

Dropped, compared case-insensitively: the fixed hop-by-hop names, every name listed in any
``Connection`` or ``Proxy-Connection`` header (comma lists, repeated headers), every ``Proxy-*``
header (this proxy's own credentials and negotiation), and ``Host`` and ``Expect``, which the proxy
sets or answers itself.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
    "trailer", "transfer-encoding", "upgrade",
})
SET_BY_PROXY = frozenset({"host", "expect"})
_CONNECTION_HEADERS = ("connection", "proxy-connection")


def hop_by_hop(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The lower-case names that stop at this hop: the fixed set plus every name ``Connection`` lists."""
    listed = [value for name, value in headers if name.lower() in _CONNECTION_HEADERS]
    if not listed:
        return HOP_BY_HOP
    names = set(HOP_BY_HOP)
    for value in listed:
        names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(names)


def is_upstream_name(name: str, dropped: frozenset[str]) -> bool:
    """Whether a header called ``name`` (lower case) travels upstream, given ``hop_by_hop``'s answer."""
    return name not in dropped and name not in SET_BY_PROXY and not name.startswith("proxy-")


def forwarded(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The client's request headers that travel upstream, in order, names as sent."""
    items = tuple(headers)
    dropped = hop_by_hop(items)
    return tuple((name, value) for name, value in items if is_upstream_name(name.lower(), dropped))


def name_skeleton(name: str) -> str:
    """A header name as CGI, WSGI and some proxies read it: case-folded, ``_`` and ``-`` the same.

    ``X_GitHub_Api_Version`` reaches a WSGI app as the same ``HTTP_X_GITHUB_API_VERSION`` as
    ``x-github-api-version``, so a hook must not match when both spellings are sent.
    """
    return name.lower().replace("_", "-")
