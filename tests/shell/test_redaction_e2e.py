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


# ---- structural bypasses (issue 10 section 1), one class per attack class ------------------------------

AWS, EMAIL = PLANTED["aws"], PLANTED["email"]


def _clients(sdk_env, upstream):
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    base = f"https://api.openai.com:{upstream.tls_port}/v1"
    return (openai.OpenAI(api_key="k", base_url=base, max_retries=0),
            anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0))


def _post(proxy, upstream, path, content, host="api.anthropic.com", headers=None):
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle)), timeout=30) as c:
        return c.post(f"https://{host}:{upstream.tls_port}{path}", content=content,
                      headers={"Content-Type": "application/json", **(headers or {})})


def _leaked(upstream, before):
    return [value for seen in upstream.requests[before:] for value in (AWS, EMAIL) if value in seen["body"]]


class TestDataUrlBypass:
    def test_text_behind_a_fake_data_url_prefix_is_redacted(self, sdk_env, upstream):
        openai, _ = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        openai.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": f"data:x;base64,{AWS} mail {EMAIL}"}}]}])
        assert len(upstream.requests) == before + 1 and not _leaked(upstream, before)

    def test_a_real_image_goes_out_untouched(self, sdk_env, upstream):
        import base64

        _, anthropic = _clients(sdk_env, upstream)
        png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
        anthropic.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "text", "text": f"mail {EMAIL}"}]}])
        sent = json.loads(upstream.last()["body"])["messages"][0]["content"]
        assert sent[0]["source"]["data"] == png and EMAIL not in sent[1]["text"]


class TestOpaqueTypeBypass:
    def test_a_top_level_image_type_does_not_skip_the_messages(self, sdk_env, upstream):
        _, anthropic = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        anthropic.messages.create(model="claude-x", max_tokens=10, extra_body={"type": "image"},
                                  messages=[{"role": "user", "content": f"key {AWS} mail {EMAIL}"}])
        assert len(upstream.requests) == before + 1 and not _leaked(upstream, before)

    def test_text_inside_an_opaque_block_is_redacted(self, sdk_env, upstream):
        openai, _ = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        openai.responses.create(model="gpt-x", input=[
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": f"key {AWS}"}],
             "encrypted_content": f"{EMAIL}"},
            {"role": "user", "content": "go"}])
        assert len(upstream.requests) == before + 1 and not _leaked(upstream, before)


class TestFieldsOutsideMessages:
    def test_tools_stop_sequences_metadata_keys_and_tool_choice_are_redacted(self, sdk_env, upstream):
        _, anthropic = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        anthropic.messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
            tools=[{"name": "deploy", "description": f"uses key {AWS}",
                    "input_schema": {"type": "object", "properties": {"to": {"type": "string", "description": EMAIL}}}}],
            stop_sequences=[AWS], tool_choice={"type": "auto"}, extra_body={"metadata": {AWS: 1, "user_id": EMAIL}})
        assert len(upstream.requests) == before + 1 and not _leaked(upstream, before)

    def test_response_format_and_a_secret_key_are_redacted_and_the_key_restored(self, sdk_env, upstream):
        openai, _ = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        reply = openai.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": {
                "name": "f", "description": EMAIL, "parameters": {"type": "object", "properties": {AWS: {}}}}}],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "description": f"key {AWS}"}})
        assert reply.choices[0].message.content == "hi"
        assert not _leaked(upstream, before)
        seen = json.loads(upstream.last()["body"])
        assert any(k.startswith("[[AWS_ACCESS_KEY_") for k in seen["tools"][0]["function"]["parameters"]["properties"])

    def test_a_card_number_sent_as_a_json_number_is_masked(self, proxy, upstream):
        body = json.dumps({"model": "m", "metadata": {"n": 4539148803436467},
                           "messages": [{"role": "user", "content": "hi"}]})
        response = _post(proxy, upstream, "/v1/messages", body)
        assert response.status_code == 200
        assert "4539148803436467" not in upstream.last()["body"]
        assert json.loads(upstream.last()["body"])["metadata"]["n"].startswith("[[CREDIT_CARD_")


