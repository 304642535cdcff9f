"""Host names and addresses: one canonical spelling, and which addresses are not public.

A host is compared in one form only: lower case, no trailing dot, no brackets or port, IDNA
(punycode) for non-ASCII names, and IP literals in their canonical text. Numeric IPv4 shorthands
that resolvers accept (``127.1``, ``0x7f.0.0.1``, ``2130706433``) become the dotted quad they mean,
so they cannot dodge a pattern or the local-address rule.

``normalize_host`` is lenient (a client's ``host:port`` loses its port); ``config_host`` is what
an operator's text must pass: a bare host, nothing else, or an error that says what was meant.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+-]*:/")   # no dot: "api.x:/v1" is a host with a path
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
        return _numeric_v4(host)
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


def _numeric_v4(text: str) -> str | None:
    """``inet_aton``'s reading of 1 to 4 dot-separated numbers (hex ``0x``, octal ``0``, decimal).

    Written out rather than calling ``socket.inet_aton`` so the grammar imports no I/O module; the
    last number fills the bytes the earlier ones leave (``127.1`` is ``127.0.0.1``).
    """
    values: list[int] = []
    for part in text.split("."):
        if part.startswith("0x"):
            values.append(int(part[2:], 16))
        elif len(part) > 1 and part.startswith("0"):
            if not part.isdigit() or "8" in part or "9" in part:
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, value in enumerate(head):
        number |= value << (8 * (3 - i))
    return str(ipaddress.IPv4Address(number))


class HostSyntaxError(ValueError):
    """Operator text that is not a bare host; ``meant`` is the host it seems to name, if any."""

    def __init__(self, message: str, meant: str | None = None) -> None:
        super().__init__(message + (f': did you mean "{meant}"?' if meant else ""))
        self.meant = meant


def config_host(text: str, *, keep: str = "", written: str | None = None) -> str:
    """The canonical host of ``text`` as written in configuration, refusing anything that is not one.

    A URL (``https://pastebin.com``), a port (``api.x:8443``), a path (``api.x/v1``), user info
    (``me@api.x``), a query or a fragment would otherwise be read as some other host, or lose the
    part that mattered, and a deny or hook would silently do nothing. ``keep`` is a pattern prefix
    (``*.``) to put back in the suggestion, ``written`` the whole text to quote in the message.
    """
    stripped = text.strip()
    shown = repr(written if written is not None else text)
    what = _not_a_host(stripped)
    if what is not None:
        meant = _meant_host(stripped)
        raise HostSyntaxError(f"{shown} {what}", keep + meant if meant else None)
    host = normalize_host(stripped)
    if host is None:
        raise HostSyntaxError(f"{shown} is not a valid host name or IP address")
    return host


def _not_a_host(text: str) -> str | None:
    """What ``text`` carries besides a host (a phrase for the message), or None."""
    if "://" in text or without_scheme(text) is not None:
        return "is a URL, not a host"
    for char, what in (("/", "a path"), ("@", "user info"), ("?", "a query"), ("#", "a fragment")):
        if char in text:
            return f"carries {what}, not a host"
    port = "carries a port, not a host (rules apply to every port)"
    if text.startswith("["):
        return port if not text.endswith("]") else None
    return port if text.count(":") == 1 else None


def without_scheme(text: str) -> str | None:
    """``text`` after its ``scheme:/`` or ``scheme://`` (the slashes dropped); None if it has none."""
    scheme = _SCHEME.match(text)
    return text[scheme.end():].lstrip("/") if scheme is not None else None


def _meant_host(text: str) -> str | None:
    """The host a URL-ish ``text`` names, for a suggestion; None when there is none."""
    rest = without_scheme(text)
    try:
        parts: SplitResult = urlsplit("//" + (text if rest is None else rest))
        hostname = parts.hostname
    except ValueError:
        return None
    if not hostname:
        return None
    host = normalize_host(hostname)
    return host if host is not None and host != text else None


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
_LOW32 = 0xFFFFFFFF
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")             # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")     # RFC 8215 local-use prefixes
_NAT64_LOCAL_96 = ipaddress.IPv6Network("64:ff9b:1::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")            # ::a.b.c.d (deprecated, still routed by some stacks)
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT, RFC 2765)
_ISATAP_IIDS = (0x00005EFE, 0x02005EFE)                    # interface id ::5efe:a.b.c.d, any /64 prefix


def embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 addresses an IPv6 address carries and that a relay or translator may deliver to.

    Mapped, compatible and translated forms, NAT64 (RFC 6052 and RFC 8215), 6to4, Teredo (server
    and client, the client's bits inverted) and ISATAP. ``()`` means "embedded in a layout that
    cannot be read" (a local-use NAT64 prefix other than /96), which callers treat as non-public.
    """
    value = int(ip)
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip in _V4_COMPATIBLE or ip in _V4_TRANSLATED or ip in _NAT64 or ip in _NAT64_LOCAL_96:
        return (ipaddress.IPv4Address(value & _LOW32),)
    if ip in _NAT64_LOCAL:
        return ()
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    if (value >> 32) & _LOW32 in _ISATAP_IIDS:
        return (ipaddress.IPv4Address(value & _LOW32),)
    return None


def is_non_public(ip: IPAddress) -> bool:
    """Loopback, private, link-local (cloud metadata included), CGNAT, reserved or multicast.

    An IPv6 address that embeds IPv4 addresses is non-public when any of them is.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NON_PUBLIC_V6):
            return True
        embedded = embedded_v4(ip)
        return embedded is not None and (not embedded or any(is_non_public(a) for a in embedded))
    return any(ip in net for net in _NON_PUBLIC_V4)


def is_local_name(host: str) -> bool:
    """Names that always mean this machine, whatever DNS says."""
    return host == "localhost" or host.endswith(".localhost")
