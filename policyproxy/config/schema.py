"""The validated configuration: immutable values a loaded file becomes.

These still say what the operator wrote (names, patterns, secret *sources*); the policy compiler
turns them into indexed matchers and resolves secrets. Nothing here holds a secret value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from policyproxy.reasons import DetectorName, Mode, RedactionAction, Source, Verdict

DEFAULT_PROXY_URL = "http://127.0.0.1:3128"
DEFAULT_SOCKS_URL = "socks5://127.0.0.1:8081"
# Every path that carries prompt text on the two providers (prefixes: /v1/complete also covers
# /v1/completions; /v1/messages covers count_tokens and batches). /v1/realtime is a WebSocket: listed so
# the upgrade is refused (426) instead of relayed uninspected. Anthropic also serves the OpenAI Chat
# Completions shape (its "OpenAI SDK compatibility" base URL); Moderations and Conversations carry text.
DEFAULT_REDACTION_ENDPOINTS = (
    "api.anthropic.com/v1/messages",
    "api.anthropic.com/v1/complete",
    "api.anthropic.com/v1/chat/completions",
    "api.openai.com/v1/chat/completions",
    "api.openai.com/v1/responses",
    "api.openai.com/v1/completions",
    "api.openai.com/v1/embeddings",
    "api.openai.com/v1/realtime",
    "api.openai.com/v1/assistants",
    "api.openai.com/v1/threads",
    "api.openai.com/v1/moderations",
    "api.openai.com/v1/conversations",
    "generativelanguage.googleapis.com/v1beta/models",   # Gemini generateContent, streamGenerateContent
    "generativelanguage.googleapis.com/v1/models",
)
DEFAULT_GATEWAY_ROUTES = (
    ("anthropic", "https://api.anthropic.com"),
    ("openai", "https://api.openai.com"),
    ("google", "https://generativelanguage.googleapis.com"),
)
API_SHAPES = ("anthropic", "openai", "gemini")   # what an endpoint or route may say it speaks
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


DEFAULT_SECRET_TTL_SECONDS = 300


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from; exactly one of ``env_var``, ``file`` and ``command`` is set.

    A reference, never a value: the compiled policy holds these and the shell's
    ``secret_provider.SecretProvider`` resolves them when a request needs one (so a rotated file or a
    re-minted token is used without a reload). ``ttl_seconds`` applies to ``command`` only.
    """

    env_var: str | None = None
    file: str | None = None
    command: tuple[str, ...] | None = None
    ttl_seconds: int = DEFAULT_SECRET_TTL_SECONDS

    def describe(self) -> str:
        if self.env_var is not None:
            return f"env:{self.env_var}"
        if self.file is not None:
            return f"file:{self.file}"
        return "command:" + " ".join(self.command or ())


@dataclass(frozen=True)
class InjectHeader:
    name: str
    secret: SecretRef
    prefix: str = ""


@dataclass(frozen=True)
class ActionSpec:
    name: str
    strip_request_headers: tuple[str, ...] = ()
    inject_request_headers: tuple[InjectHeader, ...] = ()
    source: Source = Source.PROFILE


@dataclass(frozen=True)
class HookSpec:
    name: str
    host: str
    methods: tuple[str, ...]
    path_prefixes: tuple[str, ...]
    actions: tuple[str, ...]
    query: tuple[tuple[str, tuple[str, ...]], ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    allow_plaintext_secrets: bool = False
    source: Source = Source.PROFILE


@dataclass(frozen=True)
class DomainRule:
    pattern: str
    verdict: Verdict
    source: Source = Source.PROFILE


@dataclass(frozen=True)
class CustomPattern:
    name: str
    regex: str
    action: RedactionAction


class ResponseScanning(Enum):
    """What happens to secrets and PII a model emits that the client never sent."""

    OFF = "off"      # not looked for
    AUDIT = "audit"  # counted by detector in the decision event (never the values)
    MASK = "mask"    # counted, and replaced by [REDACTED:<detector>] before the client sees them
class WebSocketRedaction(Enum):
    """What a WebSocket upgrade on a redaction endpoint gets."""

    INSPECT = "inspect"   # accepted; each client message redacted, each server event restored
    REFUSE = "refuse"     # 426 (clients such as Codex fall back to HTTP and SSE)


# Regions whose national phone formats are recognised (ISO 3166 alpha-2); "+CC" numbers are always.
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "BR", "IN", "CA", "AU", "ES", "IT", "NL", "MX")


