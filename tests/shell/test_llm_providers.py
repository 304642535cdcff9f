"""Providers end to end with their official SDKs: Google Gemini (generateContent, streamed as SSE and as a
JSON array), and OpenAI/Anthropic-compatible hosts reached through a gateway route or an intercepted
endpoint that names its API shape. The upstream never sees a planted value, the client gets every value
back, and the decision event carries the GenAI attributes (never the text)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

PLANTED = {"email": "dana.kowalski@acme-corp.io", "aws": "AKIAZ7PQ3LXRN4TW2KJD"}
PROMPT = "Mail {email} the key {aws} today.".format(**PLANTED)


def config(port: int) -> str:
    return f"""
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
endpoints = ["generativelanguage.googleapis.com/v1beta/models", "generativelanguage.googleapis.com/v1/models",
             {{ endpoint = "upstream.test/compat", api = "openai" }}]
[gateway.routes]
google = "https://generativelanguage.googleapis.com:{port}"
compat = {{ url = "https://upstream.test:{port}/compat", api = "openai" }}
zai = {{ url = "https://upstream.test:{port}/zai", api = "anthropic" }}
plain = "https://upstream.test:{port}/other"
"""


@pytest.fixture(scope="module")
def proxy(start_proxy, upstream):
    return start_proxy(config(upstream.tls_port))


def audit(proxy, count_before: int, wait: float = 5.0) -> list[dict]:
    """The audit records written after ``count_before`` lines (the writer thread flushes soon after)."""
    path = proxy.home / "audit.jsonl"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) > count_before and all(line.endswith("}") for line in lines):
            time.sleep(0.2)
            lines = path.read_text().splitlines()
            return [json.loads(line) for line in lines[count_before:]]
        time.sleep(0.05)
    return []


def lines(proxy) -> int:
    path = proxy.home / "audit.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def llm_record(records: list[dict]) -> dict:
    found = [r for r in records if "gen_ai.provider.name" in r]
    assert found, records
    return found[-1]


def assert_no_text_in(record: dict) -> None:
    shown = json.dumps(record)
    for value in PLANTED.values():
        assert value not in shown
    assert "Mail" not in shown and "today" not in shown   # no prompt or completion text, not even masked


def assert_upstream_saw_placeholders(upstream) -> None:
    body = upstream.last()["body"]
    for value in PLANTED.values():
        assert value not in body
    assert "[[EMAIL_" in body


class TestGemini:
    def client(self, proxy):
        genai = pytest.importorskip("google.genai")
        self.kept = genai.Client(api_key="k", http_options={"base_url": f"{proxy.url}/google", "timeout": 20_000})
        return self.kept

    def test_generate_content_redacted_restored_with_usage(self, proxy, upstream):
        types = pytest.importorskip("google.genai.types")
        before = lines(proxy)
        reply = self.client(proxy).models.generate_content(
            model="gemini-x", contents=PROMPT,
            config=types.GenerateContentConfig(system_instruction=f"Operator is {PLANTED['email']}"))
        assert reply.text == PROMPT
        assert reply.function_calls[0].args == {"echo": PROMPT}
        assert_upstream_saw_placeholders(upstream)
        sent = json.loads(upstream.last()["body"])
        assert PLANTED["email"] not in json.dumps(sent["systemInstruction"])
        record = llm_record(audit(proxy, before))
        assert record["gen_ai.provider.name"] == "gcp.gemini"
        assert record["gen_ai.operation.name"] == "generate_content"
        assert record["gen_ai.request.model"] == "gemini-x"
        assert record["gen_ai.response.model"] == "gemini-x-001"
        assert record["gen_ai.usage.input_tokens"] == 7 and record["gen_ai.usage.output_tokens"] == 9
        assert record["redaction.count"] >= 3
        assert_no_text_in(record)

    @pytest.mark.parametrize("chunk", [1, 3, 7])
    def test_stream_generate_content_sse_restores_split_placeholders(self, proxy, upstream, chunk):
        types = pytest.importorskip("google.genai.types")
        before = lines(proxy)
        stream = self.client(proxy).models.generate_content_stream(
            model="gemini-x", contents=PROMPT,
            config=types.GenerateContentConfig(http_options=types.HttpOptions(headers={"x-test-chunk": str(chunk)})))
        text, calls = "", []
        for part in stream:
            text += part.text or ""
            calls += part.function_calls or []
        assert text == PROMPT
        assert calls[0].args == {"echo": PROMPT}
        assert "alt=sse" in upstream.last()["query"]
        assert_upstream_saw_placeholders(upstream)
        record = llm_record(audit(proxy, before))
        assert record["gen_ai.usage.output_tokens"] == 9 and record["gen_ai.response.model"] == "gemini-x-001"

    def test_function_response_is_redacted(self, proxy, upstream):
        types = pytest.importorskip("google.genai.types")
        contents = [types.Content(role="user", parts=[types.Part.from_function_response(
            name="lookup", response={"owner": PLANTED["email"]})])]
        reply = self.client(proxy).models.generate_content(model="gemini-x", contents=contents)
        assert PLANTED["email"] not in upstream.last()["body"]
        assert PLANTED["email"] in reply.text   # restored in the model's echo

    def test_json_array_stream_is_restored(self, proxy, upstream):
        before = lines(proxy)
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
        answer = httpx.post(f"{proxy.url}/google/v1beta/models/gemini-x:streamGenerateContent", json=body,
                            headers={"x-test-chunk": "2"}, timeout=20)
        chunks = answer.json()
        text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
        assert text == PROMPT
        assert_upstream_saw_placeholders(upstream)
        assert llm_record(audit(proxy, before))["gen_ai.usage.input_tokens"] == 7


    def test_json_array_stream_is_not_buffered(self, proxy, upstream):
        """The first element reaches the client while the model is still writing (0.3 s between)."""
        body = {"contents": [{"role": "user", "parts": [{"text": "abcdefgh"}]}]}
        started = time.monotonic()
        with httpx.stream("POST", f"{proxy.url}/google/v1beta/models/g:streamGenerateContent", json=body,
                          headers={"x-test-chunk": "4", "x-test-pause": "0.3"}, timeout=20) as answer:
            pieces = answer.iter_raw()
            first = b""
            while b'"text":"abcd"' not in first:
                first += next(pieces)
            arrived = time.monotonic() - started
            rest = b"".join(pieces)
        assert first.startswith(b'[{"candidates"') and arrived < 0.75   # the three elements take 0.9 s
        assert [c["candidates"][0]["content"]["parts"][0].get("text") for c in json.loads(first + rest)][:2] == \
            ["abcd", "efgh"]


class TestCompatibleRoutes:
    """A route that names its API shape redacts everything under it, whatever its host and base path."""

    def test_openai_sdk_through_an_api_route(self, proxy, upstream):
        openai = pytest.importorskip("openai")
        before = lines(proxy)
        client = openai.OpenAI(api_key="k", base_url=f"{proxy.url}/compat/v1", max_retries=0)
        stream = client.chat.completions.create(model="deepseek-chat", stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": PROMPT}],
                                                extra_headers={"x-test-chunk": "3"})
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == PROMPT
        assert upstream.last()["path"] == "/compat/v1/chat/completions"
        assert_upstream_saw_placeholders(upstream)
        record = llm_record(audit(proxy, before))
        assert record["gen_ai.provider.name"] == "openai" and record["gen_ai.operation.name"] == "chat"
        assert record["gen_ai.request.model"] == "deepseek-chat"
        assert record["gen_ai.usage.input_tokens"] == 11 and record["gen_ai.usage.output_tokens"] == 22
        assert_no_text_in(record)

    def test_anthropic_sdk_through_an_api_route(self, proxy, upstream):
        anthropic = pytest.importorskip("anthropic")
        before = lines(proxy)
        client = anthropic.Anthropic(api_key="k", base_url=f"{proxy.url}/zai", max_retries=0)
        with client.messages.stream(model="glm-4.6", max_tokens=100,
                                    messages=[{"role": "user", "content": PROMPT}]) as stream:
            text = "".join(stream.text_stream)
        assert text == PROMPT
        assert_upstream_saw_placeholders(upstream)
        record = llm_record(audit(proxy, before))
        assert record["gen_ai.provider.name"] == "anthropic"
        assert record["gen_ai.request.model"] == record["gen_ai.response.model"] == "glm-4.6"
        assert record["gen_ai.usage.input_tokens"] == 1 and record["gen_ai.usage.output_tokens"] == 5

    def test_a_plain_route_keeps_its_meaning(self, proxy, upstream):
        """A string route to a non-LLM base path is not a redaction endpoint (today's meaning)."""
        answer = httpx.post(f"{proxy.url}/plain/anything", json={"note": PROMPT}, timeout=20)
        assert answer.status_code == 200
        assert PLANTED["email"] in upstream.last()["body"]

    def test_responses_non_streamed_usage(self, proxy, upstream):
        openai = pytest.importorskip("openai")
        before = lines(proxy)
        client = openai.OpenAI(api_key="k", base_url=f"{proxy.url}/compat/v1", max_retries=0)
        reply = client.responses.create(model="gpt-x", input=PROMPT)
        assert reply.output_text == PROMPT
        record = llm_record(audit(proxy, before))
        assert record["gen_ai.usage.input_tokens"] == 13 and record["gen_ai.usage.output_tokens"] == 21


def test_an_intercepted_endpoint_with_an_api_shape(proxy, upstream, monkeypatch):
    """``{ endpoint = "upstream.test/compat", api = "openai" }`` on an intercepted host."""
    openai = pytest.importorskip("openai")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    before = lines(proxy)
    client = openai.OpenAI(api_key="k", base_url=f"https://upstream.test:{upstream.tls_port}/compat/v1", max_retries=0)
    reply = client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": PROMPT}])
    assert reply.choices[0].message.content == PROMPT
    assert_upstream_saw_placeholders(upstream)
    record = llm_record(audit(proxy, before))
    assert record["gen_ai.provider.name"] == "openai" and record["network.transport.protocol"] == "https_mitm"
    assert record["gen_ai.request.model"] == record["gen_ai.response.model"] == "qwen"


def test_gemini_sdk_through_interception(proxy, upstream, monkeypatch):
    """google-genai with ``HTTPS_PROXY`` to the default Gemini endpoint host (pinned to the fake)."""
    genai = pytest.importorskip("google.genai")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    before = lines(proxy)
    client = genai.Client(api_key="k", http_options={
        "base_url": f"https://generativelanguage.googleapis.com:{upstream.tls_port}", "api_version": "v1beta"})
    text = "".join(part.text or "" for part in client.models.generate_content_stream(model="gemini-x", contents=PROMPT))
    assert text == PROMPT
    assert_upstream_saw_placeholders(upstream)
    record = llm_record(audit(proxy, before))
    assert record["network.transport.protocol"] == "https_mitm" and record["gen_ai.provider.name"] == "gcp.gemini"
