import ipaddress

import pytest

from policyproxy.grammar.hosts import HostSyntaxError, config_host, is_local_name, is_non_public, normalize_host


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


# ---- IPv6 forms that carry an IPv4 address (issue 9.17) ---------------------------------------

def _teredo(server: str, client: str) -> str:
    """A Teredo address: 2001:0::/32, server in bits 32-63, the client's bits inverted in the last 32."""
    s, c = int(ipaddress.IPv4Address(server)), int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return str(ipaddress.IPv6Address((0x20010000 << 96) | (s << 64) | c))


# Each form with loopback, RFC 1918, link-local (cloud metadata) and a public address (last).
EMBEDDING_FORMS = {
    "ipv4-compatible ::a.b.c.d": lambda v4: f"::{v4}",
    "ipv4-mapped ::ffff:a.b.c.d": lambda v4: f"::ffff:{v4}",
    "SIIT ::ffff:0:a.b.c.d": lambda v4: f"::ffff:0:{v4}",
    "NAT64 64:ff9b::/96": lambda v4: f"64:ff9b::{v4}",
    "NAT64 local-use 64:ff9b:1::/96": lambda v4: f"64:ff9b:1::{v4}",
    "6to4 2002::/16": lambda v4: str(ipaddress.IPv6Address((0x2002 << 112) | (int(ipaddress.IPv4Address(v4)) << 80))),
    "Teredo client": lambda v4: _teredo("8.8.8.8", v4),
    "Teredo server": lambda v4: _teredo(v4, "8.8.4.4"),
    "ISATAP ::5efe:a.b.c.d": lambda v4: f"2606:4700::5efe:{v4}",
    "ISATAP ::200:5efe:a.b.c.d": lambda v4: f"2606:4700::200:5efe:{v4}",
}


@pytest.mark.parametrize("form", EMBEDDING_FORMS)
@pytest.mark.parametrize("v4", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254"])
def test_ipv6_embedding_a_non_public_ipv4_is_non_public(form, v4):
    address = ipaddress.ip_address(EMBEDDING_FORMS[form](v4))
    assert is_non_public(address), f"{form}: {address}"


@pytest.mark.parametrize("form", EMBEDDING_FORMS)
def test_ipv6_embedding_a_public_ipv4_stays_public(form):
    address = ipaddress.ip_address(EMBEDDING_FORMS[form]("8.8.8.8"))
    assert not is_non_public(address), f"{form}: {address}"


@pytest.mark.parametrize("address", ["64:ff9b:1:ab::1", "64:ff9b:1:0:808:8:800::"])
def test_a_local_use_nat64_prefix_in_an_unreadable_layout_is_non_public(address):
    assert is_non_public(ipaddress.ip_address(address))


def test_isatap_on_a_link_local_prefix_stays_non_public():
    assert is_non_public(ipaddress.ip_address("fe80::5efe:8.8.8.8"))


@pytest.mark.parametrize(("raw", "expected"), [
    ("127.1", "127.0.0.1"), ("1.2.3", "1.2.0.3"), ("1.65536", "1.1.0.0"), ("0x7f.1", "127.0.0.1"),
    ("0377.0377.0377.0377", "255.255.255.255"), ("4294967295", "255.255.255.255"), ("0", "0.0.0.0"),
    ("08", None), ("09.1.1.1", None), ("256.1", None), ("4294967296", None), ("1.2.65536", None),
    ("0400.1.1.1", None),
])
def test_numeric_ipv4_shorthands_read_as_inet_aton_does(raw, expected):
    assert normalize_host(raw) == expected


# ---- operator-written hosts (issue 9.10) --------------------------------------------------------

@pytest.mark.parametrize(("text", "meant"), [
    ("https://pastebin.com", "pastebin.com"),
    ("http://pastebin.com/", "pastebin.com"),
    ("HTTPS://API.X.COM:8443/v1?q=1", "api.x.com"),
    ("api.x.com:8443", "api.x.com"),
    ("api.x.com:", "api.x.com"),
    ("api.x.com/path", "api.x.com"),
    ("me@api.x.com", "api.x.com"),
    ("user:pw@api.x.com", "api.x.com"),
    ("api.x.com?q=1", "api.x.com"),
    ("api.x.com#frag", "api.x.com"),
    ("[::1]:8443", "::1"),
    ("10.0.0.5:22", "10.0.0.5"),
    ("https://", None),
    ("https:/pastebin.com", "pastebin.com"),
])
def test_config_hosts_refuse_urls_ports_and_paths_and_say_what_was_meant(text, meant):
    with pytest.raises(HostSyntaxError) as caught:
        config_host(text)
    assert caught.value.meant == meant
    assert text in str(caught.value)
    if meant:
        assert f'did you mean "{meant}"?' in str(caught.value)


@pytest.mark.parametrize(("text", "canonical"), [
    ("api.x.com", "api.x.com"), ("API.X.COM.", "api.x.com"), ("::1", "::1"), ("[::1]", "::1"),
    ("10.0.0.5", "10.0.0.5"), ("bücher.de", "xn--bcher-kva.de"),
])
def test_config_hosts_accept_bare_hosts(text, canonical):
    assert config_host(text) == canonical


def test_a_config_host_that_is_no_host_at_all_says_so():
    with pytest.raises(HostSyntaxError, match="not a valid host name"):
        config_host("a..b")


# ---- attack: Unicode spellings of names and addresses ------------------------------------------

@pytest.mark.parametrize(("raw", "canonical"), [
    ("ｌｏｃａｌｈｏｓｔ", "localhost"), ("ｐａｓｔｅｂｉｎ.com", "pastebin.com"), ("pastebin。com", "pastebin.com"),
    ("LOCALHOST.", "localhost"), ("127.1.", "127.0.0.1"), ("0X7F.1", "127.0.0.1"),
])
def test_unicode_and_case_spellings_fold_to_the_name_they_mean(raw, canonical):
    assert normalize_host(raw) == canonical


@pytest.mark.parametrize("raw", ["127.0.0.１", "127。0。0。1", "１２７.0.0.1", "127.0.0.1٠", "pastebin.com.."])
def test_ipv4_spelled_with_non_ascii_digits_or_dots_is_no_host(raw):
    """A resolver might read these as 127.0.0.1; they never parse, so they are denied as unparseable."""
    assert normalize_host(raw) is None
