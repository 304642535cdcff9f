"""``RedactionRules``: a ``RedactionSpec`` compiled into the detectors to run, the action of each and the
allowlists, with ``find(text) -> list[Span]``. The one place config meets detectors, so ``config``
names detectors by the ``DetectorName`` enum and never imports ``redaction``.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import DetectorName, RedactionAction
from policyproxy.redaction.detectors import Detector, PrefixIndex, Span, Windows, builtin_detectors, looks_placeholder
from policyproxy.redaction.placeholders import PLACEHOLDER


@dataclass(frozen=True)
class RedactionRules:
    detectors: tuple[Detector, ...]
    actions: Mapping[str, RedactionAction]   # detector name -> what to do (no OFF: those are not compiled)
    prefix_index: PrefixIndex
    allow_values: frozenset[str] = frozenset()
    allow_hashes: frozenset[str] = frozenset()
    allow_regexes: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def compile(cls, spec: RedactionSpec) -> RedactionRules:
        overrides = {DetectorName(name).value: action for name, action in spec.detectors}
        actions: dict[str, RedactionAction] = {}
        detectors: list[Detector] = []
        for detector in builtin_detectors(tuple(spec.phone_regions)) + _ner(spec):
            action = overrides.get(detector.name, spec.default_action)
            if action is not RedactionAction.OFF:
                detectors.append(detector)
                actions[detector.name] = action
        for pattern in spec.patterns:
            if pattern.action is not RedactionAction.OFF:
                detectors.append(Detector(pattern.name, re.compile(pattern.regex)))
                actions[pattern.name] = pattern.action
        return cls(
            detectors=tuple(detectors),
            actions=actions,
            prefix_index=PrefixIndex(p for d in detectors for p in d.literals()),
            allow_values=frozenset(spec.allow_values),
            allow_hashes=frozenset(h.lower() for h in spec.allow_sha256),
            allow_regexes=tuple(re.compile(r) for r in spec.allow_patterns),
        )

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans: secrets first, then longer spans, then the earlier detector."""
        candidates: list[tuple[int, int, int, int, str]] = []
        windows = Windows(text, self.prefix_index)
        for rank, detector in enumerate(self.detectors):
            if not detector.may_match(windows):
                continue
            for start, end in set(detector.scan(text, windows)):
                if start < 0 or end <= start:
                    continue
                value = text[start:end]
                if detector.validate is not None and not detector.validate(value, text, start):
                    continue
                if detector.secret and detector.name != DetectorName.PRIVATE_KEY and looks_placeholder(value):
                    continue   # sk-ant-xxxx..., ghp_xxxx..., xoxb-your-bot-token: nothing to protect
                if self.allowed(value):
                    continue
                candidates.append((0 if detector.secret else 1, start - end, rank, start, detector.name))
        candidates.sort()
        taken: list[tuple[int, int, str]] = []
        starts: list[int] = []
        for _, negative_length, _, start, name in candidates:
            end = start - negative_length
            i = bisect.bisect_left(starts, start)
            if (i > 0 and taken[i - 1][1] > start) or (i < len(taken) and taken[i][0] < end):
                continue
            taken.insert(i, (start, end, name))
            starts.insert(i, start)
        return [Span(start, end, name) for start, end, name in taken]

    def allowed(self, value: str) -> bool:
        """The operator's allowlists (exact values, SHA-256 digests, whole-value regexes) and our placeholders."""
        if value in self.allow_values or PLACEHOLDER.fullmatch(value):
            return True
        if self.allow_hashes and hashlib.sha256(value.encode()).hexdigest() in self.allow_hashes:
            return True
        return any(r.fullmatch(value) for r in self.allow_regexes)


def _ner(spec: RedactionSpec) -> tuple[Detector, ...]:
    """The spaCy detectors when ``ner_model`` is set and one of their names is on (the pipeline loads once)."""
    if not spec.ner_model:
        return ()
    overrides = {DetectorName(name).value: action for name, action in spec.detectors}
    names = (DetectorName.PERSON_NAME.value, DetectorName.STREET_ADDRESS.value)
    if all(overrides.get(name, spec.default_action) is RedactionAction.OFF for name in names):
        return ()
    from policyproxy.redaction.detectors.ner import ner_detectors

    return ner_detectors(spec.ner_model)
