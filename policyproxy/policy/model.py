"""What goes into a decision and what comes out: small frozen values, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from policyproxy.config.schema import SecretRef
from policyproxy.grammar.headers import name_skeleton
from policyproxy.grammar.hosts import IPAddress
from policyproxy.reasons import Protocol, Reason, Source, Verdict


class Secret:
    """A secret value that never prints: ``repr``/``str`` show only where it came from."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<{self.origin}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a connection or request goes, as the client named it.

    ``addresses`` are what the caller resolved the host to (empty when not resolved yet);
    ``trusted`` marks an operator-pinned destination (``--resolve``, a gateway route), to which the
    local-address rule does not apply.
    """

    host: str
    port: int
    protocol: Protocol
    addresses: tuple[IPAddress, ...] = ()
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request: ``path`` is the raw request-target path, ``query`` the raw query string,
    ``headers`` as the client sent them (hooks see only what ``grammar.headers.forwarded`` keeps)."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Injection:
    """A header value to inject: ``prefix`` + the current value of ``secret`` (a reference, not a value).

    The policy never holds the value: the shell resolves ``secret`` when a request needs it, so a
    rotated file or a re-minted token is picked up without recompiling.
    """

    secret: SecretRef
    prefix: str = ""


SecretLookup = Callable[[SecretRef], Secret]


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """Applied in order: remove ``strip`` names, then set each ``inject`` (replacing).

    Names are removed in every spelling a server may fold into them (``name_skeleton``: ``X_Api_Key``
    reaches a WSGI or Django app as the same ``HTTP_X_API_KEY``), so the agent can neither keep a
    stripped header under an alias nor send its own value next to an injected one.
    """

    strip: tuple[str, ...] = ()
    inject: tuple[tuple[str, Injection], ...] = ()

    def apply(self, headers: list[tuple[str, str]], lookup: SecretLookup) -> list[tuple[str, str]]:
        """``headers`` edited; ``lookup`` gives each injected secret's current value (it may raise)."""
        values = [(name, injection.prefix + lookup(injection.secret).reveal()) for name, injection in self.inject]
        drop = {name_skeleton(name) for name in self.strip} | {name_skeleton(name) for name, _ in self.inject}
        out = [(k, v) for k, v in headers if name_skeleton(k) not in drop]
        return out + values

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        return tuple(injection.secret for _, injection in self.inject)

    @property
    def injected_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.inject)


NO_EDITS = HeaderEdits()


@dataclass(frozen=True, slots=True)
class RedactionTarget:
    """The redaction endpoint a request falls under (``host/path-prefix`` as configured)."""

    endpoint: str
    api: str | None = None   # the API shape it speaks, where the config said (else inferred from host/path)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one connection or request; rendering and events are done elsewhere."""

    verdict: Verdict
    reason: Reason
    source: Source
    profile: str
    protocol: Protocol
    host: str                       # canonical when it parsed, else as given
    port: int
    method: str | None = None
    path: str | None = None         # normalised: what is matched and what is forwarded
    hook: str | None = None
    actions: tuple[str, ...] = ()
    edits: HeaderEdits = field(default=NO_EDITS)
    intercept: bool = False         # connection level: terminate TLS to see requests
    redaction: RedactionTarget | None = None
    rule: str | None = None         # the domain pattern that decided, for explain
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW
