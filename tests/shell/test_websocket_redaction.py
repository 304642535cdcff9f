"""Codex's WebSocket Responses transport through the proxy, redacted: each ``response.create`` is
redacted before the upstream sees it, each event message restored before the client sees it (a
placeholder split across messages included), permessage-deflate negotiated on both sides, and a
message that cannot be inspected closes the channel with 1008 and a reason. The fake upstream speaks
the recorded event shapes (``tests/shell/fake_llm.responses_websocket``)."""

from __future__ import annotations

import asyncio
import json
import ssl

import aiohttp
import pytest

from tests.shell.test_llm_providers import audit, lines

PLANTED = {"email": "dana.kowalski@acme-corp.io", "aws": "AKIAZ7PQ3LXRN4TW2KJD"}
PROMPT = "Mail {email} the key {aws} today.".format(**PLANTED)


def config(port: int, websocket: str = "inspect") -> str:
    return f"""
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
websocket = "{websocket}"
[permissions.r.network.redaction.detectors]
us_ssn = "block"
[gateway.routes]
openai = "https://api.openai.com:{port}"
"""


@pytest.fixture(scope="module")
def proxy(start_proxy, upstream):
    return start_proxy(config(upstream.tls_port))


def create(text: str, **extra) -> str:
    return json.dumps({"type": "response.create", "model": "gpt-5-codex", "stream": True,
                       "input": [{"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": text}]}], **extra})


async def converse(proxy, upstream, messages: list[str], headers: dict[str, str] | None = None,
                   compress: int = 15, until: str = "response.completed") -> tuple[list, aiohttp.ClientWebSocketResponse]:
    """Through CONNECT and interception, as Codex does; every message the client receives until ``until``."""
    context = ssl.create_default_context(cafile=str(proxy.ca))
    received: list = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"wss://api.openai.com:{upstream.tls_port}/v1/responses", proxy=proxy.url, ssl=context,
            headers=headers or {}, compress=compress) as socket:
        for message in messages:
            await socket.send_str(message)
        while True:
            got = await asyncio.wait_for(socket.receive(), 10)
            if got.type != aiohttp.WSMsgType.TEXT:
                received.append(got)
                break
            event = json.loads(got.data)
            received.append(event)
            if event.get("type") == until:
                break
        return received, socket


def upstream_messages(upstream, count: int) -> list[str]:
    return [r["body"] for r in upstream.requests if r["method"] == "WS"][-count:]


@pytest.mark.parametrize("chunk", [1, 3, 5, 11])
def test_response_create_redacted_events_restored_across_messages(proxy, upstream, chunk):
    before = lines(proxy)
    events, _socket = asyncio.run(converse(proxy, upstream, [create(PROMPT)], {"x-test-chunk": str(chunk)}))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert text == PROMPT
    assert json.loads(arguments) == {"echo": PROMPT}
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == PROMPT
    completed = events[-1]["response"]
    assert completed["output"][0]["content"][0]["text"] == PROMPT
    sent = upstream_messages(upstream, 1)[0]
    for value in PLANTED.values():
        assert value not in sent
    assert "[[EMAIL_" in sent and json.loads(sent)["model"] == "gpt-5-codex"
    records = [r for r in audit(proxy, before) if r.get("url.path") == "/v1/responses"]
    assert len(records) == 1   # one event per upgrade
    record = records[0]
    assert record["http.response.status_code"] == 101 and record["network.policy.reason"] == "redacted"
    assert record["redaction.count"] == 2 and record["redaction.detectors"] == {"email": 1, "aws_access_key": 1}
    assert record["gen_ai.request.model"] == "gpt-5-codex" and record["gen_ai.usage.output_tokens"] == 21
    assert PLANTED["email"] not in json.dumps(record)


