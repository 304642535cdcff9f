"""Host names and addresses: one canonical spelling, and which addresses are not public.

A host is compared in one form only: lower case, no trailing dot, no brackets or port, IDNA
(punycode) for non-ASCII names, and IP literals in their canonical text. Numeric IPv4 shorthands
that resolvers accept (``127.1``, ``0x7f.0.0.1``, ``2130706433``) become the dotted quad they mean,
so they cannot dodge a pattern or the local-address rule.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache
from urllib.parse import urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMERIC_V4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}")


@lru_cache(maxsize=4096)
def normalize_host(raw: str) -> str | None:
    """The canonical form of ``raw``, or None when it is not a usable host."""
    host = raw.strip()
    if not host:
        return None
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and not host[end + 1:].startswith(":")):
            return None
        return _canonical_ipv6(host[1:end])
    if host.count(":") == 1:  # host:port given by a careless caller
        host = host.split(":", 1)[0]
    elif host.count(":") > 1:
        return _canonical_ipv6(host)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or host.endswith("."):
        return None
    if _NUMERIC_V4.fullmatch(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():  # a dotted name ending in a number is neither a name nor an IP
        return None
    return host


def url_host(url: str) -> str | None:
    """The canonical host of an ``http(s)://`` URL; None if it has none, or carries user:password."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return None
    return normalize_host(parts.hostname)


def _canonical_ipv6(text: str) -> str | None:
    address, _, zone = text.partition("%")
    if zone.startswith("25"):
        zone = zone[2:]
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    return f"{ip.compressed}%{zone}" if zone else ip.compressed


def parse_ip(host: str) -> IPAddress | None:
    """The address a canonical host names, if it is an IP literal."""
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None


_NON_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)
_NON_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in ("::/128", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "2001:db8::/32")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_non_public(ip: IPAddress) -> bool:
    """Loopback, private, link-local (cloud metadata included), CGNAT, reserved or multicast."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_non_public(embedded)
        return any(ip in net for net in _NON_PUBLIC_V6)
    return any(ip in net for net in _NON_PUBLIC_V4)


def is_local_name(host: str) -> bool:
    """Names that always mean this machine, whatever DNS says."""
    return host == "localhost" or host.endswith(".localhost")
