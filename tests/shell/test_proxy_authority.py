"""Attack class: malformed CONNECT authorities. Ports are ASCII digits only; anything else (another
digit class, a second port, an empty host, port 0 or 65536, bracket mistakes) is a 400 and a closed
connection, before any authentication, and the listener keeps serving."""

from __future__ import annotations

import socket

import pytest

CONFIG = """
[permissions.t.network]
proxy_url = "http://agent:s3cret@127.0.0.1:3128"
[permissions.t.network.domains]
"*" = "allow"
"""

AUTHORITIES = {
    "superscript_digit_utf8": "a.test:4²3",
    "arabic_indic_digits": "a.test:٤٤٣",
    "fullwidth_digits": "a.test:４４３",
    "devanagari_digit": "a.test:४43",
    "host_port_port": "a.test:443:443",
    "empty_host": ":443",
    "port_zero": "a.test:0",
    "port_65536": "a.test:65536",
    "no_port": "a.test",
    "empty_port": "a.test:",
    "signed_port": "a.test:+443",
    "spaced_port": "a.test: 443",
    "unbracketed_ipv6": "::1:443",
    "unclosed_bracket": "[::1:443",
    "bracket_without_port": "[::1]",
    "junk_after_bracket": "[::1]x:443",
    "bracket_in_host": "a[b].test:443",
}
# The same digits as single latin-1 bytes (how the head is decoded): ``"4²3".isdigit()`` is true and
# ``int()`` then fails, which hung the connection.
LATIN1 = {"superscript_two_latin1": b"a.test:4\xb23", "superscript_three_latin1": b"a.test:44\xb3",
          "superscript_one_latin1": b"a.test:\xb943"}


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def exchange_until_closed(port: int, data: bytes) -> tuple[bytes, bool]:
    """What comes back, and whether the proxy closed the connection (within 5 s)."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            return out, False
        except ConnectionResetError:
            pass
        return out, True


@pytest.mark.parametrize("attack", sorted(AUTHORITIES) + sorted(LATIN1))
def test_malformed_connect_authority_is_400_and_closed_before_auth(proxy, attack):
    authority = LATIN1.get(attack) or AUTHORITIES[attack].encode()
    answer, closed = exchange_until_closed(proxy.http_port, b"CONNECT " + authority + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]   # not 407: before any authentication
    assert closed
    ok, _ = exchange_until_closed(proxy.http_port, b"CONNECT a.test:443 HTTP/1.1\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 407")   # and the listener keeps serving


@pytest.mark.parametrize("url", ["http://a.test:4²3/", "http://a.test:٤٤٣/", "http://a.test:80:80/",
                                 "http://a.test:0/", "http://a.test:65536/", "http://:80/"])
def test_malformed_absolute_form_port_is_400(proxy, url):
    request = f"GET {url} HTTP/1.1\r\nProxy-Authorization: Basic YWdlbnQ6czNjcmV0\r\nConnection: close\r\n\r\n"
    answer, _ = exchange_until_closed(proxy.http_port, request.encode())
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]   # aiohttp itself refuses non-ASCII URLs
