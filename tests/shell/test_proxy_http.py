"""The HTTP listener on real sockets, driven by curl: plain HTTP, tunnels, interception, denials."""

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

TOKEN = "ghp_injected_canary_42"
CONFIG = """
[permissions.t.network]
[permissions.t.network.domains]
"*" = "allow"
"denied.test" = "deny"
[permissions.t.network.mitm.hooks.github_write]
host = "api.github.com"
methods = ["POST", "GET"]
path_prefixes = ["/repos/myorg/"]
action = ["strip_auth", "inject_token"]
[permissions.t.network.mitm.actions.strip_auth]
strip_request_headers = ["authorization", "cookie"]
[permissions.t.network.mitm.actions.inject_token]
[[permissions.t.network.mitm.actions.inject_token.inject_request_headers]]
name = "authorization"
secret_env_var = "TEST_GH_TOKEN"
prefix = "Bearer "
[permissions.t.network.redaction]
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, env={"TEST_GH_TOKEN": TOKEN})


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    result = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True,
                            timeout=timeout + 5)
    # Decoded by hand: text mode would turn the CRLFs of the response head into LFs.
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode("utf-8", "replace"),
                                       result.stderr.decode("utf-8", "replace"))


def status_and_body(result: subprocess.CompletedProcess) -> tuple[int, str]:
    head, _, body = result.stdout.partition("\r\n\r\n")
    while head.startswith(("HTTP/1.1 200 Connection established", "HTTP/1.1 100 ", "HTTP/2 100")):
        head, _, body = body.partition("\r\n\r\n")
    return int(head.split()[1]), body


def header(result: subprocess.CompletedProcess, name: str) -> str | None:
    for line in result.stdout.split("\r\n"):
        key, _, value = line.partition(":")
        if key.lower() == name:
            return value.strip()
    return None


def test_plain_http_is_forwarded(proxy, upstream):
    result = curl("-i", "-x", proxy.url, f"http://upstream.test:{upstream.plain_port}/hello?x=1")
    status, body = status_and_body(result)
    assert status == 200
    seen = json.loads(body)
    assert (seen["path"], seen["query"], seen["host"]) == ("/hello", "x=1", f"upstream.test:{upstream.plain_port}")


def test_plain_http_keeps_request_bodies(proxy, upstream):
    result = curl("-i", "-x", proxy.url, "-X", "PUT", "--data-binary", "payload-123",
                  f"http://upstream.test:{upstream.plain_port}/put")
    assert json.loads(status_and_body(result)[1])["body"] == "payload-123"


def test_https_to_an_unhooked_host_is_a_tunnel(proxy, upstream, pki):
    # The client verifies the upstream's own certificate: nothing was intercepted.
    result = curl("-i", "-x", proxy.url, "--cacert", str(pki[0]), f"https://tunnel.test:{upstream.tls_port}/t")
    status, body = status_and_body(result)
    assert status == 200 and json.loads(body)["tls"] is True


def test_hooked_host_is_intercepted_and_the_hook_rewrites_credentials(proxy, upstream):
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "POST",
                  "-H", "Authorization: Bearer agent-own-token", "-H", "Cookie: session=1",
                  "--data", "{}", f"https://api.github.com:{upstream.tls_port}/repos/myorg/site/issues")
    status, body = status_and_body(result)
    assert status == 200, result.stdout + result.stderr
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert "cookie" not in headers
    # The client sees the upstream's answer, which echoes, but never the proxy's own view of the secret.
    assert header(result, "x-upstream") == "yes"


def test_the_client_never_sees_the_injected_secret_in_proxy_answers(proxy, upstream):
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), f"https://api.github.com:{upstream.tls_port}/other")
    assert TOKEN not in result.stdout + result.stderr
    assert TOKEN not in proxy.logs()


def test_unmatched_request_to_a_hooked_host_is_403_blocked_by_mitm_hook(proxy, upstream):
    before = len(upstream.requests)
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "DELETE",
                  f"https://api.github.com:{upstream.tls_port}/repos/myorg/site")
    assert status_and_body(result)[0] == 403
    assert header(result, "x-proxy-error") == "blocked-by-mitm-hook"
    assert len(upstream.requests) == before


@pytest.mark.parametrize("path", ["/repos/myorg/../other/x", "/repos/myorg/%2e%2e/other/x", "//repos/other/x"])
def test_path_tricks_never_get_the_secret(proxy, upstream, path):
    before = len(upstream.requests)
    result = curl("-i", "--path-as-is", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "POST",
                  f"https://api.github.com:{upstream.tls_port}{path}")
    assert status_and_body(result)[0] == 403
    assert len(upstream.requests) == before


def test_equivalent_path_is_forwarded_in_canonical_form(proxy, upstream):
    result = curl("-i", "--path-as-is", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "POST",
                  f"https://api.github.com:{upstream.tls_port}/repos/./myorg//x")
    assert status_and_body(result)[0] == 200
    assert upstream.last()["path"] == "/repos/myorg/x"


def test_deny_listed_host_gets_blocked_by_denylist(proxy):
    result = curl("-i", "-x", proxy.url, "https://denied.test/")
    assert "403" in result.stdout.split("\r\n")[0]
    assert header(result, "x-proxy-error") == "blocked-by-denylist"


def test_plain_http_denial_has_a_json_body(proxy):
    result = curl("-i", "-x", proxy.url, "http://denied.test/x")
    status, body = status_and_body(result)
    assert status == 403
    doc = json.loads(body)
    codex = {"status": "blocked", "host": "denied.test", "reason": "denied", "decision": "deny",
             "source": "profile", "protocol": "http", "port": 80, "message": "denied.test is denied by 'denied.test'"}
    assert {k: doc[k] for k in codex} == codex
    assert {k: doc[k] for k in doc if k not in codex} == {   # added: how to allow it (issue 12 part 4)
        "rule": "deny pattern 'denied.test'", "config_key": 'permissions.t.network.domains."denied.test"',
        "config_in": "the profile", "explain": "policyproxy explain --profile t GET http://denied.test/"}


def test_loopback_is_denied_without_allow_local_binding(proxy, upstream):
    result = curl("-i", "-x", proxy.url, f"http://127.0.0.1:{upstream.plain_port}/")
    assert status_and_body(result)[0] == 403 and json.loads(status_and_body(result)[1])["reason"] == "not_allowed_local"


def test_a_name_resolving_to_loopback_is_denied(proxy, upstream):
    # rebind.test is not pinned: the system resolver cannot find it, so use localhost, which is local by name.
    result = curl("-i", "-x", proxy.url, f"https://localhost:{upstream.tls_port + 1}/")
    assert header(result, "x-proxy-error") == "blocked-by-allowlist"


def test_host_header_that_differs_from_the_connect_target_is_400(proxy, upstream):
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-H", "Host: evil.test",
                  f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    assert status_and_body(result)[0] == 400


def test_many_requests_reuse_one_intercepted_connection(proxy, upstream):
    url = f"https://api.github.com:{upstream.tls_port}/repos/myorg/a"
    result = curl("-v", "-x", proxy.url, "--cacert", str(proxy.ca), url, url, url)
    assert result.stdout.count('"path": "/repos/myorg/a"') == 3
    assert "Re-using existing connection" in result.stderr or "Reusing existing" in result.stderr


def test_redaction_endpoint_masks_what_leaves_and_restores_what_comes_back(proxy, upstream):
    secret = "AKIAZ7PQ3LXRN4TW2KJD"
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"my key is {secret}"}]})
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "POST", "--data", body,
                  "-H", "Content-Type: application/json", f"https://api.anthropic.com:{upstream.tls_port}/v1/messages")
    status, answer = status_and_body(result)
    assert status == 200, result.stdout + result.stderr + proxy.logs()
    seen = upstream.last()
    assert secret not in seen["body"] and "[[AWS_ACCESS_KEY_" in seen["body"]
    assert json.loads(answer)["content"][0]["text"] == f"my key is {secret}"   # restored on its way back


def test_upstream_refusing_connections_is_502(proxy, upstream):
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "https://api.github.com:1/repos/myorg/x")
    assert status_and_body(result)[0] == 502
    assert "cannot connect" in result.stdout


@pytest.mark.parametrize("path", ["/v1/messages", "/repos/myorg/x"])
def test_expect_100_continue_is_answered_before_the_body_is_read(proxy, upstream, path):
    import time

    host = "api.anthropic.com" if path == "/v1/messages" else "api.github.com"
    start = time.monotonic()
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-H", "Expect: 100-continue",
                  "--expect100-timeout", "5", "-H", "Content-Type: application/json", "-X", "POST",
                  "--data", json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
                  f"https://{host}:{upstream.tls_port}{path}")
    assert status_and_body(result)[0] == 200
    assert time.monotonic() - start < 3   # not the 5 s curl waits when no 100 Continue comes