class TestDuplicateKeys:
    @pytest.mark.parametrize("body", [
        '{"model": "m", "messages": [{"role": "user", "content": "KEY", "content": "hi"}]}'.replace("KEY", AWS),
        '{"model": "m", "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": '
        '"function", "function": {"name": "f", "arguments": "{\\"q\\": \\"KEY\\", \\"q\\": \\"x\\"}"}}]}]}'.replace("KEY", AWS),
    ], ids=["message", "arguments"])
    def test_duplicate_keys_are_refused_before_the_upstream(self, proxy, upstream, body):
        before = len(upstream.requests)
        response = _post(proxy, upstream, "/v1/chat/completions", body, host="api.openai.com")
        assert response.status_code == 403 and "duplicate key" in response.text
        assert AWS not in response.text and len(upstream.requests) == before


class TestOtherEndpoints:
    def test_openai_legacy_completions_streamed_and_not(self, sdk_env, upstream):
        openai, _ = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        assert openai.completions.create(model="gpt-x", prompt=PROMPT).choices[0].text == PROMPT
        streamed = "".join(c.choices[0].text for c in openai.completions.create(
            model="gpt-x", prompt=[PROMPT], stream=True, extra_headers={"x-test-chunk": "1"}) if c.choices)
        assert streamed == PROMPT
        assert len(upstream.requests) == before + 2 and not _leaked(upstream, before)

    def test_openai_embeddings(self, sdk_env, upstream):
        openai, _ = _clients(sdk_env, upstream)
        before = len(upstream.requests)
        assert len(openai.embeddings.create(model="e", input=[f"key {AWS}", EMAIL]).data) == 2
        assert len(upstream.requests) == before + 1 and not _leaked(upstream, before)

    def test_anthropic_legacy_complete(self, proxy, upstream):   # the current SDK no longer has it
        before = len(upstream.requests)
        prompt = f"\n\nHuman: key {AWS}\n\nAssistant:"
        response = _post(proxy, upstream, "/v1/complete",
                         json.dumps({"model": "claude-2", "max_tokens_to_sample": 5, "prompt": prompt}))
        assert response.json()["completion"] == prompt
        assert len(upstream.requests) == before + 1 and not _leaked(upstream, before)

    def test_gateway_routes_inspect_the_new_endpoints_too(self, start_proxy, upstream):
        config = CONFIG + f'[gateway.routes]\nopenai = "https://api.openai.com:{upstream.tls_port}"\n'
        gateway = start_proxy(config)
        before = len(upstream.requests)
        with httpx.Client() as c:
            for path, body in (("/openai/v1/embeddings", {"model": "e", "input": [f"key {AWS}"]}),
                               ("/openai/v1/completions", {"model": "m", "prompt": [EMAIL]})):
                assert c.post(f"{gateway.url}{path}", json=body).status_code == 200
        assert len(upstream.requests) == before + 2 and not _leaked(upstream, before)

    def test_realtime_websocket_messages_are_redacted_and_restored(self, proxy, upstream):
        """The Realtime API's WebSocket is inspected like the Responses one (``redaction.websocket``)."""
        import asyncio

        import aiohttp

        item = json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": PROMPT}]}})

        async def talk() -> str:
            context = ssl.create_default_context(cafile=str(proxy.ca))
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    f"wss://api.openai.com:{upstream.tls_port}/v1/realtime?model=x", proxy=proxy.url,
                    ssl=context) as socket:
                await socket.send_str(item)
                return (await asyncio.wait_for(socket.receive(), 10)).data

        echoed = json.loads(asyncio.run(talk()))   # the fake echoes what it received
        assert echoed["item"]["content"][0]["text"] == PROMPT
        sent = upstream.last()["body"]
        assert not any(value in sent for value in PLANTED.values()) and "[[EMAIL_" in sent


# ---- bad input (issue 9.6): a 4xx naming the problem, never a traceback -------------------------------

