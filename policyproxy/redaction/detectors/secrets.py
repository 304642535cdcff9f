"""Secrets: fixed vendor formats (AWS, GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic, Google, JWTs,
private keys) and values a config format names as secret (``KEY=value`` in dotenv, YAML, JSON, TOML,
XML, PHP, ``.netrc``, ``curl -u``, docker ``config.json``, ``.npmrc``, kubeconfig, Azure connection
strings).

Unambiguous fixed formats match even glued to neighbouring characters (``xAKIA...``, ``ghp_..._``):
their shape alone says what they are. Assignments keep a value only when the key names a secret and
the value is not a reference, a count, a duration or a name (``secretName``, ``SecretId``, an ARN).
"""

from __future__ import annotations

import base64
import binascii
import re

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import (
    Detector,
    entropy,
    high_entropy,
    looks_benign,
    looks_like_reference,
    not_benign,
    not_reference,
    random_letters,
)

_KEY_WORDS = (r"(?:secret|token|passw(?:or)?d|passwd|pwd|"
              r"(?:api|access|private|session|signing|master|app|account|encryption|client)[_-]?key|apikey|"
              r"credentials?|webhook[_-]?secret)")
# The key's last word says the value is about a secret, not the secret: a name, id, path, count, duration.
_NOT_SECRET_KEY = re.compile(
    r"(?i)(?:name|names|id|ids|arn|ref|path|file|url|uri|endpoint|type|header|field|env|var|version|policy|"
    r"manager|store|location|mount|dir|prefix|provider|source|format|mode|kind|label|hint|length|len|count|"
    r"size|limit|ttl|timeout|expiry|expires|expiration|lifetime|ms|secs?|seconds|minutes|hours|days|duration|"
    r"interval|age|tokens|budget|window|retries|enabled|required|usage|index)$")
_KEY_BEFORE = re.compile(r"([A-Za-z0-9_.\-]+)[\"'\]]?\s*(?:\s(?:string|str|String|const|final|char\*?|&str))?\s*"
                         r"(===?|!==?|\.=|:{1,3}=|=>|\?=|\+=|[:=,])\s*[\"'`]?$")
# Tokens that are not credentials: pagination cursors, idempotency and lock tokens.
_OPAQUE_TOKEN_KEY = re.compile(r"(?i)(?:next|prev|previous|page|paging|pagination|continuation|cursor|lock|sync|"
                               r"forward|backward|change|resume|idempotency|client|request|csrf_?form)[_-]?token$")
_TYPE_NAME_BEFORE = re.compile(r"::[A-Za-z]+[\"']?\s*[:=]\s*[\"']?$")   # "AWS::IAM::AccessKey": "72c2..."
_PASSWORD_KEY = re.compile(r"(?i)passw(?:or)?d|passwd|pwd")


def _assignment_key(text: str, start: int) -> str:
    """The key a value is assigned to ("" when none); a ``"KEY", "value"`` pair counts only as the first
    arguments of a call or a list (``setProperty("API_TOKEN", "...")``), not any two list items."""
    line_start = text.rfind("\n", max(0, start - 300), start) + 1
    found = _KEY_BEFORE.search(text, max(line_start, start - 300), start)
    if found is None:
        return ""
    if found.group(2) == ",":
        head = text[max(line_start, found.start(1) - 3):found.start(1)].rstrip("\"' ")
        if not head.endswith(("(", "[", "{")):
            return "?"
    return found.group(1)


def _assigned_secret(value: str, text: str, start: int) -> bool:
    """A value under a secret-naming key: kept unless the key names something about a secret
    (``secretName``, ``max_tokens``, ``TOKEN_TTL_MS``) or the value is a reference or a placeholder."""
    key = _assignment_key(text, start)
    if key == "?" or _OPAQUE_TOKEN_KEY.search(key) or _TYPE_NAME_BEFORE.search(text, max(0, start - 80), start):
        return False
    words = re.split(r"[_.\-]|(?<=[a-z])(?=[A-Z])", key)
    if key and words and _NOT_SECRET_KEY.search(words[-1]):
        return False
    quoted = start > 0 and text[start - 1] in "'\"`"
    if value.isdigit() and len(value) < 10 and not _PASSWORD_KEY.search(key):
        return False   # a count or a duration under a token-sounding key
    if quoted and _PASSWORD_KEY.search(key) and value.isalpha() and value.islower() and len(value) >= 6:
        return value not in ("password", "changeme", "required", "optional", "example", "redacted", "secret")
    if re.match(r"\d*\*[a-z]", value):
        return False   # ABNF in an RFC quote: token = 1*tchar
    return not looks_like_reference(value, quoted=quoted)


