"""Put the real values back into what the model answers: whole JSON bodies, and SSE streams.

In a stream a placeholder can be split across two or more deltas. Each delta stream (an Anthropic
content block, a Chat Completions choice or tool call - recognised by shape, as any compatible server
sends it - a Responses item) keeps a tail that could
still grow into a placeholder - never more than a placeholder's length, and only a ``[`` that could
begin one, so a literal ``[`` or ``<`` in code is never held longer than until the next delta - and
releases it restored, exactly once: when its block or choice ends, at ``[DONE]``, at the end of the
stream, or when the upstream fails mid-stream (``close``). Values that land inside JSON text (tool-call arguments) are
JSON-escaped. Unknown placeholders are left as they are.

With a shared store the vault may not hold a placeholder another instance minted. The restorer never
awaits; instead the shell asks first: ``placeholders_in`` (a whole body) or ``StreamRestorer.wanted``
(a dry run of the events a chunk completes) names what would be looked up, the shell fetches what the
vault is ``missing`` in one round trip, then feeds.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policyproxy.redaction import jsontext
from policyproxy.redaction.detectors import Span
from policyproxy.redaction.placeholders import PLACEHOLDER, Lookup, placeholder_prefix_at_end
from policyproxy.redaction.sse import Event, EventReader


def restore_text(text: str, vault: Lookup, *, json_escape: bool = False) -> str:
    if "[[" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        found = vault.value(match.group(0))
        if found is None:
            return match.group(0)
        return json.dumps(found, ensure_ascii=False)[1:-1] if json_escape else found

    return PLACEHOLDER.sub(value, text)


@dataclass
class ResponseScan:
    """Secrets and PII the model emitted that the client never sent: found in the model's text before
    placeholders are restored (what the client sent reaches the model only as placeholders, which
    are never findings), counted by detector, and with ``mask`` replaced by ``[REDACTED:<detector>]``
    (not a placeholder: nothing may restore it). Values are never kept."""

    find: Callable[[str], list[Span]]
    mask: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def text(self, text: str, *, json_text: bool = False, count: bool = True) -> str:
        """``text`` with its findings counted (``count``) and, under ``mask``, replaced. In JSON text a
        finding holding a quote or backslash is only counted (replacing it could break the JSON)."""
        if not text or (not count and not self.mask):
            return text
        spans = self.find(text)
        if not spans:
            return text
        if count:
            for span in spans:
                self.counts[span.detector] = self.counts.get(span.detector, 0) + 1
        if not self.mask:
            return text
        out: list[str] = []
        cursor = 0
        for span in spans:
            if json_text and any(c in text[span.start:span.end] for c in '"\\'):
                continue
            out += [text[cursor:span.start], f"[REDACTED:{span.detector}]"]
            cursor = span.end
        out.append(text[cursor:])
        return "".join(out)


def restore_json(node: Any, vault: Lookup, scan: ResponseScan | None = None, count: bool = True) -> Any:
    """Every string of a response restored, object keys included (they are masked too); function-call
    arguments (JSON text) with escaping. ``scan`` looks at the model's strings first."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("arguments", "partial_json") and isinstance(value, str):
                if scan is not None:
                    value = scan.text(value, json_text=True, count=count)
                out[key] = restore_text(value, vault, json_escape=True)
            else:
                out[restore_text(key, vault)] = restore_json(value, vault, scan, count)
        return out
    if isinstance(node, list):
        return [restore_json(item, vault, scan, count) for item in node]
    if isinstance(node, str):
        return restore_text(scan.text(node, count=count) if scan is not None else node, vault)
    return node


def _json_lines(text: str) -> list[tuple[str, Any, str]] | None:
    """(line, its JSON or None when blank, line end) for text of JSON lines, else None: a value
    restored into raw text would land unescaped inside a JSON string and break (or inject into) it."""
    out: list[tuple[str, Any, str]] = []
    for line in text.splitlines(keepends=True):
        raw = line.rstrip("\r\n")
        if not raw.strip():
            out.append((raw, None, line[len(raw):]))
            continue
        try:
            out.append((raw, json.loads(raw), line[len(raw):]))
        except (ValueError, RecursionError):
            return None
    return out if any(doc is not None for _, doc, _ in out) else None


