"""WebSocket messages on a redaction endpoint (Codex's Responses transport, the Realtime API), sans I/O.

Each client text message is one JSON document (``response.create`` with its ``input``, tool outputs,
``conversation.item.create``...), redacted whole by the same engine, placeholders and scope as an
HTTP body. Each server text message is one event of the same shapes the SSE stream carries
(``response.output_text.delta``, function-call argument deltas, ``.done``, ``response.completed``),
restored with the stream restorer, so a placeholder split across messages is held back and released
whole. A client message that cannot be inspected (binary, not UTF-8 JSON, over the size limit, parsers
disagree, a ``block`` detector) raises ``MessageRefused``: the channel is closed with 1008.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policyproxy.redaction import jsontext
from policyproxy.redaction.engine import BodyError, Redactor, loads
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.restore import Observer, ResponseScan, StreamRestorer
from policyproxy.redaction.sse import Event

POLICY_VIOLATION = 1008   # RFC 6455 7.4.1
MAX_REASON = 120          # a close reason must fit in a control frame (125 bytes with the code)


class MessageRefused(Exception):
    """A client message that must not reach the model; ``reason`` (no message content) goes in the close."""

    def __init__(self, reason: str, blocked: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON]
        self.blocked = blocked


@dataclass
class ClientMessages:
    """Redacts what the client sends, message by message; counts accumulate for the channel's event."""

    redactor: Redactor
    vault: Vault
    limit: int
    counts: dict[str, int] = field(default_factory=dict)
    model: str | None = None   # the last ``model`` a message named (for the GenAI attributes)

    def text(self, data: str) -> str:
        if len(data) > self.limit:
            raise MessageRefused(f"a message is over the {self.limit}-byte inspection limit")
        try:
            document = loads(data)
        except BodyError as exc:
            raise MessageRefused(f"message not inspected: {exc}") from None
        except ValueError:
            raise MessageRefused("message not inspected: not JSON") from None
        try:
            result = self.redactor.redact_body(document, self.vault)
        except BodyError as exc:
            raise MessageRefused(f"message not inspected: {exc}") from None
        for name, count in result.counts.items():
            self.counts[name] = self.counts.get(name, 0) + count
        if result.blocked:
            raise MessageRefused(f"blocked by detectors: {', '.join(sorted(result.blocked))}", blocked=True)
        body: Any = result.body
        model = _model_of(body)
        if model is not None:
            self.model = model
        if not result.counts:
            return data   # every string scanned, nothing found: as sent
        return jsontext.dumps(body).decode("utf-8")

    @staticmethod
    def binary(data: bytes) -> bytes:
        raise MessageRefused("binary messages cannot be inspected on a redaction endpoint")


def _model_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for holder in (body, body.get("response"), body.get("session")):
        if isinstance(holder, dict) and isinstance(holder.get("model"), str):
            return str(holder["model"])
    return None


class ServerMessages:
    """Restores what the server sends, one event per message, holding a split placeholder back."""

    def __init__(self, vault: Vault, scan: ResponseScan | None = None, observe: Observer | None = None) -> None:
        self.stream = StreamRestorer(vault, scan, observe=observe)

    def text(self, data: str) -> list[str]:
        """The messages to send for one the server sent: zero (held back), one, or a released one first."""
        event = Event([f"data: {line}" for line in data.split("\n")])
        return [e.data for e in self.stream.restore_event(event) if e.data is not None]

    def close(self) -> list[str]:
        """What is still held when the channel ends, restored."""
        return [e.data for e in self.stream.release() if e.data is not None]
