"""Attack class: other prompt-carrying endpoints on the LLM hosts. With the default redaction
endpoints, a prompt must not leave unredacted because the agent picked another API of the same
provider: Anthropic's OpenAI SDK compatibility endpoint (``https://api.anthropic.com/v1/`` as an
OpenAI ``base_url``, so ``/v1/chat/completions`` on Anthropic's host), OpenAI's Moderations
(``input`` text) and Conversations (``items`` with message text)."""

from __future__ import annotations

import ssl

import httpx
import pytest

CONFIG = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
"""
EMAIL = "mallory.exfil@acme-corp.io"
AWS = "AKIAZ7PQ3LXRN4TW2KJD"
PROMPT = f"Mail {EMAIL} the key {AWS} please."


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def assert_not_sent(upstream, before: int) -> None:
    sent = upstream.requests[before:]
    assert sent, "the request never reached the upstream"
    for seen in sent:
        assert EMAIL not in seen["body"] and AWS not in seen["body"], seen["path"]
        assert "[[EMAIL_" in seen["body"], seen["body"]


def test_openai_sdk_on_anthropics_compatibility_endpoint_is_redacted(proxy, upstream, monkeypatch):
    openai = pytest.importorskip("openai")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    client = openai.OpenAI(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}/v1/", max_retries=0)
    before = len(upstream.requests)
    answer = client.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": PROMPT}])
    assert_not_sent(upstream, before)
    assert upstream.requests[before]["host"].startswith("api.anthropic.com")
    assert answer.choices[0].message.content == PROMPT   # restored for the client


@pytest.mark.parametrize(("host", "path", "body"), [
    ("api.anthropic.com", "/v1/chat/completions", {"model": "claude-x", "messages": [{"role": "user", "content": PROMPT}]}),
    ("api.openai.com", "/v1/moderations", {"model": "omni-moderation-latest", "input": PROMPT}),
    ("api.openai.com", "/v1/conversations", {"items": [{"type": "message", "role": "user", "content": PROMPT}]}),
    ("api.openai.com", "/v1/conversations/conv_1/items",
     {"items": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]}),
])
def test_prompt_carrying_endpoint_is_redacted(proxy, upstream, host, path, body):
    context = ssl.create_default_context(cafile=str(proxy.bundle))
    before = len(upstream.requests)
    with httpx.Client(proxy=proxy.url, verify=context, timeout=20) as client:
        answer = client.post(f"https://{host}:{upstream.tls_port}{path}", json=body)
    assert answer.status_code == 200, answer.text
    assert_not_sent(upstream, before)
