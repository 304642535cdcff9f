"""Put the real values back into what the model answers: whole JSON bodies, and SSE streams.

In a stream a placeholder can be split across two or more deltas. Each delta stream (an Anthropic
content block, a Chat Completions choice or tool call - recognised by shape, as any compatible server
sends it - a Responses item) keeps a tail that could
still grow into a placeholder - never more than a placeholder's length, and only a ``[`` that could
begin one, so a literal ``[`` or ``<`` in code is never held longer than until the next delta - and
releases it restored, exactly once: when its block or choice ends, at ``[DONE]``, at the end of the
stream, or when the upstream fails mid-stream (``close``). Values that land inside JSON text (tool-call arguments) are
JSON-escaped. Unknown placeholders are left as they are.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policyproxy.redaction import jsontext
from policyproxy.redaction.placeholders import PLACEHOLDER, Vault, placeholder_prefix_at_end
from policyproxy.redaction.sse import Event, EventReader


def restore_text(text: str, vault: Vault, *, json_escape: bool = False) -> str:
    if "[[" not in text:
        return text

    def value(match: Any) -> str:
        found = vault.value(match.group(0))
        if found is None:
            return match.group(0)
        return json.dumps(found, ensure_ascii=False)[1:-1] if json_escape else found

    return PLACEHOLDER.sub(value, text)


def restore_json(node: Any, vault: Vault) -> Any:
    """Every string of a response restored, object keys included (they are masked too); function-call
    arguments (JSON text) with escaping."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("arguments", "partial_json") and isinstance(value, str):
                out[key] = restore_text(value, vault, json_escape=True)
            else:
                out[restore_text(key, vault)] = restore_json(value, vault)
        return out
    if isinstance(node, list):
        return [restore_json(item, vault) for item in node]
    if isinstance(node, str):
        return restore_text(node, vault)
    return node


def restore_body(data: bytes, vault: Vault) -> bytes:
    """A whole response body restored: as JSON when it parses (values escaped where they land),
    else as text; a body too deep to walk is restored as text too (never an exception)."""
    try:
        return jsontext.dumps(restore_json(json.loads(data), vault))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return restore_text(data.decode("utf-8", "replace"), vault).encode("utf-8")


# ---- streams --------------------------------------------------------------------------------------

@dataclass
class _Held:
    text: str                                  # raw (unrestored) tail that may become a placeholder
    json_escape: bool
    make: Callable[[str], Event]               # builds a delta event carrying released text