def test_permessage_deflate_negotiated_with_both_sides(proxy, upstream):
    _events, socket = asyncio.run(converse(proxy, upstream, [create("hello")]))
    assert socket.compress == 15   # the proxy agreed with the client
    handshake = next(r for r in reversed(upstream.requests) if r["method"] == "GET" and r["path"] == "/v1/responses")
    offered = {k.lower(): v for k, v in handshake["headers"]}.get("sec-websocket-extensions", "")
    assert "permessage-deflate" in offered   # and asked the upstream, as the client had asked
    _events, socket = asyncio.run(converse(proxy, upstream, [create("hello")], compress=0))
    assert socket.compress == 0
    handshake = next(r for r in reversed(upstream.requests) if r["method"] == "GET" and r["path"] == "/v1/responses")
    assert "sec-websocket-extensions" not in {k.lower() for k, _ in handshake["headers"]}


def test_tool_output_in_a_later_message_is_redacted(proxy, upstream):
    output = json.dumps({"type": "response.create", "model": "m", "previous_response_id": "resp_1",
                         "input": [{"type": "function_call_output", "call_id": "call_1",
                                    "output": f"owner: {PLANTED['email']}"},
                                   {"type": "message", "role": "user", "content": "go on"}]})
    asyncio.run(converse(proxy, upstream, [create("first"), output], until="response.completed"))
    for sent in upstream_messages(upstream, 2):
        assert PLANTED["email"] not in sent


class TestFailClosed:
    """Attack class: a client message the proxy cannot inspect never reaches the model."""

    @pytest.mark.parametrize(("message", "reason"), [
        ("not json {", "message not inspected: not JSON"),
        ('{"type": "response.create", "type": "x"}', "duplicate key 'type'"),
        (create("card holder 123-45-6789"), "blocked by detectors: us_ssn"),
        (b"\x00binary", "binary messages cannot be inspected"),
    ])
    def test_closed_with_1008_and_a_reason(self, proxy, upstream, message, reason):
        before = lines(proxy)
        count = len(upstream_messages(upstream, 10_000))

        async def talk():
            context = ssl.create_default_context(cafile=str(proxy.ca))
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    f"wss://api.openai.com:{upstream.tls_port}/v1/responses", proxy=proxy.url, ssl=context) as socket:
                if isinstance(message, bytes):
                    await socket.send_bytes(message)
                else:
                    await socket.send_str(message)
                got = await asyncio.wait_for(socket.receive(), 10)
                return got, socket.close_code

        got, code = asyncio.run(talk())
        assert got.type == aiohttp.WSMsgType.CLOSE and code == 1008
        assert reason in got.extra
        assert len(upstream_messages(upstream, 10_000)) == count   # nothing of it was sent on
        record = [r for r in audit(proxy, before) if r.get("url.path") == "/v1/responses"][-1]
        assert record["network.policy.decision"] == "deny" and record["http.response.status_code"] == 101
        assert "6789" not in json.dumps(record)


def test_refuse_keeps_426(start_proxy, upstream):
    proxy = start_proxy(config(upstream.tls_port, websocket="refuse"))

    async def talk() -> int:
        context = ssl.create_default_context(cafile=str(proxy.ca))
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(f"wss://api.openai.com:{upstream.tls_port}/v1/responses",
                                              proxy=proxy.url, ssl=context):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    before = len(upstream.requests)
    assert asyncio.run(talk()) == 426
    assert len(upstream.requests) == before


