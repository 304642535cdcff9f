"""The real Codex CLI (``@openai/codex`` from tests/node) through policyproxy, against a local fake.

``codex exec`` runs with an isolated ``CODEX_HOME``, no login (a custom provider with ``env_key``),
``HTTPS_PROXY`` and ``CODEX_CA_CERTIFICATE`` pointing at the proxy, sandbox read-only, approvals never,
no retries. The fake upstream (tests/shell/fake_llm.py, ``x-test-shape: codex``) speaks the Responses
API the way Codex reads it, over SSE and over Codex's WebSocket transport, and echoes the last user
text: the fake must see placeholders only, Codex must print the original values.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.shell.test_llm_providers import audit, lines

CODEX = Path(__file__).resolve().parents[1] / "node" / "node_modules" / ".bin" / "codex"
PLANTED = {"email": "dana.kowalski@acme-corp.io", "aws": "AKIAZ7PQ3LXRN4TW2KJD"}
PROMPT = "Mail {email} the key {aws} today.".format(**PLANTED)
TIMEOUT = 90


def _codex_version() -> str | None:
    """``codex --version``, or None when the CLI or its platform binary is missing (unsupported arch)."""
    if not CODEX.exists():
        return None
    try:
        result = subprocess.run([str(CODEX), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


pytestmark = pytest.mark.skipif(_codex_version() is None,
                                reason="the Codex CLI is not installed or has no binary for this platform "
                                       "(npm install --prefix tests/node)")


def codex_config(base_url: str, *, websockets: bool, chunk: int = 3, tool: str | None = None,
                 pause: float = 0) -> str:
    """A ``$CODEX_HOME/config.toml`` for a custom Responses provider at the fake (what the README shows);
    ``http_headers`` tell the fake how to answer."""
    tool_header = (f', "x-test-codex-tool" = "{tool}"' if tool else "") + (f', "x-test-pause" = "{pause}"'
                                                                           if pause else "")
    return f"""
model = "gpt-5-codex"
model_provider = "fake"
analytics.enabled = false        # no ab.chatgpt.com
features.plugins = false         # no github.com / chatgpt.com plugin listing

[model_providers.fake]
name = "fake"
base_url = "{base_url}"
env_key = "FAKE_OPENAI_KEY"
wire_api = "responses"
supports_websockets = {str(websockets).lower()}
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 20000
http_headers = {{ "x-test-shape" = "codex", "x-test-chunk" = "{chunk}"{tool_header} }}
"""


def proxy_config(port: int, extra: str = "") -> str:
    return f"""
[permissions.codex.network.domains]
"api.openai.com" = "allow"
[permissions.codex.network.redaction]
{extra}
[gateway.routes]
openai = "https://api.openai.com:{port}"
"""


def codex_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """Only what Codex needs: no inherited proxy, CA or OpenAI variables from the test runner."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
            "FAKE_OPENAI_KEY": "sk-fake-codex-key", "LANG": "C.UTF-8", **extra}


def via_connect(proxy) -> dict[str, str]:
    """What ``policyproxy env`` exports that Codex reads: the HTTP proxy and the CA bundle."""
    return {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "CODEX_CA_CERTIFICATE": str(proxy.bundle)}


def fake_url(upstream) -> str:
    return f"https://api.openai.com:{upstream.tls_port}/v1"


def prepare(tmp_path: Path, base_url: str, websockets: bool, tool: str | None = None,
            pause: float = 0) -> tuple[Path, Path]:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(codex_config(base_url, websockets=websockets, tool=tool,
                                                              pause=pause))
    work = tmp_path / "work"
    work.mkdir()
    return home, work


def exec_args(work: Path, last: Path, prompt: str, sandbox: str = "read-only") -> list[str]:
    return [str(CODEX), "exec", "--skip-git-repo-check", "--ephemeral", "--sandbox", sandbox,
            "--color", "never", "--cd", str(work), "--output-last-message", str(last), prompt]


