"""``grammar.headers.forwarded``: the one rule for which request headers reach the upstream."""

import pytest

from policyproxy.grammar.headers import forwarded, hop_by_hop, name_skeleton

BASE = (("Accept", "*/*"), ("X-Api", "1"))


@pytest.mark.parametrize(("headers", "kept"), [
    (BASE, BASE),
    ((("Connection", "close"), *BASE), BASE),
    ((("Connection", "X-Api"), *BASE), (("Accept", "*/*"),)),
    ((("connection", "keep-alive, x-api"), *BASE), (("Accept", "*/*"),)),
    ((("CONNECTION", " x-API ,,"), *BASE), (("Accept", "*/*"),)),
    ((("Connection", "keep-alive"), ("Connection", "accept"), *BASE), (("X-Api", "1"),)),
    ((("Proxy-Connection", "x-api"), *BASE), (("Accept", "*/*"),)),
    ((("Keep-Alive", "5"), ("TE", "trailers"), ("Trailer", "x"), ("Transfer-Encoding", "chunked"),
      ("Upgrade", "h2c"), *BASE), BASE),
    ((("Proxy-Authorization", "Basic x"), ("proxy-anything", "1"), *BASE), BASE),
    ((("Host", "evil.example"), ("Expect", "100-continue"), *BASE), BASE),
    ((("Authorization", "t"), ("Connection", "authorization")), ()),
])
def test_forwarded_keeps_exactly_what_travels_upstream(headers, kept):
    assert forwarded(headers) == kept


def test_hop_by_hop_lists_connection_tokens_in_lower_case():
    assert {"x-a", "x-b"} <= hop_by_hop([("Connection", "X-A"), ("connection", "x-b")])
    assert "x-a" not in hop_by_hop([("X-Connection", "x-a")])


@pytest.mark.parametrize(("a", "b"), [("X-GitHub-Api-Version", "x_github_api_version"), ("x-a", "X_A")])
def test_header_names_servers_fold_together(a, b):
    assert name_skeleton(a) == name_skeleton(b)