def test_openai_sdk_responses_connect_through_the_gateway(proxy, upstream):
    """The openai SDK's own Responses WebSocket client (``client.responses.connect``)."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("websockets")
    client = openai.OpenAI(api_key="k", base_url=f"{proxy.url}/openai/v1", max_retries=0)
    with client.responses.connect(extra_headers={"x-test-chunk": "2"}) as connection:
        connection.response.create(model="gpt-5-codex", input=PROMPT)
        text = ""
        for event in connection:
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                break
    assert text == PROMPT
    sent = upstream_messages(upstream, 1)[0]
    assert PLANTED["email"] not in sent and PLANTED["aws"] not in sent


def test_usage_adds_up_over_responses_on_one_channel(proxy, upstream):
    before = lines(proxy)

    async def talk():
        context = ssl.create_default_context(cafile=str(proxy.ca))
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"wss://api.openai.com:{upstream.tls_port}/v1/responses", proxy=proxy.url, ssl=context) as socket:
            for turn in ("one", "two"):
                await socket.send_str(create(turn))
                while json.loads((await asyncio.wait_for(socket.receive(), 10)).data)["type"] != "response.completed":
                    pass

    asyncio.run(talk())
    record = [r for r in audit(proxy, before) if r.get("url.path") == "/v1/responses"][-1]
    assert record["gen_ai.usage.input_tokens"] == 26 and record["gen_ai.usage.output_tokens"] == 42


class TestResources:
    """Attack class: messages and clients that try to make the proxy hold or forward too much."""

    def test_oversized_message_is_not_read_whole_nor_sent(self, start_proxy, upstream):
        proxy = start_proxy(config(upstream.tls_port).replace('websocket = "inspect"',
                                                              'websocket = "inspect"\nmax_body_bytes = 4096'))
        count = len(upstream_messages(upstream, 10_000))

        async def talk():
            context = ssl.create_default_context(cafile=str(proxy.ca))
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    f"wss://api.openai.com:{upstream.tls_port}/v1/responses", proxy=proxy.url, ssl=context) as socket:
                await socket.send_str(create("x" * 10_000))
                got = await asyncio.wait_for(socket.receive(), 10)
                return got.type, socket.close_code

        kind, code = asyncio.run(talk())
        # 1009 or a dropped connection when the frame is over aiohttp's bound, 1008 past the inspection limit
        assert kind == aiohttp.WSMsgType.CLOSE and code in (1006, 1008, 1009)
        assert len(upstream_messages(upstream, 10_000)) == count

    def test_client_vanishing_mid_stream_leaves_one_event_and_a_working_proxy(self, proxy, upstream):
        before = lines(proxy)

        async def vanish():
            context = ssl.create_default_context(cafile=str(proxy.ca))
            async with aiohttp.ClientSession() as session:
                socket = await session.ws_connect(f"wss://api.openai.com:{upstream.tls_port}/v1/responses",
                                                  proxy=proxy.url, ssl=context, headers={"x-test-chunk": "1"})
                await socket.send_str(create(PROMPT))
                await socket.receive()
                socket._response.connection.transport.abort()   # gone without a close frame

        asyncio.run(vanish())
        events, _ = asyncio.run(converse(proxy, upstream, [create(PROMPT)]))
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == PROMPT
        records = [r for r in audit(proxy, before) if r.get("url.path") == "/v1/responses"]
        assert len(records) == 2


def test_after_sighup_an_open_channel_is_judged_by_the_new_rules(start_proxy, upstream):
    """Attack class: reload in the middle. A channel opened under lax rules does not keep them."""
    import signal
    import time

    lax = config(upstream.tls_port).replace('us_ssn = "block"', 'us_ssn = "off"')
    proxy = start_proxy(lax)

    async def talk():
        context = ssl.create_default_context(cafile=str(proxy.ca))
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"wss://api.openai.com:{upstream.tls_port}/v1/responses", proxy=proxy.url, ssl=context) as socket:
            await socket.send_str(create("ssn 123-45-6789"))
            while json.loads((await asyncio.wait_for(socket.receive(), 10)).data)["type"] != "response.completed":
                pass
            assert "123-45-6789" in upstream_messages(upstream, 1)[0]   # off: goes out as written
            proxy.config.write_text(config(upstream.tls_port))
            proxy.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "reloaded" not in proxy.logs() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            count = len(upstream_messages(upstream, 10_000))
            await socket.send_str(create("ssn 123-45-6789"))
            got = await asyncio.wait_for(socket.receive(), 10)
            return got, socket.close_code, count

    got, code, count = asyncio.run(talk())
    assert code == 1008 and "us_ssn" in got.extra
    assert len(upstream_messages(upstream, 10_000)) == count
