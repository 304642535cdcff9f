"""The machinery every detector shares: where to look (``Windows``, one Aho-Corasick pass for literal
prefixes and context words), what a detector is (``Detector``), what it returns (``Span``), and the
shape tests that reject look-alikes (``looks_like_reference``, ``looks_benign``, ``entropy``, ``luhn``).

Pure: functions of the text only.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import ahocorasick_rs

from policyproxy.redaction.placeholders import PLACEHOLDER

Validator = Callable[[str, str, int], bool]   # (value, whole text, start) -> keep?


class Windows:
    """Where in a text each family of detectors needs to look, computed once per text.

    Python's ``re`` finds a literal prefix fast but tries a character class at every position; so
    digit-shaped, ``@``-shaped and keyword-gated detectors run only inside windows around cheap
    anchors, and literal-prefixed ones keep their prefix first (boundaries checked in Python).
    """

    def __init__(self, text: str, prefixes: PrefixIndex | None = None) -> None:
        self.text = text
        self.prefixes = prefixes
        self._prefix_hits: dict[str, list[int]] | None = None
        self._cache: dict[str, list[tuple[int, int]]] = {}
        self._hits: list[int] | None = None

    def prefix_hits(self) -> dict[str, list[int]]:
        """Where each detector's literal prefix occurs: all of them in one Aho-Corasick pass."""
        if self._prefix_hits is None:
            self._prefix_hits = self.prefixes.find(self.text) if self.prefixes is not None else {}
        return self._prefix_hits

    def keyword_hits(self) -> list[int]:
        """Where a word that names a secret starts: from the same Aho-Corasick pass as the prefixes
        (lower, UPPER and Capitalised spellings), else ``str.find`` on the lowered text."""
        if self._hits is None and self.prefixes is not None and self.prefixes.keywords:
            hits = self.prefix_hits()
            keywords = self.prefixes.keywords
            self._hits = sorted({i for word, found in hits.items() if word in keywords for i in found})
        if self._hits is None:
            lower = self.text.lower()
            hits = [i for word in _KEYWORDS for i in _finds(lower, word)]
            for i in _finds(lower, "key"):   # api_key, access-key, privatekey, ...: one pass, then a look back
                head = lower[max(0, i - 12):i]
                owner_end = i - (len(head) - len(head.rstrip("_-")))
                for owner in _KEY_OWNERS:
                    if lower.startswith(owner, owner_end - len(owner)):
                        hits.append(owner_end - len(owner))
                        break
            self._hits = sorted(set(hits))
        return self._hits

    def around(self, words: frozenset[str], before: int, after: int) -> list[tuple[int, int]]:
        """Merged windows around ``words`` (their spellings, found in the one Aho-Corasick pass)."""
        hits = self.prefix_hits()
        if self.prefixes is None:   # no index: find them by hand
            return _merge([(i - before, i + after) for word in words for i in _finds(self.text, word)], len(self.text))
        return _merge([(i - before, i + after) for word, found in hits.items() if word in words for i in found],
                      len(self.text))

    def get(self, family: str) -> list[tuple[int, int]]:
        found = self._cache.get(family)
        if found is None:
            found = self._cache[family] = _merge(self._compute(family), len(self.text))
        return found

    def _compute(self, family: str) -> list[tuple[int, int]]:
        text = self.text
        if family == "digits":   # runs of digits and separators: phones, cards, SSNs, IBANs, IPv4
            run = _ASCII_DIGIT_RUN if text.isascii() else _DIGIT_RUN   # same runs; ASCII-only is a third faster
            return [(m.start() - 12, m.end() + 12) for m in run.finditer(text)   # + a phone extension
                    if m.group().count(".") >= 3 or len(m.group().translate(_NOT_DIGITS)) >= 7]
        if family == "at":   # an "@" between two non-space characters (not a decorator, not "@ mention")
            size = len(text)
            return [(i - 66, i + 260) for i in _finds(text, "@")
                    if 0 < i < size - 1 and not text[i - 1].isspace() and text[i + 1].isalnum()]
        if family == "display":   # "Jane Doe <jane@x.io>": the 80 characters before a "<" that opens an address
            out = []
            for at in _finds(text, "@"):
                lt = text.rfind("<", max(0, at - 65), at)
                if lt > 0 and not any(c in text[lt + 1:at] for c in " \t\n>"):
                    out.append((lt - 80, lt + 1))
            return out
        if family == "colons":   # IPv6: a "::" or three hex groups between colons
            return [(i - 40, i + 40) for i in _finds(text, "::")] + \
                [(m.start() - 40, m.end() + 40) for m in _COLON_RUN.finditer(text)]
        if family == "keywords":
            return [(i - 80, i + 300) for i in self.keyword_hits()]
        raise ValueError(family)


