"""Attack class: header aliases. A header the proxy strips, injects or keeps to itself must not reach
the upstream under another spelling: ``Proxy-*`` headers stop at the proxy (the hook matchers are
built on that: ``grammar.headers.forwarded``), and a name the profile strips or injects is removed in
every spelling a server may fold into it (``X_Api_Key`` reaches a WSGI, CGI or Django app as the
same ``HTTP_X_API_KEY`` as ``x-api-key``), so the agent cannot keep its own value next to the
operator's or smuggle one the operator strips."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

TOKEN = "header-alias-canary-7781"
CONFIG = """
[permissions.t.network]
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
action = ["strip", "inject"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["x-agent-key", "cookie"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "x-api-key"
secret_env_var = "HEADER_ALIAS_TOKEN"
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, env={"HEADER_ALIAS_TOKEN": TOKEN})


def curl_json(*args: str) -> dict:
    result = subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=25)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def names(seen: dict) -> list[str]:
    return [name.lower() for name, _ in seen["headers"]]


@pytest.mark.parametrize("name", ["Proxy-Foo", "Proxy-Authorization-Token", "PROXY-Secret"])
def test_proxy_prefixed_headers_never_reach_a_plain_upstream(proxy, upstream, name):
    seen = curl_json("-x", proxy.url, "-H", f"{name}: agent-value",
                     f"http://upstream.test:{upstream.plain_port}/echo")
    assert seen["path"] == "/echo"
    assert name.lower() not in names(seen)
    assert "agent-value" not in json.dumps(seen)


def test_proxy_prefixed_headers_never_reach_an_intercepted_upstream(proxy, upstream):
    seen = curl_json("-x", proxy.url, "--cacert", str(proxy.ca), "-H", "Proxy-Foo: agent-value",
                     f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    assert seen["path"] == "/repos/myorg/x"
    assert "proxy-foo" not in names(seen)


@pytest.mark.parametrize("alias", ["X_Agent_Key", "x_agent-key", "X-AGENT_KEY"])
def test_a_stripped_header_under_an_underscore_alias_is_stripped_too(proxy, upstream, alias):
    seen = curl_json("-x", proxy.url, "--cacert", str(proxy.ca), "-H", "X-Agent-Key: plain",
                     "-H", f"{alias}: aliased", f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    assert seen["path"] == "/repos/myorg/x"
    assert [n for n in names(seen) if n.replace("_", "-") == "x-agent-key"] == []


@pytest.mark.parametrize("alias", ["X_Api_Key", "x_api-key"])
def test_an_injected_header_has_no_agent_alias_next_to_it(proxy, upstream, alias):
    seen = curl_json("-x", proxy.url, "--cacert", str(proxy.ca), "-H", f"{alias}: agent-own-key",
                     f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    keys = [[n, v] for n, v in seen["headers"] if n.lower().replace("_", "-") == "x-api-key"]
    assert keys == [["x-api-key", TOKEN]]
