"""Target reading, sans I/O: every form to a ``Routed`` target or a ``Refusal``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyproxy.proxy.target import (
    Refusal,
    Routed,
    parse_port,
    read_absolute,
    read_connect,
    read_gateway,
    read_in_tunnel,
    same_authority,
    split_authority,
)
from policyproxy.reasons import Protocol


@pytest.mark.parametrize("text", ["4²3", "٤٤٣", "４４３", "४43", "", "0", "65536", "+443", " 443", "443 ", "1e3",
                                  "000000443", "-1", "0x1bb"])
def test_ports_other_than_ascii_digits_in_range_are_refused(text):
    assert parse_port(text) is None


@pytest.mark.parametrize(("text", "port"), [("1", 1), ("443", 443), ("65535", 65535), ("0443", 443)])
def test_ascii_ports(text, port):
    assert parse_port(text) == port


@given(st.text(min_size=1, max_size=6))
def test_a_parsed_port_is_always_written_in_ascii_digits(text):
    port = parse_port(text)
    assert port is None or (text.isascii() and text.isdigit() and 0 < port < 65536)


@pytest.mark.parametrize(("authority", "expected"), [
    ("a.test:443", ("a.test", 443)),
    ("[::1]:8443", ("::1", 8443)),
    ("127.0.0.1:80", ("127.0.0.1", 80)),
])
def test_connect_authorities(authority, expected):
    assert read_connect(authority) == expected


@pytest.mark.parametrize("authority", ["a.test:4²3", "a.test:443:443", ":443", "a.test", "a.test:0", "a.test:65536",
                                       "::1:443", "[::1:443", "[::1]", "[::1]x:443", "[]:443", "a[b]:443",
                                       "[::1]]:443"])
def test_malformed_connect_authorities_are_400(authority):
    refusal = read_connect(authority)
    assert isinstance(refusal, Refusal) and refusal.status == 400
    assert repr(authority) in refusal.message


def test_split_authority_default_port():
    assert split_authority("a.test", 80) == ("a.test", 80)
    assert split_authority("[::1]", 443) == ("::1", 443)


def test_absolute_form():
    assert read_absolute("http://a.test:8080/p?q=1", "a.test:8080") == \
        Routed("a.test", 8080, "http", "/p", "q=1", Protocol.HTTP)
    assert read_absolute("http://A.test?x", None) == Routed("A.test", 80, "http", "/", "x", Protocol.HTTP)


@pytest.mark.parametrize(("raw", "host", "status"), [
    ("https://a.test/", None, 400),
    ("http://user:pw@a.test/", None, 400),
    ("http://a.test:4²3/", None, 400),
    ("http://a.test:80:80/", None, 400),
    ("http://:80/", None, 400),
    ("http://a.test/", "evil.test", 400),
    ("http://a.test/", "a.test:81", 400),
])
def test_absolute_form_refusals(raw, host, status):
    refusal = read_absolute(raw, host)
    assert isinstance(refusal, Refusal) and refusal.status == status


def test_gateway_routes():
    routes = {"openai": "https://api.openai.com/v1"}
    assert read_gateway("/openai/chat?x=1", routes) == \
        Routed("api.openai.com", 443, "https", "/v1/chat", "x=1", Protocol.GATEWAY, trusted=True)
    refusal = read_gateway("/nope/x", routes)
    assert isinstance(refusal, Refusal) and "/openai/" in refusal.message
    refusal = read_gateway("/openai/chat?x=1#&model=other", routes)
    assert isinstance(refusal, Refusal) and refusal.status == 400 and "#fragment" in refusal.message
    assert read_gateway("/openai/chat?x=%23", routes) == \
        Routed("api.openai.com", 443, "https", "/v1/chat", "x=%23", Protocol.GATEWAY, trusted=True)


def test_in_tunnel():
    assert read_in_tunnel("GET", "/a?b", "a.test", "a.test", 443, "https", False) == \
        Routed("a.test", 443, "https", "/a", "b", Protocol.HTTPS_MITM)
    assert read_in_tunnel("GET", "/a", "a.test", "a.test", 80, "http", True) == \
        Routed("a.test", 80, "http", "/a", "", Protocol.HTTP, True)


@pytest.mark.parametrize(("method", "raw", "host", "status"), [
    ("CONNECT", "evil.test:443", "a.test", 405),
    ("GET", "https://evil.test/", "a.test", 400),
    ("GET", "/a", None, 400),
    ("GET", "/a", "evil.test", 400),
    ("GET", "/a", "a.test:444", 400),
    ("GET", "/a", "user@a.test", 400),
    ("GET", "/a", "a.test:4²3", 400),
    ("GET", "/repos/myorg/a?mode=fast#&mode=x", "a.test", 400),   # a fragment: hooks and upstream would differ
    ("GET", "/repos/myorg/a#/../../other", "a.test", 400),
])
def test_in_tunnel_refusals(method, raw, host, status):
    refusal = read_in_tunnel(method, raw, host, "a.test", 443, "https", False)
    assert isinstance(refusal, Refusal) and refusal.status == status


def test_same_authority_spellings():
    assert same_authority("A.TEST", "a.test", 443, 443)
    assert same_authority("a.test.:443", "a.test", 443, 443)
    assert not same_authority("", "a.test", 443, 443)
    assert not same_authority("a.test/x", "a.test", 443, 443)
