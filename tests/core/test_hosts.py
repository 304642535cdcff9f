import ipaddress

import pytest

from policyproxy.grammar.hosts import is_local_name, is_non_public, normalize_host


@pytest.mark.parametrize(("raw", "canonical"), [
    ("api.github.com", "api.github.com"),
    ("API.GitHub.COM", "api.github.com"),
    ("api.github.com.", "api.github.com"),
    ("  api.github.com  ", "api.github.com"),
    ("api.github.com:443", "api.github.com"),
    ("[::1]", "::1"),
    ("[::1]:8443", "::1"),
    ("::1", "::1"),
    ("0:0:0:0:0:0:0:1", "::1"),
    ("[fe80::1%25eth0]", "fe80::1%eth0"),
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
    ("under_score.example", "under_score.example"),
])
def test_hosts_have_one_canonical_spelling(raw, canonical):
    assert normalize_host(raw) == canonical


@pytest.mark.parametrize("raw", ["", " ", ".", "a..b", "-a.com", "a-.com", "1.2.3.999", "foo.123",
                                 "[::1", "[zz::1]", "a b.com", "a/b.com", "x" * 64 + ".com", "a@b.com"])
def test_unusable_hosts_do_not_parse(raw):
    assert normalize_host(raw) is None


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "192.0.2.1", "198.18.0.1", "198.51.100.1", "203.0.113.1", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "::1", "::", "fc00::1", "fd00:ec2::254", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::a00:1", "2002:7f00:1::", "2001:db8::1",
])
def test_non_public_addresses(address):
    assert is_non_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "140.82.112.3", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert not is_non_public(ipaddress.ip_address(address))


def test_localhost_names_are_local():
    assert is_local_name("localhost")
    assert is_local_name("app.localhost")
    assert not is_local_name("localhost.example.com")


@pytest.mark.parametrize(("url", "host"), [
    ("https://api.anthropic.com", "api.anthropic.com"),
    ("http://127.0.0.1:11434/base", "127.0.0.1"),
    ("http://[::1]:8080", "::1"),
    ("https://user:pw@api.example.com", None),
    ("http://host:notaport", None),
    ("http:///path", None),
])
def test_url_host(url, host):
    from policyproxy.grammar.hosts import url_host

    assert url_host(url) == host
