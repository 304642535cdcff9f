"""Denials that say how to allow (issue 12 part 4), through a real ``serve -v`` with curl and raw sockets.

Each answer names the rule, the config key and an ``explain`` line; running that line gives the same
decision. A client that does not trust the CA gets an event and a console hint.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time

import pytest

from tests.shell.test_proxy_http import curl, header, status_and_body

pytestmark = pytest.mark.skipif(__import__("shutil").which("curl") is None, reason="curl is not installed")

CONFIG = """
[permissions.workspace.network]
[permissions.workspace.network.domains]
"api.github.com" = "allow"
"upstream.test" = "allow"
"denied.test" = "deny"
[permissions.workspace.network.mitm.hooks.reads]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/"]
action = ["strip"]
[permissions.workspace.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, extra=["-v"])


def explain(proxy, line: str) -> dict:
    argv = shlex.split(line)
    assert argv[:2] == ["policyproxy", "explain"]
    result = subprocess.run([sys.executable, "-m", "policyproxy", "explain", "--config", str(proxy.config),
                             *argv[2:]], capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout)


def raw_connect(proxy, authority: str) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.http_port), timeout=10) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_denied_connect_says_which_rule_what_to_change_and_how_to_reproduce(proxy):
    raw = raw_connect(proxy, "elsewhere.test:443").decode()
    head, _, body = raw.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 403 ")
    assert "x-proxy-error: blocked-by-allowlist" in head
    assert 'x-policyproxy-config-key: permissions.workspace.network.domains."elsewhere.test" = "allow"' in head
    assert body.splitlines() == [
        "policyproxy: elsewhere.test is not on the allowlist",
        "rule: no allow pattern matches elsewhere.test",
        'to allow, change permissions.workspace.network.domains."elsewhere.test" = "allow" in the profile',
        "reproduce: policyproxy explain --profile workspace GET https://elsewhere.test/"]
    assert explain(proxy, body.splitlines()[3].removeprefix("reproduce: "))["network.policy.reason"] == "not_allowed"


def test_curl_shows_the_remedy_headers_of_a_failed_connect(proxy):
    result = curl("-v", "-x", proxy.url, "https://denied.test/")
    assert "CONNECT tunnel failed, response 403" in result.stderr
    assert "x-policyproxy-explain: policyproxy explain --profile workspace GET https://denied.test/" in result.stderr


def test_a_plain_http_deny_adds_the_remedy_to_codex_json(proxy, upstream):
    result = curl("-i", "-x", proxy.url, f"http://denied.test:{upstream.plain_port}/p")
    status, body = status_and_body(result)
    doc = json.loads(body)
    assert status == 403 and doc["reason"] == "denied" and doc["status"] == "blocked"
    assert doc["config_key"] == 'permissions.workspace.network.domains."denied.test"'
    assert doc["explain"] == f"policyproxy explain --profile workspace GET http://denied.test:{upstream.plain_port}/"
    assert explain(proxy, doc["explain"])["network.policy.reason"] == "denied"


def test_an_in_tunnel_hook_deny_names_the_hooks_table(proxy, upstream):
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca), "-X", "DELETE",
                  f"https://api.github.com:{upstream.tls_port}/repos/x")
    status, body = status_and_body(result)
    assert status == 403 and header(result, "x-proxy-error") == "blocked-by-mitm-hook"
    lines = body.splitlines()
    assert lines[1:3] == ["rule: no hook on api.github.com matches",
                          "to allow, change permissions.workspace.network.mitm.hooks in the profile"]
    reproduced = explain(proxy, lines[3].removeprefix("reproduce: "))
    assert reproduced["network.policy.reason"] == "mitm_hook_denied"
    assert reproduced["hooks"] == [{"name": "reads", "matched": False, "why": "method DELETE is not one of GET"}]


def test_serve_v_prints_one_line_per_decision(proxy, upstream):
    curl("-x", proxy.url, f"http://upstream.test:{upstream.plain_port}/ok")
    raw_connect(proxy, "nowhere.test:8443")
    deadline = time.monotonic() + 5
    while "nowhere.test" not in proxy.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = proxy.logs()
    assert f"allow allowed http GET upstream.test:{upstream.plain_port}/ok -> 200 from 127.0.0.1" in logs
    deny = next(line for line in logs.splitlines() if "nowhere.test" in line)
    assert deny == ("deny not_allowed https_connect CONNECT nowhere.test:8443 -> 403 from 127.0.0.1 "
                    "(nowhere.test is not on the allowlist) rule: no allow pattern matches nowhere.test; change "
                    'permissions.workspace.network.domains."nowhere.test" = "allow" in the profile; '
                    "policyproxy explain --profile workspace GET https://nowhere.test:8443/")


def test_the_console_line_escapes_what_came_off_the_wire():
    from policyproxy.cli.render import decision_line
    from policyproxy.policy.model import Decision
    from policyproxy.reasons import Protocol, Reason, Source, Verdict

    decision = Decision(Verdict.DENY, Reason.MITM_HOOK_DENIED, Source.DEFAULT, "p", Protocol.HTTPS_MITM,
                        "a.test", 443, "GET", "/\x1b]0;pwned\x07\u202e", message="no hook for /\x1b[2J")
    line = decision_line(decision, 403, "127.0.0.1")
    assert line.isprintable() and "\\x1b]0;pwned" in line


def test_a_client_that_does_not_trust_the_ca_gets_an_event_and_a_hint(proxy, upstream):
    result = curl("-x", proxy.url, f"https://api.github.com:{upstream.tls_port}/repos/x")   # no --cacert
    assert result.returncode != 0
    deadline = time.monotonic() + 5
    while "policyproxy ca export" not in proxy.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "does not trust the policyproxy CA" in proxy.logs()
    assert "policyproxy ca export" in proxy.logs()
    failed: list = []
    while not failed and time.monotonic() < deadline + 5:   # the audit writer batches (up to 50 ms)
        events = [json.loads(line) for line in (proxy.home / "audit.jsonl").read_text().splitlines()]
        failed = [e for e in events if e.get("network.policy.reason") == "tls_handshake_failed"]   # lifecycle: none
        time.sleep(0.05)
    assert failed and failed[-1]["server.address"] == "api.github.com"
    assert failed[-1]["network.policy.decision"] == "deny"
