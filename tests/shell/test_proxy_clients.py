"""Real clients through the proxy: SOCKS5 (curl), httpx, requests via env vars, the OpenAI and
Anthropic SDKs via HTTPS_PROXY, and streamed server-sent events."""

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests

from tests.shell.test_proxy_http import CONFIG, TOKEN, curl, status_and_body

PASS_THROUGH = """
[permissions.t.network.domains]
"*" = "allow"
"denied.test" = "deny"
[permissions.t.network.mitm.hooks.openai_models]
host = "api.openai.com"
methods = ["GET", "POST"]
path_prefixes = ["/v1/"]
action = ["use_project_key"]
[permissions.t.network.mitm.hooks.anthropic]
host = "api.anthropic.com"
methods = ["POST"]
path_prefixes = ["/v1/messages"]
action = ["use_project_key"]
[permissions.t.network.mitm.actions.use_project_key]
strip_request_headers = ["x-api-key"]
[[permissions.t.network.mitm.actions.use_project_key.inject_request_headers]]
name = "authorization"
secret_env_var = "PROJECT_KEY"
prefix = "Bearer "
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, env={"TEST_GH_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def sdk_proxy(start_proxy):
    return start_proxy(PASS_THROUGH, env={"PROJECT_KEY": "sk-project-canary"})


def trusting(cafile) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_socks5_tunnel_by_domain_name(proxy, upstream, pki):
    result = curl("-i", "--socks5-hostname", f"127.0.0.1:{proxy.socks_port}", "--cacert", str(pki[0]),
                  f"https://tunnel.test:{upstream.tls_port}/s")
    assert status_and_body(result)[0] == 200


@needs_curl
def test_socks5_hooked_host_is_intercepted_and_hooked(proxy, upstream):
    result = curl("-i", "--socks5-hostname", f"127.0.0.1:{proxy.socks_port}", "--cacert", str(proxy.ca),
                  "-X", "POST", "-H", "Authorization: Bearer mine", f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    status, body = status_and_body(result)
    assert status == 200
    assert dict((k.lower(), v) for k, v in json.loads(body)["headers"])["authorization"] == f"Bearer {TOKEN}"


@needs_curl
def test_socks5_plain_http_to_a_hooked_host_is_parsed_and_hooked(proxy, upstream):
    result = curl("-i", "--socks5-hostname", f"127.0.0.1:{proxy.socks_port}", "-X", "DELETE",
                  f"http://api.github.com:{upstream.plain_port}/repos/myorg/x")
    assert status_and_body(result)[0] == 403


@needs_curl
def test_socks5_denied_target_gets_reply_2(proxy):
    result = curl("--socks5-hostname", f"127.0.0.1:{proxy.socks_port}", "https://denied.test/")
    assert result.returncode == 97 and "(2)" in result.stderr


@needs_curl
def test_socks5_ip_literal_target(proxy, upstream):
    result = curl("--socks5", f"127.0.0.1:{proxy.socks_port}", f"http://127.0.0.1:{upstream.plain_port}/")
    assert result.returncode == 97  # loopback is denied: reply 2


def test_httpx_through_the_proxy(proxy, upstream):
    with httpx.Client(proxy=proxy.url, verify=trusting(proxy.bundle)) as client:
        response = client.post(f"https://api.github.com:{upstream.tls_port}/repos/myorg/h", json={"a": 1})
    assert response.status_code == 200
    assert json.loads(response.json()["body"]) == {"a": 1}


def test_requests_via_environment_variables(proxy, upstream, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    response = requests.get(f"https://api.github.com:{upstream.tls_port}/repos/myorg/r", timeout=20)
    assert response.status_code == 200
    denied = requests.delete(f"https://api.github.com:{upstream.tls_port}/repos/myorg/r", timeout=20)
    assert (denied.status_code, denied.headers["x-proxy-error"]) == (403, "blocked-by-mitm-hook")


def test_bundle_trusts_both_the_proxy_ca_and_system_roots(proxy):
    text = proxy.bundle.read_text()
    assert proxy.ca.read_text().strip() in text
    assert text.count("BEGIN CERTIFICATE") > 1


def _sdk_env(proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)


def test_openai_sdk_through_the_proxy(sdk_proxy, upstream, monkeypatch):
    openai = pytest.importorskip("openai")
    _sdk_env(sdk_proxy, monkeypatch)
    client = openai.OpenAI(api_key="sk-agent-own", base_url=f"https://api.openai.com:{upstream.tls_port}/v1",
                           max_retries=0)
    models = client.models.with_raw_response.list()
    assert models.status_code == 200
    seen = dict((k.lower(), v) for k, v in upstream.last()["headers"])
    assert seen["authorization"] == "Bearer sk-project-canary"


def test_anthropic_sdk_through_the_proxy(sdk_proxy, upstream, monkeypatch):
    anthropic = pytest.importorskip("anthropic")
    _sdk_env(sdk_proxy, monkeypatch)
    client = anthropic.Anthropic(api_key="sk-ant-agent-own", base_url=f"https://api.anthropic.com:{upstream.tls_port}",
                                 max_retries=0)
    raw = client.messages.with_raw_response.create(model="claude-x", max_tokens=5,
                                                   messages=[{"role": "user", "content": "hi"}])
    assert raw.status_code == 200
    seen = upstream.last()
    headers = dict((k.lower(), v) for k, v in seen["headers"])
    assert "x-api-key" not in headers and headers["authorization"] == "Bearer sk-project-canary"
    assert json.loads(seen["body"])["messages"][0]["content"] == "hi"
    denied = client.with_options(base_url=f"https://api.anthropic.com:{upstream.tls_port}/v2")
    with pytest.raises(anthropic.PermissionDeniedError):
        denied.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("intercepted", [True, False], ids=["intercepted", "tunnelled"])
def test_server_sent_events_arrive_event_by_event(proxy, sdk_proxy, upstream, pki, intercepted):
    if intercepted:
        via, url, verify = sdk_proxy, f"https://api.openai.com:{upstream.tls_port}/v1/sse", str(sdk_proxy.bundle)
    else:
        via, url, verify = proxy, f"https://tunnel.test:{upstream.tls_port}/sse", str(pki[0])
    delays = []
    with httpx.Client(proxy=via.url, verify=trusting(verify), timeout=20) as client, \
            client.stream("GET", url, params={"n": 6, "interval": 0.1}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                delays.append(time.time() - json.loads(line[6:])["sent"])
    assert len(delays) == 6
    # Each event reaches the client right after it was sent, not when the stream ends (0.6 s later).
    assert max(delays) < 0.05, delays


def test_sighup_reloads_and_a_broken_config_keeps_the_old_policy(start_proxy, upstream):
    proxy = start_proxy('[permissions.t.network.domains]\n"*" = "allow"\n')
    url = f"http://upstream.test:{upstream.plain_port}/x"
    with httpx.Client(proxy=proxy.url) as client:
        assert client.get(url).status_code == 200
        proxy.config.write_text('[permissions.t.network.domains]\n"*" = "allow"\n"upstream.test" = "deny"\n')
        proxy.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded" not in proxy.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(url).status_code == 403
        proxy.config.write_text("[permissions.t.network]\nmode = 'bogus'\n")
        proxy.signal(signal.SIGHUP)
        while "reload refused" not in proxy.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "permissions.t.network.mode" in proxy.logs()
        assert client.get(url).status_code == 403


def test_sigterm_stops_the_proxy(start_proxy):
    proxy = start_proxy('[permissions.t.network.domains]\n"*" = "allow"\n')
    proxy.signal(signal.SIGTERM)
    assert proxy.process.wait(15) == 0


def test_bad_upstream_certificate_is_502_naming_the_cause(start_proxy, upstream, tmp_path):
    # Without --upstream-ca the upstream's test certificate is untrusted: verification must fail loudly.
    proxy = start_proxy(CONFIG, env={"TEST_GH_TOKEN": TOKEN}, trust_upstream=False)
    with httpx.Client(proxy=proxy.url, verify=trusting(proxy.bundle)) as client:
        response = client.get(f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    assert response.status_code == 502
    assert "failed verification" in response.text


def test_non_loopback_listen_is_refused(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[permissions.t.network.domains]\n"*" = "allow"\n')
    result = subprocess.run([sys.executable, "-m", "policyproxy", "serve", "--config", str(config), "--listen", "0.0.0.0:0"],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "POLICYPROXY_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "not loopback" in result.stderr


NODE_DIR = Path(__file__).resolve().parent.parent / "node"
needs_node = pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "undici").exists(),
                                reason="node and tests/node/node_modules (npm install) are needed")


def node_fetch(proxy, method: str, url: str, body: str | None = None) -> dict:
    args = ["node", str(NODE_DIR / "fetch.mjs"), proxy.url, method, url] + ([body] if body is not None else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "NODE_EXTRA_CA_CERTS": str(proxy.ca)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_node
def test_node_fetch_intercepted_and_hooked(proxy, upstream):
    answer = node_fetch(proxy, "POST", f"https://api.github.com:{upstream.tls_port}/repos/myorg/n", "{}")
    assert answer["status"] == 200
    headers = dict((k.lower(), v) for k, v in json.loads(answer["body"])["headers"])
    assert headers["authorization"] == f"Bearer {TOKEN}"


@needs_node
def test_node_fetch_denied(proxy, upstream):
    answer = node_fetch(proxy, "DELETE", f"https://api.github.com:{upstream.tls_port}/repos/myorg/n")
    assert (answer["status"], answer["headers"]["x-proxy-error"]) == (403, "blocked-by-mitm-hook")


@needs_node
def test_node_fetch_plain_http(proxy, upstream):
    answer = node_fetch(proxy, "GET", f"http://upstream.test:{upstream.plain_port}/node")
    assert answer["status"] == 200 and json.loads(answer["body"])["path"] == "/node"


WS_CONFIG = CONFIG.replace('path_prefixes = ["/repos/myorg/"]', 'path_prefixes = ["/repos/myorg/", "/ws"]')


def test_websocket_upgrade_inside_an_intercepted_tunnel_passes_through(start_proxy, upstream):
    proxy = start_proxy(WS_CONFIG, env={"TEST_GH_TOKEN": TOKEN})

    async def talk() -> list:
        context = ssl.create_default_context(cafile=str(proxy.ca))
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"wss://api.github.com:{upstream.tls_port}/ws", proxy=proxy.url, ssl=context) as socket:
            await socket.send_str("hello")
            text = await socket.receive_str()
            await socket.send_bytes(b"abc")
            data = await socket.receive_bytes()
            return [text, data]

    assert asyncio.run(talk()) == ["echo:hello", b"cba"]
    headers = dict((k.lower(), v) for k, v in upstream.last()["headers"])
    assert headers["authorization"] == f"Bearer {TOKEN}"


def test_sigterm_drains_an_in_flight_intercepted_stream(start_proxy, sdk_proxy, upstream):
    proxy = start_proxy(PASS_THROUGH, env={"PROJECT_KEY": "k"})
    events = []
    with httpx.Client(proxy=proxy.url, verify=trusting(proxy.bundle), timeout=20) as client, \
            client.stream("GET", f"https://api.openai.com:{upstream.tls_port}/v1/sse",
                          params={"n": 8, "interval": 0.1}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line)
                if len(events) == 2:
                    proxy.signal(signal.SIGTERM)
    assert len(events) == 8
    assert proxy.process.wait(15) == 0


def test_upstream_proxy_chaining_honours_the_proxys_own_environment(start_proxy, upstream):
    outer = start_proxy('[permissions.o.network.domains]\n"*" = "allow"\n"upstream.test" = "deny"\n')
    chained = ('[permissions.i.network]\nallow_upstream_proxy = true\n'
               '[permissions.i.network.domains]\n"*" = "allow"\n')
    inner = start_proxy(chained, env={"HTTP_PROXY": outer.url, "HTTPS_PROXY": outer.url, "NO_PROXY": ""})
    with httpx.Client(proxy=inner.url, verify=trusting(inner.bundle), timeout=20) as client:
        plain = client.get(f"http://upstream.test:{upstream.plain_port}/chained")
        assert (plain.status_code, plain.headers["x-proxy-error"]) == (403, "blocked-by-denylist")
        assert plain.json()["reason"] == "denied"  # the outer proxy's answer, relayed
        ok = client.get(f"http://tunnel.test:{upstream.plain_port}/chained")
        assert ok.status_code == 200
    with socket.create_connection(("127.0.0.1", inner.http_port), 10) as raw:
        target = f"upstream.test:{upstream.tls_port}"
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 502") and b"upstream proxy refused the CONNECT (403)" in answer


def test_without_allow_upstream_proxy_the_environment_is_ignored(start_proxy, upstream):
    proxy = start_proxy('[permissions.i.network.domains]\n"*" = "allow"\n',
                        env={"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    with httpx.Client(proxy=proxy.url, timeout=20) as client:
        assert client.get(f"http://tunnel.test:{upstream.plain_port}/direct").status_code == 200


@needs_curl
def test_socks5_username_and_password_from_socks_url(start_proxy, upstream, pki):
    config = ('[permissions.t.network]\nsocks_url = "socks5://agent:s3cret@127.0.0.1:0"\n'
              '[permissions.t.network.domains]\n"*" = "allow"\n')
    proxy = start_proxy(config)
    url = f"https://tunnel.test:{upstream.tls_port}/auth"
    good = curl("-i", "-x", f"socks5h://agent:s3cret@127.0.0.1:{proxy.socks_port}", "--cacert", str(pki[0]), url)
    assert status_and_body(good)[0] == 200
    bad = curl("-x", f"socks5h://agent:wrong@127.0.0.1:{proxy.socks_port}", "--cacert", str(pki[0]), url)
    assert bad.returncode == 97
    anonymous = curl("-x", f"socks5h://127.0.0.1:{proxy.socks_port}", "--cacert", str(pki[0]), url)
    assert anonymous.returncode == 97


@needs_curl
def test_socks5_udp_associate_is_refused_with_reply_7(proxy):
    with socket.create_connection(("127.0.0.1", proxy.socks_port), 10) as raw:
        raw.sendall(b"\x05\x01\x00")
        assert raw.recv(2) == b"\x05\x00"
        raw.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        assert raw.recv(10)[:2] == b"\x05\x07"


@needs_curl
def test_http_listener_requires_proxy_authorization_from_proxy_url(start_proxy, upstream, pki):
    config = ('[permissions.t.network]\nproxy_url = "http://agent:pa%20ss@127.0.0.1:0"\n'
              '[permissions.t.network.domains]\n"*" = "allow"\n')
    proxy = start_proxy(config)
    assert "agent:***@" in "".join(proxy.output) and "pa%20ss" not in "".join(proxy.output)
    plain = f"http://tunnel.test:{upstream.plain_port}/auth"
    tls = f"https://tunnel.test:{upstream.tls_port}/auth"
    assert status_and_body(curl("-i", "-x", proxy.url, plain))[0] == 407
    assert "407" in curl("-i", "-x", proxy.url, "--cacert", str(pki[0]), tls).stdout
    assert status_and_body(curl("-i", "-x", f"http://agent:wrong@127.0.0.1:{proxy.http_port}", plain))[0] == 407
    authed = f"http://agent:pa%20ss@127.0.0.1:{proxy.http_port}"
    assert status_and_body(curl("-i", "-x", authed, plain))[0] == 200
    assert status_and_body(curl("-i", "-x", authed, "--cacert", str(pki[0]), tls))[0] == 200
    assert "proxy-authorization" not in {k.lower() for k, _ in upstream.last()["headers"]}
