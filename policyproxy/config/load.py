"""Find, read and validate the configuration: files -> one effective ``Settings``.

Order: the config file (``--config``, else ``$POLICYPROXY_HOME/config.toml``, else the bundled
``default`` profile), the profile (``--profile``, else ``default_permissions``, else the only one),
its ``extends`` chain merged parent first, then requirements.toml (``--requirements``, else
``/etc/policyproxy/requirements.toml`` if it exists). Every problem is collected and raised
together as ``ConfigErrors``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from policyproxy.config.admin import parse_admin
from policyproxy.config.network import CODEX_ONLY_KEYS, api_entry, parse_network
from policyproxy.config.otel import parse_otel
from policyproxy.config.reader import Reader
from policyproxy.config.requirements import DEFAULT_REQUIREMENTS_PATH, apply_requirements, parse_requirements
from policyproxy.config.schema import DEFAULT_GATEWAY_ROUTES, AuditSpec, OtelSpec, Settings
from policyproxy.config.source import KeyPath, TomlSource, format_key, load_toml
from policyproxy.errors import ConfigError, ConfigErrors, RequirementViolation
from policyproxy.grammar.hosts import url_host
from policyproxy.reasons import Mode

OWNED_KEYS = frozenset({"default_permissions", "permissions", "otel", "gateway", "audit", "admin"})
PROFILE_KEYS = frozenset({"network", "extends"})
# Below these tables an entry is replaced whole by a child profile, never merged key by key.
_REPLACED_WHOLE: frozenset[KeyPath] = frozenset({("mitm", "hooks"), ("mitm", "actions"), ("redaction", "patterns")})
_ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("POLICYPROXY_HOME") or Path.home() / ".policyproxy")


def bundled_profile_path(name: str) -> Path:
    return Path(str(resources.files("policyproxy") / "profiles" / f"{name}.toml"))


def bundled_profiles() -> list[str]:
    folder = resources.files("policyproxy") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def find_config(explicit: Path | None, profile: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The config file to read: explicit, then the home one, then a bundled profile."""
    if explicit is not None:
        return explicit
    home_config = home_dir(env) / "config.toml"
    if home_config.exists():
        return home_config
    name = profile or "default"
    path = bundled_profile_path(name)
    if not path.exists():
        raise ConfigErrors([ConfigError(
            f"no config file and no bundled profile named {name!r} (bundled: {', '.join(bundled_profiles())})",
            file=home_config)])
    return path


