"""The managed layer: ``requirements.toml`` bounds what any profile may say and adds what it must hold.

Precedence (also in README): requirements.toml > the chosen profile (after ``extends``) > built-in
defaults. A profile value outside a bound is refused, never silently clamped, so an operator sees
why; a value the profile leaves unset takes the managed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyproxy.config.network import DETECTOR_NAMES, endpoint_problem, parse_actions, parse_hooks
from policyproxy.config.otel import parse_otel
from policyproxy.config.reader import Reader
from policyproxy.config.schema import DomainRule, NetworkSpec, OtelSpec, RedactionSpec
from policyproxy.config.source import KeyPath, TomlSource
from policyproxy.errors import RequirementViolation
from policyproxy.grammar.patterns import DomainKind, DomainPattern, PatternError
from policyproxy.reasons import DetectorName, Mode, RedactionAction, Source, Verdict

DEFAULT_REQUIREMENTS_PATH = Path("/etc/policyproxy/requirements.toml")
TOP_KEYS = frozenset({"network", "redaction", "otel"})
BOOLEAN_KEYS = ("allow_local_binding", "dangerously_allow_non_loopback_proxy", "allow_upstream_proxy",
                "enable_socks5", "enable_socks5_udp")
NETWORK_KEYS = frozenset({"mode", "allowed_domains", "allowlist_expansion", "denied_domains",
                          "managed_allowed_domains_only", "mitm", *BOOLEAN_KEYS})
REDACTION_KEYS = frozenset({"required", "detectors", "default_action", "endpoints"})


@dataclass(frozen=True)
class Requirements:
    file: Path
    mode: Mode | None = None
    booleans: tuple[tuple[str, bool], ...] = ()
    allowed_domains: tuple[DomainPattern, ...] | None = None
    allowlist_expansion: bool | None = None
    denied_domains: tuple[DomainPattern, ...] = ()
    managed_allowed_domains_only: bool = False
    network: NetworkSpec = field(default_factory=NetworkSpec)   # managed hooks and actions only
    redaction_required: bool = False
    detector_floors: tuple[tuple[DetectorName, RedactionAction], ...] = ()
    default_action_floor: RedactionAction | None = None
    redaction_endpoints: tuple[str, ...] = ()
    otel: OtelSpec | None = None


def parse_requirements(src: TomlSource) -> tuple[Requirements, Reader]:
    """Validate a requirements file; its own errors are left in the returned reader."""
    r = Reader(lambda p: (src, p))
    top = r.table(src.data, (), TOP_KEYS)
    net = r.table(top.get("network", {}), ("network",), NETWORK_KEYS)
    at: KeyPath = ("network",)
    mitm = r.table(net.get("mitm", {}), (*at, "mitm"), {"hooks", "actions"})
    actions = parse_actions(r, mitm.get("actions", {}), (*at, "mitm", "actions"), Source.REQUIREMENTS)
    hooks = parse_hooks(r, mitm.get("hooks", {}), (*at, "mitm", "hooks"), Source.REQUIREMENTS)
    defined = {a.name for a in actions}
    for hook in hooks:
        for i, name in enumerate(hook.actions):
            if name not in defined:
                r.error((*at, "mitm", "hooks", hook.name, "action", i),
                        f"references undefined action {name!r} (managed hooks may use managed actions only)")
    red = r.table(top.get("redaction", {}), ("redaction",), REDACTION_KEYS)
    floors = []
    for name, value in r.table(red.get("detectors", {}), ("redaction", "detectors")).items():
        if name not in DETECTOR_NAMES:
            r.error(("redaction", "detectors", name), f"is not a known detector (known: {', '.join(DETECTOR_NAMES)})")
        elif value not in ("mask", "redact", "block"):
            r.error(("redaction", "detectors", name), f'must be "mask", "redact" or "block", got {value!r}')
        else:
            floors.append((DetectorName(name), RedactionAction(value)))
    endpoints = r.string_list(red, "endpoints", ("redaction",))
    for i, endpoint in enumerate(endpoints):
        problem = endpoint_problem(endpoint)
        if problem:
            r.error(("redaction", "endpoints", i), problem)
    default_floor = None
    if "default_action" in red:
        default_floor = r.choice(red, "default_action", ("redaction",), RedactionAction,
                                 ("mask", "redact", "block"), RedactionAction.MASK)
    reqs = Requirements(
        file=src.path,
        mode=r.choice(net, "mode", at, Mode, ("full", "limited"), None) if "mode" in net else None,
        booleans=tuple((k, net[k]) for k in BOOLEAN_KEYS if r.get(net, k, at, bool, None) is not None),
        allowed_domains=_patterns(r, net, "allowed_domains") if "allowed_domains" in net else None,
        allowlist_expansion=r.get(net, "allowlist_expansion", at, bool, None),
        denied_domains=_patterns(r, net, "denied_domains"),
        managed_allowed_domains_only=r.get(net, "managed_allowed_domains_only", at, bool, False),
        network=NetworkSpec(hooks=hooks, actions=actions),
        redaction_required=r.get(red, "required", ("redaction",), bool, False),
        detector_floors=tuple(floors),
        default_action_floor=default_floor,
        redaction_endpoints=endpoints,
        otel=parse_otel(r, top["otel"], Source.REQUIREMENTS) if "otel" in top else None,
    )
    return reqs, r


def _patterns(r: Reader, net: dict[str, Any], key: str) -> tuple[DomainPattern, ...]:
    out = []
    for i, text in enumerate(r.string_list(net, key, ("network",))):
        try:
            pattern = DomainPattern.parse(text)
        except PatternError as exc:
            r.error(("network", key, i), f"is not a valid domain pattern: {exc}")
            continue
        if pattern.kind is DomainKind.GLOBAL:
            r.error(("network", key, i), 'must not be the global "*" pattern in requirements.toml')
            continue
        out.append(pattern)
    return tuple(out)


Where = Callable[[KeyPath], tuple[str, int | None, str]]


def apply_requirements(
    net: NetworkSpec, otel: OtelSpec, reqs: Requirements, where: Where, errors: list[RequirementViolation],
    warnings: list[str],
) -> tuple[NetworkSpec, OtelSpec]:
    """The profile bounded and completed by ``reqs``; every violation is appended to ``errors``."""

    def violation(path: KeyPath, field: str, candidate: str, allowed: str) -> None:
        file, line, key = where(path)
        errors.append(RequirementViolation(field, candidate, allowed, file=file, line=line, key=key))

    changes: dict[str, Any] = {}
    if reqs.mode is not None and net.mode.rank > reqs.mode.rank:
        violation(("mode",), "network.mode", f'"{net.mode.value}"', f"{reqs.mode.value} or more restrictive")
    for key, managed in reqs.booleans:
        if not managed and getattr(net, key):
            violation((key,), f"network.{key}", "true", "false (disabled by managed config)")
        if not managed:
            changes[key] = False

    changes["domains"] = _domains(net, reqs, violation, warnings)
    changes.update(_hooks_and_actions(net, reqs, violation))
    changes["redaction"] = _redaction(net.redaction, reqs, violation)
    return dataclasses.replace(net, **changes), _otel(otel, reqs, violation)


Violation = Callable[[KeyPath, str, str, str], None]


def _key(p: DomainPattern) -> tuple[DomainKind, str]:
    return p.kind, p.domain


def _domains(net: NetworkSpec, reqs: Requirements, violation: Violation, warnings: list[str]) -> tuple[DomainRule, ...]:
    denied = {_key(p) for p in reqs.denied_domains}
    rules = list(net.domains)
    allow_rules = [rule for rule in rules if rule.verdict is Verdict.ALLOW]
    for rule in allow_rules:
        if _key(DomainPattern.parse(rule.pattern)) in denied:
            violation(("domains", rule.pattern), f'network.domains."{rule.pattern}"', '"allow"',
                      "it is in denied_domains, which always deny")
    if reqs.allowed_domains is not None:
        managed = reqs.allowed_domains
        managed_keys = {_key(p) for p in managed}
        candidate = [DomainPattern.parse(rule.pattern) for rule in allow_rules]
        candidate_keys = {_key(p) for p in candidate}
        if reqs.managed_allowed_domains_only:
            if allow_rules:
                warnings.append("requirements.toml sets managed_allowed_domains_only: the profile's allow "
                                f"entries are ignored ({', '.join(r.pattern for r in allow_rules)})")
            rules = [rule for rule in rules if rule.verdict is Verdict.DENY]
            rules += [DomainRule(p.text, Verdict.ALLOW, Source.REQUIREMENTS) for p in managed]
        elif reqs.allowlist_expansion is None:
            outside = [p.text for p in candidate if not any(m.covers(p) for m in managed)]
            if outside:
                violation(("domains", outside[0]), "network.domains (allow entries)",
                          ", ".join(f'"{o}"' for o in outside),
                          "each allow entry must fall inside allowed_domains: "
                          + ", ".join(p.text for p in managed))
        else:
            missing = [p.text for p in managed if _key(p) not in candidate_keys]
            extra = [p.text for p in candidate if _key(p) not in managed_keys]
            if missing:
                violation(("domains",), "network.domains (allow entries)", "a list without "
                          + ", ".join(f'"{m}"' for m in missing),
                          "must include every entry of allowed_domains")
            if extra and reqs.allowlist_expansion is False:
                violation(("domains", extra[0]), "network.domains (allow entries)",
                          ", ".join(f'"{e}"' for e in extra),
                          "must equal allowed_domains; allowlist_expansion = false")
    rules = [DomainRule(p.text, Verdict.DENY, Source.REQUIREMENTS) for p in reqs.denied_domains] + rules
    return tuple(rules)


def _hooks_and_actions(net: NetworkSpec, reqs: Requirements, violation: Violation) -> dict[str, Any]:
    managed = reqs.network
    managed_hooks = {h.name for h in managed.hooks}
    managed_actions = {a.name for a in managed.actions}
    for hook in net.hooks:
        if hook.name in managed_hooks:
            violation(("mitm", "hooks", hook.name), f"network.mitm.hooks.{hook.name}", "a redefinition",
                      "managed hooks cannot be redefined or shadowed by a profile")
    for action in net.actions:
        if action.name in managed_actions:
            violation(("mitm", "actions", action.name), f"network.mitm.actions.{action.name}",
                      "a redefinition", "managed actions cannot be redefined by a profile")
    return {
        "hooks": managed.hooks + tuple(h for h in net.hooks if h.name not in managed_hooks),
        "actions": managed.actions + tuple(a for a in net.actions if a.name not in managed_actions),
    }


def _redaction(spec: RedactionSpec | None, reqs: Requirements, violation: Violation) -> RedactionSpec | None:
    if spec is None:
        if not reqs.redaction_required:
            return None
        spec = RedactionSpec()
    if reqs.redaction_required and not spec.enabled:
        violation(("redaction", "enabled"), "redaction.enabled", "false", "redaction is required")
    default = spec.default_action
    if reqs.default_action_floor is not None and default.rank < reqs.default_action_floor.rank:
        violation(("redaction", "default_action"), "redaction.default_action", f'"{default.value}"',
                  f"{reqs.default_action_floor.value} or stricter")
        default = reqs.default_action_floor
    detectors = dict(spec.detectors)
    for name, floor in reqs.detector_floors:
        chosen = detectors.get(name)
        if chosen is not None and chosen.rank < floor.rank:
            violation(("redaction", "detectors", name), f"redaction.detectors.{name}", f'"{chosen.value}"',
                      f"{floor.value} or stricter")
        if (chosen or default).rank < floor.rank:
            detectors[name] = floor
    endpoints = spec.endpoints + tuple(e for e in reqs.redaction_endpoints if e not in spec.endpoints)
    return dataclasses.replace(spec, default_action=default, detectors=tuple(detectors.items()),
                               endpoints=endpoints)


def _otel(otel: OtelSpec, reqs: Requirements, violation: Violation) -> OtelSpec:
    managed = reqs.otel
    if managed is None or managed.exporter == "none":
        return otel
    if otel.exporter_set and (otel.exporter != managed.exporter or otel.endpoint not in (None, managed.endpoint)):
        candidate = f'"{otel.exporter}" to {otel.endpoint or "its default endpoint"}'
        violation(("otel", "exporter"), "otel.exporter", candidate,
                  f'{managed.exporter} to {managed.endpoint or "the default endpoint"} is enforced')
    attrs = dict(otel.resource_attributes)
    attrs.update(managed.resource_attributes)
    return dataclasses.replace(managed, resource_attributes=tuple(attrs.items()),
                               environment=managed.environment or otel.environment)
