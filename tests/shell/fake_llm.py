"""A fake LLM API that answers with what it was sent: the last user text, as text and as a tool call.

It speaks Anthropic Messages and Complete, OpenAI Chat Completions, Completions, Embeddings and
Responses, streamed (SSE, in chunks of ``x-test-chunk`` characters, so placeholders are split at many
points) or not. ``x-test-minimal: 1`` drops every optional field from stream events (no ``object``,
``id``, ``index``, ``finish_reason``, ``item_id``, and no ``[DONE]``), as many compatible servers do.
``x-test-pause: SECONDS`` waits that long before each event (SSE, the Responses WebSocket, Gemini's array).
``x-test-emit: TEXT`` makes the "model" append a space and TEXT of its own (something the client never sent).
``x-test-shape: codex`` answers Responses the way the Codex CLI needs (each output item framed by
``response.output_item.added``/``.done`` and its content part by ``response.content_part.added``/``.done``)
with the text only and no tool call (Codex would run a tool it does not know and ask again).
``x-test-codex-tool: exec_command`` makes that "model" first ask Codex to run ``echo '<the user text>'``
and then answer with the tool's output as Codex sent it back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


def _last_user_text(body: dict[str, Any], request: web.Request | None = None) -> str:
    """The last user text, plus whatever ``x-test-emit`` asks the "model" to say on its own."""
    emit = request.headers.get("x-test-emit") if request is not None else None
    return _user_text(body) + (f" {emit}" if emit else "")


def _user_text(body: dict[str, Any]) -> str:
    if "input" in body:   # Responses
        items = body["input"]
        if isinstance(items, str):
            return items
        content = items[-1].get("content", "")
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    message = [m for m in body["messages"] if m.get("role") == "user"][-1]
    content = message["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content if b.get("type") == "text")


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


OPTIONAL = frozenset({"object", "id", "index", "finish_reason", "item_id", "output_index", "content_index",
                      "created", "model", "system_fingerprint"})


def _minimal(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _minimal(v) for k, v in node.items() if k not in OPTIONAL}
    if isinstance(node, list):
        return [_minimal(item) for item in node]
    return node


async def _sse(request: web.Request, events: list[tuple[str | None, dict[str, Any]]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    minimal = request.headers.get("x-test-minimal") == "1"
    pause = float(request.headers.get("x-test-pause", "0"))
    for name, payload in events:
        await asyncio.sleep(pause)
        if minimal and payload.get("choices") and all(not c.get("delta") and not c.get("text")
                                                       for c in payload["choices"]):
            continue   # the finish chunk carries nothing but optional fields
        head = f"event: {name}\n" if name else ""
        await response.write(f"{head}data: {json.dumps(_minimal(payload) if minimal else payload)}\n\n".encode())
    if request.path.endswith("completions") and not minimal:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def anthropic(request: web.Request, body: dict[str, Any], size: int) -> web.StreamResponse:
    text = _last_user_text(body, request)
    arguments = json.dumps({"echo": text})
    if not body.get("stream"):
        return web.json_response({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                                  "content": [{"type": "text", "text": text},
                                              {"type": "tool_use", "id": "tu_1", "name": "echo", "input": {"echo": text}}],
                                  "stop_reason": "tool_use", "stop_sequence": None,
                                  "usage": {"input_tokens": 1, "output_tokens": 1}})
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": part}}) for part in _chunks(text, size)]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                   "type": "tool_use", "id": "tu_1", "name": "echo", "input": {}}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 1,
                                        "delta": {"type": "input_json_delta", "partial_json": part}})
               for part in _chunks(arguments, size)]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 1}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                  "usage": {"output_tokens": 5}}),
               ("message_stop", {"type": "message_stop"})]
    return await _sse(request, events)


async def chat(request: web.Request, body: dict[str, Any], size: int) -> web.StreamResponse:
    text = _last_user_text(body, request)
    arguments = json.dumps({"echo": text})
    call = {"id": "call_1", "type": "function", "function": {"name": "echo", "arguments": arguments}}
    if not body.get("stream"):
        return web.json_response({"id": "chat_1", "object": "chat.completion", "created": 1, "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                                      "role": "assistant", "content": text, "tool_calls": [call]}}]})
    envelope = {"id": "chat_1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
    events: list[tuple[str | None, dict[str, Any]]] = []
    for part in _chunks(text, size):
        events.append((None, {**envelope, "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]}))
    for i, part in enumerate(_chunks(arguments, size)):
        first = {"id": "call_1", "type": "function", "function": {"name": "echo", "arguments": part}} if i == 0 else \
            {"function": {"arguments": part}}
        events.append((None, {**envelope, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **first}]},
                                                       "finish_reason": None}]}))
    events.append((None, {**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
    if (body.get("stream_options") or {}).get("include_usage"):   # usage comes in a last chunk of its own
        events.append((None, {**envelope, "choices": [],
                              "usage": {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33}}))
    return await _sse(request, events)


async def responses(request: web.Request, body: dict[str, Any], size: int) -> web.StreamResponse:
    if request.headers.get("x-test-shape") == "codex":
        full, events = codex_events(body, request.headers.get("x-test-codex-tool"), size)
    else:
        full, events = responses_events(body, _last_user_text(body, request), size)
    if not body.get("stream"):
        return web.json_response(full)
    return await _sse(request, events)


def responses_events(body: dict[str, Any], text: str, size: int, *, framed: bool = False,
                     tool: bool = True) -> tuple[dict[str, Any], list[tuple[str | None, dict[str, Any]]]]:
    """The whole Responses object and the events that stream it (SSE and the WebSocket transport alike).
    ``framed`` adds the item and content-part events around the deltas; ``tool`` adds the echo call."""
    arguments = json.dumps({"echo": text})
    part = {"type": "output_text", "text": text, "annotations": []}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [part]}
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "echo", "arguments": arguments,
            "status": "completed"}
    full = {"id": "resp_1", "object": "response", "created_at": 1, "model": body["model"], "status": "completed",
            "output": [message, call] if tool else [message], "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "usage": {"input_tokens": 13, "output_tokens": 21, "total_tokens": 34}}
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "response": {**full, "status": "in_progress", "output": []}})]
    if framed:
        events += [("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                   "item": {**message, "status": "in_progress", "content": []}}),
                   ("response.content_part.added", {"type": "response.content_part.added", "item_id": "msg_1",
                                                    "output_index": 0, "content_index": 0,
                                                    "part": {**part, "text": ""}})]
    events += [("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1",
                                               "output_index": 0, "content_index": 0, "delta": piece})
               for piece in _chunks(text, size)]
    events.append(("response.output_text.done", {"type": "response.output_text.done", "item_id": "msg_1",
                                                  "output_index": 0, "content_index": 0, "text": text}))
    if framed:
        events += [("response.content_part.done", {"type": "response.content_part.done", "item_id": "msg_1",
                                                   "output_index": 0, "content_index": 0, "part": part}),
                   ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0,
                                                  "item": message})]
    if tool:
        events += [("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                               "item_id": "fc_1", "output_index": 1, "delta": piece})
                   for piece in _chunks(arguments, size)]
        events.append(("response.function_call_arguments.done", {"type": "response.function_call_arguments.done",
                                                                 "item_id": "fc_1", "output_index": 1,
                                                                 "arguments": arguments}))
    events.append(("response.completed", {"type": "response.completed", "response": full}))
    return full, events


def codex_events(body: dict[str, Any], tool: str | None,
                 size: int) -> tuple[dict[str, Any], list[tuple[str | None, dict[str, Any]]]]:
    """A Codex turn: the user text echoed in a framed message, or with ``tool`` (``exec_command``) a call
    to run ``echo '<user text>'`` first; a tool output that comes back is echoed as the message."""
    last = body["input"][-1]
    if last.get("type") == "function_call_output":
        output = last.get("output")
        text = output if isinstance(output, str) else "".join(p.get("text", "") for p in output or [])
        return responses_events(body, text, size, framed=True, tool=False)
    text = _user_text(body)
    if tool is None:
        return responses_events(body, text, size, framed=True, tool=False)
    arguments = json.dumps({"cmd": f"echo '{text}'"})
    call = {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1", "name": tool,
            "arguments": arguments}
    full = {"id": "resp_1", "object": "response", "created_at": 1, "model": body["model"], "status": "completed",
            "output": [call], "usage": {"input_tokens": 13, "output_tokens": 8, "total_tokens": 21}}
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "response": {**full, "status": "in_progress", "output": []}}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                        "item": {**call, "status": "in_progress", "arguments": ""}})]
    events += [("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                           "item_id": "fc_1", "output_index": 0, "delta": piece})
               for piece in _chunks(arguments, size)]
    events += [("response.function_call_arguments.done", {"type": "response.function_call_arguments.done",
                                                          "item_id": "fc_1", "output_index": 0, "arguments": arguments}),
               ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": call}),
               ("response.completed", {"type": "response.completed", "response": full})]
    return full, events


async def responses_websocket(request: web.Request, seen: list[dict[str, Any]]) -> web.WebSocketResponse:
    """Codex's WebSocket Responses transport: each ``response.create`` message is answered with the
    same events the SSE stream carries, one per message (text split in ``x-test-chunk`` pieces).
    ``x-test-ws-raw: 1`` (and ``/v1/realtime``) echoes each client message back verbatim instead."""
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    size = int(request.headers.get("x-test-chunk", "4"))
    async for message in socket:
        if message.type != web.WSMsgType.TEXT:
            continue
        seen.append({"method": "WS", "path": request.path, "query": "", "headers": [], "body": message.data,
                     "host": request.host, "tls": request.secure})
        if request.headers.get("x-test-ws-raw") == "1" or request.path.endswith("/realtime"):
            await socket.send_str(message.data)
            continue
        body = json.loads(message.data)
        if body.get("type") != "response.create":
            continue
        if body.get("generate") is False:   # Codex's prewarm: the request is cached, nothing is generated
            empty = {"id": "resp_0", "object": "response", "created_at": 1, "model": body["model"], "output": [],
                     "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}}
            await socket.send_str(json.dumps({"type": "response.created", "response": {**empty, "status": "in_progress"}}))
            await socket.send_str(json.dumps({"type": "response.completed", "response": {**empty, "status": "completed"}}))
            continue
        if request.headers.get("x-test-shape") == "codex":
            _, events = codex_events(body, request.headers.get("x-test-codex-tool"), size)
        else:
            _, events = responses_events(body, _user_text(body), size)
        for _, payload in events:
            await asyncio.sleep(float(request.headers.get("x-test-pause", "0")))
            await socket.send_str(json.dumps(payload))
    return socket


async def completions(request: web.Request, body: dict[str, Any], size: int) -> web.StreamResponse:
    """OpenAI legacy Completions: ``prompt`` (a string or a list of them) echoed as ``choices[].text``."""
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else "".join(prompt)
    if not body.get("stream"):
        return web.json_response({"id": "cmpl_1", "object": "text_completion", "created": 1, "model": body["model"],
                                  "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]})
    envelope = {"id": "cmpl_1", "object": "text_completion", "created": 1, "model": body["model"]}
    events: list[tuple[str | None, dict[str, Any]]] = [
        (None, {**envelope, "choices": [{"index": 0, "text": part, "finish_reason": None, "logprobs": None}]})
        for part in _chunks(text, size)]
    events.append((None, {**envelope, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]}))
    return await _sse(request, events)


async def complete(request: web.Request, body: dict[str, Any], size: int) -> web.StreamResponse:
    """Anthropic legacy Text Completions: ``prompt`` echoed as ``completion``."""
    return web.json_response({"type": "completion", "id": "compl_1", "completion": body.get("prompt", ""),
                              "stop_reason": "stop_sequence", "model": body["model"]})


async def embeddings(request: web.Request, body: dict[str, Any], size: int) -> web.StreamResponse:
    inputs = body.get("input", "")
    count = 1 if isinstance(inputs, str) else len(inputs)
    return web.json_response({"object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                              "data": [{"object": "embedding", "index": i, "embedding": [0.0, 1.0]}
                                       for i in range(count)]})


def _gemini_text(body: dict[str, Any]) -> str:
    """The last user turn's text parts, and any function response's ``echo`` (a tool output)."""
    turn = [c for c in body["contents"] if c.get("role", "user") == "user"][-1]
    out = []
    for part in turn["parts"]:
        if "text" in part:
            out.append(part["text"])
        elif "functionResponse" in part:
            out.append(json.dumps(part["functionResponse"].get("response", {})))
    return "".join(out)


async def gemini(request: web.Request) -> web.StreamResponse:
    """Gemini ``generateContent`` / ``streamGenerateContent`` (``alt=sse``, or a streamed JSON array):
    the last user text echoed as text in chunks of ``x-test-chunk`` characters, then as a function call."""
    body = json.loads(await request.read())
    model, _, method = request.match_info["tail"].partition(":")
    text = _gemini_text(body) + (f" {request.headers['x-test-emit']}" if "x-test-emit" in request.headers else "")
    size = int(request.headers.get("x-test-chunk", "4"))
    usage = {"promptTokenCount": 7, "candidatesTokenCount": 9, "totalTokenCount": 16}
    call = {"functionCall": {"name": "echo", "args": {"echo": text}}}
    if method == "generateContent":
        return web.json_response({"candidates": [{"index": 0, "finishReason": "STOP", "content": {
            "role": "model", "parts": [{"text": text}, call]}}], "usageMetadata": usage,
            "modelVersion": f"{model}-001", "responseId": "r1"})
    chunks = [{"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": part}]}}],
               "usageMetadata": {"promptTokenCount": 7}, "modelVersion": f"{model}-001", "responseId": "r1"}
              for part in _chunks(text, size)]
    chunks.append({"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [call]}}],
                   "usageMetadata": usage, "modelVersion": f"{model}-001", "responseId": "r1"})
    if request.query.get("alt") == "sse":
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
    else:
        response = web.StreamResponse(headers={"Content-Type": "application/json; charset=UTF-8"})
        await response.prepare(request)
        pause = float(request.headers.get("x-test-pause", "0"))
        for i, chunk in enumerate(chunks):
            await response.write((("[" if i == 0 else ",\r\n") + json.dumps(chunk)).encode())
            await asyncio.sleep(pause)
        await response.write(b"]")
    await response.write_eof()
    return response


HANDLERS = {"/v1/messages": anthropic, "/v1/chat/completions": chat, "/v1/responses": responses,
            "/v1/completions": completions, "/v1/complete": complete, "/v1/embeddings": embeddings}
