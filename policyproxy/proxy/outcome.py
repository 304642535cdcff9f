"""What became of one request or connection (``Outcome``), and the fan-out to decision sinks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from policyproxy.policy.model import Decision
from policyproxy.redaction.genai import GenAI


@dataclass(slots=True)
class Outcome:
    """Filled in as a request travels; reported once, with its decision, when it ends."""

    client: str
    connection_id: str | None = None
    status: int | None = None             # what the client got (None: closed without an answer)
    redactions: dict[str, int] = field(default_factory=dict)
    emitted: dict[str, int] = field(default_factory=dict)   # found in the model's answer (redaction.responses)
    added_ms: float | None = None          # what the proxy added to the upstream's time
    genai: GenAI | None = None             # on LLM endpoints: provider, operation, models, token usage
    identity: str | None = None            # the authenticated listener user (events: enduser.id)
    protocol_version: str | None = None    # "2" when the client spoke HTTP/2 (events: network.protocol.version)


DecisionSink = Callable[[Decision, Outcome], None]


class Reporter:
    """Hands each decision to every sink; a broken sink never breaks proxying."""

    def __init__(self) -> None:
        self.sinks: list[DecisionSink] = []
        self.log = logging.getLogger("policyproxy")

    def report(self, decision: Decision, outcome: Outcome) -> None:
        if not decision.allowed:
            self.log.info("deny %s %s:%s %s (%s) from %s", decision.reason.value, decision.host, decision.port,
                          decision.method or "", decision.message, outcome.client)
        for sink in self.sinks:
            try:
                sink(decision, outcome)
            except Exception:
                self.log.exception("decision sink failed")
