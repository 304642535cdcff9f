"""The redaction engine: a compiled ``RedactionSpec`` that rewrites text, and request bodies by API.

Pure and synchronous. ``Redactor.redact_text`` caches per vault, keyed by the text itself: an agent
re-sends the whole conversation every turn, so a turn costs what is new, not the whole history.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import RedactionAction
from policyproxy.redaction.detectors import Span
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.rules import RedactionRules

IDENTIFIER = "identifier"   # cache keys of identifier-mode results are (IDENTIFIER, text)
IDENTIFIER_PII = frozenset({"email", "credit_card", "us_ssn", "iban"})   # checksummed or unmistakable shapes


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


class Redactor:
    def __init__(self, spec: RedactionSpec) -> None:
        self.rules = RedactionRules.compile(spec)
        self.actions: dict[str, RedactionAction] = dict(self.rules.actions)
        # In identifiers (model, ids, role...) only what cannot be part of a name is looked for: secrets
        # and values with an unambiguous shape; phone-, address- or date-shaped parts are left alone.
        self.identifier_detectors = frozenset(d.name for d in self.rules.detectors if d.secret) | IDENTIFIER_PII
        self.explain_placeholders = spec.explain_placeholders
        self.rules_id = object()   # names these compiled rules: a vault's text cache is valid for one

    # ---- text ----------------------------------------------------------------------------------
    def find(self, text: str) -> list[Span]:
        return self.rules.find(text)

    def _allowed(self, value: str) -> bool:
        return self.rules.allowed(value)

    def redact_text(self, text: str, vault: Vault, spans: Mapping[str, list[Span]] | None = None,
                    identifier: bool = False) -> TextResult:
        """``text`` rewritten; ``spans`` may carry what ``find`` already returned for it elsewhere.

        ``identifier``: the text is a name the provider reads (model, id, role): only secrets and
        unmistakable PII in it count.
        The cache belongs to these rules: after a reload the first use empties it, so text a client
        already sent is judged again by the new rules (never left weaker than the config says).
        """
        vault.cache.claim(self.rules_id)
        return self._cached(text, vault, spans, identifier)

    def _cached(self, text: str, vault: Vault, spans: Mapping[str, list[Span]] | None,
                identifier: bool) -> TextResult:
        cache = vault.cache
        key = (IDENTIFIER, text) if identifier else text
        hit: TextResult | None = cache.get(key)
        if hit is not None:
            for token, value in hit.tokens:
                vault.touch(token, value)
            return hit
        found = spans.get(text) if spans is not None else None
        if found is None:
            found = self.find(text)
        if identifier:
            found = [span for span in found if span.detector in self.identifier_detectors]
        result = self._rewrite(text, vault, found)
        cache.put(key, result, len(text))
        return result

    def _rewrite(self, text: str, vault: Vault, spans: list[Span]) -> TextResult:
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
        """The strings of ``body`` this scope has not scanned yet (what a turn really costs).

        A body that cannot be walked gives none: ``redact_body`` then says why."""
        vault.cache.claim(self.rules_id)
        try:
            found = strings(body)
        except BodyError:
            return []
        cache = vault.cache
        return list(dict.fromkeys(text for text, identifier in found
                                  if ((IDENTIFIER, text) if identifier else text) not in cache))

    def redact_body(self, body: Any, vault: Vault, spans: Mapping[str, list[Span]] | None = None) -> BodyResult:
        """``body`` with every string rewritten; ``BodyError`` if it must not be forwarded at all."""
        result = BodyResult(body)
        vault.cache.claim(self.rules_id)
        cached = self._cached

        def rewrite(text: str, identifier: bool) -> str:
            done = cached(text, vault, spans, identifier)
            if done.counts:
                for name, count in done.counts.items():
                    result.counts[name] = result.counts.get(name, 0) + count
                if done.blocked:
                    result.blocked |= done.blocked
            return done.text

        result.body = walk(body, rewrite)
        return result


# ---- walking provider JSON -----------------------------------------------------------------------

class BodyError(ValueError):
    """A body the proxy must not forward as read (duplicate keys, nesting too deep, a lone surrogate):
    what the provider would read and what was scanned could differ. The message names the problem."""


MAX_DEPTH = 128   # provider bodies nest a dozen levels; a thousand is an attack on the parser
# Identifiers the provider reads as names, not text: only secrets and unmistakable PII (email, card,
# SSN, IBAN) are looked for in them, so a phone- or date-shaped model name or id is never altered.
IDENTIFIER_KEYS = frozenset({
    "model", "role", "type", "object", "status", "id", "call_id", "tool_use_id", "tool_call_id", "item_id",
    "previous_response_id", "media_type", "format", "detail",
})
# Values that are signed or encrypted (altering them breaks them): skipped only in their exact shape,
# under their key, in the block or item type that carries them (a ``signature`` in a tool's input or in
# ``metadata`` is text like any other).
OPAQUE_KEYS = {"signature": frozenset({"thinking"}), "encrypted_content": frozenset({"reasoning", "compaction"}),
               "data": frozenset({"redacted_thinking"})}
_OPAQUE_VALUE = re.compile(r"[A-Za-z0-9+/=_\-]{100,}")
# Strings that hold JSON text (function-call arguments): rewritten as JSON, values escaped as JSON.
JSON_TEXT_KEYS = frozenset({"arguments", "partial_json"})
# Binary media as base64: skipped only when the payload is valid base64 that starts like the file
# format it claims (PNG, JPEG, GIF, RIFF/WebP/WAV, PDF, MP3 with ID3, Ogg, FLAC) and is not tiny.
_DATA_URL = re.compile(r"data:(?:image|audio|video)/[A-Za-z0-9.+-]{1,40};base64,|data:application/pdf;base64,",
                       re.IGNORECASE)
_MAGIC = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "SUQz", "T2dnUw", "ZkxhQw")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
MIN_BINARY = 128
NUMBER_DIGITS = 7   # integers this long are scanned as their digits (a card or SSN sent as a number)
_NUMBER_MIN = 10 ** (NUMBER_DIGITS - 1)
_PLAIN_KEY = re.compile(r"[a-z_]{1,24}")   # keys shown in errors: lowercase words, never a token
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

Rewrite = Callable[[str, bool], str]   # (text, identifier) -> text; identifier: look for secrets only


def is_binary_base64(text: str) -> bool:
    """A real image, audio or PDF payload in base64 (bare or as a data URL): nothing in it is text."""
    if text.startswith(("data:", "DATA:", "Data:")):
        head = _DATA_URL.match(text)
        if head is None:
            return False
        text = text[head.end():]
    return (len(text) >= MIN_BINARY and len(text) % 4 == 0 and text.startswith(_MAGIC)
            and _BASE64.fullmatch(text) is not None)


def walk(node: Any, rewrite: Rewrite, depth: int = 0) -> Any:
    """Apply ``rewrite`` to every string the provider reads (object keys and large integers included),
    except binary media payloads and signed/encrypted values in their exact shape."""
    if isinstance(node, str):
        return node if is_binary_base64(node) else rewrite(node, False)
    if depth >= MAX_DEPTH:
        raise BodyError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, list):
        return [walk(item, rewrite, depth + 1) for item in node]
    if isinstance(node, dict):
        out = {}
        block_type = node.get("type")
        if not isinstance(block_type, str):
            block_type = None   # a list or object as type: never hashed, never opaque
        for key, value in node.items():
            new_key = rewrite(key, False)
            if isinstance(value, str):
                if key in IDENTIFIER_KEYS:
                    value = rewrite(value, True)
                elif block_type in OPAQUE_KEYS.get(key, ()) and _OPAQUE_VALUE.fullmatch(value):
                    pass
                elif key in JSON_TEXT_KEYS:
                    value = _walk_json_text(value, rewrite, depth)
                else:
                    value = walk(value, rewrite, depth + 1)
            else:
                value = walk(value, rewrite, depth + 1)
            out[new_key] = value
        return out
    kind = type(node)
    if kind is int and (node >= _NUMBER_MIN or node <= -_NUMBER_MIN):
        digits = str(abs(node))   # the sign is not part of a card or an account number
    elif kind is float and _NUMBER_MIN <= abs(node) < 2 ** 53 and node.is_integer():   # 4539148803436467.0
        digits = str(int(abs(node)))
    else:
        return node
    done = rewrite(digits, False)
    return node if done == digits else done   # masked: the number becomes its placeholder string


def _walk_json_text(text: str, rewrite: Rewrite, depth: int) -> str:
    try:
        inner = loads(text)
    except BodyError as exc:
        raise BodyError(f"function-call arguments: {exc}") from None
    except ValueError:
        return rewrite(text, False)
    changed = walk(inner, rewrite, depth + 1)
    if changed == inner:
        return text
    return json.dumps(changed, ensure_ascii=False, separators=(",", ":"))


def strings(node: Any) -> list[tuple[str, bool]]:
    """Every (string, identifier) ``walk`` would rewrite, in order (for offloading, measuring, tests)."""
    found: list[tuple[str, bool]] = []

    def note(text: str, identifier: bool) -> str:
        found.append((text, identifier))
        return text

    walk(node, note)
    return found


# ---- reading JSON strictly ---------------------------------------------------------------------------

def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise BodyError(f"duplicate key {_shown(duplicate)} in a JSON object (parsers disagree on which "
                        "copy counts)")
    return out


def _shown(key: str) -> str:
    """A key for an error message: short keys as written, others only by length (keys may be secret)."""
    return repr(key) if _PLAIN_KEY.fullmatch(key) else f"of {len(key)} characters"


def _constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BodyError(f"a number of {len(text)} characters is out of range")   # never its digits
    return value


def loads(text: str) -> Any:
    """JSON as the provider would read it, refusing what parsers read differently: duplicate keys,
    NaN/Infinity, numbers out of range, lone UTF-16 surrogates, nesting past ``MAX_DEPTH``.

    ``BodyError`` names the problem; any other ``ValueError`` means the text is not JSON.
    """
    try:
        document = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise BodyError(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BodyError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
        except RecursionError:
            raise BodyError(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    return document
