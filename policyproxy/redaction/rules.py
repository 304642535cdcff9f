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
        """Non-overlapping spans: secrets first, then longer spans, then the earlier detector.

        Text with invisible characters or fullwidth forms is also read folded (``AKIA\u200b...``,
        ``ＡＫＩＡ...``: a model reads through them, the detectors would not): what only the folded
        reading finds is added, mapped back over the original characters.
        """
        spans = self._find(text)
        if _DISGUISE.search(text) is None:
            return spans
        folded, origin = fold(text)
        taken = [(s.start, s.end) for s in spans]
        for span in self._find(folded):
            start, end = origin[span.start], origin[span.end - 1] + 1
            if not any(start < e and s < end for s, e in taken):
                spans.append(Span(start, end, span.detector))
                taken.append((start, end))
        return sorted(spans, key=lambda s: s.start)

    def _find(self, text: str) -> list[Span]:
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


# Characters a reader (or a model) skips or folds but a regex does not: soft hyphen, zero-width and
# joiner characters, bidi controls, word joiners, variation selectors, BOM, and fullwidth ASCII forms.
_INVISIBLE = "\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufe00-\ufe0f\ufeff"
_DISGUISE = re.compile(f"[{_INVISIBLE}\uff01-\uff5e\u3000]")
_INVISIBLE_CHAR = re.compile(f"[{_INVISIBLE}]")


def fold(text: str) -> tuple[str, list[int]]:
    """``text`` without invisible characters and with fullwidth forms as ASCII, and for each folded
    character the index of the original it came from."""
    out: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        if _INVISIBLE_CHAR.match(char):
            continue
        code = ord(char)
        out.append(chr(code - 0xFEE0) if 0xFF01 <= code <= 0xFF5E else " " if code == 0x3000 else char)
        origin.append(i)
    return "".join(out), origin


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
