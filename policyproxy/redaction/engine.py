"""The redaction engine: a compiled ``RedactionSpec`` that rewrites text, and request bodies by API.

Pure and synchronous. ``Redactor.redact_text`` caches per vault, keyed by the text itself: an agent
re-sends the whole conversation every turn, so a turn costs what is new, not the whole history.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import RedactionAction
from policyproxy.redaction.detectors import Span
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.rules import RedactionRules


@dataclass
class TextResult:
    text: str
    counts: dict[str, int]
    blocked: frozenset[str]
    tokens: tuple[tuple[str, str], ...] = ()   # (placeholder, value) minted, re-touched on cache hits


@dataclass
class BodyResult:
    body: Any
    counts: dict[str, int] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return bool(self.counts)


class Redactor:
    def __init__(self, spec: RedactionSpec, cache_size: int = 4096) -> None:
        self.rules = RedactionRules.compile(spec)
        self.actions: dict[str, RedactionAction] = dict(self.rules.actions)
        self.cache_size = cache_size

    # ---- text ----------------------------------------------------------------------------------
    def find(self, text: str) -> list[Span]:
        return self.rules.find(text)

    def _allowed(self, value: str) -> bool:
        return self.rules.allowed(value)

    def redact_text(self, text: str, vault: Vault, spans: Mapping[str, list[Span]] | None = None) -> TextResult:
        """``text`` rewritten; ``spans`` may carry what ``find`` already returned for it elsewhere."""
        cache: OrderedDict[str, TextResult] = vault.cache
        hit = cache.get(text)
        if hit is not None:
            cache.move_to_end(text)
            for token, value in hit.tokens:
                vault.touch(token, value)
            return hit
        result = self._redact_uncached(text, vault, spans.get(text) if spans is not None else None)
        cache[text] = result
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return result

    def _redact_uncached(self, text: str, vault: Vault, found: list[Span] | None = None) -> TextResult:
        spans = self.find(text) if found is None else found
        if not spans:
            return TextResult(text, {}, frozenset())
        out: list[str] = []
        counts: dict[str, int] = {}
        blocked: set[str] = set()
        tokens: list[tuple[str, str]] = []
        cursor = 0
        for span in spans:
            value = text[span.start:span.end]
            action = self.actions[span.detector]
            counts[span.detector] = counts.get(span.detector, 0) + 1
            out.append(text[cursor:span.start])
            if action is RedactionAction.MASK:
                token = vault.placeholder(span.detector, value)
                tokens.append((token, value))
                out.append(token)
            elif action is RedactionAction.REDACT:
                out.append(f"[REDACTED:{span.detector}]")
            else:
                blocked.add(span.detector)
                out.append(value)
            cursor = span.end
        out.append(text[cursor:])
        return TextResult("".join(out), counts, frozenset(blocked), tuple(tokens))

    # ---- bodies ----------------------------------------------------------------------------------
    def unseen(self, body: Any, vault: Vault) -> list[str]:
        """The strings of ``body`` this scope has not scanned yet (what a turn really costs)."""
        return list(dict.fromkeys(s for s in strings(body) if s not in vault.cache))

    def redact_body(self, body: Any, vault: Vault, spans: Mapping[str, list[Span]] | None = None) -> BodyResult:
        result = BodyResult(body)

        def rewrite(text: str) -> str:
            done = self.redact_text(text, vault, spans)
            for name, count in done.counts.items():
                result.counts[name] = result.counts.get(name, 0) + count
            result.blocked |= done.blocked
            return done.text

        result.body = walk(body, rewrite)
        return result


# ---- walking provider JSON -----------------------------------------------------------------------

# Keys whose values are identifiers, settings or tool schemas, never user content.
SKIP_KEYS = frozenset({
    "model", "type", "role", "id", "call_id", "tool_use_id", "tool_call_id", "item_id", "cache_control",
    "tools", "tool_choice", "response_format", "text_format", "stream", "stream_options", "max_tokens",
    "max_output_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "stop_sequences",
    "reasoning_effort", "parallel_tool_calls", "store", "service_tier", "previous_response_id", "include",
    "signature", "encrypted_content", "media_type", "status", "object", "index", "logprobs",
})
# Blocks that are signed, encrypted or binary: altering them breaks them, so they are never touched.
OPAQUE_TYPES = frozenset({"thinking", "redacted_thinking", "reasoning", "image", "input_image", "input_audio",
                          "image_url", "base64", "file", "input_file"})
# Strings that hold JSON text (function-call arguments): rewritten as JSON, values escaped as JSON.
JSON_TEXT_KEYS = frozenset({"arguments", "partial_json"})


def walk(node: Any, rewrite: Callable[[str], str], *, json_escape: bool = False) -> Any:
    """Apply ``rewrite`` to every user-content string of a provider request or response."""
    if isinstance(node, str):
        if node.startswith("data:") and ";base64," in node[:100]:
            return node
        return rewrite(node)
    if isinstance(node, list):
        return [walk(item, rewrite) for item in node]
    if isinstance(node, dict):
        if node.get("type") in OPAQUE_TYPES:
            return node
        out = {}
        for key, value in node.items():
            if key in SKIP_KEYS:
                out[key] = value
            elif key in JSON_TEXT_KEYS and isinstance(value, str):
                out[key] = _walk_json_text(value, rewrite)
            else:
                out[key] = walk(value, rewrite)
        return out
    return node


def _walk_json_text(text: str, rewrite: Callable[[str], str]) -> str:
    try:
        inner = json.loads(text)
    except ValueError:
        return rewrite(text)
    changed = walk(inner, rewrite)
    if changed == inner:
        return text
    return json.dumps(changed, ensure_ascii=False, separators=(",", ":"))


def strings(node: Any) -> Iterable[str]:
    """Every string ``walk`` would rewrite (for measuring and tests)."""
    found: list[str] = []
    walk(node, lambda s: found.append(s) or s)
    return found