class PrefixIndex:
    """Every detector's literal prefixes, and the words that name secrets, in one automaton
    (ahocorasick_rs, Rust): one pass over the text finds them all, where ``re`` needs one per detector."""

    def __init__(self, prefixes: Iterable[str], keywords: bool = True) -> None:
        """``prefixes``: every literal any detector needs (its prefixes and context spellings)."""
        self.keywords = frozenset(keyword_spellings()) if keywords else frozenset()
        self.patterns = sorted(set(prefixes) | self.keywords)
        # A DFA: more memory than the default NFA (a few MB for ~700 patterns), 2-3x faster per byte.
        self.automaton = ahocorasick_rs.AhoCorasick(
            self.patterns, implementation=ahocorasick_rs.Implementation.DFA) if self.patterns else None

    def find(self, text: str) -> dict[str, list[int]]:
        hits: dict[str, list[int]] = {}
        if self.automaton is None:
            return hits
        for index, start, _ in self.automaton.find_matches_as_indexes(text, overlapping=True):
            hits.setdefault(self.patterns[index], []).append(start)
        return hits


def _merge(windows: list[tuple[int, int]], size: int, gap: int = 0) -> list[tuple[int, int]]:
    """Sorted, clipped windows; overlapping ones (or ones less than ``gap`` apart) are joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        start, end = max(0, start), min(size, end)
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


_NOT_DIGITS = str.maketrans("", "", " ().+-")
_DIGIT_RUN = re.compile(r"\d[\d ().+-]{5,40}\d")
_ASCII_DIGIT_RUN = re.compile(r"\d[\d ().+-]{5,40}\d", re.ASCII)
_COLON_RUN = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")   # a literal first: found fast


def _finds(text: str, literal: str) -> list[int]:
    out, i = [], text.find(literal)
    while i >= 0:
        out.append(i)
        i = text.find(literal, i + len(literal))
    return out
_KEYWORDS = ("secret", "token", "passw", "pwd", "credential", "bearer", "basic ", "authorization", "x-api-key")
_KEY_OWNERS = ("api", "access", "private", "session", "signing", "master", "app", "account", "encryption",
               "client")   # ...followed by key, _key or -key


def spellings(word: str) -> set[str]:
    """How a word is written in code and prose: lower, UPPER and Capitalised."""
    return {word, word.lower(), word.upper(), word[:1].upper() + word[1:].lower()}


def keyword_spellings() -> set[str]:
    """The secret-naming words as they are written: lower, UPPER and Capitalised, ``*_key`` joined."""

    def cases(word: str) -> set[str]:
        return {word, word.upper(), word.capitalize()}

    words = {spelling for word in _KEYWORDS for spelling in cases(word)}
    words |= {"X-Api-Key", "X-API-Key"}
    for owner in _KEY_OWNERS:
        for o in cases(owner):
            for sep in ("_", "-", ""):
                for key in cases("key"):
                    words.add(o + sep + key)
    return words


@dataclass(frozen=True)
class Detector:
    name: str
    regex: re.Pattern[str]
    group: int | tuple[int, ...] = 0   # the secret's group (0: whole match; a tuple: the first that took part)
    validate: Validator | None = None
    secret: bool = True            # secrets win over PII when spans overlap
    family: str | None = None      # look only in these windows (None: the whole text)
    not_after: str | None = None   # besides letters and digits, what may not directly precede (None: no check)
    anchored: str | None = None    # keyword family: match at each keyword ("keyword") or at its name's start
    prefixes: tuple[str, ...] = ()  # literal starts, found for all detectors at once (``PrefixIndex``)
    context: tuple[str, ...] = ()   # words that must be near (any of lower/UPPER/Capitalised): look only there
    window: tuple[int, int] = (80, 300)   # how far before and after a context word to look
    exact: bool = False             # context words only as written (``Street``, not ``street``)
    context_spellings: frozenset[str] = field(default=frozenset(), init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", str(self.name))   # a DetectorName member becomes its plain value
        words = frozenset(self.context) if self.exact else frozenset(s for w in self.context for s in spellings(w))
        object.__setattr__(self, "context_spellings", words)

    def literals(self) -> set[str]:
        """What this detector needs ``PrefixIndex`` to find: its prefixes and its context words' spellings."""
        return set(self.prefixes) | set(self.context_spellings)

    def may_match(self, windows: Windows) -> bool:
        """False when this text cannot hold a match (none of its literals, no window of its family):
        most of ~80 detectors are skipped this way on a typical text, before any regex runs."""
        if windows.prefixes is None:
            return True
        if self.prefixes or self.context:
            hits = windows.prefix_hits()
            return any(p in hits for p in self.prefixes) or not self.context_spellings.isdisjoint(hits)
        if self.anchored is not None:
            return bool(windows.keyword_hits())
        return self.family is None or bool(windows.get(self.family))

    def scan(self, text: str, windows: Windows) -> Iterator[tuple[int, int]]:
        if self.anchored is not None:
            yield from self._scan_anchored(text, windows)
            return
        if self.prefixes and windows.prefixes is not None:
            hits = windows.prefix_hits()
            for prefix in self.prefixes:
                for i in hits.get(prefix, ()):
                    match = self.regex.match(text, i)
                    if match is None or (self.not_after is not None and i > 0 and _glued(text[i - 1], self.not_after)):
                        continue
                    yield _span(match, self.group)
            return
        if self.context:
            regions = windows.around(self.context_spellings, *self.window)
        else:
            regions = [(0, len(text))] if self.family is None else windows.get(self.family)
        for start, end in regions:
            for match in self.regex.finditer(text, start, end):
                if self.not_after is not None and match.start() > 0 and _glued(text[match.start() - 1], self.not_after):
                    continue
                yield _span(match, self.group)


    def _scan_anchored(self, text: str, windows: Windows) -> Iterator[tuple[int, int]]:
        seen = -1
        for hit in windows.keyword_hits():
            start = hit
            if self.anchored == "name":   # walk back to where the key's name begins
                while start > 0 and hit - start < 64 and (text[start - 1].isalnum() or text[start - 1] in "_.-"):
                    start -= 1
                if start > 0 and text[start - 1] in "\"'<":
                    start -= 1
            if start <= seen:
                continue
            match = self.regex.match(text, start, min(len(text), hit + 4400))   # session tokens run long
            if match is not None:
                seen = match.end() - 1
                yield _span(match, self.group)


