"""Secret and PII detectors: compiled once, pure, each with a stable name.

``find(text)`` returns non-overlapping spans. A regex finds candidates; a validator (checksum,
context, shape) keeps only real ones, which is where false positives die: UUIDs, git SHAs and other
hex digests, integrity hashes, version strings, timestamps, paths, identifiers and our own
placeholders are rejected by construction or by ``looks_benign``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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
            self._hits = sorted({i for word in self.prefixes.keywords for i in hits.get(word, ())})
        if self._hits is None:
            lower = self.text.lower()
            hits = [i for word in _KEYWORDS for i in _finds(lower, word)]
            for i in _finds(lower, "key"):   # api_key, access-key, privatekey, ...: one pass, then a look back
                head = lower[max(0, i - 9):i]
                owner_end = i - (len(head) - len(head.rstrip("_-")))
                for owner in _KEY_OWNERS:
                    if lower.startswith(owner, owner_end - len(owner)):
                        hits.append(owner_end - len(owner))
                        break
            self._hits = sorted(set(hits))
        return self._hits

    def get(self, family: str) -> list[tuple[int, int]]:
        found = self._cache.get(family)
        if found is None:
            found = self._cache[family] = _merge(self._compute(family), len(self.text))
        return found

    def _compute(self, family: str) -> list[tuple[int, int]]:
        text = self.text
        if family == "digits":   # runs of digits and separators: phones, cards, SSNs, IBANs, IPv4
            return [(m.start() - 12, m.end() + 2) for m in _DIGIT_RUN.finditer(text)
                    if m.group().count(".") >= 3 or len(m.group().translate(_NOT_DIGITS)) >= 7]
        if family == "at":
            out, i = [], text.find("@")
            while i >= 0:
                out.append((i - 66, i + 260))
                i = text.find("@", i + 1)
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
        self.keywords = frozenset(keyword_spellings()) if keywords else frozenset()
        self.patterns = sorted(set(prefixes) | self.keywords)
        self.automaton = ahocorasick_rs.AhoCorasick(self.patterns) if self.patterns else None

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
_COLON_RUN = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")   # a literal first: found fast


def _finds(text: str, literal: str) -> list[int]:
    out, i = [], text.find(literal)
    while i >= 0:
        out.append(i)
        i = text.find(literal, i + len(literal))
    return out
_KEYWORDS = ("secret", "token", "passw", "pwd", "credential", "bearer", "basic ", "authorization", "x-api-key")
_KEY_OWNERS = ("api", "access", "private", "session", "signing")   # ...followed by key, _key or -key


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
    group: int = 0                 # which group is the secret (0: the whole match)
    validate: Validator | None = None
    secret: bool = True            # secrets win over PII when spans overlap
    family: str | None = None      # look only in these windows (None: the whole text)
    not_after: str | None = None   # besides letters and digits, what may not directly precede (None: no check)
    anchored: str | None = None    # keyword family: match at each keyword ("keyword") or at its name's start
    prefixes: tuple[str, ...] = ()  # literal starts, found for all detectors at once (``PrefixIndex``)

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
                    yield match.span(self.group)
            return
        regions = [(0, len(text))] if self.family is None else windows.get(self.family)
        for start, end in regions:
            for match in self.regex.finditer(text, start, end):
                if self.not_after is not None and match.start() > 0 and _glued(text[match.start() - 1], self.not_after):
                    continue
                yield match.span(self.group)


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
            match = self.regex.match(text, start, min(len(text), hit + 600))
            if match is not None:
                seen = match.end() - 1
                yield match.span(self.group)


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
_REFERENCE = re.compile(r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\}|<[^>]*>|%\(?[A-Za-z_]+\)?s?|"
                        r"(?:process\.env|os\.environ|env)[.\[(].*|\*+|x+|X+|\.\.\.)$")
_WORDY = re.compile(r"^[a-z]+(?:[_-][a-z]+)*$|^[A-Z][a-z]+(?:[A-Z][a-z]+)+$|^[A-Z]+(?:_[A-Z]+)+$")
_CODE = re.compile(r"[()\[\]{}]")
_IDENTIFIER_CHAIN = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_][A-Za-z0-9_]*)*")   # letters only, maybe dotted
_BENIGN_WORDS = frozenset({"true", "false", "null", "none", "undefined", "changeme", "password", "secret", "token",
                           "required", "optional", "string", "example", "redacted", "hidden", "empty"})


def looks_like_reference(value: str) -> bool:
    """Values written where a secret would go that are not one: references, templates, words, paths."""
    stripped = value.strip("'\"`")
    if len(stripped) < 6 or stripped.lower() in _BENIGN_WORDS or PLACEHOLDER.search(stripped):
        return True
    if _REFERENCE.match(stripped) or _WORDY.match(stripped) or len(set(stripped)) <= 2:
        return True   # a variable reference, template, a plain identifier, or a mask like xxxx
    if _CODE.search(stripped) or _IDENTIFIER_CHAIN.fullmatch(stripped):
        return True   # code: a call, an index, a type, or an attribute chain (self.auth, config.token)
    if re.fullmatch(r"v?\d+(?:\.\d+){1,3}(?:[-+][\w.]+)?", stripped):
        return True   # a version
    return stripped.startswith(("/", "./", "../", "~/", "http://", "https://", "file:")) and "@" not in stripped


def looks_benign(value: str) -> bool:
    """Values that look random but are not secrets, for detectors without a secret-naming context."""
    stripped = value.strip("'\"`")
    if looks_like_reference(stripped):
        return True
    if _UUID.fullmatch(stripped) or (_HEX.fullmatch(stripped) and len(stripped) in (7, 8, 12, 32, 40, 56, 64, 96, 128)):
        return True   # UUIDs, git SHAs (short and full), md5/sha1/sha2 digests
    if stripped.startswith(("/", "./", "../", "~/", "http://", "https://", "file:")) and "@" not in stripped:
        return True   # paths and plain URLs
    if re.fullmatch(r"v?\d+(?:\.\d+){1,3}(?:[-+][\w.]+)?", stripped):
        return True   # versions
    if re.fullmatch(r"(?:sha(?:1|256|384|512)-)[A-Za-z0-9+/]+={0,2}", stripped):
        return True   # package integrity hashes
    return len(set(stripped)) <= 2


def _not_benign(value: str, text: str, start: int) -> bool:
    return not looks_benign(value)


def _not_reference(value: str, text: str, start: int) -> bool:
    """Under a key that names a secret, a UUID or a hex string is the secret (API keys often are)."""
    return not looks_like_reference(value)


def _high_entropy(value: str, text: str, start: int) -> bool:
    return not looks_benign(value) and entropy(value) >= 3.0 and any(c.isdigit() for c in value) \
        and any(c.isalpha() for c in value)


def _aws_secret(value: str, text: str, start: int) -> bool:
    return not looks_benign(value) and entropy(value) >= 3.5


def _card(value: str, text: str, start: int) -> bool:
    digits = re.sub(r"[ -]", "", value)
    if not 13 <= len(digits) <= 19 or not luhn(digits) or len(set(digits)) < 2:
        return False
    separators = set(re.sub(r"\d", "", value))
    if len(separators) > 1:
        return False
    return bool(re.match(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5)|3(?:0[0-5]|[68])|35|2131|1800", digits))


def _iban(value: str, text: str, start: int) -> bool:
    return iban_valid(value)


def _ipv4(value: str, text: str, start: int) -> bool:
    before = text[max(0, start - 12):start].lower()
    after = text[start + len(value):start + len(value) + 1]
    if after == "." or re.search(r"(?:version|ver|v)\s*[:=]?\s*$", before) or before.endswith(("v", ".")):
        return False   # part of a longer dotted number, or a version
    address = ipaddress.ip_address(value)
    return not (address.is_loopback or address.is_unspecified or str(address) == "255.255.255.255")


def _ipv6(value: str, text: str, start: int) -> bool:
    if value.count(":") < 3:
        return False   # too short to tell from a C++ scope or a clock
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def _email(value: str, text: str, start: int) -> bool:
    local = value.split("@", 1)[0].lower()
    return local not in ("git",) and not PLACEHOLDER.search(value)


def _phone(value: str, text: str, start: int) -> bool:
    digits = re.sub(r"\D", "", value)
    if not 10 <= len(digits) <= 15 or len(set(digits)) < 3:
        return False
    return _free_standing(text, start, len(value), "-./:", "-/:")


def _free_standing(text: str, start: int, length: int, before_chars: str, after_chars: str) -> bool:
    """Not glued to a longer token: no letter, digit or one of the given characters on either side."""
    before = text[start - 1] if start > 0 else ""
    after = text[start + length] if start + length < len(text) else ""
    return not (before and (before.isalnum() or before in before_chars)) and \
        not (after and (after.isalnum() or after in after_chars))


def _ssn(value: str, text: str, start: int) -> bool:
    return _free_standing(text, start, len(value), "-./", "-/")


_KEY_WORDS = (r"(?:secret|token|passw(?:or)?d|passwd|pwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
              r"client[_-]?secret|auth[_-]?token|credentials?|session[_-]?key|signing[_-]?key|webhook[_-]?secret)")

# Vendor token prefixes from gitleaks' rules, distinctive enough to need no secret-named key.
VENDOR_PREFIXES = (
    "hf_", "api_org_", "pplx-", "pscale_pw_", "pscale_tkn_", "pscale_oauth_", "glc_", "glsa_", "sntrys_",
    "sntryu_", "dop_v1_", "doo_v1_", "dor_v1_", "shpat_", "shpss_", "shpca_", "shppa_", "npm_", "pypi-AgE",
    "dckr_pat_", "lin_api_", "ATATT", "PMAK-", "pul-", "AGE-SECRET-KEY-1", "ops_ey", "fo1_", "fm2_", "HRKU-",
    "sq0atp-", "sq0csp-", "EZAK", "EZTK", "CLOJARS_", "shippo_live_", "shippo_test_", "sgp_", "hvs.", "hvb.",
    "dp.pt.", "dp.st.", "xapp-", "sk_prod_", "rk_prod_", "dapi", "bedrock-api-key-", "sat.", "pat.", "t1.",
)


def _vendor(value: str, text: str, start: int) -> bool:
    body = value.split("_", 1)[-1] if "_" in value[:16] else value
    return not looks_like_reference(value) and entropy(body) >= 3.0 and any(c.isdigit() for c in body)


DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", prefixes=("-----BEGIN ",), regex=re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
        r"(?: BLOCK)?-----|\Z)")),
    Detector("aws_access_key", prefixes=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
             regex=re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])"),
             not_after=""),
    Detector("aws_secret_key", re.compile(
        r"(?i)aws[\w.-]{0,20}(?:secret|sk)[\w.-]{0,20}['\"]?\s*(?:[:=]|=>)\s*['\"]?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
        group=1, validate=_aws_secret, family="keywords"),
    Detector("github_token", prefixes=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), regex=re.compile(
        r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"), not_after="_"),
    Detector("gitlab_token", prefixes=("glpat-", "gldt-", "glptt-", "glrt-", "glsoat-", "glft-", "glimt-",
                                       "glagent-", "gloas-", "glcbt-"), regex=re.compile(
        r"gl(?:pat|dt|ptt|rt|soat|ft|imt|agent|oas|cbt)-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"), not_after="_-"),
    Detector("slack_token", prefixes=("xox",), regex=re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}"), not_after=""),
    Detector("slack_token", prefixes=("https://hooks.slack.com/",),
             regex=re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{20,}")),
    Detector("stripe_key", prefixes=("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
             regex=re.compile(r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}(?![A-Za-z0-9])"), not_after=""),
    Detector("anthropic_key", prefixes=("sk-ant-",),
             regex=re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"), not_after=""),
    Detector("openai_key", prefixes=("sk-",), regex=re.compile(
        r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"),
        validate=_high_entropy, not_after=""),
    Detector("google_api_key", prefixes=("AIza",),
             regex=re.compile(r"AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"), not_after="_-"),
    Detector("jwt", prefixes=("eyJ",),
             regex=re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"), not_after="_-"),
    Detector("vendor_token", prefixes=VENDOR_PREFIXES, regex=re.compile(
        "(?:" + "|".join(re.escape(p) for p in VENDOR_PREFIXES) + r")[A-Za-z0-9_=.~+/-]{16,256}(?![A-Za-z0-9_=.~+/-])"),
        validate=_vendor, not_after=""),
    Detector("url_credentials", re.compile(
        r"[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@'\"<>]{1,64}:([^\s@/'\"<>]{3,128})@[^\s'\"<>]+"),
        group=1, validate=_not_benign, family="at"),
    Detector("secret_assignment", re.compile(
        r"(?i)(?<![A-Za-z0-9])[\"']?[A-Za-z0-9_.-]*" + _KEY_WORDS + r"[A-Za-z0-9_.-]*[\"']?"
        r"(?:\s+(?:string|str|String|const|final|char\*?|&str))?\s*(?::|=|=>|:=|\?=|\+=)\s*"
        r"([\"'`]?)([^\s\"'`,;)}\]]{5,255}[^\s\"'`,;)}\].:])\1"), group=2, validate=_not_reference,
        family="keywords", anchored="name"),
    Detector("secret_assignment", re.compile(   # <apiToken>value</apiToken> (XML, Maven, .NET configs)
        r"(?i)<([A-Za-z0-9_.:-]*" + _KEY_WORDS + r"[A-Za-z0-9_.:-]*)>\s*([^\s<>]{6,512})\s*</\1>"),
        group=2, validate=_not_reference, family="keywords", anchored="name"),
    Detector("generic_secret", re.compile(
        r"(?i)(?:\bbearer|\bbasic|\btoken|x-api-key:|api-key:|authorization:)\s+([A-Za-z0-9._~+/=-]{16,512})"),
        group=1, validate=_high_entropy, family="keywords", anchored="keyword"),
    Detector("email", re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}"
                                 r"(?![A-Za-z0-9-])"), validate=_email, secret=False, family="at"),
    Detector("us_ssn", re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)"),
             validate=_ssn, secret=False, family="digits"),
    Detector("credit_card", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), validate=_card, secret=False,
             family="digits"),
    Detector("iban", re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Z0-9])"), validate=_iban,
             secret=False, family="digits"),
    Detector("phone", re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,4}(?![\w])|"
        r"(?<![\w+])\+\d{7,14}(?!\w)|"
        # international and national forms: +46 (0)8 928 571 38, 0490 75 40 81, 07700 063 966
        r"(?<![\w+.])(?:\+\d{1,3}[ .-]?(?:\(0\)\s?)?|0)\d{1,4}(?:[ .-]\d{2,4}){2,4}(?![\w.])"),
        validate=_phone, secret=False, family="digits"),
    Detector("ip_address", re.compile(
        r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d])"),
        validate=lambda v, t, s: _ipv4(v, t, s), secret=False, family="digits"),
    Detector("ip_address", re.compile(
        r"(?<![0-9A-Za-z:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{3,39}(?![0-9A-Za-z:])"),
        validate=lambda v, t, s: _ipv6(v, t, s), secret=False, family="colons"),
)
