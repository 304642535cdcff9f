"""GenAI attributes from requests and answers (pure), and the config of API shapes."""

import json

import pytest

from policyproxy.policy.compile import compile_policy
from policyproxy.policy.model import Request, Target
from policyproxy.reasons import Protocol
from policyproxy.redaction.genai import GenAI
from policyproxy.redaction.placeholders import Vaults
from policyproxy.redaction.restore import StreamRestorer, restore_body
from tests.core.test_config_load import only_error
from tests.helpers import settings


@pytest.mark.parametrize(("api", "host", "path", "provider", "operation", "model"), [
    (None, "api.anthropic.com", "/v1/messages", "anthropic", "chat", None),
    (None, "api.openai.com", "/v1/embeddings", "openai", "embeddings", None),
    (None, "api.openai.com", "/v1/completions", "openai", "text_completion", None),
    (None, "generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
     "gcp.gemini", "generate_content", "gemini-2.5-pro"),
    ("openai", "api.deepseek.com", "/chat/completions", "deepseek", "chat", None),
    ("anthropic", "api.z.ai", "/api/anthropic/v1/messages", "anthropic", "chat", None),
    (None, "API.OPENAI.COM.", "/v1/responses", "openai", "chat", None),
])
def test_describe(api, host, path, provider, operation, model):
    described = GenAI.describe(api, host, path)
    assert (described.provider, described.operation, described.request_model) == (provider, operation, model)


