"""Restoring placeholders in responses: whole JSON, and streams split at every possible point."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyproxy.redaction.placeholders import Vaults, placeholder_prefix_at_end
from policyproxy.redaction.restore import StreamRestorer, restore_json, restore_text
from policyproxy.redaction.sse import EventReader

VALUE = 'alice@corp.example "quoted" \\ slash'


@pytest.fixture
def vault():
    return Vaults(b"k" * 32).for_scope("client")


def token(vault, value=VALUE, kind="email"):
    return vault.placeholder(kind, value)


def sse(*payloads, event=None):
    out = b""
    for p in payloads:
        head = f"event: {event}\n" if event else ""
        out += f"{head}data: {json.dumps(p)}\n\n".encode()
    return out


def anthropic_text(parts, index=0):
    return [{"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}} for p in parts]


def anthropic_json(parts, index=1):
    return [{"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}}
            for p in parts]


def run(restorer, chunks):
    out = b"".join(restorer.feed(c) for c in chunks) + restorer.close()
    return [e for e in EventReader().feed(out)]


def texts(events, field="text"):
    collected = []
    for e in events:
        payload = json.loads(e.data)
        if payload.get("type") == "content_block_delta":
            collected.append(payload["delta"].get(field, ""))
    return "".join(collected)


def test_restore_text_and_unknown_placeholders(vault):
    t = token(vault)
    assert restore_text(f"hi {t}!", vault) == f"hi {VALUE}!"
    assert restore_text("[[EMAIL_0000000000]] stays", vault) == "[[EMAIL_0000000000]] stays"


def test_restore_json_escapes_inside_function_arguments(vault):
    t = token(vault)
    body = {"choices": [{"message": {"content": f"mail {t}", "tool_calls": [
        {"function": {"name": "send", "arguments": json.dumps({"to": t})}}]}}]}
    restored = restore_json(body, vault)
    assert restored["choices"][0]["message"]["content"] == f"mail {VALUE}"
    assert json.loads(restored["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"to": VALUE}


@pytest.mark.parametrize("field,maker", [("text", anthropic_text), ("partial_json", anthropic_json)])
def test_anthropic_placeholder_split_at_every_point_is_restored_exactly_once(vault, field, maker):
    t = token(vault)
    escape = field == "partial_json"
    prefix, suffix = ('{"to": "', '"}') if escape else ("Write to ", " now.")
    whole = prefix + t + suffix
    expected = prefix + (json.dumps(VALUE)[1:-1] if escape else VALUE) + suffix
    for cut in range(1, len(whole)):
        for second in (cut, min(len(whole), cut + 7)):
            parts = [whole[:cut], whole[cut:second], whole[second:]]
            stream = sse(*maker([p for p in parts if p])) + sse({"type": "content_block_stop", "index": 0 if not escape else 1})
            events = run(StreamRestorer(vault), [stream])
            assert texts(events, field) == expected, (cut, second)
            assert "[[" not in texts(events, field)
            if escape:
                assert json.loads(texts(events, field)) == {"to": VALUE}


def test_bytes_split_anywhere_in_the_sse_framing(vault):
    t = token(vault)
    stream = sse(*anthropic_text(["Hello ", t[:5], t[5:], " bye"])) + sse({"type": "content_block_stop", "index": 0})
    for cut in range(1, len(stream)):
        events = run(StreamRestorer(vault), [stream[:cut], stream[cut:]])
        assert texts(events) == f"Hello {VALUE} bye"


def test_a_literal_bracket_is_released_by_the_next_delta(vault):
    restorer = StreamRestorer(vault)
    first = restorer.feed(sse(*anthropic_text(["if (a[", "0] < b) {"])))
    assert texts(EventReader().feed(first)) == "if (a[0] < b) {"


def test_hold_back_is_never_longer_than_a_placeholder(vault):
    restorer = StreamRestorer(vault)
    out = restorer.feed(sse(*anthropic_text(["x" * 100 + "[[EMAIL_abc"])))
    assert texts(EventReader().feed(out)) == "x" * 100


def test_event_framing_ids_comments_and_names_are_preserved(vault):
    t = token(vault)
    stream = (b": keep-alive comment\n\n"
              b"id: 7\nevent: content_block_delta\nretry: 100\ndata: " + json.dumps(anthropic_text([t])[0]).encode() + b"\n\n")
    out = StreamRestorer(vault).feed(stream)
    assert out.startswith(b": keep-alive comment\n\nid: 7\nevent: content_block_delta\nretry: 100\ndata: ")
    assert json.dumps(VALUE)[1:-1].encode() in out


def test_thinking_deltas_are_never_altered(vault):
    t = token(vault)
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": t}}
    stream = sse(event)
    assert StreamRestorer(vault).feed(stream) == stream


def test_chat_completions_content_and_tool_calls_every_choice(vault):
    t = token(vault)
    args = json.dumps({"email": t})
    chunks = []
    for i in range(0, len(args), 5):
        chunks.append({"object": "chat.completion.chunk", "id": "c1", "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 5]}}]},
             "finish_reason": None},
            {"index": 1, "delta": {"content": f"{t} "[i // 5 * 3:i // 5 * 3 + 3]}, "finish_reason": None}]})
    chunks.append({"object": "chat.completion.chunk", "id": "c1", "choices": [
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"}, {"index": 1, "delta": {}, "finish_reason": "stop"}]})
    out = StreamRestorer(vault).feed(sse(*chunks) + b"data: [DONE]\n\n")
    events = EventReader().feed(out)
    assert events[-1].data == "[DONE]"
    arguments, content = "", ""
    for e in events[:-1]:
        for choice in json.loads(e.data)["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                arguments += call["function"]["arguments"]
    assert json.loads(arguments) == {"email": VALUE}
    assert content.startswith(VALUE)


def test_responses_api_text_and_function_arguments(vault):
    t = token(vault)
    text_events = [{"type": "response.output_text.delta", "item_id": "m1", "content_index": 0, "delta": p}
                   for p in (f"Hi {t[:9]}", t[9:], "!")]
    arg = json.dumps({"to": t})
    arg_events = [{"type": "response.function_call_arguments.delta", "item_id": "f1", "delta": arg[:12]},
                  {"type": "response.function_call_arguments.delta", "item_id": "f1", "delta": arg[12:]},
                  {"type": "response.function_call_arguments.done", "item_id": "f1", "arguments": arg}]
    done = {"type": "response.output_text.done", "item_id": "m1", "content_index": 0, "text": f"Hi {t}!"}
    out = StreamRestorer(vault).feed(sse(*text_events) + sse(done) + sse(*arg_events))
    payloads = [json.loads(e.data) for e in EventReader().feed(out)]
    text = "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")
    assert text == f"Hi {VALUE}!"
    args = "".join(p["delta"] for p in payloads if p["type"] == "response.function_call_arguments.delta")
    assert json.loads(args) == {"to": VALUE}
    assert next(p for p in payloads if p["type"] == "response.output_text.done")["text"] == f"Hi {VALUE}!"
    assert json.loads(next(p for p in payloads if p["type"].endswith("arguments.done"))["arguments"]) == {"to": VALUE}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab[]_E", max_size=40))
def test_prefix_hold_never_exceeds_a_placeholder_and_only_starts_at_a_bracket(text):
    keep = placeholder_prefix_at_end(text)
    assert keep <= 60
    if keep:
        assert text[-keep] == "["


# ---- streams from any compatible server: optional fields removed, one character per event --------

class TestMinimalStreams:
    """vLLM, Ollama, llama.cpp and gateways omit ``object``, ``id``, ``index`` and ``finish_reason``."""

    def text_with_token(self, vault):
        return f"mail {token(vault)} now [x] and {token(vault, 'b@c.io')}."

    def expected(self):
        return f"mail {VALUE} now [x] and b@c.io."

    @pytest.mark.parametrize("done", [True, False])
    def test_chat_chunks_with_only_choices_and_delta(self, vault, done):
        text = self.text_with_token(vault)
        chunks = [{"choices": [{"delta": {"content": c}}]} for c in text]
        body = sse(*chunks) + (b"data: [DONE]\n\n" if done else b"")
        events = run(StreamRestorer(vault), [body[i:i + 7] for i in range(0, len(body), 7)])
        content = "".join(json.loads(e.data)["choices"][0]["delta"].get("content", "")
                          for e in events if e.data != "[DONE]")
        assert content == self.expected()
        assert (events[-1].data == "[DONE]") is done

    def test_chat_tool_call_arguments_without_indexes(self, vault):
        arguments = json.dumps({"to": token(vault)})
        chunks = [{"choices": [{"delta": {"tool_calls": [{"function": {"arguments": c}}]}}]} for c in arguments]
        events = run(StreamRestorer(vault), [sse(*chunks)])
        out = "".join(json.loads(e.data)["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                      for e in events)
        assert json.loads(out) == {"to": VALUE}

    def test_legacy_completions_text_chunks(self, vault):
        text = self.text_with_token(vault)
        events = run(StreamRestorer(vault), [sse(*[{"choices": [{"text": c}]} for c in text])])
        assert "".join(json.loads(e.data)["choices"][0]["text"] for e in events) == self.expected()

    def test_a_finish_chunk_that_also_carries_text_keeps_the_order(self, vault):
        t = token(vault)
        chunks = [{"choices": [{"delta": {"content": "a " + t[:5]}}]},
                  {"choices": [{"delta": {"content": t[5:] + " z ["}, "finish_reason": "stop"}]}]
        events = run(StreamRestorer(vault), [sse(*chunks)])
        assert "".join(json.loads(e.data)["choices"][0]["delta"]["content"] for e in events) == f"a {VALUE} z ["
        assert json.loads(events[-1].data)["choices"][0]["finish_reason"] == "stop"

    def test_anthropic_deltas_without_index(self, vault):
        text = self.text_with_token(vault)
        chunks = [{"type": "content_block_delta", "delta": {"type": "text_delta", "text": c}} for c in text]
        events = run(StreamRestorer(vault), [sse(*chunks, event="content_block_delta")])
        assert texts(events) == self.expected()

    def test_responses_deltas_without_item_ids(self, vault):
        text = self.text_with_token(vault)
        chunks = [{"type": "response.output_text.delta", "delta": c} for c in text]
        events = run(StreamRestorer(vault), [sse(*chunks)])
        assert "".join(json.loads(e.data)["delta"] for e in events) == self.expected()

    def test_held_text_is_released_when_the_upstream_stops_mid_placeholder(self, vault):
        t = token(vault)
        restorer = StreamRestorer(vault)
        out = restorer.feed(sse({"choices": [{"delta": {"content": "x " + t[:6]}}]}))
        assert t[:6] not in out.decode()
        tail = restorer.close()
        assert json.loads(EventReader().feed(tail)[0].data)["choices"][0]["delta"]["content"] == t[:6]


# ---- response-side scanning: what the model emits that the client never sent ---------------------------

class TestResponseScanning:
    KEY = "AKIAZ7PQ3LXRN4TW2KJD"
    PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----"

    @pytest.fixture
    def redactor(self):
        from policyproxy.config.schema import RedactionSpec
        from policyproxy.redaction.engine import Redactor

        return Redactor(RedactionSpec())

    def scan(self, redactor, mask):
        from policyproxy.redaction.restore import ResponseScan

        return ResponseScan(redactor.find, mask=mask)

    @pytest.mark.parametrize("mask", [False, True])
    def test_json_bodies_counted_and_masked_and_what_the_client_sent_is_not_a_finding(self, vault, redactor, mask):
        from policyproxy.redaction.restore import restore_body

        sent = token(vault)   # the client's own value, masked on the way out: restored, never a finding
        body = {"content": [{"type": "text", "text": f"{sent} and new {self.KEY}"},
                            {"type": "tool_use", "input": {"k": self.KEY}}],
                "choices": [{"message": {"tool_calls": [{"function": {"arguments": json.dumps({"k": self.KEY})}}]}}]}
        scan = self.scan(redactor, mask)
        out = restore_body(json.dumps(body).encode(), vault, scan).decode()
        assert scan.counts == {"aws_access_key": 3}
        assert "alice@corp.example" in out
        assert (self.KEY in out) is not mask
        assert json.loads(json.loads(out)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])

    @pytest.mark.parametrize("mask", [False, True])
    def test_streams_one_character_per_event_counted_once_and_masked(self, vault, redactor, mask):
        text = f"first line\nkey {self.KEY} there\n{self.PEM}\nend"
        events = [*[{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}}
                    for c in text],
                  {"type": "content_block_stop", "index": 0}]
        scan = self.scan(redactor, mask)
        out = run(StreamRestorer(vault, scan), [sse(*events)])
        shown = texts(out)
        assert scan.counts == {"aws_access_key": 1, "private_key": 1}
        if mask:
            assert self.KEY not in shown and "MIIEow" not in shown
            assert shown.startswith("first line\nkey [REDACTED:aws_access_key] there\n")
        else:
            assert shown == text

    def test_mask_keeps_the_whole_texts_of_done_events_consistent(self, vault, redactor):
        scan = self.scan(redactor, True)
        deltas = [{"type": "response.output_text.delta", "item_id": "m", "delta": c} for c in f"k {self.KEY} "]
        done = {"type": "response.output_text.done", "item_id": "m", "text": f"k {self.KEY} "}
        out = [json.loads(e.data) for e in run(StreamRestorer(vault, scan), [sse(*deltas, done)])]
        streamed = "".join(p["delta"] for p in out if p["type"].endswith(".delta"))
        assert streamed == out[-1]["text"] == "k [REDACTED:aws_access_key] "
        assert scan.counts == {"aws_access_key": 1}

    def test_audit_of_a_long_stream_is_windowed_not_quadratic(self, vault, redactor):
        scan = self.scan(redactor, False)
        restorer = StreamRestorer(vault, scan)
        line = "x" * 99 + "\n"
        body = sse(*[{"choices": [{"delta": {"content": line}}]} for _ in range(6000)],
                   {"choices": [{"delta": {"content": f"key {self.KEY}"}}]})
        run(restorer, [body])
        assert scan.counts == {"aws_access_key": 1}