@dataclass(frozen=True)
class RedactionSpec:
    enabled: bool = True
    endpoints: tuple[str, ...] = DEFAULT_REDACTION_ENDPOINTS
    endpoint_apis: tuple[tuple[str, str], ...] = ()   # endpoint -> API shape, where the config said
    default_action: RedactionAction = RedactionAction.MASK
    detectors: tuple[tuple[DetectorName, RedactionAction], ...] = ()   # str-valued: "email" works too
    patterns: tuple[CustomPattern, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allow_values: tuple[str, ...] = ()       # exact values never redacted
    allow_patterns: tuple[str, ...] = ()     # regexes a whole value may fullmatch to be left alone
    allow_sha256: tuple[str, ...] = ()       # hex SHA-256 of values left alone (no plaintext in config)
    mapping_ttl_seconds: int = 24 * 3600     # how long a placeholder stays restorable after last use
    mapping_store: str | None = None         # absolute path of a SQLite file (0600), or redis:// / rediss:// URL
    mapping_store_password: SecretRef | None = None   # the Redis password (ACL user in the URL): env or file
    mapping_store_ca_file: str | None = None          # CA bundle for rediss:// (else the system roots)
    mapping_key: SecretRef | None = None     # placeholder key from outside the store; also encrypts Redis values
    responses: ResponseScanning = ResponseScanning.AUDIT
    explain_placeholders: bool = False       # add a system note: placeholders are opaque, echo them verbatim
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS   # libphonenumber regions for national forms; () = off
    websocket: WebSocketRedaction = WebSocketRedaction.INSPECT
    ner_model: str | None = None             # a spaCy pipeline (package name or path) for names; [ner] extra


@dataclass(frozen=True)
class NetworkSpec:
    enabled: bool = True
    proxy_url: str = DEFAULT_PROXY_URL
    enable_socks5: bool = True
    socks_url: str = DEFAULT_SOCKS_URL
    enable_socks5_udp: bool = False
    mode: Mode = Mode.FULL
    allow_local_binding: bool = False
    allow_upstream_proxy: bool = False
    dangerously_allow_non_loopback_proxy: bool = False
    domains: tuple[DomainRule, ...] = ()
    mitm_enabled: bool | None = None   # None: on where needed (hooks, limited mode, redaction)
    mitm_http2: bool = True            # intercepted connections offer h2 by ALPN (and ask upstreams for it)
    hooks: tuple[HookSpec, ...] = ()
    actions: tuple[ActionSpec, ...] = ()
    redaction: RedactionSpec | None = None


@dataclass(frozen=True)
class OtelSpec:
    exporter: str = "none"            # none | otlp-grpc | otlp-http
    endpoint: str | None = None
    protocol: str | None = None       # otlp-http: binary (protobuf) | json
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    resource_attributes: tuple[tuple[str, str], ...] = ()
    environment: str | None = None
    source: Source = Source.DEFAULT
    exporter_set: bool = False        # the file named an exporter (requirements compare only then)
    max_queue_size: int = 8192        # OTLP records waiting for the collector; more are dropped and counted
    metrics_exporter: str = "none"    # none | otlp-grpc | otlp-http: decision counts, added latency, open connections
    metrics_endpoint: str | None = None


@dataclass(frozen=True)
class AuditSpec:
    enabled: bool = True
    path: str | None = None              # default: $POLICYPROXY_HOME/audit.jsonl
    max_bytes: int = 50 * 1024 * 1024    # rotate past this size
    backups: int = 5                     # rotated files kept


@dataclass(frozen=True)
class AdminSpec:
    listen: str = "127.0.0.1:9090"       # "off" disables the admin listener
    token: SecretRef | None = None       # bearer token source (required off loopback); never the value


@dataclass(frozen=True)
class Settings:
    """One effective profile with everything around it, ready to compile."""

    profile: str
    network: NetworkSpec
    otel: OtelSpec = OtelSpec()
    gateway_routes: tuple[tuple[str, str], ...] = DEFAULT_GATEWAY_ROUTES
    gateway_apis: tuple[tuple[str, str], ...] = ()    # route name -> API shape (a redaction route)
    audit: AuditSpec = AuditSpec()
    admin: AdminSpec = AdminSpec()
    config_file: Path | None = None
    requirements_file: Path | None = None
    ignored_keys: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    managed_keys: frozenset[str] = frozenset()   # network keys whose value requirements.toml decided
    key_lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, key: str) -> int | None:
        """The config-file line of a dotted key path, or of its nearest written ancestor."""
        while key:
            if key in self.key_lines:
                return self.key_lines[key]
            key = key.rpartition(".")[0] if "[" not in key.rpartition(".")[2] else key.rpartition("[")[0]
        return None