Observer = Callable[[Any], None]   # sees each parsed JSON document of an answer (GenAI usage)


def placeholders_in(data: bytes) -> set[str]:
    """Every placeholder written whole in ``data`` (in JSON strings they are never escaped)."""
    if b"]]" not in data:
        return set()
    return {match.group(0) for match in PLACEHOLDER.finditer(data.decode("utf-8", "replace"))}


class _Recorder:
    """A lookup that notes which placeholders the vault does not hold (a dry run's vault)."""

    def __init__(self, vault: Lookup) -> None:
        self.vault = vault
        self.misses: set[str] = set()

    def value(self, token: str, now: float | None = None) -> str | None:
        found = self.vault.value(token, now)
        if found is None:
            self.misses.add(token)
        return found


def restore_body(data: bytes, vault: Lookup, scan: ResponseScan | None = None,
                 observe: Observer | None = None) -> bytes:
    """A whole response body restored: as JSON when it parses (values escaped where they land),
    else as text; a body too deep to walk is restored as text too (never an exception)."""
    try:
        document = json.loads(data)
        if observe is not None:
            observe(document)
        if isinstance(document, list) and document and all(isinstance(d, dict) and "candidates" in d
                                                           for d in document):
            return jsontext.dumps(_restore_chunks(document, vault, scan))
        return jsontext.dumps(restore_json(document, vault, scan))
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = data.decode("utf-8", "replace")
    lines = _json_lines(text)
    if lines is not None:   # NDJSON (Ollama, streamed JSON under a JSON content type): line by line
        try:
            return "".join((jsontext.dumps(restore_json(doc, vault, scan)).decode("utf-8") if doc is not None
                            else raw) + end for raw, doc, end in lines).encode("utf-8")
        except RecursionError:
            pass
    return restore_text(scan.text(text) if scan is not None else text, vault).encode("utf-8")


def _restore_chunks(chunks: list[Any], vault: Lookup, scan: ResponseScan | None) -> list[Any]:
    """A Gemini ``streamGenerateContent`` JSON array: its elements are one delta stream (a placeholder
    may be split across two of them), restored as the SSE form is."""
    stream = StreamRestorer(vault, scan)
    events = [e for chunk in chunks for e in stream.restore_event(Event(["data: " + json.dumps(chunk)]))]
    events += stream.release()
    return [json.loads(e.data or "null") for e in events]


# ---- streams --------------------------------------------------------------------------------------

@dataclass
class _Held:
    text: str                                  # raw (unrestored) tail that may become a placeholder
    json_escape: bool
    make: Callable[[str], Event]               # builds a delta event carrying released text
    pending: str = ""                          # under response masking: text not yet scanned


# Responses (SSE and WebSocket) and Realtime text deltas: one delta stream per item and content part.
_RESPONSES_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                               "response.refusal.delta", "response.text.delta", "response.audio_transcript.delta",
                               "response.output_audio_transcript.delta"})
AUDIT_WINDOW = 256 * 1024   # model text kept per delta stream for audit scanning (scanned in windows)
MASK_HOLD = 2048            # under masking, text is released at line ends, or at a space past this size
MASK_HOLD_PEM = 16 * 1024   # ... but a private key block is held whole up to this size


