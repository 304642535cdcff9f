"""The project's error tree.

    PolicyProxyError
    ├── ConfigError          one problem in a config or requirements file (file, line, key path)
    │   └── RequirementViolation   a profile asks for more than requirements.toml permits
    ├── ConfigErrors         every ConfigError found in one load, reported together
    └── UpstreamError        the upstream failed before its answer reached the client (``status``: 502)
        ├── UpstreamUnreachable    no connection (refused, no address, upstream proxy said no)
        ├── UpstreamTLSError       TLS with the upstream failed (certificate verification included)
        ├── UpstreamTimeout        connect or answer not in time (504)
        ├── UpstreamAnswered       a WebSocket upgrade answered with something other than 101
        │                          (a redirect among them): relayed to the client as it came
        └── UpstreamBroken         the answer's body broke off after its head was relayed

Messages never contain a secret's value: only the env var name or the file path it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class PolicyProxyError(Exception):
    """Base of every error policyproxy raises on purpose."""


class ConfigError(PolicyProxyError):
    """One problem at one key of one file.

    ``key`` is the dotted TOML path (``permissions.ws.network.mode``); ``message`` continues the
    sentence that starts with that path, e.g. ``must be "full" or "limited", got "fast"``.
    """

    def __init__(self, message: str, *, file: Path | str | None = None, line: int | None = None,
                 key: str = "") -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        super().__init__(str(self))

    @property
    def location(self) -> str:
        """``file:line``, or just the file when the line is not known."""
        where = self.file or "<config>"
        return f"{where}:{self.line}" if self.line is not None else where

    def __str__(self) -> str:
        subject = f"{self.key} " if self.key else ""
        return f"{self.location}: {subject}{self.message}"


class RequirementViolation(ConfigError):
    """A profile value outside what requirements.toml allows: field, candidate, allowed."""

    def __init__(self, field: str, candidate: str, allowed: str, **where: object) -> None:
        self.field = field
        self.candidate = candidate
        self.allowed = allowed
        super().__init__(
            f"{field}: {candidate} is not allowed by requirements.toml ({allowed})", **where  # type: ignore[arg-type]
        )

    def __str__(self) -> str:
        at = f" [at {self.key}]" if self.key else ""
        return f"{self.location}: {self.message}{at}"


class ConfigErrors(PolicyProxyError):
    """All the problems of one load; ``str()`` lists one per line."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class UpstreamError(PolicyProxyError):
    """Why a request could not be sent or answered; the proxy answers ``status`` with ``message``.

    Raised only by the ``Upstream`` seam, so the pipeline handles one tree and never aiohttp's.
    """

    status = 502

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UpstreamUnreachable(UpstreamError):
    """No connection was made (refused, unresolvable, or refused by the upstream proxy)."""


class UpstreamTLSError(UpstreamError):
    """The TLS handshake with the upstream failed, certificate verification included."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not accept the connection or answer within its timeout."""

    status = 504


class UpstreamAnswered(UpstreamError):
    """The upstream answered a WebSocket upgrade with an HTTP answer (a 3xx, 4xx, ...) instead of 101.

    The proxy never follows it: the client gets this answer and decides; its next request is decided
    again.
    """

    def __init__(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        super().__init__(f"upstream answered the WebSocket upgrade with {status}")
        self.status = status
        self.headers = headers
        self.body = body


class UpstreamBroken(UpstreamError):
    """The upstream's body broke off (reset, truncated, timed out) after its head reached the client:
    too late for an answer of the proxy's own, so the client's connection (or stream) is ended."""
