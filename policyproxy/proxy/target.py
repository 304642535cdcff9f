"""Reading where a request goes, sans I/O: a ``Routed`` target or a ``Refusal`` (status and text).

Four forms: a CONNECT authority (``host:port``), an absolute-form ``http://`` URL on the HTTP
listener, a gateway route (``/<route>/...`` on the HTTP listener), and an origin-form request inside
a tunnel (whose ``Host`` must name the tunnel's target). Ports are ASCII digits only: ``int()``
accepts superscript, Arabic-Indic and fullwidth digits, which no upstream reads the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from policyproxy.grammar.hosts import normalize_host
from policyproxy.reasons import Protocol

_DIGITS = frozenset("0123456789")
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9112 3.2: a request target never carries a fragment (clients strip it). Sent raw, upstreams
# disagree on it (part of the query's last value, of the path, or cut), so hooks and the upstream
# would read two different requests: refused.
_FRAGMENT = "a request target must not carry a #fragment (send '#' as %23)"


@dataclass(frozen=True, slots=True)
class Routed:
    host: str
    port: int
    scheme: str
    path: str         # raw path as sent (the policy normalises it)
    query: str        # raw query string
    protocol: Protocol
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str


def parse_port(text: str) -> int | None:
    """1..65535 written in ASCII digits (at most five, leading zeros allowed), else None."""
    if not text or len(text) > 5 or not _DIGITS.issuperset(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def is_bare_name(host: str) -> bool:
    """Whether ``host`` has no whitespace and no control character (in any script).

    ``normalize_host`` forgives surrounding whitespace (and a ``host:port``) for careless callers, so
    a destination read off the wire must not rely on it: ``api.github.com\x0b`` would be decided as
    the hooked host while the raw name, not the canonical one, builds the upstream URL.
    """
    return bool(host) and all(ch.isprintable() and not ch.isspace() for ch in host)


def split_authority(authority: str, default_port: int | None) -> tuple[str, int] | None:
    """``host[:port]`` or ``[v6][:port]`` into (host without brackets, port); None when malformed.

    ``default_port`` None means the port is required (CONNECT).
    """
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        host, rest = authority[1:close], authority[close + 1:]
        if not host or "[" in host or "]" in rest:
            return None
        if not rest:
            port_text = None
        elif rest.startswith(":"):
            port_text = rest[1:]
        else:
            return None
    else:
        if "[" in authority or "]" in authority:
            return None
        host, colon, port_text_or = authority.partition(":")
        if ":" in port_text_or:
            return None   # host:P:P, or an IPv6 literal without brackets
        port_text = port_text_or if colon else None
        if not is_bare_name(host):
            return None
    if port_text is None:
        return (host, default_port) if default_port is not None else None
    port = parse_port(port_text)
    return (host, port) if port is not None else None


def read_connect(authority: str) -> tuple[str, int] | Refusal:
    """The target of ``CONNECT host:port`` (or a SOCKS5 address as text)."""
    parsed = split_authority(authority, None)
    if parsed is None:
        return Refusal(400, f"CONNECT target must be host:port with a port of 1-65535, got {authority!r}")
    return parsed


@lru_cache(maxsize=4096)
def same_authority(header: str, host: str, port: int, default_port: int) -> bool:
    """Whether a ``Host`` header names ``host:port`` (port omitted means the scheme's default).

    Pure and asked once per request with the same few values per connection: cached."""
    parsed = split_authority(header.strip(), default_port)
    if parsed is None:
        return False
    named, wanted = normalize_host(parsed[0]), normalize_host(host)
    return named is not None and named == wanted and parsed[1] == port


def read_absolute(raw: str, host_header: str | None) -> Routed | Refusal:
    """An absolute-form request on the HTTP listener: ``http://host[:port]/path?query``."""
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() != "http":
        shown = scheme if sep else raw[:20]
        return Refusal(400, f"absolute-form requests must be http:// (use CONNECT for {shown}://)")
    authority_end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if 0 <= at < authority_end:
            authority_end = at
    authority, target = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        return Refusal(400, "URLs with user:password are refused")
    parsed = split_authority(authority, 80)
    if parsed is None:
        return Refusal(400, f"invalid host or port in request URL: {authority!r}")
    host, port = parsed
    if host_header is not None and not same_authority(host_header, host, port, 80):
        return Refusal(400, f"Host header {host_header!r} does not match the request URL")
    parts = urlsplit(target or "/")
    return Routed(host, port, "http", parts.path or "/", parts.query, Protocol.HTTP)


def read_gateway(raw: str, routes: Mapping[str, str]) -> Routed | Refusal:
    """``/<route>/rest`` on the HTTP listener, sent to the route's configured base URL."""
    route, _, rest = raw[1:].partition("/")
    base = routes.get(route)
    if base is None:
        known = ", ".join(f"/{name}/" for name in routes)
        return Refusal(400, f"this is a proxy: send absolute-form requests, CONNECT, or a gateway route ({known})")
    if "#" in rest:
        return Refusal(400, _FRAGMENT)
    upstream = urlsplit(base)
    path, _, query = ("/" + rest).partition("?")
    scheme = upstream.scheme
    port = upstream.port or DEFAULT_PORTS.get(scheme, 80)
    return Routed(upstream.hostname or "", port, scheme, upstream.path.rstrip("/") + path, query,
                  Protocol.GATEWAY, trusted=True)


def read_plain(raw: str, host_header: str | None, routes: Mapping[str, str]) -> Routed | Refusal:
    """A request on the HTTP listener: a gateway route when origin-form, else absolute-form."""
    return read_gateway(raw, routes) if raw.startswith("/") else read_absolute(raw, host_header)


def read_in_tunnel(method: str, raw: str, host_header: str | None, host: str, port: int, scheme: str,
                   trusted: bool) -> Routed | Refusal:
    """An origin-form request inside a tunnel to ``host:port``; its ``Host`` must name the same target."""
    if method == "CONNECT":
        return Refusal(405, "CONNECT inside an intercepted tunnel is not allowed")
    if not raw.startswith("/"):
        return Refusal(400, "requests inside a tunnel must use origin-form targets")
    if "#" in raw:
        return Refusal(400, _FRAGMENT)
    if host_header is None or not same_authority(host_header, host, port, DEFAULT_PORTS.get(scheme, 443)):
        return Refusal(400, f"Host header {host_header!r} does not match the tunnel target {host}")
    path, _, query = raw.partition("?")
    protocol = Protocol.HTTPS_MITM if scheme == "https" else Protocol.HTTP
    return Routed(host, port, scheme, path, query, protocol, trusted)
