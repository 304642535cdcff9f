"""Build settings and policies from TOML text written to a temporary file."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

from policyproxy.config import load_settings
from policyproxy.config.schema import Settings
from policyproxy.policy.compile import compile_policy
from policyproxy.policy.decide import Policy
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.reasons import Protocol
from policyproxy.secret_provider import SecretProvider


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def settings(tmp: Path, text: str, requirements: str | None = None, profile: str | None = None) -> Settings:
    req = write(tmp, "requirements.toml", requirements) if requirements is not None else None
    return load_settings(write(tmp, "config.toml", text), req, profile, env={"POLICYPROXY_HOME": str(tmp)})


def policy(tmp: Path, text: str, env: Mapping[str, str] | None = None, **kwargs: object) -> Policy:
    """The compiled policy; with ``env``, its injected secrets must also resolve from that environment."""
    s = settings(tmp, text, **kwargs)  # type: ignore[arg-type]
    if env is not None:
        provider(s, env)
    return compile_policy(s)


def provider(s: Settings, env: Mapping[str, str] | None = None) -> SecretProvider:
    """The secrets ``s`` injects, read from ``env`` (never the process environment)."""
    return SecretProvider.for_settings(s, env or {})[0]


def connect(p: Policy, host: str, port: int = 443, protocol: Protocol = Protocol.HTTPS_CONNECT,
            **target: object) -> Decision:
    return p.decide(Target(host, port, protocol, **target))  # type: ignore[arg-type]


def request(p: Policy, method: str, host: str, path: str = "/", query: str = "",
            headers: tuple[tuple[str, str], ...] = (), protocol: Protocol = Protocol.HTTPS_MITM,
            port: int = 443, **target: object) -> Decision:
    return p.decide(Target(host, port, protocol, **target), Request(method, path, query, headers))  # type: ignore[arg-type]
