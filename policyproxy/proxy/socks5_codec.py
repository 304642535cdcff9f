"""SOCKS5 (RFC 1928) and username/password auth (RFC 1929), sans I/O.

Each ``parse_*`` takes the bytes received so far and returns ``None`` when more are needed, or the
parsed message and how many bytes it used; malformed input raises ``Socks5Error`` with the reply
code to send.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from policyproxy.proxy.target import is_bare_name

VERSION = 5
NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT, CMD_BIND, CMD_UDP_ASSOCIATE = 1, 2, 3
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, NETWORK_UNREACHABLE, HOST_UNREACHABLE = 0, 1, 2, 3, 4
CONNECTION_REFUSED, TTL_EXPIRED, COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = 5, 6, 7, 8


class Socks5Error(Exception):
    def __init__(self, message: str, reply: int = GENERAL_FAILURE) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True)
class ConnectRequest:
    command: int
    host: str      # a domain name as sent, or an IP literal
    port: int


def parse_greeting(buf: bytes) -> tuple[frozenset[int], int] | None:
    if len(buf) < 2:
        return None
    if buf[0] != VERSION:
        raise Socks5Error(f"not SOCKS5 (version byte {buf[0]})")
    count = buf[1]
    if count == 0:
        raise Socks5Error("greeting offers no authentication method")
    if len(buf) < 2 + count:
        return None
    return frozenset(buf[2:2 + count]), 2 + count


def parse_user_pass(buf: bytes) -> tuple[tuple[str, str], int] | None:
    if len(buf) < 2:
        return None
    if buf[0] != 1:
        raise Socks5Error(f"bad username/password version {buf[0]}")
    ulen = buf[1]
    if len(buf) < 2 + ulen + 1:
        return None
    plen = buf[2 + ulen]
    end = 3 + ulen + plen
    if len(buf) < end:
        return None
    try:
        user = buf[2:2 + ulen].decode()
        password = buf[3 + ulen:end].decode()
    except UnicodeDecodeError:
        raise Socks5Error("username or password is not UTF-8") from None
    return (user, password), end


def parse_request(buf: bytes) -> tuple[ConnectRequest, int] | None:
    if len(buf) < 5:
        return None
    version, command, reserved, atyp = buf[0], buf[1], buf[2], buf[3]
    if version != VERSION:
        raise Socks5Error(f"bad request version {version}")
    if reserved != 0:
        raise Socks5Error("reserved byte is not zero")
    if atyp == ATYP_IPV4:
        end = 4 + 4
        host = str(ipaddress.IPv4Address(buf[4:8])) if len(buf) >= end else ""
    elif atyp == ATYP_IPV6:
        end = 4 + 16
        host = str(ipaddress.IPv6Address(buf[4:20])) if len(buf) >= end else ""
    elif atyp == ATYP_DOMAIN:
        length = buf[4]
        if length == 0:
            raise Socks5Error("empty domain name", ADDRESS_NOT_SUPPORTED)
        end = 5 + length
        host = ""
        if len(buf) >= end:
            try:
                host = buf[5:end].decode("ascii")
            except UnicodeDecodeError:
                raise Socks5Error("domain name is not ASCII", ADDRESS_NOT_SUPPORTED) from None
            if ":" in host or not is_bare_name(host):
                # A port or whitespace in the name: the policy would read the bare host, the URL the raw name.
                raise Socks5Error("domain name must be a bare host name (no port, whitespace or control)",
                                  ADDRESS_NOT_SUPPORTED)
    else:
        raise Socks5Error(f"address type {atyp} is not supported", ADDRESS_NOT_SUPPORTED)
    if len(buf) < end + 2:
        return None
    (port,) = struct.unpack("!H", buf[end:end + 2])
    return ConnectRequest(command, host, port), end + 2


def method_reply(method: int) -> bytes:
    return bytes((VERSION, method))


def auth_reply(ok: bool) -> bytes:
    return bytes((1, 0 if ok else 1))


def reply(code: int, bound: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:
    address = ipaddress.ip_address(bound[0])
    atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
    return bytes((VERSION, code, 0, atyp)) + address.packed + struct.pack("!H", bound[1])