@dataclass
class StreamRestorer:
    """Feed SSE bytes from the upstream, get SSE bytes for the client."""

    vault: Vault
    reader: EventReader = field(default_factory=EventReader)
    held: dict[tuple[Any, ...], _Held] = field(default_factory=dict)

    def feed(self, data: bytes) -> bytes:
        return b"".join(e.encode() for event in self.reader.feed(data) for e in self._event(event))

    def close(self) -> bytes:
        out = b"".join(e.encode() for e in self._flush(lambda key: True))
        return out + self.reader.rest()

    # -- one event -----------------------------------------------------------------------------
    def _event(self, event: Event) -> list[Event]:
        data = event.data
        if data is None:
            return [event]
        if data.strip() == "[DONE]":
            return [*self._flush(lambda key: True), event]
        try:
            payload = json.loads(data)
        except ValueError:
            return [event]
        if not isinstance(payload, dict):
            return [event]
        kind = payload.get("type")
        if kind == "content_block_delta":
            return self._anthropic_delta(event, payload)
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                    "response.refusal.delta"):
            return self._responses_delta(event, payload)
        choices = payload.get("choices")
        if isinstance(choices, list) and any(isinstance(c, dict) and ("delta" in c or "text" in c) for c in choices):
            return self._chat_chunk(event, payload)
        before: list[Event] = []
        if kind == "content_block_stop":
            before = self._flush(lambda key: key == ("anthropic", payload.get("index")))
        elif kind in ("message_delta", "message_stop", "response.completed", "response.incomplete",
                      "response.failed", "error"):
            before = self._flush(lambda key: True)
        elif isinstance(kind, str) and kind.startswith("response.") and kind.endswith(".done"):
            item = payload.get("item_id") or (payload.get("item") or {}).get("id")
            before = self._flush(lambda key: key[0] == "responses" and key[1] == item)
        restored = restore_json(payload, self.vault)
        return [*before, event if restored == payload else _with_json(event, restored)]

    # -- the three delta shapes ----------------------------------------------------------------------
    def _anthropic_delta(self, event: Event, payload: dict[str, Any]) -> list[Event]:
        delta = payload.get("delta") or {}
        field_name = {"text_delta": "text", "input_json_delta": "partial_json"}.get(delta.get("type"))
        if field_name is None or not isinstance(delta.get(field_name), str):
            return [event]   # thinking and signature deltas are signed: never touched
        key = ("anthropic", payload.get("index"))

        def make(text: str) -> Event:
            clone = copy.deepcopy(payload)
            clone["delta"][field_name] = text
            return _with_json(event, clone)

        released = self._release(key, delta[field_name], field_name == "partial_json", make)
        if released == delta[field_name]:
            return [event]
        return [make(released)]

    def _responses_delta(self, event: Event, payload: dict[str, Any]) -> list[Event]:
        if not isinstance(payload.get("delta"), str):
            return [event]
        arguments = payload["type"] == "response.function_call_arguments.delta"
        key = ("responses", payload.get("item_id"), payload.get("content_index"), arguments)

        def make(text: str) -> Event:
            clone = dict(payload)
            clone["delta"] = text
            return _with_json(event, clone)

        released = self._release(key, payload["delta"], arguments, make)
        return [event] if released == payload["delta"] else [make(released)]

    def _chat_chunk(self, event: Event, payload: dict[str, Any]) -> list[Event]:
        """A Chat Completions (``delta``) or legacy Completions (``text``) chunk, recognised by shape:
        ``object``, ``id``, ``index`` and ``finish_reason`` are all optional (a missing index is 0)."""
        clone = copy.deepcopy(payload)
        before: list[Event] = []
        changed = False
        for choice in clone["choices"]:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index") or 0
            final = choice.get("finish_reason") is not None
            present: set[tuple[Any, ...]] = set()
            delta = choice.get("delta")
            if isinstance(choice.get("text"), str):   # legacy Completions
                key = ("chat", index, "text")
                present.add(key)
                original = choice["text"]
                choice["text"] = self._release(key, original, False, _text_maker(event, payload, index), final)
                changed |= choice["text"] != original
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    key = ("chat", index, "content")
                    present.add(key)
                    original = delta["content"]
                    delta["content"] = self._release(key, original, False, _chat_maker(event, payload, index, None),
                                                     final)
                    changed |= delta["content"] != original
                for call in delta.get("tool_calls") or []:
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                        key = ("chat", index, "call", call.get("index") or 0)
                        present.add(key)
                        original = function["arguments"]
                        function["arguments"] = self._release(
                            key, original, True, _chat_maker(event, payload, index, call.get("index") or 0), final)
                        changed |= function["arguments"] != original
            if final:   # what this chunk does not carry is released just before it
                before += self._flush(lambda key, index=index, present=present:
                                      key[0] == "chat" and key[1] == index and key not in present)
        return [*before, _with_json(event, clone) if changed else event]

    # -- holding back ----------------------------------------------------------------------------
    def _release(self, key: tuple[Any, ...], delta: str, json_escape: bool, make: Callable[[str], Event],
                 final: bool = False) -> str:
        held = self.held.pop(key, None)
        text = (held.text if held else "") + delta
        keep = 0 if final else placeholder_prefix_at_end(text)
        if keep:
            self.held[key] = _Held(text[-keep:], json_escape, make)
            text = text[:-keep]
        return restore_text(text, self.vault, json_escape=json_escape)

    def _flush(self, which: Callable[[tuple[Any, ...]], bool]) -> list[Event]:
        out = []
        for key in [k for k in self.held if which(k)]:
            held = self.held.pop(key)
            out.append(held.make(restore_text(held.text, self.vault, json_escape=held.json_escape)))
        return out


def _with_json(event: Event, payload: Any) -> Event:
    return event.with_data(jsontext.dumps(payload).decode("utf-8"))


def _chat_maker(event: Event, payload: dict[str, Any], index: Any, call: Any) -> Callable[[str], Event]:
    def make(text: str) -> Event:
        delta: dict[str, Any] = {"content": text} if call is None else \
            {"tool_calls": [{"index": call, "function": {"arguments": text}}]}
        envelope = {k: v for k, v in payload.items() if k != "choices"}
        envelope["choices"] = [{"index": index, "delta": delta, "finish_reason": None}]
        return _with_json(event, envelope)

    return make


def _text_maker(event: Event, payload: dict[str, Any], index: Any) -> Callable[[str], Event]:
    def make(text: str) -> Event:
        envelope = {k: v for k, v in payload.items() if k != "choices"}
        envelope["choices"] = [{"index": index, "text": text, "finish_reason": None}]
        return _with_json(event, envelope)

    return make

