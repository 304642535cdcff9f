"""The ClientHello SNI parser, without sockets: real hellos from OpenSSL (through memory BIOs),
every prefix, every fragmentation, hand-built malformed hellos, and fuzzed bytes."""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyproxy.tls.clienthello import ClientHello, MalformedHello, NotTls, parse_client_hello


def openssl_hello(server_name: str | None, maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> bytes:
    """The ClientHello OpenSSL sends for ``server_name``, captured from a memory BIO."""
    context = ssl.create_default_context()
    context.check_hostname = server_name is not None
    if server_name is None:
        context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def record(payload: bytes, content_type: int = 0x16, version: bytes = b"\x03\x01") -> bytes:
    return bytes([content_type]) + version + struct.pack("!H", len(payload)) + payload


def handshake(body: bytes, kind: int = 1) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def sni(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + struct.pack("!H", len(n)) + n for n in names)
    return extension(0, struct.pack("!H", len(entries)) + entries)


def hello_body(*extensions: bytes, session_id: bytes = b"", suites: bytes = b"\x13\x01",
               compression: bytes = b"\x00", with_extensions: bool = True, trailer: bytes = b"") -> bytes:
    body = b"\x03\x03" + bytes(32) + bytes([len(session_id)]) + session_id
    body += struct.pack("!H", len(suites)) + suites + bytes([len(compression)]) + compression
    if with_extensions:
        joined = b"".join(extensions)
        body += struct.pack("!H", len(joined)) + joined
    return body + trailer


def wire(body: bytes) -> bytes:
    return record(handshake(body))


def fragmented(message: bytes, size: int) -> bytes:
    return b"".join(record(message[i:i + size]) for i in range(0, len(message), size))


# ---- real hellos -----------------------------------------------------------------------------

@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_openssl_hello_names_its_server(maximum):
    assert parse_client_hello(openssl_hello("api.github.com", maximum)) == ClientHello("api.github.com")


def test_openssl_hello_without_sni():
    assert parse_client_hello(openssl_hello(None)) == ClientHello(None)


def test_every_prefix_of_a_real_hello_asks_for_more():
    data = openssl_hello("api.anthropic.com")
    for end in range(len(data)):
        assert parse_client_hello(data[:end]) is None, end


def test_bytes_after_the_hello_do_not_matter():
    data = openssl_hello("api.openai.com")
    assert parse_client_hello(data + b"\x17\x03\x03\x00\x05early") == ClientHello("api.openai.com")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 64, 100, 511])
def test_a_hello_fragmented_over_many_records(size):
    data = openssl_hello("api.github.com")
    message = data[5:]
    assert parse_client_hello(fragmented(message, size)) == ClientHello("api.github.com")


def test_a_hello_split_in_two_records_at_every_point():
    message = openssl_hello("api.github.com")[5:]
    for cut in range(1, len(message)):
        data = record(message[:cut]) + record(message[cut:])
        assert parse_client_hello(data) == ClientHello("api.github.com"), cut
        assert parse_client_hello(data[:-1]) is None, cut


# ---- hand-built hellos ------------------------------------------------------------------------

def test_a_minimal_hello_with_sni():
    assert parse_client_hello(wire(hello_body(sni(b"example.com")))) == ClientHello("example.com")


def test_no_extensions_block_means_no_sni():
    assert parse_client_hello(wire(hello_body(with_extensions=False))) == ClientHello(None)


def test_extensions_without_sni():
    assert parse_client_hello(wire(hello_body(extension(0x002B, b"\x02\x03\x04")))) == ClientHello(None)


def test_an_unknown_name_type_is_skipped_next_to_a_host_name():
    entries = b"\x07" + struct.pack("!H", 3) + b"xyz" + b"\x00" + struct.pack("!H", 5) + b"a.com"
    ext = extension(0, struct.pack("!H", len(entries)) + entries)
    assert parse_client_hello(wire(hello_body(ext))) == ClientHello("a.com")


def test_trailing_dot_and_case_are_returned_as_sent():
    assert parse_client_hello(wire(hello_body(sni(b"API.GitHub.com.")))) == ClientHello("API.GitHub.com.")


MALFORMED = {
    "duplicate_sni_extension": wire(hello_body(sni(b"a.com"), sni(b"b.com"))),
    "duplicate_other_extension": wire(hello_body(extension(5, b""), extension(5, b""))),
    "two_host_names": wire(hello_body(sni(b"a.com", b"b.com"))),
    "empty_name_list": wire(hello_body(extension(0, b"\x00\x00"))),
    "only_unknown_name_types": wire(hello_body(sni(b"a.com", name_type=9))),
    "empty_host_name": wire(hello_body(sni(b""))),
    "non_ascii_host_name": wire(hello_body(sni("gіthub.com".encode()))),
    "control_byte_in_name": wire(hello_body(sni(b"a.com\x00.evil"))),
    "space_in_name": wire(hello_body(sni(b"a .com"))),
    "name_list_length_past_extension": wire(hello_body(extension(0, b"\x00\x09\x00\x00\x01a"))),
    "bytes_after_name_list": wire(hello_body(extension(0, b"\x00\x04\x00\x00\x01a" + b"zz"))),
    "extension_length_past_block": wire(hello_body(b"\x00\x00\x00\x20abc")),
    "bytes_after_extensions": wire(hello_body(sni(b"a.com"), trailer=b"x")),
    "long_session_id": wire(hello_body(session_id=bytes(33))),
    "odd_cipher_suites": wire(hello_body(suites=b"\x13\x01\x13")),
    "no_cipher_suites": wire(hello_body(suites=b"")),
    "no_compression": wire(hello_body(compression=b"")),
    "truncated_body": record(handshake(b"\x03\x03" + bytes(10))),
    "server_hello": record(handshake(hello_body(), kind=2)),
    "alert_record_inside": record(handshake(hello_body(sni(b"a.com")))[:10]) + record(b"\x02\x28", 0x15),
    "sslv2_record_version": record(handshake(hello_body()), version=b"\x02\x00"),
    "zero_length_record": record(b""),
    "oversized_record": b"\x16\x03\x01" + struct.pack("!H", (1 << 14) + 1) + bytes((1 << 14) + 1),
    "hello_larger_than_limit": record(b"\x01\x01\x00\x01"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_hellos(case):
    with pytest.raises(MalformedHello):
        parse_client_hello(MALFORMED[case])


def test_the_size_limit_is_a_parameter():
    data = openssl_hello("api.github.com")
    with pytest.raises(MalformedHello):
        parse_client_hello(data, limit=100)


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", b"\x05\x01\x00", b"\x80\x2e\x01"])
def test_other_protocols_are_not_tls(data):
    with pytest.raises(NotTls):
        parse_client_hello(data)


def test_nothing_yet_asks_for_more():
    assert parse_client_hello(b"") is None


# ---- fuzz -------------------------------------------------------------------------------------

REAL = openssl_hello("api.github.com")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_after_a_handshake_byte_never_crashes(tail):
    try:
        result = parse_client_hello(b"\x16" + tail)
    except MalformedHello:
        return
    assert result is None or isinstance(result, ClientHello)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(REAL) - 1), st.integers(0, 255))
def test_one_changed_byte_of_a_real_hello_never_crashes(position, value):
    data = bytearray(REAL)
    data[position] = value
    try:
        result = parse_client_hello(bytes(data))
    except (MalformedHello, NotTls):
        return
    assert result is None or isinstance(result, ClientHello)
    if result is not None and result.server_name is not None:
        assert result.server_name.isascii() and result.server_name.isprintable()
