"""``policyproxy.sdk``: the anthropic and openai SDKs with ``http_client=policyproxy.sdk.client(...)``
against the TLS fake upstream, no proxy and no CA: the same policy (deny, hooks that strip and inject),
redaction with restore (streamed and not), and the same decision events in the audit log."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest

httpx2 = pytest.importorskip("httpx2")

PLANTED = {"email": "dana.kowalski@acme-corp.io", "aws": "AKIAZ7PQ3LXRN4TW2KJD"}
PROMPT = "Mail {email} the key {aws} today.".format(**PLANTED)
SECRET = "sk-injected-canary-5f2a"

CONFIG = """
default_permissions = "agent"
[permissions.agent.network]
allow_local_binding = true
[permissions.agent.network.domains]
"localhost" = "allow"
[permissions.agent.network.redaction]
endpoints = [{ endpoint = "localhost/v1", api = "anthropic" }]
[permissions.agent.network.mitm.hooks.llm]
host = "localhost"
methods = ["POST"]
path_prefixes = ["/v1/"]
action = ["use_key"]
[permissions.agent.network.mitm.actions.use_key]
strip_request_headers = ["x-api-key"]
[[permissions.agent.network.mitm.actions.use_key.inject_request_headers]]
name = "x-api-key"
secret_env_var = "SDK_TEST_KEY"
"""


@pytest.fixture
def setup(tmp_path, pki, upstream, monkeypatch):
    monkeypatch.setenv("SDK_TEST_KEY", SECRET)
    monkeypatch.setenv("POLICYPROXY_HOME", str(tmp_path))
    config = tmp_path / "policy.toml"
    config.write_text(CONFIG)
    context = ssl.create_default_context(cafile=str(pki[0]))
    return config, tmp_path / "audit.jsonl", context, f"https://localhost:{upstream.tls_port}"


def records(path, count: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return [json.loads(line) for line in path.read_text().splitlines()]
        time.sleep(0.05)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_upstream_saw_placeholders_and_the_key(upstream):
    seen = upstream.last()
    for value in PLANTED.values():
        assert value not in seen["body"]
    assert "[[EMAIL_" in seen["body"]
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["x-api-key"] == SECRET   # injected by the hook; the client's own key was stripped


def test_anthropic_sdk_streamed_and_not(setup, upstream):
    anthropic = pytest.importorskip("anthropic")
    from policyproxy import sdk
    config, audit, context, base = setup
    http = sdk.client(config=config, audit_log=audit, transport=httpx2.HTTPTransport(verify=context))
    client = anthropic.Anthropic(api_key="agent-key", base_url=base, http_client=http, max_retries=0)
    message = client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": PROMPT}])
    assert message.content[0].text == PROMPT and message.content[1].input == {"echo": PROMPT}
    assert_upstream_saw_placeholders_and_the_key(upstream)
    with client.messages.stream(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": PROMPT}],
                                extra_headers={"x-test-chunk": "3"}) as stream:
        assert "".join(stream.text_stream) == PROMPT
    assert_upstream_saw_placeholders_and_the_key(upstream)
    http.close()
    found = records(audit, 2)
    assert len(found) == 2
    for record in found:
        assert record["network.policy.hook"] == "llm" and record["headers.injected"] == ["x-api-key"]
        assert record["redaction.count"] == 2 and record["http.response.status_code"] == 200
        assert record["gen_ai.provider.name"] == "anthropic" and record["gen_ai.request.model"] == "claude-x"
    assert found[1]["gen_ai.usage.output_tokens"] == 5
    shown = audit.read_text()
    assert SECRET not in shown and PLANTED["email"] not in shown


def test_async_openai_sdk(setup, upstream):
    openai = pytest.importorskip("openai")
    from policyproxy import sdk
    config, audit, context, base = setup

    async def talk() -> str:
        http = sdk.async_client(config=config, audit_log=audit,
                                transport=httpx2.AsyncHTTPTransport(verify=context))
        client = openai.AsyncOpenAI(api_key="k", base_url=f"{base}/v1", http_client=http, max_retries=0)
        stream = await client.chat.completions.create(model="gpt-x", stream=True,
                                                      messages=[{"role": "user", "content": PROMPT}],
                                                      extra_headers={"x-test-chunk": "2"})
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await http.aclose()
        return text

    assert asyncio.run(talk()) == PROMPT
    assert_upstream_saw_placeholders_and_the_key(upstream)
    assert records(audit, 1)[-1]["gen_ai.request.model"] == "gpt-x"


def test_denied_host_gets_the_proxy_answer_and_nothing_is_sent(setup, upstream):
    anthropic = pytest.importorskip("anthropic")
    from policyproxy import sdk
    config, audit, context, _ = setup
    before = len(upstream.requests)
    http = sdk.client(config=config, audit_log=audit, transport=httpx2.HTTPTransport(verify=context))
    client = anthropic.Anthropic(api_key="k", base_url=f"https://127.0.0.1:{upstream.tls_port}", http_client=http,
                                 max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert "not on the allowlist" in str(info.value)
    assert len(upstream.requests) == before
    http.close()
    assert records(audit, 1)[-1]["network.policy.reason"] == "not_allowed"


def test_blocked_detector_is_not_sent(setup, upstream, tmp_path):
    anthropic = pytest.importorskip("anthropic")
    from policyproxy import sdk
    config, audit, context, base = setup
    config.write_text(CONFIG + "[permissions.agent.network.redaction.detectors]\nus_ssn = \"block\"\n")
    before = len(upstream.requests)
    http = sdk.client(config=config, audit_log=audit, transport=httpx2.HTTPTransport(verify=context))
    client = anthropic.Anthropic(api_key="k", base_url=base, http_client=http, max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "ssn 123-45-6789"}])
    assert len(upstream.requests) == before
    http.close()
    record = records(audit, 1)[-1]
    assert record["network.policy.reason"] == "pii_blocked" and "6789" not in json.dumps(record)


def test_google_genai_sdk_streamed(setup, upstream, tmp_path):
    genai = pytest.importorskip("google.genai")
    from policyproxy import sdk
    config, audit, context, base = setup
    config.write_text(CONFIG.replace('{ endpoint = "localhost/v1", api = "anthropic" }',
                                     '{ endpoint = "localhost/v1beta", api = "gemini" }')
                      .replace('path_prefixes = ["/v1/"]', 'path_prefixes = ["/v1beta/"]'))
    http = sdk.client(config=config, audit_log=audit, transport=httpx2.HTTPTransport(verify=context))
    client = genai.Client(api_key="k", http_options={"base_url": base, "api_version": "v1beta", "httpx_client": http})
    text = "".join(part.text or "" for part in client.models.generate_content_stream(model="gemini-x", contents=PROMPT))
    assert text == PROMPT
    assert_upstream_saw_placeholders_and_the_key(upstream)
    http.close()
    record = records(audit, 1)[-1]
    assert record["gen_ai.provider.name"] == "gcp.gemini" and record["gen_ai.usage.output_tokens"] == 9