def _span(match: re.Match[str], group: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(group, int):
        return match.span(group)
    return next((match.span(g) for g in group if match.start(g) >= 0), (-1, -1))


def _glued(char: str, classes: str) -> bool:
    return (char.isalnum() and char.isascii()) or char in classes


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    detector: str


def luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())


_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REFERENCE = re.compile(r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_.\-]*\}?|\{\{.*\}\}|<[^>]*>|%\(?[A-Za-z_]+\)?s?|"
                        r"%[A-Za-z_][A-Za-z0-9_]*%|[A-Za-z_]+(?:::[A-Za-z_]+)+|"
                        r"(?:process\.env|os\.environ|env)[.\[(].*|\*+|x+|X+|\.\.\.)$")
_WORDY = re.compile(r"^[a-z]+(?:[_-][a-z]+)*$|^[A-Z][a-z]+(?:[A-Z][a-z]+)+$|^[A-Z]+(?:_[A-Z]+)+$")
_CODE = re.compile(r"[()\[\]{}]")
_INTEGRITY = re.compile(r"sha(?:1|256|384|512)-[A-Za-z0-9+/]+={0,2}")
_VERSION = re.compile(r"v?\d+(?:\.\d+){1,3}(?:[-+][\w.]+)?")
_IDENTIFIER_CHAIN = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_][A-Za-z0-9_]*)*")   # letters only, maybe dotted
_BENIGN_WORDS = frozenset({"true", "false", "null", "none", "undefined", "changeme", "password", "secret", "token",
                           "required", "optional", "string", "example", "redacted", "hidden", "empty"})


def looks_like_reference(value: str, quoted: bool = False) -> bool:
    """Values written where a secret would go that are not one: references, templates, words, paths.

    ``quoted``: the value sat between quotes, so brackets in it are characters of a string literal
    (Django's generated ``SECRET_KEY`` has ``()``), not a call.
    """
    stripped = value.strip("'\"`")
    if len(stripped) < 6 or stripped.lower() in _BENIGN_WORDS or PLACEHOLDER.search(stripped):
        return True
    if _REFERENCE.match(stripped) or _WORDY.match(stripped.lstrip("#@:")) or len(set(stripped)) <= 2:
        return True   # a variable reference, template, a plain identifier, or a mask like xxxx
    if looks_placeholder(stripped):
        return True
    if (_CODE.search(stripped) and not quoted) or \
            (_IDENTIFIER_CHAIN.fullmatch(stripped) and not any(_random_segment(p) for p in stripped.split("."))):
        return True   # code: a call, an index, a type, or an attribute chain (self.auth, config.token)
    if _VERSION.fullmatch(stripped):
        return True   # a version
    if stripped.startswith("arn:"):
        return True   # an ARN names a resource (a Secrets Manager secret, a KMS key), it is not one
    return looks_like_path(stripped)


