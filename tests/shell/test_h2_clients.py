"""HTTP/2 to the client on intercepted hosts: curl --http2 and httpx (http2=True) through the proxy,
each stream decided, hooked and reported like an HTTP/1.1 request; a denied stream gets its 403 while
another stream on the same connection succeeds."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess

import httpx
import pytest

from tests.proxy.harness import pins, running
from tests.shell.proxy_process import ProxyProcess

TOKEN = "ghp_h2_injected_canary"
CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET", "POST"]
path_prefixes = ["/repos/myorg/"]
action = ["strip_auth", "inject_token"]
[permissions.t.network.mitm.actions.strip_auth]
strip_request_headers = ["authorization", "cookie"]
[permissions.t.network.mitm.actions.inject_token]
[[permissions.t.network.mitm.actions.inject_token.inject_request_headers]]
name = "authorization"
secret_env_var = "TEST_GH_TOKEN"
prefix = "Bearer "
"""


@pytest.fixture(scope="module")
def proxy(start_proxy) -> ProxyProcess:
    return start_proxy(CONFIG, env={"TEST_GH_TOKEN": TOKEN})


def curl(*args: str) -> tuple[str, str, str]:
    """(the inner answer's head, its body, stderr): the CONNECT answer is skipped."""
    result = subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30)
    out = result.stdout.decode("utf-8", "replace")
    _, _, inner = out.partition("\r\n\r\n")   # "HTTP/1.1 200 Connection established"
    head, _, body = inner.partition("\r\n\r\n")
    return head, body, result.stderr.decode("utf-8", "replace")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_through_interception_gets_the_hook_applied(proxy, upstream):
    result = curl("--http2", "-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-H", "Authorization: Bearer own",
                  "-H", "Cookie: a=1", "-X", "POST", "--data", '{"x": 1}',
                  f"https://api.github.com:{upstream.tls_port}/repos/myorg/site/issues")
    head, body, err = result
    assert head.startswith("HTTP/2 200"), head + err
    seen = json.loads(body)
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["authorization"] == f"Bearer {TOKEN}" and "cookie" not in headers
    assert seen["body"] == '{"x": 1}' and seen["method"] == "POST"
    assert "x-upstream: yes" in head


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_denied_stream_is_403_with_its_reason(proxy, upstream):
    before = len(upstream.requests)
    result = curl("--http2", "-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "DELETE",
                  f"https://api.github.com:{upstream.tls_port}/repos/myorg/site")
    head, body, err = result
    assert head.startswith("HTTP/2 403"), head + err
    assert "x-proxy-error: blocked-by-mitm-hook" in head and "matches no hook" in body
    assert len(upstream.requests) == before


def test_httpx_http2_one_connection_a_denied_stream_and_an_allowed_one(tmp_path, pki, upstream):
    async def scenario() -> tuple[list[httpx.Response], list[tuple[str, int | None, str | None, str | None]]]:
        events: list[tuple[str, int | None, str | None, str | None]] = []
        async with running(tmp_path, CONFIG, env={"TEST_GH_TOKEN": TOKEN}, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com",), upstream.tls_port)) as server:
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status, d.path, o.connection_id)))
            trust = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
            proxy = f"http://127.0.0.1:{server.addresses['http'][1]}"
            async with httpx.AsyncClient(http2=True, proxy=proxy, verify=trust, timeout=20) as client:
                base = f"https://api.github.com:{upstream.tls_port}"
                first = await client.get(f"{base}/repos/myorg/a")   # the connection is up: the next two share it
                pair = await asyncio.gather(client.delete(f"{base}/repos/myorg/b"),
                                            client.get(f"{base}/repos/myorg/c"))
            await asyncio.sleep(0.1)
        return [first, *pair], events

    answers, events = asyncio.run(scenario())
    assert [r.http_version for r in answers] == ["HTTP/2"] * 3
    assert [r.status_code for r in answers] == [200, 403, 200]
    assert answers[1].headers["x-proxy-error"] == "blocked-by-mitm-hook"
    seen = answers[2].json()
    assert seen["path"] == "/repos/myorg/c"
    assert dict((k.lower(), v) for k, v in seen["headers"])["authorization"] == f"Bearer {TOKEN}"
    streams = sorted(e[:3] for e in events if e[2] is not None)   # the tunnel's own event has no path
    assert streams == [("hook_matched", 200, "/repos/myorg/a"), ("hook_matched", 200, "/repos/myorg/c"),
                       ("mitm_hook_denied", 403, "/repos/myorg/b")]
    assert len({e[3] for e in events}) == 1   # one connection: one event per stream on it
