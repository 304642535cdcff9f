"""Optional names and places from a spaCy pipeline (``redaction.ner_model``, the ``[ner]`` extra).

The operator names a pipeline that is already installed (a package name or a directory); nothing is
downloaded. A statistical pipeline reads well under 1 MB/s, so it only sees prose: lines that are mostly
words (not code, not data), at most ``PROSE_LIMIT`` characters per text; the model-free detectors of
``names_addresses`` still run everywhere. Entities map to ``person_name`` (PERSON) and
``street_address`` (FAC, and LOC/GPE only when a house number is part of it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector, Windows

PROSE_LIMIT = 64 * 1024
_LINE = re.compile(r"[^\n]+")
_WORDY_LINE = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]")


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset, line) for lines that read as prose: at least 4 words, 70% letters and spaces."""
    budget = PROSE_LIMIT
    for match in _LINE.finditer(text):
        line = match.group()
        if len(line) < 16 or line.count(" ") < 3:
            continue
        letters = sum(1 for c in line if c.isalpha() or c == " ")
        if letters < 0.7 * len(line) or "{" in line or "=" in line or ("(" in line and ")" in line):
            continue
        yield match.start(), line
        budget -= len(line)
        if budget <= 0:
            return


@dataclass
class _Pipeline:
    """The loaded pipeline, and the entities of the last text it read (two detectors share one pass)."""

    nlp: Any
    last: tuple[str, list[tuple[int, int, str]]] | None = field(default=None)

    def entities(self, text: str) -> list[tuple[int, int, str]]:
        if self.last is not None and self.last[0] is text:
            return self.last[1]
        found: list[tuple[int, int, str]] = []
        lines = list(_prose_lines(text))
        for (offset, _), doc in zip(lines, self.nlp.pipe(line for _, line in lines), strict=True):
            found.extend((offset + e.start_char, offset + e.end_char, e.label_) for e in doc.ents)
        self.last = (text, found)
        return found


@dataclass(frozen=True)
class NerDetector(Detector):
    labels: frozenset[str] = frozenset()
    pipeline: _Pipeline | None = field(default=None, compare=False)

    def may_match(self, windows: Windows) -> bool:
        return _WORDY_LINE.search(windows.text) is not None

    def scan(self, text: str, windows: Windows) -> Iterator[tuple[int, int]]:
        assert self.pipeline is not None
        for start, end, label in self.pipeline.entities(text):
            place = label in ("LOC", "GPE")
            if label in self.labels and (not place or any(c.isdigit() for c in text[start:end])):
                yield start, end


def ner_detectors(model: str) -> tuple[Detector, ...]:
    """The PERSON and address detectors of the spaCy pipeline ``model`` (loaded once, here)."""
    import spacy  # the [ner] extra: imported only when a model is configured

    pipeline = _Pipeline(spacy.load(model, exclude=["parser", "lemmatizer", "textcat"]))
    never = re.compile(r"(?!)")
    return (
        NerDetector(D.PERSON_NAME, never, secret=False, labels=frozenset({"PERSON", "PER"}), pipeline=pipeline),
        NerDetector(D.STREET_ADDRESS, never, secret=False, labels=frozenset({"FAC", "LOC", "GPE"}),
                    pipeline=pipeline),
    )
