"""HTTP/2 to the client on intercepted hosts: curl --http2 and httpx (http2=True) through the proxy,
each stream decided, hooked and reported like an HTTP/1.1 request; a denied stream gets its 403 while
another stream on the same connection succeeds."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import statistics
import subprocess
import time
from typing import Any

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
    async def scenario() -> tuple[list[httpx.Response], list[tuple[Any, ...]]]:
        events: list[tuple[Any, ...]] = []
        async with running(tmp_path, CONFIG, env={"TEST_GH_TOKEN": TOKEN}, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com",), upstream.tls_port)) as server:
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status, d.path, o.connection_id,
                                                            o.protocol_version)))
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
    assert [e[4] for e in events if e[2] is not None] == ["2"] * 3   # network.protocol.version


REDACTION = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
"""
EMAIL, AWS = "dana.kowalski@acme-corp.io", "AKIAZ7PQ3LXRN4TW2KJD"
PROMPT = f"Mail {EMAIL} the key {AWS} please."


@pytest.fixture(scope="module")
def redacting(start_proxy) -> ProxyProcess:
    return start_proxy(REDACTION)


def h2_client(proxy: ProxyProcess, versions: list[str]) -> httpx.Client:
    """An HTTP/2 httpx client through ``proxy`` that records the HTTP version of every answer."""
    def record(response: httpx.Response) -> None:
        versions.append(response.http_version)

    return httpx.Client(http2=True, proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.ca)),
                        timeout=30, event_hooks={"response": [record]})


@pytest.mark.parametrize("chunk", [1, 5])
def test_openai_sdk_over_http2_streamed_chat_is_redacted_and_restored(redacting, upstream, chunk):
    openai = pytest.importorskip("openai")
    versions: list[str] = []
    client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0,
                           http_client=h2_client(redacting, versions))
    stream = client.chat.completions.create(model="gpt-x", stream=True, messages=[{"role": "user", "content": PROMPT}],
                                            extra_headers={"x-test-chunk": str(chunk)})
    content = "".join(event.choices[0].delta.content or "" for event in stream)
    assert versions == ["HTTP/2"]
    assert content == PROMPT   # restored as it streamed
    seen = upstream.last()["body"]
    assert EMAIL not in seen and AWS not in seen and "[[EMAIL_" in seen


def test_anthropic_over_http2_whole_answer_is_restored(redacting, upstream):
    versions: list[str] = []
    with h2_client(redacting, versions) as client:
        answer = client.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                             json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": PROMPT}]})
    assert (answer.status_code, versions) == (200, ["HTTP/2"])
    assert answer.json()["content"][0]["text"] == PROMPT
    assert EMAIL not in upstream.last()["body"]


def test_a_body_that_cannot_be_inspected_is_refused_on_its_stream(redacting, upstream):
    versions: list[str] = []
    before = len(upstream.requests)
    with h2_client(redacting, versions) as client:
        answer = client.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages", content=b"{not json",
                             headers={"content-type": "application/json"})
        after = client.get(f"https://api.anthropic.com:{upstream.tls_port}/fine")   # the same connection goes on
    assert versions == ["HTTP/2", "HTTP/2"]
    assert answer.status_code == 403 and answer.headers["x-proxy-error"] == "blocked-by-policy"
    assert "not valid JSON" in answer.text and after.status_code == 200
    assert [r["path"] for r in upstream.requests[before:]] == ["/fine"]


@pytest.mark.parametrize("size", [1, 3_000_000])
def test_large_bodies_both_ways_arrive_whole(proxy, upstream, size):
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    versions: list[str] = []
    with h2_client(proxy, versions) as client:   # past every flow-control window, both ways
        answer = client.post(f"https://api.github.com:{upstream.tls_port}/repos/myorg/blob", content=body)
    assert (answer.status_code, versions) == (200, ["HTTP/2"])
    assert answer.json()["body"].encode() == body   # the upstream echoes what it got: all of it came through


def test_http2_can_be_turned_off(start_proxy, upstream):
    proxy = start_proxy(CONFIG + "[permissions.t.network.mitm]\nhttp2 = false\n", env={"TEST_GH_TOKEN": TOKEN})
    versions: list[str] = []
    with h2_client(proxy, versions) as client:
        answer = client.get(f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    assert (answer.status_code, versions) == (200, ["HTTP/1.1"])


def test_small_answers_are_not_held_back_by_nagle(tmp_path, pki, upstream):
    """A head, its body and its end written apart on a Nagle socket cost a delayed ACK (40 ms on Linux)
    per answer; written together with TCP_NODELAY they do not."""
    async def scenario() -> float:
        async with running(tmp_path, CONFIG, env={"TEST_GH_TOKEN": TOKEN}, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com",), upstream.tls_port)) as server:
            trust = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
            proxy = f"http://127.0.0.1:{server.addresses['http'][1]}"
            async with httpx.AsyncClient(http2=True, proxy=proxy, verify=trust, timeout=20) as client:
                url = f"https://api.github.com:{upstream.tls_port}/repos/myorg/small"
                await client.get(url)
                took = []
                for _ in range(30):
                    started = time.perf_counter()
                    assert (await client.get(url)).status_code == 200
                    took.append(time.perf_counter() - started)
        return statistics.median(took) * 1000

    assert asyncio.run(scenario()) < 35


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_socks5_gets_the_hook_applied(proxy, upstream):
    result = subprocess.run(["curl", "-sS", "--max-time", "20", "--http2", "-i", "--socks5-hostname",
                             f"127.0.0.1:{proxy.socks_port}", "--cacert", str(proxy.ca), "-H", "Authorization: Bearer own",
                             f"https://api.github.com:{upstream.tls_port}/repos/myorg/socks"], capture_output=True, timeout=30)
    head, _, body = result.stdout.decode().partition("\r\n\r\n")   # no CONNECT answer over SOCKS5
    assert head.startswith("HTTP/2 200"), head + result.stderr.decode()
    seen = json.loads(body)
    assert dict((k.lower(), v) for k, v in seen["headers"])["authorization"] == f"Bearer {TOKEN}"


LIMITED = """
[permissions.l.network]
mode = "limited"
[permissions.l.network.domains]
"*" = "allow"
"""


@pytest.mark.parametrize(("method", "status"), [("GET", 200), ("HEAD", 200), ("POST", 403), ("DELETE", 403)])
def test_limited_mode_decides_each_stream_by_its_method(start_proxy, upstream, method, status):
    proxy = start_proxy(LIMITED)
    versions: list[str] = []
    before = len(upstream.requests)
    with h2_client(proxy, versions) as client:
        answer = client.request(method, f"https://api.openai.com:{upstream.tls_port}/v1/models", content=b"")
    assert (answer.status_code, versions) == (status, ["HTTP/2"])
    assert len(upstream.requests) - before == (1 if status == 200 else 0)
    if status == 403:
        assert answer.headers["x-proxy-error"] == "blocked-by-method-policy"