def find_requirements(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    return DEFAULT_REQUIREMENTS_PATH if DEFAULT_REQUIREMENTS_PATH.exists() else None


def load_settings(config: Path | None = None, requirements: Path | None = None, profile: str | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate; raises ``ConfigErrors`` listing every problem found."""
    path = find_config(config, profile, env)
    try:
        src = load_toml(path)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    req_path = find_requirements(requirements)
    return settings_from_sources(src, _load_requirements(req_path), profile)


def _load_requirements(path: Path | None) -> TomlSource | None:
    if path is None:
        return None
    try:
        return load_toml(path)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None


def settings_from_sources(src: TomlSource, req_src: TomlSource | None, profile: str | None) -> Settings:
    top = Reader(lambda p: (src, p))
    data = src.data
    ignored = [format_key((k,)) for k in data if k not in OWNED_KEYS]
    permissions = top.table(data.get("permissions", {}), ("permissions",))
    name = _choose_profile(top, data, permissions, profile)
    top.raise_if_any()
    assert name is not None
    chain = _extends_chain(top, permissions, name)
    top.raise_if_any()
    for member in chain:
        ignored += [format_key(("permissions", member, k)) for k in permissions[member] if k not in PROFILE_KEYS]
    merged, origins = _merge_network([(p, permissions[p].get("network", {})) for p in chain])
    for key in sorted(CODEX_ONLY_KEYS & set(merged)):
        ignored.append(format_key(("permissions", origins.get((key,), name), "network", key)))

    def locate(rel: KeyPath) -> tuple[TomlSource, KeyPath]:
        owner = name
        for end in range(len(rel), -1, -1):
            if rel[:end] in origins:
                owner = origins[rel[:end]]
                break
        return src, ("permissions", owner, "network", *rel)

    r = Reader(locate)
    network = parse_network(r, merged)
    otel = parse_otel(top, data["otel"]) if "otel" in data else OtelSpec()
    routes, route_apis = _parse_gateway(top, data.get("gateway", {}))
    audit = _parse_audit(top, data.get("audit", {}))
    admin = parse_admin(top, data.get("admin", {}))
    errors = top.errors + r.errors
    warnings: list[str] = []
    if not network.enabled:
        warnings.append(f"profile {name!r} sets network.enabled = false: Codex would run no proxy for it")
    req_file = None
    managed: frozenset[str] = frozenset()
    if req_src is not None:
        reqs, req_reader = parse_requirements(req_src)
        errors += req_reader.errors
        req_file = req_src.path
        if not req_reader.errors:
            violations: list[RequirementViolation] = []

            def where(rel: KeyPath) -> tuple[str, int | None, str]:
                if rel[:1] == ("otel",):
                    return str(src.path), src.line_of(rel), format_key(rel)
                return r.where(rel)

            network, otel = apply_requirements(network, otel, reqs, where, violations, warnings)
            managed = frozenset(key for key, value in reqs.booleans if not value)
            if reqs.mode is Mode.LIMITED:
                managed |= {"mode"}
            errors += violations
    refs = Reader(locate)
    defined = {a.name for a in network.actions}
    for hook in network.hooks:
        for action in hook.actions:
            if action not in defined:
                refs.error(("mitm", "hooks", hook.name, "action"), f"references undefined action {action!r}")
    errors += refs.errors
    if errors:
        raise ConfigErrors(sorted(errors, key=lambda e: (e.file or "", e.line or 0)))
    return Settings(
        profile=name,
        network=network,
        otel=otel,
        gateway_routes=routes,
        gateway_apis=route_apis,
        audit=audit,
        admin=admin,
        config_file=src.path,
        requirements_file=req_file,
        ignored_keys=tuple(ignored),
        warnings=tuple(warnings),
        managed_keys=managed,
        key_lines={format_key(k): line for k, line in src.lines.items()},
    )


def _choose_profile(r: Reader, data: Mapping[str, Any], permissions: Mapping[str, Any],
                    requested: str | None) -> str | None:
    default = r.get(data, "default_permissions", (), str, None)
    name = requested or default
    if name is None:
        if len(permissions) == 1:
            return next(iter(permissions))
        if not permissions:
            r.error(("permissions",), "defines no profile: add [permissions.<name>.network]")
        else:
            r.error(("default_permissions",), f"is not set and there are several profiles ({', '.join(permissions)}); "
                    "set it or pass --profile")
        return None
    if name not in permissions:
        at: KeyPath = () if requested else ("default_permissions",)
        known = ", ".join(permissions) or "none"
        r.error(at, f"names profile {name!r}, which is not defined (profiles: {known})")
        return None
    return name


def _extends_chain(r: Reader, permissions: Mapping[str, Any], name: str) -> list[str]:
    """Profiles from the root ancestor down to ``name``."""
    chain = [name]
    while True:
        profile = r.table(permissions[chain[-1]], ("permissions", chain[-1]))
        parent = r.get(profile, "extends", ("permissions", chain[-1]), str, None)
        if parent is None:
            break
        if parent not in permissions:
            r.error(("permissions", chain[-1], "extends"), f"names profile {parent!r}, which is not defined")
            break
        if parent in chain:
            r.error(("permissions", chain[-1], "extends"),
                    f"makes a cycle: {' -> '.join([*chain, parent])}")
            break
        chain.append(parent)
    return chain[::-1]


def _merge_network(chain: list[tuple[str, Any]]) -> tuple[dict[str, Any], dict[KeyPath, str]]:
    merged: dict[str, Any] = {}
    origins: dict[KeyPath, str] = {(): chain[-1][0]}

    def merge(dst: dict[str, Any], src: Mapping[str, Any], path: KeyPath, owner: str) -> None:
        for key, value in src.items():
            at = (*path, key)
            if isinstance(value, dict) and isinstance(dst.get(key), dict) and path not in _REPLACED_WHOLE:
                merge(dst[key], value, at, owner)
                continue
            dst[key] = copy.deepcopy(value)
            for stale in [p for p in origins if p[:len(at)] == at]:
                del origins[stale]
            origins[at] = owner

    for owner, network in chain:
        if isinstance(network, dict):
            merge(merged, network, (), owner)
    return merged, origins


def _parse_audit(r: Reader, raw: object) -> AuditSpec:
    table = r.table(raw, ("audit",), {"enabled", "path", "max_bytes", "backups"})
    path = r.get(table, "path", ("audit",), str, None)
    if path is not None and not path.startswith(("/", "~")):
        r.error(("audit", "path"), f"must be an absolute path, got {path!r}")
    max_bytes = r.get(table, "max_bytes", ("audit",), int, AuditSpec.max_bytes)
    backups = r.get(table, "backups", ("audit",), int, AuditSpec.backups)
    if max_bytes < 1024:
        r.error(("audit", "max_bytes"), "must be at least 1024 bytes")
    if backups < 0:
        r.error(("audit", "backups"), "must not be negative")
    return AuditSpec(r.get(table, "enabled", ("audit",), bool, True), path, max(max_bytes, 1024), max(backups, 0))


def _parse_gateway(r: Reader, raw: object) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(route -> base URL, route -> API shape). A route is a base URL string, or
    ``{ url = "...", api = "anthropic" | "openai" | "gemini" }``: everything under it is then a
    redaction endpoint speaking that API (a compatible provider without pretending to be its host)."""
    table = r.table(raw, ("gateway",), {"routes"})
    routes = dict(DEFAULT_GATEWAY_ROUTES)
    apis: dict[str, str] = {}
    for name, url in r.table(table.get("routes", {}), ("gateway", "routes")).items():
        at = ("gateway", "routes", name)
        if not _ROUTE_NAME.fullmatch(name):
            r.error(at, "must be a lower-case route name of letters, digits, '_' or '-'")
            continue
        if isinstance(url, dict):
            entry = api_entry(r, url, at, "url", '"https://host/base"')
            if entry is None:
                continue
            url, api = entry
            if api is not None:
                clash = next((other for other, a in apis.items() if routes.get(other) == url.rstrip("/") and a != api),
                             None)
                if clash is not None:
                    r.error((*at, "api"), f"route {clash!r} has the same url with api = {apis[clash]!r}")
                    continue
                apis[name] = api
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            r.error(at, f"must be an http:// or https:// base URL, got {url!r}")
            continue
        if url_host(url) is None:
            r.error(at, f"{url!r} has no valid host (and must not carry user:password)")
            continue
        routes[name] = url.rstrip("/")
    return tuple(routes.items()), tuple(apis.items())