def test_usage_of_each_shape():
    anthropic = GenAI.describe(None, "api.anthropic.com", "/v1/messages")
    anthropic.observe({"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 5}}})
    anthropic.observe({"type": "message_delta", "usage": {"output_tokens": 3}})
    anthropic.observe({"type": "message_delta", "usage": {"output_tokens": 8}})
    assert anthropic.attributes() == {"gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
                                      "gen_ai.response.model": "claude-x", "gen_ai.usage.input_tokens": 5,
                                      "gen_ai.usage.output_tokens": 8}
    chat = GenAI.describe(None, "api.openai.com", "/v1/chat/completions")
    chat.request({"model": "gpt-x", "messages": []})
    chat.observe({"model": "gpt-x-2025", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 4}})
    assert (chat.request_model, chat.response_model, chat.input_tokens, chat.output_tokens) == \
        ("gpt-x", "gpt-x-2025", 2, 4)
    responses = GenAI.describe(None, "api.openai.com", "/v1/responses")
    responses.observe({"type": "response.completed", "response": {"model": "m", "usage": {
        "input_tokens": 9, "output_tokens": 1}}})
    assert (responses.response_model, responses.input_tokens, responses.output_tokens) == ("m", 9, 1)
    gemini = GenAI.describe(None, "generativelanguage.googleapis.com", "/v1beta/models/g:generateContent")
    gemini.observe([{"modelVersion": "g-1", "usageMetadata": {"promptTokenCount": 4}},
                    {"usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6}}])
    assert (gemini.response_model, gemini.input_tokens, gemini.output_tokens) == ("g-1", 4, 6)


def test_hostile_usage_values_are_ignored():
    """Negative, boolean, float or string counts and oversized model names never reach the event."""
    described = GenAI.describe(None, "api.openai.com", "/v1/chat/completions")
    described.observe({"model": "x" * 201, "usage": {"prompt_tokens": -1, "completion_tokens": True}})
    described.observe({"usage": {"input_tokens": 1.5, "output_tokens": "7"}})
    assert described.attributes() == {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat"}


def test_observer_sees_stream_events_without_buffering():
    seen = []
    stream = StreamRestorer(Vaults().for_scope("s"), observe=seen.append)
    stream.feed(b'data: {"type":"message_delta","usage":{"output_tokens":3}}\n\n')
    assert seen == [{"type": "message_delta", "usage": {"output_tokens": 3}}]   # as soon as the event is whole


def gemini_chunk(text, final=False):
    candidate = {"index": 0, "content": {"role": "model", "parts": [{"text": text}]}}
    if final:
        candidate["finishReason"] = "STOP"
    return {"candidates": [candidate]}


@pytest.mark.parametrize("size", [1, 2, 5, 9])
def test_gemini_sse_placeholder_split_across_chunks(size):
    vault = Vaults().for_scope("s")
    token = vault.placeholder("email", "a@b.io")
    text = f"mail {token} now"
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    stream = StreamRestorer(vault)
    raw = b"".join(f"data: {json.dumps(gemini_chunk(p, i == len(parts) - 1))}\r\n\r\n".encode()
                   for i, p in enumerate(parts))
    out = stream.feed(raw) + stream.close()
    events = [json.loads(block.removeprefix(b"data: ")) for block in out.split(b"\r\n\r\n") if block]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == "mail a@b.io now"
    array = json.loads(restore_body(json.dumps([gemini_chunk(p) for p in parts]).encode(), vault))
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in array) == "mail a@b.io now"


ROUTED = """
[permissions.p.network.domains]
"*" = "allow"
[permissions.p.network.redaction]
endpoints = [{ endpoint = "api.deepseek.com/v1", api = "openai" }, "api.example.com/llm"]
[gateway.routes]
zai = { url = "https://api.z.ai/api/anthropic", api = "anthropic" }
ollama = "http://127.0.0.1:11434"
"""


def test_api_shapes_reach_the_decision(tmp_path):
    policy = compile_policy(settings(tmp_path, ROUTED))
    decision = policy.decide(Target("api.z.ai", 443, Protocol.GATEWAY, trusted=True),
                             Request("POST", "/api/anthropic/v1/messages", "", ()))
    assert decision.redaction is not None and decision.redaction.api == "anthropic"
    decision = policy.decide(Target("api.deepseek.com", 443, Protocol.HTTPS_MITM),
                             Request("POST", "/v1/chat/completions", "", ()))
    assert decision.redaction is not None and decision.redaction.api == "openai"
    decision = policy.decide(Target("api.example.com", 443, Protocol.HTTPS_MITM), Request("POST", "/llm", "", ()))
    assert decision.redaction is not None and decision.redaction.api is None
    # The api route's base path is not an LLM path on other routes.
    decision = policy.decide(Target("127.0.0.1", 11434, Protocol.GATEWAY, trusted=True),
                             Request("POST", "/api/anthropic/v1/other", "", ()))
    assert decision.redaction is None


@pytest.mark.parametrize(("text", "message"), [
    ('[gateway.routes]\nx = { url = "https://h.io", api = "cohere" }',
     "config.toml:4: gateway.routes.x.api must be one of anthropic, openai, gemini, got 'cohere'"),
    ('[gateway.routes]\nx = { api = "openai" }', "gateway.routes.x needs url"),
    ('[gateway.routes]\nx = { url = "https://h.io", api = "openai", key = 1 }', "key"),
    ('[gateway.routes]\nx = { url = "https://h.io", api = "openai" }\ny = { url = "https://h.io", api = "gemini" }',
     "route 'x' has the same url"),
    ('[permissions.p.network.redaction]\nendpoints = [{ endpoint = "h.io/v1", api = "x" }]', "must be one of"),
    ('[permissions.p.network.redaction]\nendpoints = [{ api = "openai" }]', "needs endpoint"),
    ('[permissions.p.network.redaction]\nendpoints = [3]', 'must be a "host/path-prefix" string'),
])
def test_api_shape_errors_name_the_key(tmp_path, text, message):
    base = '[permissions.p.network.domains]\n"*" = "allow"\n'
    assert message in only_error(tmp_path, base + text)


def test_an_api_route_does_not_make_connect_traffic_to_its_host_an_endpoint(tmp_path):
    """Attack class: other paths to the same host. A local route with ``api`` redacts what goes
    through the route; a CONNECT or plain request to a dev server on the same host is not inspected."""
    text = ROUTED + '[gateway.routes.local]\nurl = "http://127.0.0.1:11434"\napi = "openai"\n'
    policy = compile_policy(settings(tmp_path, text.replace('"*" = "allow"', '"*" = "allow"\n"127.0.0.1" = "allow"')))
    routed = policy.decide(Target("127.0.0.1", 11434, Protocol.GATEWAY, trusted=True),
                           Request("POST", "/v1/chat/completions", "", ()))
    assert routed.redaction is not None and routed.redaction.api == "openai"
    other = policy.decide(Target("127.0.0.1", 8000, Protocol.HTTP, trusted=True), Request("POST", "/form", "", ()))
    assert other.redaction is None
    assert not policy.decide(Target("127.0.0.1", 8443, Protocol.HTTPS_CONNECT, trusted=True)).intercept


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_gemini_json_array_stream_restored_as_it_arrives(size):
    """The array form, fed in pieces that cut strings, escapes and brackets anywhere."""
    from policyproxy.redaction.restore import ArrayStreamRestorer

    vault = Vaults().for_scope("s")
    token = vault.placeholder("email", "a@b.io")
    text = f'say "{token}", [ok] \\ {{}} done'
    parts = [text[i:i + 3] for i in range(0, len(text), 3)]
    chunks = [gemini_chunk(p, i == len(parts) - 1) for i, p in enumerate(parts)]
    chunks[0]["usageMetadata"] = {"promptTokenCount": 3}
    raw = ("[" + ",\r\n".join(json.dumps(c) for c in chunks) + "]").encode()
    seen = []
    restorer = ArrayStreamRestorer(vault, observe=seen.append)
    out = b"".join(restorer.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + restorer.close()
    array = json.loads(out)
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in array) == text.replace(token, "a@b.io")
    assert len(seen) == len(chunks) and seen[0]["usageMetadata"] == {"promptTokenCount": 3}
    first = ArrayStreamRestorer(vault)
    assert first.feed(raw[:raw.index(b",\r\n") + 1]).startswith(b'[{"candidates"')   # sent before the rest came


def test_array_restorer_falls_back_to_whole_for_an_object():
    from policyproxy.redaction.restore import ArrayStreamRestorer

    vault = Vaults().for_scope("s")
    token = vault.placeholder("email", "a@b.io")
    restorer = ArrayStreamRestorer(vault)
    body = json.dumps({"error": {"message": f"bad {token}"}}).encode()
    assert restorer.feed(body[:5]) == b"" and restorer.feed(body[5:]) == b""
    assert json.loads(restorer.close())["error"]["message"] == "bad a@b.io"
