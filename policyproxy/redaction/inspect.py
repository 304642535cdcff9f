"""Step 7 for one request: decode, parse, redact, and decide (pure; the proxy only moves bytes).

Fail closed: a body that is too large, compressed in a way we cannot decode, not UTF-8 or not JSON,
or JSON that parsers read differently (duplicate keys, NaN, lone surrogates, nesting past the limit)
is denied with ``inspection_failed`` and a message naming the problem; nothing uninspected is
forwarded. A body where nothing was found goes out as received: every string in it was scanned.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from policyproxy.policy.model import Decision
from policyproxy.reasons import Reason, Source, Verdict
from policyproxy.redaction import jsontext
from policyproxy.redaction.detectors import Span
from policyproxy.redaction.engine import BodyError, BodyResult, Redactor, loads
from policyproxy.redaction.explainer import add_explainer
from policyproxy.redaction.placeholders import Vault
from policyproxy.responses import BlockAnswer, pii_blocked_answer


class InspectionFailed(Exception):
    """The body cannot be inspected safely; the message says why (no body content in it)."""


@dataclass(frozen=True)
class Inspection:
    decision: Decision
    body: bytes | None                 # what to forward when allowed (the body was consumed to read it)
    answer: BlockAnswer | None = None  # what to send when the body is blocked
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    model: str | None = None           # the body's ``model`` as forwarded (for the GenAI attributes)


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip() and c.strip().lower() != "identity"]
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip", "deflate"):
            inflater = zlib.decompressobj(47 if coding != "deflate" else 15)
            try:
                body = inflater.decompress(body, limit + 1)
            except zlib.error:
                try:  # raw deflate, as some clients send it
                    body = zlib.decompressobj(-15).decompress(body, limit + 1)
                except zlib.error:
                    raise InspectionFailed(f"the {coding} body is corrupt") from None
            if len(body) > limit or inflater.unconsumed_tail:
                raise InspectionFailed(f"the decoded body is over the {limit}-byte inspection limit")
        elif coding == "br":
            body = _optional("brotli", coding).decompress(body)
        elif coding == "zstd":
            body = _optional("zstandard", coding).ZstdDecompressor().decompress(body, max_output_size=limit + 1)
        else:
            raise InspectionFailed(f"content-encoding {coding!r} cannot be inspected")
        if len(body) > limit:
            raise InspectionFailed(f"the decoded body is over the {limit}-byte inspection limit")
    return body


def _optional(module: str, coding: str):  # type: ignore[no-untyped-def]
    try:
        return __import__(module)
    except ImportError:
        raise InspectionFailed(f"content-encoding {coding!r} cannot be decoded here") from None


def parse_body(body: bytes, encoding: str | None, limit: int) -> tuple[bytes, Any]:
    """(decoded bytes, JSON document), or ``InspectionFailed`` saying why not."""
    if len(body) > limit:
        raise InspectionFailed(f"the body is over the {limit}-byte inspection limit")
    raw = decode_body(body, encoding, limit)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InspectionFailed("the body is not valid UTF-8") from None
    try:   # a leading byte-order mark is allowed (RFC 8259 8.1) and forwarded as received
        return raw, loads(text[1:] if text.startswith("\ufeff") else text)
    except BodyError as exc:
        raise InspectionFailed(str(exc)) from None
    except ValueError:
        raise InspectionFailed("the body is not valid JSON") from None


def screen_query(redactor: Redactor, decision: Decision, query: str) -> Decision:
    """A redaction endpoint's query string with a secret or PII in it is refused (403).

    No provider reads prompt text from the query, and a query cannot be masked and restored like a
    body; an unscanned query was a way past redaction (``/v1/messages?q=AKIA...``). Only detector
    names go in the message, never the value.
    """
    if not query:
        return decision
    found = sorted({span.detector for span in redactor.find(unquote_plus(query))})
    if not found:
        return decision
    return _deny(decision, Reason.INSPECTION_FAILED,
                 f"the query string of a redaction endpoint carries {', '.join(found)}; send it in the body")


def failed(decision: Decision, exc: InspectionFailed) -> Inspection:
    return Inspection(_deny(decision, Reason.INSPECTION_FAILED, f"request body not inspected: {exc}"), None)


def inspect(redactor: Redactor, vault: Vault, decision: Decision, body: bytes, encoding: str | None,
            limit: int) -> Inspection:
    try:
        raw, document = parse_body(body, encoding, limit)
    except InspectionFailed as exc:
        return failed(decision, exc)
    return conclude(redactor, vault, decision, body, raw, document)


def conclude(redactor: Redactor, vault: Vault, decision: Decision, body: bytes, raw: bytes, document: Any,
             spans: Mapping[str, list[Span]] | None = None) -> Inspection:
    """Redact a parsed body (``spans``: what was already found for its new strings) and decide."""
    try:
        result = redactor.redact_body(document, vault, spans)
    except BodyError as exc:
        return failed(decision, InspectionFailed(str(exc)))
    inspection = _decide(redactor, decision, raw, result)
    model = result.body.get("model") if isinstance(result.body, dict) else None
    return dataclasses.replace(inspection, model=model) if isinstance(model, str) else inspection


def _decide(redactor: Redactor, decision: Decision, raw: bytes, result: BodyResult) -> Inspection:
    if result.blocked:
        names = sorted(result.blocked)
        denied = _deny(decision, Reason.PII_BLOCKED, f"blocked by detectors: {', '.join(names)}", Source.PROFILE)
        return Inspection(denied, None, pii_blocked_answer(decision.path or "", names), result.counts)
    if redactor.explain_placeholders:
        explained = add_explainer(result.body, decision.path or "")
        if explained is not result.body:
            return Inspection(dataclasses.replace(decision, reason=Reason.REDACTED) if result.counts else decision,
                              jsontext.dumps(explained), None, result.counts)
    if not result.counts:
        return Inspection(decision, raw)   # unchanged: the decoded bytes as received
    redacted = jsontext.dumps(result.body)
    return Inspection(dataclasses.replace(decision, reason=Reason.REDACTED), redacted, None, result.counts)


def _deny(decision: Decision, reason: Reason, message: str, source: Source = Source.DEFAULT) -> Decision:
    return dataclasses.replace(decision, verdict=Verdict.DENY, reason=reason, source=source, message=message)