@dataclass
class StreamRestorer:
    """Feed SSE bytes from the upstream, get SSE bytes for the client."""

    vault: Lookup
    scan: ResponseScan | None = None
    reader: EventReader = field(default_factory=EventReader)
    held: dict[tuple[Any, ...], _Held] = field(default_factory=dict)
    seen: dict[tuple[Any, ...], tuple[list[str], int]] = field(default_factory=dict)   # audit: text, size
    observe: Observer | None = None

    def feed(self, data: bytes) -> bytes:
        return self.release_events(self.receive(data))

    def receive(self, data: bytes) -> list[Event]:
        """The events ``data`` completes (step one of ``feed``; nothing is restored yet)."""
        return self.reader.feed(data)

    def release_events(self, events: list[Event]) -> bytes:
        """Restore ``events`` (step two of ``feed``)."""
        return b"".join(e.encode() for event in events for e in self._event(event))

    def wanted(self, events: list[Event]) -> set[str]:
        """The placeholders releasing ``events`` would look up and the vault does not hold: a dry run
        on a copy of the held state, with response scanning off (so text it would hold back for
        scanning counts at once: a superset, which is harmless to fetch). Skipped when no placeholder
        can end in them."""
        if not any(e.data is not None and "]" in e.data for e in events) and \
                not any("]]" in held.pending for held in self.held.values()):
            return set()   # a placeholder only completes with a "]"
        held, seen, scan, vault, observe = self.held, self.seen, self.scan, self.vault, self.observe
        recorder = _Recorder(vault)
        # A dry run: nothing it sees is counted (usage, response findings) or kept.
        self.held, self.scan, self.vault, self.seen, self.observe = dict(held), None, recorder, {}, None
        try:
            for event in events:
                self._event(event)
            self._flush(lambda key: True)
        finally:
            self.held, self.seen, self.scan, self.vault, self.observe = held, seen, scan, vault, observe
        return recorder.misses

    def close(self) -> bytes:
        out = b"".join(e.encode() for e in self._flush(lambda key: True))
        for key in list(self.seen):
            self._audit(key, "", final=True)
        return out + self.reader.rest()

    def restore_event(self, event: Event) -> list[Event]:
        """One whole event (a WebSocket message is one): the events to send for it, in order."""
        return self._event(event)

    def release(self) -> list[Event]:
        """Everything still held back, restored (the channel ended)."""
        out = self._flush(lambda key: True)
        for key in list(self.seen):
            self._audit(key, "", final=True)
        return out

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
        if self.observe is not None:
            self.observe(payload)
        if not isinstance(payload, dict):
            return [event]
        kind = payload.get("type")
        if kind == "content_block_delta":
            return self._anthropic_delta(event, payload)
        if kind in _RESPONSES_DELTAS:
            return self._responses_delta(event, payload)
        if isinstance(payload.get("candidates"), list):
            return self._gemini_chunk(event, payload)
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
        # Whole texts (message_start, *.done, response.completed) repeat what the deltas carried: masked
        # the same way, counted only once (with the deltas).
        restored = restore_json(payload, self.vault, self.scan, count=False)
        return [*before, event if restored == payload else _with_json(event, restored)]

    # -- the three delta shapes ----------------------------------------------------------------------
    def _anthropic_delta(self, event: Event, payload: dict[str, Any]) -> list[Event]:
        delta = payload.get("delta") or {}
        field_name = {"text_delta": "text", "input_json_delta": "partial_json"}.get(str(delta.get("type")))
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
            key: tuple[Any, ...]
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
                before += self._flush(_other_keys_of(index, present))
        return [*before, _with_json(event, clone) if changed else event]

    def _gemini_chunk(self, event: Event, payload: dict[str, Any]) -> list[Event]:
        """A Gemini ``streamGenerateContent?alt=sse`` chunk: ``candidates[].content.parts[].text`` is the
        delta stream of its candidate (a placeholder may be split across chunks); everything else in
        the chunk (function calls arrive whole) is restored as it stands."""
        clone = copy.deepcopy(payload)
        before: list[Event] = []
        for candidate in clone["candidates"]:
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index") or 0
            final = candidate.get("finishReason") is not None
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            key = ("gemini", index)
            if isinstance(parts, list):
                texts = [i for i, part in enumerate(parts)
                         if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought")]
                for i, part in enumerate(parts):
                    if i in texts:
                        part["text"] = self._release(key, part["text"], False, _gemini_maker(event, payload, index),
                                                     final and i == texts[-1])
                    elif isinstance(part, dict):   # function calls and responses arrive whole
                        signature = part.get("thoughtSignature")
                        parts[i] = restore_json({k: v for k, v in part.items() if k != "thoughtSignature"},
                                                self.vault, self.scan)
                        if signature is not None:
                            parts[i]["thoughtSignature"] = signature
            if candidate.get("finishReason") is not None:
                before += self._flush(lambda k, index=index: k == ("gemini", index))   # type: ignore[misc]
        rest = iter(restore_json({k: v for k, v in clone.items() if k != "candidates"}, self.vault, self.scan,
                                 count=False).items())
        # The chunk's keys in their order, the candidates where they were.
        out = dict(("candidates", clone["candidates"]) if key == "candidates" else next(rest) for key in clone)
        return [*before, _with_json(event, out)]

    # -- holding back ----------------------------------------------------------------------------
    def _release(self, key: tuple[Any, ...], delta: str, json_escape: bool, make: Callable[[str], Event],
                 final: bool = False) -> str:
        held = self.held.pop(key, None)
        pending = ""
        if self.scan is not None and self.scan.mask:
            pending = (held.pending if held else "") + delta
            cut = len(pending) if final else _mask_cut(pending)
            delta, pending = self.scan.text(pending[:cut], json_text=json_escape), pending[cut:]
        elif self.scan is not None:
            self._audit(key, delta, final)
        elif held is not None and held.pending:   # a dry run (``wanted``): text held for scanning counts
            delta = held.pending + delta
        text = (held.text if held else "") + delta
        keep = 0 if final else placeholder_prefix_at_end(text)
        if keep or pending:
            self.held[key] = _Held(text[len(text) - keep:], json_escape, make, pending)
            text = text[:len(text) - keep]
        return restore_text(text, self.vault, json_escape=json_escape)

    def _flush(self, which: Callable[[tuple[Any, ...]], bool]) -> list[Event]:
        out = []
        for key in [k for k in self.held if which(k)]:
            held = self.held.pop(key)
            text = held.text
            if held.pending and self.scan is not None:
                text += self.scan.text(held.pending, json_text=held.json_escape)
            elif held.pending:   # a dry run (``wanted``)
                text += held.pending
            out.append(held.make(restore_text(text, self.vault, json_escape=held.json_escape)))
        for key in [k for k in self.seen if which(k)]:
            self._audit(key, "", final=True)
        return out

    def _audit(self, key: tuple[Any, ...], text: str, final: bool = False) -> None:
        """Count findings in the model's text of one delta stream: whole, or in windows cut at a line."""
        assert self.scan is not None
        parts, size = self.seen.pop(key, ([], 0))
        if text:
            parts.append(text)
            size += len(text)
        if final:
            self.scan.text("".join(parts))
            return
        if size > AUDIT_WINDOW:
            seen = "".join(parts)
            cut = seen.rfind("\n", 0, AUDIT_WINDOW) + 1 or AUDIT_WINDOW
            self.scan.text(seen[:cut])
            parts, size = [seen[cut:]], len(seen) - cut
        self.seen[key] = (parts, size)


def _other_keys_of(index: Any, present: set[tuple[Any, ...]]) -> Callable[[tuple[Any, ...]], bool]:
    """Which held keys a finished chat choice releases before its last chunk: its own, not in it."""
    return lambda key: key[0] == "chat" and key[1] == index and key not in present


def _mask_cut(text: str) -> int:
    """How much of a delta stream's unscanned text can be scanned and released now: up to its last line
    end (a whole private key block once it is complete), or past ``MASK_HOLD`` up to its last space."""
    begin = text.rfind("-----BEGIN ")
    floor = 0
    if begin >= 0:
        end = text.find("-----END ", begin)
        close = text.find("-----", end + 9) if end >= 0 else -1
        if close < 0 and len(text) - begin < MASK_HOLD_PEM:
            return begin   # an open key block: everything before it
        floor = close + 5 if close >= 0 else 0
    cut = max(text.rfind("\n") + 1, floor)
    if not cut and len(text) > MASK_HOLD:
        cut = max(text.rfind(" "), text.rfind("\t")) + 1 or len(text)
    return cut


def _with_json(event: Event, payload: Any) -> Event:
    return event.with_data(jsontext.dumps(payload).decode("utf-8"))


def _gemini_maker(event: Event, payload: dict[str, Any], index: Any) -> Callable[[str], Event]:
    def make(text: str) -> Event:
        envelope = {k: v for k, v in payload.items() if k not in ("candidates", "usageMetadata")}
        envelope["candidates"] = [{"index": index, "content": {"role": "model", "parts": [{"text": text}]}}]
        return _with_json(event, envelope)

    return make


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



_WHITESPACE = b" \t\r\n"


class ArrayStreamRestorer:
    """A Gemini ``streamGenerateContent`` answer without ``alt=sse``: one JSON array whose elements
    arrive as the model writes them. Each element is cut out as soon as it is whole (at a ``,`` or
    ``]`` outside strings at the top level), restored as an SSE event would be (a placeholder split
    across elements held back), and sent on; the array is re-serialised compactly. An answer that is
    not an array is read whole and restored as a JSON body."""

    def __init__(self, vault: Lookup, scan: ResponseScan | None = None, observe: Observer | None = None) -> None:
        self.vault, self.scan, self.observe = vault, scan, observe
        self.stream = StreamRestorer(vault, scan)
        self.state = "start"          # start | array | after (the array ended) | whole (not an array)
        self.element = bytearray()
        self.depth = 0
        self.in_string = self.escape = False
        self.count = 0                # elements sent so far
        self.rest = bytearray()       # what is buffered in "whole" state

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        i = 0
        if self.state == "start":
            stripped = data.lstrip(_WHITESPACE)
            if not stripped:
                return b""
            if stripped[:1] != b"[":
                self.state = "whole"
            else:
                self.state = "array"
                out += b"["
                i = len(data) - len(stripped) + 1
        if self.state == "whole":
            self.rest += data
            return b""
        if self.state == "after":
            return bytes(data)
        element = self.element
        while i < len(data):
            byte = data[i]
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif byte == 0x5C:   # backslash
                    self.escape = True
                elif byte == 0x22:
                    self.in_string = False
                element.append(byte)
            elif byte == 0x22:
                self.in_string = True
                element.append(byte)
            elif byte in b"{[":
                self.depth += 1
                element.append(byte)
            elif byte in b"}]" and self.depth > 0:
                self.depth -= 1
                element.append(byte)
            elif self.depth == 0 and byte in b",]":
                out += self._element()
                if byte == 0x5D:   # the array's end
                    out += self._released() + b"]"
                    self.state = "after"
                    out += data[i + 1:]
                    return bytes(out)
            else:
                element.append(byte)
            i += 1
        return bytes(out)

    def close(self) -> bytes:
        if self.state == "whole":
            return restore_body(bytes(self.rest), self.vault, self.scan, self.observe)
        if self.state == "array":   # cut short: what is whole and what was held, no closing bracket
            return self._element() + self._released()
        return b""

    def _element(self) -> bytes:
        raw = bytes(self.element).strip(_WHITESPACE)
        self.element.clear()   # the same buffer: ``feed`` holds it
        if not raw:
            return b""
        try:
            document = json.loads(raw)
        except ValueError:
            return self._emit([restore_text(raw.decode("utf-8", "replace"), self.vault).encode("utf-8")])
        if self.observe is not None:
            self.observe(document)
        if isinstance(document, dict) and isinstance(document.get("candidates"), list):
            events = self.stream.restore_event(Event(["data: " + json.dumps(document)]))
            return self._emit([(e.data or "null").encode("utf-8") for e in events])
        return self._emit([jsontext.dumps(restore_json(document, self.vault, self.scan))])

    def _released(self) -> bytes:
        return self._emit([(e.data or "null").encode("utf-8") for e in self.stream.release()])

    def _emit(self, elements: list[bytes]) -> bytes:
        out = bytearray()
        for element in elements:
            out += (b"," if self.count else b"") + element
            self.count += 1
        return bytes(out)
