"""End to end with the official SDKs: the upstream never sees a planted value, the client sees every
value restored, in text and in tool-call arguments, streamed (split at many points) and not."""

import json
import ssl

import httpx
import pytest

CONFIG = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
[permissions.r.network.redaction.detectors]
us_ssn = "block"
"""
PLANTED = {
    "aws": "AKIAZ7PQ3LXRN4TW2KJD",
    "github": "ghp_R8mK2vQ9xL4nT7wZ1pY6sB3cF5hJ0dG8aE2u",
    "email": "dana.kowalski@acme-corp.io",
    "card": "4539 1488 0343 6467",
    "slack": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
}
PROMPT = ("Deploy with AWS key {aws} and token {github}. Tell {email} the card {card} works; "
          "post to slack with {slack}. Keep `a[0] < b` and [[NOT_A_placeholder]] as they are.").format(**PLANTED)


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


@pytest.fixture
def sdk_env(proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    return proxy


def assert_upstream_saw_no_planted_value(upstream, count):
    for seen in upstream.requests[-count:]:
        for value in PLANTED.values():
            assert value not in seen["body"], value
        assert "[[EMAIL_" in seen["body"] and "[[AWS_ACCESS_KEY_" in seen["body"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13])
def test_anthropic_streamed_text_and_tool_input_are_restored(sdk_env, upstream, chunk):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0)
    with client.messages.stream(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": PROMPT}],
                                extra_headers={"x-test-chunk": str(chunk)}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == PROMPT
    assert final.content[1].input == {"echo": PROMPT}
    assert_upstream_saw_no_planted_value(upstream, 1)


def test_anthropic_non_streamed(sdk_env, upstream):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0)
    message = client.messages.create(model="claude-x", max_tokens=100, system=f"Operator is {PLANTED['email']}",
                                     messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}])
    assert message.content[0].text == PROMPT and message.content[1].input == {"echo": PROMPT}
    assert PLANTED["email"] not in upstream.last()["body"]


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_openai_chat_streamed_content_and_tool_arguments(sdk_env, upstream, chunk):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0)
    stream = client.chat.completions.create(model="gpt-x", stream=True, messages=[{"role": "user", "content": PROMPT}],
                                            extra_headers={"x-test-chunk": str(chunk)})
    content, arguments = "", ""
    for event in stream:
        delta = event.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            arguments += call.function.arguments or ""
    assert content == PROMPT
    assert json.loads(arguments) == {"echo": PROMPT}
    assert_upstream_saw_no_planted_value(upstream, 1)


def test_openai_chat_non_streamed(sdk_env, upstream):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0)
    reply = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": PROMPT}])
    assert reply.choices[0].message.content == PROMPT
    assert json.loads(reply.choices[0].message.tool_calls[0].function.arguments) == {"echo": PROMPT}


@pytest.mark.parametrize("stream", [True, False])
def test_openai_responses(sdk_env, upstream, stream):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0)
    if stream:
        text, arguments = "", ""
        for event in client.responses.create(model="gpt-x", input=PROMPT, stream=True,
                                             extra_headers={"x-test-chunk": "3"}):
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.function_call_arguments.delta":
                arguments += event.delta
        assert text == PROMPT and json.loads(arguments) == {"echo": PROMPT}
    else:
        response = client.responses.create(model="gpt-x", input=[{"role": "user", "content": PROMPT}])
        assert response.output_text == PROMPT
        assert json.loads(response.output[1].arguments) == {"echo": PROMPT}
    assert_upstream_saw_no_planted_value(upstream, 1)


def test_the_same_value_gets_the_same_placeholder_on_every_turn(sdk_env, upstream):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0)
    messages = [{"role": "user", "content": f"mail {PLANTED['email']}"}]
    client.chat.completions.create(model="gpt-x", messages=messages)
    first = json.loads(upstream.last()["body"])["messages"][0]["content"]
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": f"again {PLANTED['email']}"}]
    client.chat.completions.create(model="gpt-x", messages=messages)
    sent = json.loads(upstream.last()["body"])["messages"]
    assert sent[0]["content"] == first
    assert sent[2]["content"].split()[-1] == first.split()[-1]


def test_blocked_detector_gets_a_400_in_the_providers_shape(sdk_env, upstream):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0)
    before = len(upstream.requests)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="claude-x", max_tokens=10,
                               messages=[{"role": "user", "content": "my SSN is 123-45-6789"}])
    assert info.value.body["error"]["type"] == "pii_blocked"
    assert "us_ssn" in info.value.body["error"]["message"] and "123-45-6789" not in json.dumps(info.value.body)
    assert len(upstream.requests) == before


@pytest.mark.parametrize(("body", "headers", "why"), [
    (b"{not json", {}, "not valid JSON"),
    (b"\x00\x01", {"Content-Encoding": "compress"}, "cannot be inspected"),
    (b"garbage", {"Content-Encoding": "gzip"}, "corrupt"),
])
def test_bodies_that_cannot_be_inspected_fail_closed(proxy, upstream, body, headers, why):
    before = len(upstream.requests)
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle))) as client:
        response = client.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages", content=body,
                               headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 403 and response.headers["x-proxy-error"] == "blocked-by-policy"
    assert why in response.text
    assert len(upstream.requests) == before


def test_gzip_request_bodies_are_decoded_and_redacted(proxy, upstream):
    import gzip

    payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle))) as client:
        response = client.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                               content=gzip.compress(payload),
                               headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == PROMPT
    assert_upstream_saw_no_planted_value(upstream, 1)


def test_claude_code_side_calls_pass_through(proxy, upstream):
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle))) as client:
        response = client.get(f"https://api.anthropic.com:{upstream.tls_port}/api/claude_code/policy_limits")
    assert response.status_code == 200 and upstream.last()["path"] == "/api/claude_code/policy_limits"


def test_gateway_base_url_mode_redacts_like_the_proxy(start_proxy, upstream, monkeypatch):
    anthropic = pytest.importorskip("anthropic")
    config = CONFIG + f'[gateway.routes]\nanthropic = "https://api.anthropic.com:{upstream.tls_port}"\n'
    gateway = start_proxy(config)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    client = anthropic.Anthropic(api_key="k", base_url=f"{gateway.url}/anthropic", max_retries=0)
    with client.messages.stream(model="claude-x", max_tokens=100,
                                messages=[{"role": "user", "content": PROMPT}]) as stream:
        text = "".join(stream.text_stream)
    assert text == PROMPT
    assert_upstream_saw_no_planted_value(upstream, 1)
    assert upstream.last()["path"] == "/v1/messages"


def test_large_first_turns_are_scanned_in_worker_processes_and_still_masked(proxy, upstream):
    import time

    def big_prompt(seed: int) -> str:
        lines = [f"line {seed}-{i}: ordinary build output, nothing to see" for i in range(9000)]
        lines[1000] = f"export GITHUB_TOKEN={PLANTED['github']}"
        lines[8000] = f"mail {PLANTED['email']} about seed {seed}"
        return "\n".join(lines)

    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle)),
                      timeout=60) as c:
        for seed in range(3):   # the first runs on a thread while the workers start; later ones on them
            prompt = big_prompt(seed)
            assert len(prompt) > 300_000
            response = c.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                              json={"model": "m", "messages": [{"role": "user", "content": prompt}]})
            assert response.status_code == 200
            assert response.json()["content"][0]["text"] == prompt
            seen = upstream.last()["body"]
            assert PLANTED["github"] not in seen and PLANTED["email"] not in seen
            time.sleep(1.0)


@pytest.mark.parametrize("size", [200, 400_000])
def test_a_body_with_nothing_to_redact_is_forwarded_byte_for_byte(proxy, upstream, size):
    payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": "plain words " * (size // 12)}]},
                         indent=1).encode()
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle)), timeout=30) as c:
        response = c.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages", content=payload,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert upstream.last()["body"].encode() == payload   # same bytes, same formatting: prompt caches hold