class TestBadInput:
    @pytest.mark.parametrize(("body", "why"), [
        (b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800 %s"}]}' % AWS.encode(), "surrogate"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "%s \\udfff"}]}' % AWS.encode(), "surrogate"),
        (b'{"model": "m", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested deeper"),
        (b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
        (b'{"model": "m", "temperature": NaN, "messages": []}', "NaN"),
        (b'{"model": "m", "temperature": 1e999, "messages": []}', "out of range"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xed\xa0\x80 x"}]}', "not valid UTF-8"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xff x"}]}', "not valid UTF-8"),
        (b'{"model": "m", "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ], ids=["high-surrogate", "low-surrogate", "depth-1000", "depth-100000", "nan", "huge-float",
            "utf8-encoded-surrogate", "invalid-utf8", "5000-digit-int"])
    def test_refused_with_a_reason_and_no_traceback(self, proxy, upstream, body, why):
        before = len(upstream.requests)
        response = _post(proxy, upstream, "/v1/messages", body)
        assert response.status_code == 403 and response.headers["x-proxy-error"] == "blocked-by-policy"
        assert why in response.text and AWS not in response.text
        assert len(upstream.requests) == before
        assert "Traceback" not in proxy.logs()

    @pytest.mark.parametrize(("tail", "why"), [
        (', "x": "\\ud800"}', "surrogate"), (', "metadata": {"a": 1, "a": 2}}', "duplicate key"),
        (', "x": ' + "[" * 300 + "]" * 300 + "}", "nested deeper"),
    ], ids=["surrogate", "duplicate", "depth"])
    def test_large_bodies_scanned_off_the_loop_are_refused_the_same_way(self, proxy, upstream, tail, why):
        big = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"{AWS} " + "words " * 60_000}]})
        before = len(upstream.requests)
        response = _post(proxy, upstream, "/v1/messages", (big[:-1] + tail).encode())
        assert response.status_code == 403 and why in response.text and len(upstream.requests) == before

    @pytest.mark.parametrize("body", [
        "\ufeff" + json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}),
        json.dumps({"model": "m", "n": 2 ** 80, "messages": [{"role": "user", "content": PROMPT + " \U0001F600"}]}),
        json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT + " \U0001F600"}]}, ensure_ascii=True),
    ], ids=["bom", "int-beyond-64-bits", "escaped-surrogate-pair"])
    def test_valid_edge_cases_pass_redacted(self, proxy, upstream, body):
        response = _post(proxy, upstream, "/v1/messages", body.encode())
        assert response.status_code == 200
        assert response.json()["content"][0]["text"].startswith(PROMPT)
        assert_upstream_saw_no_planted_value(upstream, 1)
        assert "Traceback" not in proxy.logs()


# ---- streams from a minimal OpenAI/Anthropic-compatible server ----------------------------------------

class TestMinimalServerStreams:
    def test_openai_sdk_one_character_chunks_without_object_index_finish_or_done(self, sdk_env, upstream):
        openai, _ = _clients(sdk_env, upstream)
        content, arguments = "", ""
        for chunk in openai.chat.completions.create(
                model="gpt-x", stream=True, messages=[{"role": "user", "content": PROMPT}],
                extra_headers={"x-test-chunk": "1", "x-test-minimal": "1"}):
            for choice in chunk.choices:
                content += choice.delta.content or ""
                arguments += "".join(c.function.arguments or "" for c in choice.delta.tool_calls or [])
        assert content == PROMPT and json.loads(arguments) == {"echo": PROMPT}
        assert_upstream_saw_no_planted_value(upstream, 1)

    @pytest.mark.parametrize(("path", "host", "body"), [
        ("/v1/messages", "api.anthropic.com", {"model": "m", "stream": True, "max_tokens": 5,
                                               "messages": [{"role": "user", "content": PROMPT}]}),
        ("/v1/responses", "api.openai.com", {"model": "m", "stream": True, "input": PROMPT}),
        ("/v1/completions", "api.openai.com", {"model": "m", "stream": True, "prompt": PROMPT}),
    ], ids=["anthropic", "responses", "completions"])
    def test_raw_one_character_streams_without_optional_fields(self, proxy, upstream, path, host, body):
        text = ""
        with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle))) as c, \
                c.stream("POST", f"https://{host}:{upstream.tls_port}{path}", json=body,
                         headers={"x-test-chunk": "1", "x-test-minimal": "1"}) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                payload = json.loads(line[6:])
                if payload.get("type") == "content_block_delta" and payload["delta"]["type"] == "text_delta":
                    text += payload["delta"]["text"]
                elif payload.get("type") == "response.output_text.delta":
                    text += payload["delta"]
                elif "choices" in payload:
                    text += payload["choices"][0]["text"]
        assert text == PROMPT
        assert_upstream_saw_no_planted_value(upstream, 1)


# ---- reload (issue 9.14): enforcement never weaker than the new config ------------------------------

