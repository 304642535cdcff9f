"""The server name (SNI) of a TLS ClientHello, sans I/O.

A byte tunnel the proxy does not intercept still sees the client's first flight. When it is a TLS
ClientHello, its server name says which host the client means, whatever name or IP literal the
CONNECT carried; the proxy decides again on that name (``proxy/listeners.py``).

``parse_client_hello`` takes the bytes received so far: ``None`` means more are needed, a
``ClientHello`` is the answer, and ``NotTls`` / ``MalformedHello`` say why there is none. The
ClientHello may span several TLS records (RFC 8446 section 5.1 allows fragmenting handshake
messages); everything that RFC 8446 and RFC 6066 forbid and that would let two readers disagree on
the name (duplicate extensions, two host names, bytes outside the lengths) is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass

HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SERVER_NAME = 0x0000
HOST_NAME = 0x00
MAX_RECORD = 1 << 14            # RFC 8446 5.1: TLSPlaintext.length MUST NOT exceed 2^14
MAX_HELLO = 64 * 1024           # bigger than any real ClientHello (post-quantum key shares are ~1.2 KB)


class NotTls(Exception):
    """The first bytes are not a TLS handshake record (another protocol inside the tunnel)."""


class MalformedHello(Exception):
    """A TLS handshake record that is not a well-formed ClientHello."""


@dataclass(frozen=True)
class ClientHello:
    server_name: str | None     # as sent (ASCII, A-labels), or None when the client sent no SNI


def parse_client_hello(data: bytes, limit: int = MAX_HELLO) -> ClientHello | None:
    """The ClientHello at the start of ``data``, or None if it is not complete yet."""
    if not data:
        return None
    if data[0] != HANDSHAKE:
        raise NotTls(f"first byte 0x{data[0]:02x} is not a TLS handshake record")
    message = _handshake_message(data, limit)
    return None if message is None else _parse_body(message)


def _handshake_message(data: bytes, limit: int) -> bytes | None:
    """Reassemble the first handshake message from consecutive handshake records."""
    payload = bytearray()
    offset = 0
    while True:
        if len(data) < offset + 5:
            return None
        content_type, major = data[offset], data[offset + 1]
        length = int.from_bytes(data[offset + 3:offset + 5], "big")
        if content_type != HANDSHAKE:
            raise MalformedHello(f"record of type {content_type} inside the ClientHello")
        if major != 3:
            raise MalformedHello(f"record version {major}.{data[offset + 2]} is not TLS")
        if length == 0 or length > MAX_RECORD:
            raise MalformedHello(f"handshake record of {length} bytes")
        end = offset + 5 + length
        if len(data) < end:
            return None
        payload += data[offset + 5:end]
        offset = end
        if len(payload) >= 4:
            if payload[0] != CLIENT_HELLO:
                raise MalformedHello(f"handshake message type {payload[0]} is not a ClientHello")
            size = int.from_bytes(payload[1:4], "big")
            if size > limit:
                raise MalformedHello(f"ClientHello of {size} bytes is larger than {limit}")
            if len(payload) >= 4 + size:
                return bytes(payload[4:4 + size])


class _Reader:
    """Length-prefixed fields of a TLS structure; every overrun is ``MalformedHello``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise MalformedHello(f"{what} runs past its enclosing length")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, length_size: int, what: str) -> bytes:
        return self.take(self.number(length_size, f"length of {what}"), what)

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


def _parse_body(body: bytes) -> ClientHello:
    reader = _Reader(body)
    reader.take(2 + 32, "version and random")
    if len(reader.vector(1, "session id")) > 32:
        raise MalformedHello("session id longer than 32 bytes")
    suites = reader.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise MalformedHello("cipher suites list is empty or odd")
    if not reader.vector(1, "compression methods"):
        raise MalformedHello("no compression method")
    if reader.done:
        return ClientHello(None)   # no extensions at all (TLS 1.0-1.2 allow it)
    extensions = _Reader(reader.vector(2, "extensions"))
    if not reader.done:
        raise MalformedHello("bytes after the extensions")
    seen: set[int] = set()
    name: str | None = None
    while not extensions.done:
        kind = extensions.number(2, "extension type")
        data = extensions.vector(2, f"extension {kind}")
        if kind in seen:
            raise MalformedHello(f"extension {kind} appears twice")
        seen.add(kind)
        if kind == SERVER_NAME:
            name = _server_name(data)
    return ClientHello(name)


def _server_name(data: bytes) -> str:
    outer = _Reader(data)
    names = _Reader(outer.vector(2, "server name list"))
    if not outer.done:
        raise MalformedHello("bytes after the server name list")
    if names.done:
        raise MalformedHello("empty server name list")
    found: str | None = None
    while not names.done:
        kind = names.number(1, "server name type")
        raw = names.vector(2, "server name")
        if kind != HOST_NAME:
            continue   # RFC 6066 leaves room for other name types; only host_name names a host
        if found is not None:
            raise MalformedHello("more than one host name")
        if not raw or any(b < 0x21 or b > 0x7E for b in raw):
            raise MalformedHello("host name is empty or not printable ASCII")
        found = raw.decode("ascii")
    if found is None:
        raise MalformedHello("server name list without a host name")
    return found
