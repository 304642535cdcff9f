"""The closed vocabularies of a decision.

Their string values are stable: they appear on the wire (``x-proxy-error``), in the audit log and in
OpenTelemetry events, so renaming one is a breaking change.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


class Reason(enum.Enum):
    """Why a decision was taken (DESIGN.md section 4, in evaluation order)."""

    NOT_ALLOWED = "not_allowed"
    DENIED = "denied"
    NOT_ALLOWED_LOCAL = "not_allowed_local"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MITM_REQUIRED = "mitm_required"
    HOOK_MATCHED = "hook_matched"
    MITM_HOOK_DENIED = "mitm_hook_denied"
    REDACTED = "redacted"
    PII_BLOCKED = "pii_blocked"
    INSPECTION_FAILED = "inspection_failed"
    SECRET_UNAVAILABLE = "secret_unavailable"          # an injected secret expired and was not refreshed
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"      # the client refused the interception (CA not trusted)
    STORE_UNAVAILABLE = "store_unavailable"   # the shared mapping store (Redis) cannot be reached: fail closed
    ALLOWED = "allowed"

    @property
    def proxy_error(self) -> str | None:
        """The Codex-compatible ``x-proxy-error`` value for a deny with this reason (None: not a deny)."""
        return _PROXY_ERROR[self]


# Every reason listed, the allowing ones with None: a new reason missing here fails loudly (KeyError,
# and tests/core/test_reasons.py) instead of silently getting no x-proxy-error.
_PROXY_ERROR: dict[Reason, str | None] = {
    Reason.ALLOWED: None,
    Reason.HOOK_MATCHED: None,
    Reason.REDACTED: None,
    Reason.NOT_ALLOWED: "blocked-by-allowlist",
    Reason.NOT_ALLOWED_LOCAL: "blocked-by-allowlist",
    Reason.DENIED: "blocked-by-denylist",
    Reason.METHOD_NOT_ALLOWED: "blocked-by-method-policy",
    Reason.MITM_HOOK_DENIED: "blocked-by-mitm-hook",
    Reason.MITM_REQUIRED: "blocked-by-mitm-required",
    Reason.PII_BLOCKED: "blocked-by-policy",
    Reason.INSPECTION_FAILED: "blocked-by-policy",
    Reason.SECRET_UNAVAILABLE: "blocked-by-policy",
    Reason.TLS_HANDSHAKE_FAILED: "blocked-by-policy",
    Reason.STORE_UNAVAILABLE: "blocked-by-policy",
}


class Source(enum.Enum):
    """Which layer of configuration produced a decision."""

    PROFILE = "profile"
    REQUIREMENTS = "requirements"
    DEFAULT = "default"


class Protocol(enum.Enum):
    """How the traffic reached the proxy (``network.transport.protocol``)."""

    HTTP = "http"
    HTTPS_CONNECT = "https_connect"
    HTTPS_MITM = "https_mitm"
    SOCKS5_TCP = "socks5_tcp"
    GATEWAY = "gateway"


class Mode(enum.Enum):
    """Network mode; ``LIMITED`` permits only read-only methods."""

    LIMITED = "limited"
    FULL = "full"

    @property
    def rank(self) -> int:
        return 0 if self is Mode.LIMITED else 1


class RedactionAction(enum.Enum):
    """What a detector does with a finding, ordered from weakest to strictest."""

    OFF = "off"
    MASK = "mask"
    REDACT = "redact"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {
    RedactionAction.OFF: 0,
    RedactionAction.MASK: 1,
    RedactionAction.REDACT: 2,
    RedactionAction.BLOCK: 3,
}

class DetectorName(str, enum.Enum):
    """The built-in redaction detectors: stable names in config, placeholders, events and block answers.

    A ``str`` mix-in so a member equals its name (``DetectorName.EMAIL == "email"``); write ``.value``
    where text is produced. Adding a member needs a detector in ``redaction/detectors/`` (a test walks
    the enum) and a row in the README's detector table.
    """

    PRIVATE_KEY = "private_key"
    AWS_ACCESS_KEY = "aws_access_key"
    AWS_SECRET_KEY = "aws_secret_key"
    GITHUB_TOKEN = "github_token"
    GITLAB_TOKEN = "gitlab_token"
    SLACK_TOKEN = "slack_token"
    STRIPE_KEY = "stripe_key"
    OPENAI_KEY = "openai_key"
    ANTHROPIC_KEY = "anthropic_key"
    GOOGLE_API_KEY = "google_api_key"
    JWT = "jwt"
    URL_CREDENTIALS = "url_credentials"
    SECRET_ASSIGNMENT = "secret_assignment"
    GENERIC_SECRET = "generic_secret"
    VENDOR_TOKEN = "vendor_token"
    EMAIL = "email"
    PHONE = "phone"
    US_SSN = "us_ssn"
    NATIONAL_ID = "national_id"
    DATE_OF_BIRTH = "date_of_birth"
    PASSPORT = "passport"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    IP_ADDRESS = "ip_address"
    PERSON_NAME = "person_name"
    STREET_ADDRESS = "street_address"

    @property
    def secret(self) -> bool:
        """Secrets win over PII where spans overlap (a key inside an email-shaped URL is a key)."""
        return self not in _PII

    def __str__(self) -> str:
        return self.value


_PII = frozenset({
    DetectorName.EMAIL, DetectorName.PHONE, DetectorName.US_SSN, DetectorName.NATIONAL_ID,
    DetectorName.DATE_OF_BIRTH, DetectorName.PASSPORT, DetectorName.CREDIT_CARD, DetectorName.IBAN,
    DetectorName.IP_ADDRESS, DetectorName.PERSON_NAME, DetectorName.STREET_ADDRESS,
})


READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