def _keyed_random(value: str, text: str, start: int) -> bool:
    """Under a ``*_KEY`` name (``APP_KEY``, ``DD_APP_KEY``, ``AccountKey``): random-looking values only,
    since ``primary_key``/``sort_key``/``cache_key`` hold names."""
    body = value[7:] if value.startswith("base64:") else value
    if not _assigned_secret(value, text, start) or (looks_benign(body) and not value.startswith("base64:")):
        return False
    return entropy(body) >= 3.5 and (any(c.isdigit() for c in body) or random_letters(body) or "+" in body)


def _slack(value: str, text: str, start: int) -> bool:
    """Slack tokens carry numeric team/user ids: a body with few digits is a word (``xoxo-indieweb-1``)."""
    body = value.split("-", 1)[1]
    return len(body) >= 15 and sum(c.isdigit() for c in body) >= 6


def _aws_secret(value: str, text: str, start: int) -> bool:
    return not looks_benign(value) and entropy(value) >= 3.5


_AWS_ID = re.compile(r"(?:AKIA|ASIA)[A-Z2-7]{16}")


def _aws_pair(value: str, text: str, start: int) -> bool:
    """A bare 40-character secret next to an access key id: credential scanners pair them the same way."""
    if len(value) != 40 or looks_benign(value) or entropy(value) < 4.0:
        return False
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)):
        return False
    return _AWS_ID.search(text, max(0, start - 500), start + 540) is not None   # a few lines either side


def _aws_id(value: str, text: str, start: int) -> bool:
    """Real ids are base32 (most have digits); a body of letters only must at least look random, so a
    word glued after ASIA (``ASIAPACIFICSOUTHEAST``) is not an id."""
    body = value[4:]
    vowels = sum(c in "AEIOUY" for c in body)
    if any(c.isdigit() for c in body) or (entropy(body) >= 3.0 and vowels <= 5):
        return True
    return entropy(body) >= 3.0 and re.search(r"(?i)aws|access.?key", text[max(0, start - 40):start]) is not None


def _docker_auth(value: str, text: str, start: int) -> bool:
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return not looks_like_reference(value)
    return ":" in decoded and decoded.isprintable()


_SECRET_KIND = re.compile(r"(?im)^[ \t]*kind:[ \t]*[\"']?secret[\"']?[ \t]*$")


def _k8s_secret_data(value: str, text: str, start: int) -> bool:
    """A value in the ``data:``/``stringData:`` block of a Kubernetes ``kind: Secret`` manifest."""
    line_start = text.rfind("\n", 0, start) + 1
    indent = len(text[line_start:start]) - len(text[line_start:start].lstrip(" \t"))
    cursor = line_start - 1
    while cursor > 0:
        previous = text.rfind("\n", 0, cursor) + 1
        line = text[previous:cursor]
        stripped = line.lstrip(" \t")
        if stripped and not stripped.startswith("#") and len(line) - len(stripped) < indent:
            if stripped.rstrip() not in ("data:", "stringData:"):
                return False
            document = text[max(0, previous - 2000):start + 2000]
            return _SECRET_KIND.search(document) is not None and len(set(value)) > 3
        cursor = previous - 1
    return False


def _bearer(value: str, text: str, start: int) -> bool:
    """After ``Authorization:``/``Bearer``/``x-api-key:`` the value is a credential, UUID-shaped or not."""
    return not looks_like_reference(value) and (any(c.isdigit() for c in value) or random_letters(value))