def test_after_sighup_text_already_sent_is_judged_by_the_new_rules(start_proxy, upstream):
    import signal
    import time

    lax = CONFIG.replace('us_ssn = "block"', 'us_ssn = "off"')
    proxy = start_proxy(lax)
    history = {"model": "m", "messages": [{"role": "user", "content": "my SSN is 123-45-6789"}]}
    assert _post(proxy, upstream, "/v1/messages", json.dumps(history)).status_code == 200
    assert "123-45-6789" in upstream.last()["body"]   # off: goes out as written
    proxy.config.write_text(CONFIG)
    proxy.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reloaded" not in proxy.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    history["messages"] += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    before = len(upstream.requests)
    response = _post(proxy, upstream, "/v1/messages", json.dumps(history))
    assert response.status_code == 400 and "us_ssn" in response.text
    assert len(upstream.requests) == before


# ---- response-side scanning (issue 10 section 4) -------------------------------------------------------

MODEL_KEY = "AKIAQ4RT7WXZ2MNB5KLP"   # a key the "model" emits that the client never sent


def _audit_records(proxy, path, after=0):
    """The audit records for ``path`` once more than ``after`` of them were written (the log is async)."""
    import time

    from policyproxy.telemetry.audit import read_records

    deadline = time.monotonic() + 10
    found = []
    while time.monotonic() < deadline:
        audit = proxy.home / "audit.jsonl"
        found = [r for r in read_records(audit) if r.get("url.path") == path] if audit.exists() else []
        if len(found) > after:
            break
        time.sleep(0.05)
    return found


class TestResponseScanning:
    def test_audit_by_default_counts_what_the_model_emitted_and_changes_nothing(self, proxy, upstream):
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"mail {EMAIL}"}]})
        written = len(_audit_records(proxy, "/v1/messages", after=-1))   # what is there now, no wait
        response = _post(proxy, upstream, "/v1/messages", body, headers={"x-test-emit": f"key {MODEL_KEY}"})
        assert response.json()["content"][0]["text"] == f"mail {EMAIL} key {MODEL_KEY}"
        records = _audit_records(proxy, "/v1/messages", after=written)
        assert len(records) == written + 1
        record = records[-1]
        assert record["redaction.response.detectors"] == {"aws_access_key": 2}   # text and tool input
        assert record["redaction.detectors"] == {"email": 1}                      # the client's own value
        assert MODEL_KEY not in (proxy.home / "audit.jsonl").read_text()

    @pytest.mark.parametrize("chunk", [1, 5])
    def test_mask_replaces_it_in_streams_and_bodies(self, start_proxy, upstream, monkeypatch, chunk):
        openai = pytest.importorskip("openai")
        masking = start_proxy(CONFIG.replace("[permissions.r.network.redaction]\n",
                                             '[permissions.r.network.redaction]\nresponses = "mask"\n'))
        monkeypatch.setenv("HTTPS_PROXY", masking.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(masking.bundle))
        client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0)
        emit = {"x-test-emit": f"; key {MODEL_KEY} end", "x-test-chunk": str(chunk)}
        content = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="m", stream=True, messages=[{"role": "user", "content": f"mail {EMAIL}"}], extra_headers=emit)
            if c.choices)
        assert content == f"mail {EMAIL} ; key [REDACTED:aws_access_key] end"
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                               extra_headers=emit)
        assert MODEL_KEY not in reply.model_dump_json() and "[REDACTED:aws_access_key]" in reply.choices[0].message.content


def test_the_placeholder_explainer_reaches_the_model_after_the_cached_system_block(start_proxy, upstream, monkeypatch):
    anthropic = pytest.importorskip("anthropic")
    from policyproxy.redaction.explainer import EXPLAINER

    explaining = start_proxy(CONFIG.replace("[permissions.r.network.redaction]\n",
                                            "[permissions.r.network.redaction]\nexplain_placeholders = true\n"))
    monkeypatch.setenv("HTTPS_PROXY", explaining.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(explaining.bundle))
    client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0)
    system = [{"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}]
    message = client.messages.create(model="claude-x", max_tokens=10, system=system,
                                     messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    assert message.content[0].text == f"mail {EMAIL}"
    sent = json.loads(upstream.last()["body"])
    assert sent["system"] == [*system, {"type": "text", "text": EXPLAINER}]