def run_codex(tmp_path: Path, env: dict[str, str], base_url: str, *, websockets: bool, prompt: str = PROMPT,
              tool: str | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    home, work = prepare(tmp_path, base_url, websockets, tool)
    last = tmp_path / "last.txt"
    # The tool runs `echo` only; outside Codex's sandbox (bubblewrap needs user namespaces, which a CI
    # container may not have).
    sandbox = "danger-full-access" if tool is not None else "read-only"
    result = subprocess.run(exec_args(work, last, prompt, sandbox), env=codex_env(home, env), cwd=work,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
    return result, last.read_text() if last.exists() else ""


def received(upstream, since: int) -> list[dict]:
    return upstream.requests[since:]


@pytest.fixture(scope="module")
def proxy(start_proxy, upstream):
    return start_proxy(proxy_config(upstream.tls_port))


def settled(proxy, before: int, count: int, path: str | None = None, wait: float = 15.0) -> list[dict]:
    """The audit records after line ``before`` once ``count`` of them (on ``path``, if given) are there
    (a connection's or a WebSocket channel's event is written when it closes, maybe after Codex exited),
    and any that follow soon."""
    def matching() -> list[dict]:
        return [r for r in audit(proxy, before, wait=0.5) if path is None or r.get("url.path") == path]

    deadline = time.monotonic() + wait
    while len(matching()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    return matching()


def assert_one_redacted_exchange(proxy, before: int, method: str, status: int,
                                 way: tuple[str, ...] = ("https_connect", "https_mitm")) -> dict:
    """Exactly the connection to the fake (``way[0]``, none through the gateway) and one decision on
    ``/v1/responses``, nothing else (no other host)."""
    records = settled(proxy, before, len(way))
    assert [(r["server.address"], r["network.transport.protocol"], r.get("url.path")) for r in records] == [
        ("api.openai.com", protocol, None) for protocol in way[:-1]] + [
        ("api.openai.com", way[-1], "/v1/responses")], records
    record = records[-1]
    assert record["http.request.method"] == method and record["http.response.status_code"] == status
    assert record["network.policy.decision"] == "allow" and record["network.policy.reason"] == "redacted"
    # the email and the key, once each; no false positive in Codex's 40 KB of instructions and tools
    assert record["redaction.count"] == 2 and record["redaction.detectors"] == {"email": 1, "aws_access_key": 1}
    assert record["gen_ai.provider.name"] == "openai" and record["gen_ai.request.model"] == "gpt-5-codex"
    assert record["gen_ai.usage.output_tokens"] == 21
    for value in PLANTED.values():
        assert value not in json.dumps(records)
    return record


def assert_redacted_turn(result: subprocess.CompletedProcess[str], last: str, seen: list[dict],
                         websockets: bool) -> None:
    """Codex printed the original values; the fake got one turn with placeholders only (over the
    WebSocket: the upgrade, the prewarm and the turn, with no HTTP fallback)."""
    assert result.returncode == 0, result.stderr
    assert last.strip() == PROMPT and result.stdout.strip() == PROMPT
    shape = [("GET", "/v1/responses"), ("WS", "/v1/responses"), ("WS", "/v1/responses")] if websockets \
        else [("POST", "/v1/responses")]
    assert [(r["method"], r["path"]) for r in seen] == shape
    user = json.loads(seen[-1]["body"])["input"][-1]["content"][0]["text"]
    assert user.startswith("Mail [[EMAIL_") and "the key [[AWS_ACCESS_KEY_" in user
    for value in PLANTED.values():
        assert value not in json.dumps(seen)


def test_sse_prompt_redacted_upstream_and_restored_in_codex_output(proxy, upstream, tmp_path):
    before, since = lines(proxy), len(upstream.requests)
    result, last = run_codex(tmp_path, via_connect(proxy), fake_url(upstream), websockets=False)
    seen = received(upstream, since)
    assert_redacted_turn(result, last, seen, websockets=False)
    body = json.loads(seen[0]["body"])
    assert body["stream"] is True and body["model"] == "gpt-5-codex"
    assert "250-30000 ms" in seen[0]["body"]   # Codex's own tool description goes out as written
    assert_one_redacted_exchange(proxy, before, "POST", 200)


def test_websocket_transport_redacted_and_restored(proxy, upstream, tmp_path):
    before, since = lines(proxy), len(upstream.requests)
    result, last = run_codex(tmp_path, via_connect(proxy), fake_url(upstream), websockets=True)
    seen = received(upstream, since)
    assert_redacted_turn(result, last, seen, websockets=True)
    handshake = {k.lower(): v for k, v in seen[0]["headers"]}
    assert handshake["openai-beta"].startswith("responses_websockets=")
    assert "permessage-deflate" in handshake.get("sec-websocket-extensions", "")   # offered on, as Codex asked
    prewarm, turn = (json.loads(r["body"]) for r in seen[1:])
    assert prewarm["type"] == turn["type"] == "response.create" and prewarm.get("generate") is False
    record = assert_one_redacted_exchange(proxy, before, "GET", 101)
    assert record["gen_ai.usage.input_tokens"] == 13   # the prewarm's zero and the turn's 13


class TestOtherPathsToTheFake:
    """Attack class: other ways to the same upstream are redacted the same - the gateway route as
    Codex's ``base_url`` (no proxy variables, no CA) and the SOCKS5 listener."""

    @pytest.mark.parametrize("websockets", [False, True], ids=["sse", "websocket"])
    def test_gateway_route_as_base_url(self, proxy, upstream, tmp_path, websockets):
        before, since = lines(proxy), len(upstream.requests)
        result, last = run_codex(tmp_path, {}, f"{proxy.url}/openai/v1", websockets=websockets)
        assert_redacted_turn(result, last, received(upstream, since), websockets)
        assert_one_redacted_exchange(proxy, before, "GET" if websockets else "POST", 101 if websockets else 200,
                                     way=("gateway",))

    def test_socks5_websocket(self, proxy, upstream, tmp_path):
        """Codex's WebSocket client honours ``ALL_PROXY=socks5h://``; its HTTP client (0.171) does not."""
        before, since = lines(proxy), len(upstream.requests)
        env = {"ALL_PROXY": f"socks5h://127.0.0.1:{proxy.socks_port}", "CODEX_CA_CERTIFICATE": str(proxy.bundle)}
        result, last = run_codex(tmp_path, env, fake_url(upstream), websockets=True)
        assert_redacted_turn(result, last, received(upstream, since), True)
        assert_one_redacted_exchange(proxy, before, "GET", 101, way=("socks5_tcp", "https_mitm"))


def test_refused_websocket_falls_back_to_sse_still_redacted(start_proxy, upstream, tmp_path):
    """``redaction.websocket = "refuse"``: the upgrade gets 426 and Codex takes HTTP and SSE at once."""
    proxy = start_proxy(proxy_config(upstream.tls_port, 'websocket = "refuse"'))
    before, since = lines(proxy), len(upstream.requests)
    result, last = run_codex(tmp_path, via_connect(proxy), fake_url(upstream), websockets=True)
    assert_redacted_turn(result, last, received(upstream, since), websockets=False)   # no upgrade reached it
    records = settled(proxy, before, 2, "/v1/responses")
    assert [(r["http.request.method"], r["http.response.status_code"]) for r in records] == [
        ("GET", 426), ("POST", 200)]
    assert records[1]["redaction.count"] == 2


class TestVanishingClient:
    """Attack class: Codex killed in the middle of a slow answer (SIGKILL, no close): one event for the
    turn, and the next Codex through the same proxy is served."""

    @pytest.mark.parametrize("websockets", [False, True], ids=["sse", "websocket"])
    def test_codex_killed_mid_stream(self, proxy, upstream, tmp_path, websockets):
        before, since = lines(proxy), len(upstream.requests)
        home, work = prepare(tmp_path / "slow", fake_url(upstream), websockets, pause=0.3)
        process = subprocess.Popen(exec_args(work, tmp_path / "slow.txt", PROMPT), cwd=work,
                                   env=codex_env(home, via_connect(proxy)), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not [r for r in received(upstream, since) if r["method"] == "POST"
                                                       or (r["method"] == "WS" and '"generate"' not in r["body"])]:
                time.sleep(0.05)
            time.sleep(1.5)   # a few events of the ~30 have been restored and sent to Codex
            assert process.poll() is None, "Codex finished before it could be killed"
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)
        records = settled(proxy, before, 1, "/v1/responses")
        assert len(records) == 1
        assert records[0]["http.response.status_code"] == (101 if websockets else 200)
        assert records[0]["redaction.count"] == 2
        assert not (tmp_path / "slow.txt").exists() or PLANTED["email"] not in (tmp_path / "slow.txt").read_text()
        before, since = lines(proxy), len(upstream.requests)
        result, last = run_codex(tmp_path / "again", via_connect(proxy), fake_url(upstream), websockets=websockets)
        assert_redacted_turn(result, last, received(upstream, since), websockets)
        assert_one_redacted_exchange(proxy, before, "GET" if websockets else "POST", 101 if websockets else 200)


def test_codex_not_trusting_the_ca_sends_nothing(proxy, upstream, tmp_path):
    """Attack class: a client that does not trust the proxy's CA. Codex keeps retrying ("waiting for
    network"); each attempt ends at the TLS handshake, reported as a deny, and the fake sees nothing."""
    before, since = lines(proxy), len(upstream.requests)
    home, work = prepare(tmp_path, fake_url(upstream), websockets=False)
    process = subprocess.Popen(exec_args(work, tmp_path / "last.txt", PROMPT), cwd=work,
                               env=codex_env(home, {"HTTPS_PROXY": proxy.url}), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        records: list[dict] = []
        while time.monotonic() < deadline and not any(
                r.get("network.policy.reason") == "tls_handshake_failed" for r in records):
            time.sleep(0.2)
            records = audit(proxy, before, wait=0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)   # the node wrapper and the codex binary it started
        process.communicate(timeout=10)
    failed = [r for r in records if r.get("network.transport.protocol") == "https_mitm"]
    assert failed and all(r["network.policy.decision"] == "deny" and r["server.address"] == "api.openai.com"
                          and r["network.policy.reason"] == "tls_handshake_failed" for r in failed)
    assert received(upstream, since) == []


def test_resumed_session_after_a_reload_gets_the_same_placeholders(start_proxy, upstream, tmp_path):
    """Attack class: reload in the middle. ``codex exec resume --last`` re-sends the history, the restored
    answer included, after a SIGHUP: every value is sent as the same placeholder again, never as itself."""
    proxy = start_proxy(proxy_config(upstream.tls_port))
    home, work = prepare(tmp_path, fake_url(upstream), websockets=False)
    env = codex_env(home, via_connect(proxy))
    since = len(upstream.requests)
    first = [a for a in exec_args(work, tmp_path / "first.txt", PROMPT) if a != "--ephemeral"]
    result = subprocess.run(first, env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0 and result.stdout.strip() == PROMPT, result.stderr
    proxy.config.write_text(proxy.config.read_text() + "\n# touched\n")
    proxy.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "reloaded" not in proxy.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reloaded" in proxy.logs()
    again = f"Again: {PLANTED['email']}"
    resume = [str(CODEX), "exec", "resume", "--last", "--skip-git-repo-check", "--output-last-message",
              str(tmp_path / "second.txt"), again]
    result = subprocess.run(resume, env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "second.txt").read_text().strip() == again
    bodies = [json.loads(r["body"]) for r in received(upstream, since)]
    assert len(bodies) == 2
    first_user = bodies[0]["input"][-1]["content"][0]["text"]
    history = [i for i in bodies[1]["input"] if i.get("type") == "message" and i["role"] in ("user", "assistant")]
    texts = ["".join(part.get("text", "") for part in item["content"]) for item in history]
    # the first prompt, the restored answer Codex kept (redacted again), the new prompt
    assert first_user in texts and texts.count(first_user) == 2
    email = first_user.split()[1]
    assert email.startswith("[[EMAIL_") and texts[-1] == f"Again: {email}"
    for body in bodies:
        for value in PLANTED.values():
            assert value not in json.dumps(body)


@pytest.mark.parametrize("websockets", [False, True], ids=["sse", "websocket"])
def test_tool_call_restored_for_codex_and_its_output_redacted_going_back(proxy, upstream, tmp_path, websockets):
    """The "model" asks Codex to run ``echo '<the user text, with placeholders>'``: Codex runs it with the
    values restored (unsandboxed: it only echoes), and sends the output back, where it is redacted again with
    the same placeholders; the final answer (the echoed output) is restored for the user."""
    before, since = lines(proxy), len(upstream.requests)
    result, last = run_codex(tmp_path, via_connect(proxy), fake_url(upstream), websockets=websockets,
                             tool="exec_command")
    assert result.returncode == 0, result.stderr
    assert f"echo 'Mail {PLANTED['email']} the key" in result.stderr   # the command Codex ran, restored
    assert last.rstrip().endswith(f"Output:\n{PROMPT}")   # the tool's output, as the final answer
    messages = [json.loads(r["body"]) for r in received(upstream, since) if r["method"] in ("POST", "WS")]
    turns = [m for m in messages if m.get("generate") is not False]
    assert len(turns) == 2
    user = turns[0]["input"][-1]["content"][0]["text"]
    assert user.startswith("Mail [[EMAIL_") and "[[AWS_ACCESS_KEY_" in user
    output = turns[1]["input"][-1]
    assert output["type"] == "function_call_output" and output["call_id"] == "call_1"
    assert output["output"].rstrip().endswith(f"Output:\n{user}")   # the very placeholders the prompt got
    calls = [i for i in turns[1]["input"] if i.get("type") == "function_call"]
    if websockets:   # only what is new after previous_response_id goes over the channel
        assert calls == [] and turns[1]["previous_response_id"] == "resp_1"
    else:            # the whole history, the restored call redacted again the same way
        assert json.loads(calls[0]["arguments"])["cmd"] == f"echo '{user}'"
    for message in messages:
        for value in PLANTED.values():
            assert value not in json.dumps(message)
    records = settled(proxy, before, 1 if websockets else 2, "/v1/responses")
    assert len(records) == (1 if websockets else 2)
    assert all(r["network.policy.reason"] == "redacted" for r in records)
    assert sum(r["redaction.count"] for r in records) >= 4
    for value in PLANTED.values():
        assert value not in json.dumps(records)


@pytest.mark.parametrize("websockets", [False, True], ids=["sse", "websocket"])
def test_a_hook_denying_the_endpoint_reaches_codex_as_an_error(start_proxy, upstream, tmp_path, websockets):
    """Hooks on api.openai.com allow only model listing: the turn is denied (403) before the fake."""
    proxy = start_proxy(proxy_config(upstream.tls_port) + """
[permissions.codex.network.mitm.hooks.models_only]
host = "api.openai.com"
methods = ["GET"]
path_prefixes = ["/v1/models"]
action = ["no_cookies"]
[permissions.codex.network.mitm.actions.no_cookies]
strip_request_headers = ["cookie"]
""")
    before, since = lines(proxy), len(upstream.requests)
    result, last = run_codex(tmp_path, via_connect(proxy), fake_url(upstream), websockets=websockets)
    assert result.returncode != 0
    # Codex prints the proxy's answer: the status and the rule that decided
    assert "unexpected status 403 Forbidden: policyproxy: POST /v1/responses on api.openai.com matches no hook" \
        in result.stderr
    assert PLANTED["email"] not in last
    assert received(upstream, since) == []   # the fake saw nothing, not even a handshake
    records = settled(proxy, before, 2 if websockets else 1, "/v1/responses")
    methods = [r["http.request.method"] for r in records]
    # over WebSocket: the upgrade is denied, Codex falls back to HTTP, which is denied too
    assert methods[-1] == "POST" and set(methods[:-1]) == ({"GET"} if websockets else set()), methods
    assert all(r["network.policy.decision"] == "deny" and r["network.policy.reason"] == "mitm_hook_denied"
               and r["http.response.status_code"] == 403 for r in records)
    for value in PLANTED.values():
        assert value not in json.dumps(records)


@pytest.mark.parametrize("websockets", [False, True], ids=["sse", "websocket"])
def test_policyproxy_run_gives_codex_the_proxy_and_keeps_the_real_key(upstream, pki, tmp_path, websockets):
    """``policyproxy run -- codex exec``: run exports HTTPS_PROXY and CODEX_CA_CERTIFICATE; the proxy
    injects the real provider key, which ``run`` withholds from Codex (it only has a stand-in)."""
    config = tmp_path / "policy.toml"
    config.write_text(proxy_config(upstream.tls_port) + """
[permissions.codex.network.mitm.hooks.responses]
host = "api.openai.com"
methods = ["POST", "GET"]
path_prefixes = ["/v1/responses"]
action = ["key"]
[permissions.codex.network.mitm.actions.key]
strip_request_headers = ["authorization"]
[[permissions.codex.network.mitm.actions.key.inject_request_headers]]
name = "authorization"
secret_env_var = "REAL_OPENAI_KEY"
prefix = "Bearer "
""")
    proxy_home = tmp_path / "proxy"
    proxy_home.mkdir()
    home, work = prepare(tmp_path, fake_url(upstream), websockets=websockets)
    last = tmp_path / "last.txt"
    env = {**codex_env(home, {}), "POLICYPROXY_HOME": str(proxy_home),
           "REAL_OPENAI_KEY": "sk-real-kept-by-the-proxy-0123456789"}
    since = len(upstream.requests)
    result = subprocess.run([sys.executable, "-m", "policyproxy", "run", "--config", str(config),
                             "--listen", "127.0.0.1:0", "--socks-listen", "127.0.0.1:0",
                             "--upstream-ca", str(pki[0]), "--resolve", f"api.openai.com:{upstream.tls_port}:127.0.0.1", "--", *exec_args(work, last, PROMPT)],
                            env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "withheld from the command (the proxy injects them): REAL_OPENAI_KEY" in result.stderr
    seen = received(upstream, since)
    assert_redacted_turn(result, last.read_text(), seen, websockets)
    headers = {k.lower(): v for k, v in seen[0]["headers"]}   # the POST, or the WebSocket handshake
    assert headers["authorization"] == "Bearer sk-real-kept-by-the-proxy-0123456789"
    records = [json.loads(line) for line in (proxy_home / "audit.jsonl").read_text().splitlines()]
    decided = [r for r in records if r.get("url.path") == "/v1/responses"]
    assert len(decided) == 1 and decided[0]["redaction.count"] == 2
    assert decided[0]["headers.injected"] == ["authorization"]
    assert "sk-real-kept" not in json.dumps(records)
