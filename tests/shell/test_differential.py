"""Policy that holds: random requests through the running proxy, compared with what ``explain``
decides for the same request. What reached the upstream must be exactly what was allowed, with the
header edits named. Zero differences."""

import random
import socket
import ssl
from urllib.parse import quote

import pytest

from policyproxy.cli.commands import explain_decision
from policyproxy.policy.compile import compile_policy
from tests.helpers import settings

TOKEN = "ghp_DifferentialInjected000000000000001"
CONFIG = """
[permissions.d.network.domains]
"*" = "allow"
"denied.test" = "deny"
[permissions.d.network.mitm.hooks.write]
host = "api.github.com"
methods = ["POST", "PATCH"]
path_prefixes = ["/repos/myorg/", "pattern:/orgs/*/teams"]
query = { mode = ["fast", "pattern:sl*"] }
action = ["swap"]
[permissions.d.network.mitm.hooks.read]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/"]
headers = { "x-trace" = [] }
action = ["strip"]
[permissions.d.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
[permissions.d.network.mitm.actions.swap]
strip_request_headers = ["authorization", "cookie"]
[[permissions.d.network.mitm.actions.swap.inject_request_headers]]
name = "authorization"
secret_env_var = "DIFF_TOKEN"
prefix = "token "
"""
SEGMENTS = ["repos", "myorg", "other", "orgs", "acme", "teams", "x", "..", ".", "%2e%2e", "%2E", "%2F", "%6dyorg",
            "", "a%20b", "REPOS", "~u", "%41"]


def random_request(rng: random.Random, upstream) -> tuple[str, str, str, list[tuple[str, str]]]:
    scheme, host, port = rng.choice([("https", "api.github.com", upstream.tls_port),
                                     ("http", "upstream.test", upstream.plain_port),
                                     ("http", "denied.test", upstream.plain_port),
                                     ("http", "api.github.com", upstream.plain_port)])
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 5)))
    query = rng.choice(["", "mode=fast", "mode=slow", "mode=fast&mode=other", "mode=" + quote("sl w"), "x=1"])
    headers = [("Cookie", "c=1")] if rng.random() < 0.5 else []
    if rng.random() < 0.5:
        headers.append(("X-Trace", "t"))
    if rng.random() < 0.5:
        headers.append(("Authorization", "Bearer agent"))
    method = rng.choice(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"])
    url = f"{scheme}://{host}:{port}{path}" + (f"?{query}" if query else "")
    return method, url, path + (f"?{query}" if query else ""), headers


def send(proxy, method: str, url: str, target: str, headers: list[tuple[str, str]]) -> int:
    scheme, rest = url.split("://", 1)
    authority = rest.split("/", 1)[0]
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    try:
        if scheme == "https":
            raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            answer = raw.recv(4096)
            if not answer.startswith(b"HTTP/1.1 200"):
                return int(answer.split(b" ")[1])
            raw = ssl.create_default_context(cafile=str(proxy.ca)).wrap_socket(raw, server_hostname=authority.split(":")[0])
            line = f"{method} {target} HTTP/1.1\r\n"
        else:
            line = f"{method} {url.split('://')[0]}://{authority}{target} HTTP/1.1\r\n"
        raw.sendall(f"{line}Host: {authority}\r\n{head}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
        return int(answer.split(b" ")[1])
    finally:
        raw.close()


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, env={"DIFF_TOKEN": TOKEN})


def test_what_reaches_the_upstream_is_exactly_what_explain_allows(proxy, upstream, tmp_path):
    policy = compile_policy(settings(tmp_path, CONFIG))
    pins = [f"{h}:{p}:127.0.0.1" for h in ("api.github.com", "upstream.test", "denied.test")
            for p in (upstream.tls_port, upstream.plain_port)]
    rng = random.Random(20261125)
    differences = []
    for _ in range(300):
        method, url, target, headers = random_request(rng, upstream)
        expected = explain_decision(policy, method, url, [f"{k}: {v}" for k, v in headers], pins)
        before = len(upstream.requests)
        status = send(proxy, method, url, target, headers)
        reached = upstream.requests[before:]
        if not expected.allowed:
            if reached or status < 400:
                differences.append((method, url, "denied by explain but reached upstream", status))
            continue
        if len(reached) != 1 or status >= 400:
            differences.append((method, url, f"allowed by explain, status {status}, reached {len(reached)}"))
            continue
        seen = reached[0]
        seen_headers = {k.lower(): v for k, v in seen["headers"]}
        query = url.split("?", 1)[1] if "?" in url else ""
        if expected.path is not None and (seen["path"], seen["query"]) != (expected.path, query):
            differences.append((method, url, f"upstream saw {seen['path']}?{seen['query']}, explain {expected.path}"))
        for name in expected.edits.strip:
            if name in seen_headers and name not in expected.edits.injected_names:
                differences.append((method, url, f"{name} not stripped"))
        for name, secret in expected.edits.inject:
            if seen_headers.get(name) != secret.reveal():
                differences.append((method, url, f"{name} not injected"))
        if not expected.edits.inject and seen_headers.get("authorization", "Bearer agent") != "Bearer agent":
            differences.append((method, url, "authorization changed without a hook"))
    assert differences == []