SECRETS: tuple[Detector, ...] = (
    Detector(D.PRIVATE_KEY, prefixes=("-----BEGIN ",), regex=re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
        r"(?: BLOCK)?-----|\Z)")),
    Detector(D.AWS_ACCESS_KEY, prefixes=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
             regex=re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}"), validate=_aws_id),
    Detector(D.AWS_SECRET_KEY, re.compile(
        r"(?i)aws[\w.-]{0,20}(?:secret|sk)[\w.-]{0,20}['\"]?\s*(?:[:=]|=>)\s*['\"]?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
        group=1, validate=_aws_secret, family="keywords"),
    Detector(D.AWS_SECRET_KEY, re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
             validate=_aws_pair, context=("AKIA", "ASIA"), exact=True, window=(500, 500)),
    Detector(D.GITHUB_TOKEN, prefixes=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), regex=re.compile(
        r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}")),
    Detector(D.GITLAB_TOKEN, prefixes=("glpat-", "gldt-", "glptt-", "glrt-", "glsoat-", "glft-", "glimt-",
                                       "glagent-", "gloas-", "glcbt-", "glffct-", "GR1348941", "_gitlab_session="),
             regex=re.compile(r"gl(?:pat|dt|ptt|rt|soat|ft|imt|agent|oas|cbt|ffct)-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])|"
                              r"GR1348941[A-Za-z0-9_-]{20}|_gitlab_session=([0-9a-z]{32})"),
             group=(1, 0), not_after="-"),
    Detector(D.SLACK_TOKEN, prefixes=("xox",), regex=re.compile(r"xox(?:e\.xox)?[abposre]-[A-Za-z0-9-]{10,}"),
             validate=_slack, not_after=""),
    Detector(D.SLACK_TOKEN, prefixes=("https://hooks.slack.com/", "hooks.slack.com/"),
             regex=re.compile(r"(?:https://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}")),
    Detector(D.STRIPE_KEY, prefixes=("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
             regex=re.compile(r"(?:[sr]k_(?:live|test)_|whsec_)[A-Za-z0-9]{16,}(?![A-Za-z0-9])")),
    Detector(D.ANTHROPIC_KEY, prefixes=("sk-ant-",),
             regex=re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"), not_after=""),
    Detector(D.OPENAI_KEY, prefixes=("sk-",), regex=re.compile(
        r"sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"),
        validate=high_entropy, not_after=""),
    Detector(D.GOOGLE_API_KEY, prefixes=("AIza",), regex=re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    Detector(D.JWT, prefixes=("eyJ",),
             regex=re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]{16,})?"),
             not_after="_-"),   # unsigned ("alg": "none") tokens carry the same claims
    Detector(D.URL_CREDENTIALS, re.compile(
        r"[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@'\"<>]{1,64}:([^\s@/'\"<>]{3,128})@[^\s'\"<>]+"),
        group=1, validate=not_reference, family="at"),
    # KEY = value in any config or code syntax, the key naming a secret (PHP's .= and Go's := too).
    Detector(D.SECRET_ASSIGNMENT, re.compile(
        r"(?i)(?<![A-Za-z0-9])[\"']?[A-Za-z0-9_.-]*" + _KEY_WORDS + r"[A-Za-z0-9_.-]*[\"'\]]?"
        r"(?:\s+(?:string|str|String|const|final|char\*?|&str))?[ \t]*"
        r"(?:===?|!==?|\.=|:{1,3}=|=>|\?=|\+=|:|=|(?<=[\"']),)[ \t]*"
        r"(?:([\"'`])([^\s\"'`]{5,4096})\1|([^\s\"'`,;)}\]]{4,4095}[^\s\"'`,;)}\].:]))"), group=(2, 3),
        validate=_assigned_secret, family="keywords", anchored="name"),
    Detector(D.SECRET_ASSIGNMENT, re.compile(   # <apiToken>value</apiToken> (XML, Maven, .NET configs)
        r"(?i)<([A-Za-z0-9_.:-]*" + _KEY_WORDS + r"[A-Za-z0-9_.:-]*)>\s*([^\s<>]{6,512})\s*</\1>"),
        group=2, validate=not_reference, family="keywords", anchored="name"),
    # Any *_KEY / *Key / *-key-data name holding a random value (dotenv APP_KEY=base64:..., DD_APP_KEY,
    # RAILS_MASTER_KEY, Azure AccountKey=/SharedAccessKey=, kubeconfig client-key-data).
    Detector(D.SECRET_ASSIGNMENT, prefixes=("_KEY", "_key", "-key", "Key", "KEY"), regex=re.compile(
        r"(?:_KEY|_key|-key|Key|KEY)(?:_BASE|_base|-data|_DATA|_data)?[\"']?\s*(?::|=|=>)\s*[\"']?"
        r"((?:base64:)?[A-Za-z0-9+/=_.:-]{16,4096})"), group=1, validate=_keyed_random),
    Detector(D.SECRET_ASSIGNMENT, prefixes=('"auth"', "_auth=", "_auth ="), regex=re.compile(   # docker, .npmrc
        r"(?:\"auth\"\s*:\s*\"|_auth\s*=\s*\"?)([A-Za-z0-9+/=]{8,4096})"), group=1, validate=_docker_auth),
    Detector(D.SECRET_ASSIGNMENT, prefixes=("login",), regex=re.compile(   # .netrc: login USER password VALUE
        r"login[ \t]+\S+\s+password[ \t]+(\S{4,256})"), group=1, validate=not_reference),
    Detector(D.SECRET_ASSIGNMENT, prefixes=("<add key=",), regex=re.compile(   # NuGet/.NET appSettings
        r"<add key=[\"'][^\"']*(?:[Pp]assword|[Tt]oken|[Ss]ecret|[Aa]pi[Kk]ey)[^\"']*[\"']\s+"
        r"value=[\"']([^\"']{4,512})[\"']"),
        group=1, validate=not_reference),
    Detector(D.SECRET_ASSIGNMENT, context=("curl",), window=(0, 400), regex=re.compile(   # curl -u user:pass
        r"\s(?:-u|--user)[ =]?[\"']?[^\s:\"'<>]{0,64}:([^\s\"'<>]{3,256})(?![^\s\"'])"), group=1,
        validate=not_reference),
    Detector(D.SECRET_ASSIGNMENT, context=("mysql", "mariadb"), window=(0, 400), regex=re.compile(
        # mysql/mysqldump/mariadb -pPASSWORD: the password glued to -p (with a space, -p prompts)
        r"(?:mysql|mariadb)[\w-]*[^\n]*?\s-p(?:\"([^\s\"]{3,256})\"|'([^\s']{3,256})'|([^\s\"'<>|;&]{3,256}))(?=\s|$)"),
        group=(1, 2, 3), validate=not_reference),
    Detector(D.SECRET_ASSIGNMENT, context=("kind: Secret", "kind: secret", "kind:Secret", "kind: 'Secret'",
                                           'kind: "Secret"', "kind: 'secret'", 'kind: "secret"'), exact=True,
             window=(2000, 2000),
             regex=re.compile(   # Kubernetes Secret manifests: every data:/stringData: value
                 r"(?m)^[ \t]+[A-Za-z0-9_.-]+:[ \t]+[\"']?([A-Za-z0-9+/]{4,}={0,2}|[^\s\"'#][^\n\"']{3,})"
                 r"[\"']?[ \t]*$"),
             group=1, validate=_k8s_secret_data),
    Detector(D.GENERIC_SECRET, re.compile(
        r"(?i)(?:\bbearer|x-api-key:|api-key:|authorization:(?:\s+(?:bearer|token))?)\s+([A-Za-z0-9._~+/=-]{16,512})"),
        group=1, validate=_bearer, family="keywords", anchored="keyword"),
    Detector(D.GENERIC_SECRET, re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{6,512}={0,2})"), group=1,
             validate=_docker_auth, family="keywords", anchored="keyword"),   # Basic base64(user:password)
    Detector(D.GENERIC_SECRET, re.compile(
        r"(?i)(?:\bbasic|\btoken)\s+([A-Za-z0-9._~+/=-]{16,512})"),
        group=1, validate=high_entropy, family="keywords", anchored="keyword"),
)

__all__ = ["SECRETS", "not_benign"]