def looks_like_path(value: str) -> bool:
    """A path or a plain URL, not a base64 token that happens to start with "/" (``/04iwmHrr...C+8Ct9``)."""
    if value.startswith(("http://", "https://", "file:")):
        return "@" not in value
    return (re.fullmatch(r"(?:~|\.{1,2})?/[\w.@~-]*(?:/[\w.@~-]*)*", value) is not None
            and not any(_random_segment(p) for p in value.split("/")))


_PLACEHOLDER_SHAPES = re.compile(r"(?i)x{6,}|\*{4,}|\.{3}|…|0{12,}|(?:^|[-_])(?:your|my|insert|replace|put|enter)[-_]|"
                                 r"<[^>]*>|placeholder|redacted|dummy|changeme|\{\{")


_VENDOR_HEAD = re.compile(r"^[A-Za-z]{2,6}[_-]|^(?:AKIA|ASIA)")


def looks_placeholder(value: str) -> bool:
    """An obvious stand-in (``sk-ant-xxxx...``, ``ghp_xxxxxxxx``, ``xoxb-your-bot-token``,
    ``AKIAXXXXXXXXXXXXXXXX``, ``<token>``): masking it protects nothing and confuses the model.
    Published documentation examples (``AKIAIOSFODNN7EXAMPLE``, the 4242 test card, jwt.io's token) are
    NOT placeholders here: they are real-looking, so they are masked like any value."""
    if _PLACEHOLDER_SHAPES.search(value):
        return True
    body = _VENDOR_HEAD.sub("", value)   # a vendor prefix: judge what follows
    return len(body) >= 8 and len(set(body.lower())) <= 3


def _random_segment(segment: str) -> bool:
    """A part of a dotted chain that is a token, not a name: digits among letters, or case flipping."""
    digits = sum(c.isdigit() for c in segment)
    return (len(segment) >= 10 and digits >= 2 and digits < len(segment) - 2) or random_letters(segment)


def random_letters(value: str) -> bool:
    """Letters that flip case like a random token (``EctZyWEigYTTnZXnUndq``), not like an identifier
    (``getUserAccessToken``, ``self.auth_token``): in random text about half the letters flip."""
    letters = [c for c in value if c.isalpha()]
    if len(letters) < 16 or "." in value:
        return False
    flips = sum(1 for a, b in pairwise(letters) if a.isupper() != b.isupper())
    return flips / len(letters) >= 0.3


def looks_benign(value: str) -> bool:
    """Values that look random but are not secrets, for detectors without a secret-naming context."""
    stripped = value.strip("'\"`")
    if looks_like_reference(stripped):
        return True   # references, templates, words, code, versions, paths, placeholders
    if _UUID.fullmatch(stripped) or (_HEX.fullmatch(stripped) and len(stripped) in (7, 8, 12, 32, 40, 56, 64, 96, 128)):
        return True   # UUIDs, git SHAs (short and full), md5/sha1/sha2 digests
    return _INTEGRITY.fullmatch(stripped) is not None   # package integrity hashes


def not_benign(value: str, text: str, start: int) -> bool:
    return not looks_benign(value)


def not_reference(value: str, text: str, start: int) -> bool:
    """Under a key that names a secret, a UUID or a hex string is the secret (API keys often are)."""
    return not looks_like_reference(value, quoted=start > 0 and text[start - 1] in "'\"`")


def high_entropy(value: str, text: str, start: int) -> bool:
    return not looks_benign(value) and entropy(value) >= 3.0 and any(c.isdigit() for c in value) \
        and any(c.isalpha() for c in value)


def free_standing(text: str, start: int, length: int, before_chars: str, after_chars: str) -> bool:
    """Not glued to a longer token: no letter, digit or one of the given characters on either side."""
    before = text[start - 1] if start > 0 else ""
    after = text[start + length] if start + length < len(text) else ""
    return not (before and (before.isalnum() or before in before_chars)) and \
        not (after and (after.isalnum() or after in after_chars))

