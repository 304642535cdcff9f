"""What ``check`` warns about and what ``explain`` says of each hook: pure functions of a compiled policy.

Warnings (``lint``) are for hooks that can never do what they were written for:

- ``hook_host_denied``: the hook's host is denied or not allowlisted, so no request reaches it;
- ``hook_method_impossible``: limited mode refuses some (or all) of its methods before hooks are asked;
- ``hook_shadowed``: an earlier hook on the same host matches every request this one can match
  (``covers``: a sound, conservative test; it never claims coverage it cannot prove);
- ``hook_shadowed_by_managed`` / ``hook_overlaps_managed``: a requirements.toml hook (always first)
  takes all or some of the requests a profile hook was written for;
- ``managed_hook_hooks_host``: a requirements.toml hook makes a host the profile allows (with no hook
  of its own there) a hooked host, so every other request to it is denied (``mitm_hook_denied``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from policyproxy.grammar.headers import forwarded, name_skeleton
from policyproxy.grammar.patterns import Matcher
from policyproxy.grammar.query import ambiguous_key, key_skeleton, parse_query
from policyproxy.policy.decide import CompiledHook, Policy, _confused_header
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.reasons import READ_ONLY_METHODS, Mode, Protocol, Reason, Source

_GLOB_SPECIAL = re.compile(r"[\\*?\[{]")


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint warning: ``key`` is the dotted config key it is about (in requirements.toml when
    ``managed``)."""

    code: str
    key: str
    message: str
    managed: bool = False


def hook_key(policy: Policy, hook: CompiledHook) -> str:
    if hook.source is Source.REQUIREMENTS:
        return f"network.mitm.hooks.{hook.name}"
    return f"permissions.{policy.profile}.network.mitm.hooks.{hook.name}"


def lint(policy: Policy) -> list[Finding]:
    findings: list[Finding] = []
    for host, hooks in policy.hooks.items():
        reach = policy.decide(Target(host, 443, Protocol.HTTPS_CONNECT))
        profile_hooks = [h for h in hooks if h.source is not Source.REQUIREMENTS]
        for i, hook in enumerate(hooks):
            key = hook_key(policy, hook)
            managed = hook.source is Source.REQUIREMENTS
            if not reach.allowed and reach.reason is not Reason.MITM_REQUIRED:
                findings.append(Finding("hook_host_denied", key, f"can never match: {reach.message}"
                                        + (f" (rule {reach.rule!r})" if reach.rule else ""), managed))
                continue
            if policy.mode is Mode.LIMITED:
                impossible = sorted(hook.methods - READ_ONLY_METHODS)
                if impossible:
                    whole = "can never match" if impossible == sorted(hook.methods) else "can never match for"
                    findings.append(Finding("hook_method_impossible", f"{key}.methods",
                                            f"{whole} {', '.join(impossible)}: limited mode allows only GET, HEAD "
                                            "and OPTIONS", managed))
            for earlier in hooks[:i]:
                if covers(earlier, hook):
                    if earlier.source is Source.REQUIREMENTS and not managed:
                        findings.append(Finding("hook_shadowed_by_managed", key,
                                                f"can never match: managed hook {earlier.name!r} (requirements.toml, "
                                                "always first) matches every request it can match"))
                    else:
                        findings.append(Finding("hook_shadowed", key,
                                                f"can never match: the earlier hook {earlier.name!r} matches every "
                                                "request it can match (first match wins)", managed))
                    break
                if earlier.source is Source.REQUIREMENTS and not managed and may_overlap(earlier, hook):
                    findings.append(Finding("hook_overlaps_managed", key,
                                            f"may lose requests to managed hook {earlier.name!r} (requirements.toml, "
                                            "always first): both match some "
                                            f"{'/'.join(sorted(earlier.methods & hook.methods))} requests"))
        if reach.allowed and not profile_hooks and policy.hooks[host]:
            names = ", ".join(repr(h.name) for h in hooks)
            findings.append(Finding("managed_hook_hooks_host", f"network.mitm.hooks.{hooks[0].name}",
                                    f"makes {host} a hooked host (managed hooks {names}): the profile allows {host} "
                                    "and has no hook there, so every request to it that no managed hook matches is "
                                    "denied (mitm_hook_denied)", True))
    return findings


def covers(first: CompiledHook, later: CompiledHook) -> bool:
    """True only when every request ``later`` matches is matched by ``first`` (then ``later`` is dead)."""
    if not later.methods <= first.methods:
        return False
    if not all(any(_path_covers(a, b) for a in first.paths) for b in later.paths):
        return False
    return (_fields_cover(first.query, later.query, key_skeleton)
            and _fields_cover(first.headers, later.headers, name_skeleton))


def may_overlap(first: CompiledHook, later: CompiledHook) -> bool:
    """Whether some request could match both (conservatively: patterns are assumed to overlap)."""
    if not first.methods & later.methods:
        return False
    for a in first.paths:
        for b in later.paths:
            if a.literal is None or b.literal is None:
                return True
            if a.literal.startswith(b.literal) or b.literal.startswith(a.literal):
                return True
    return False


def _literal_head(matcher: Matcher) -> str:
    """What every path a matcher accepts starts with."""
    if matcher.literal is not None:
        return matcher.literal
    glob = matcher.text.split(":", 1)[1]
    special = _GLOB_SPECIAL.search(glob)
    return glob if special is None else glob[:special.start()]


def _path_covers(first: Matcher, later: Matcher) -> bool:
    if first.literal is not None:
        return _literal_head(later).startswith(first.literal)
    return first.text == later.text


def _fields_cover(first: tuple[tuple[str, tuple[Matcher, ...]], ...],
                  later: tuple[tuple[str, tuple[Matcher, ...]], ...], fold: Callable[[str], str]) -> bool:
    """Each field ``first`` checks is checked at least as tightly by ``later``; and ``later`` checks no
    other field a server could confuse with one of ``first``'s (that would change which one refuses)."""
    mine = dict(later)
    for name, matchers in first:
        if name not in mine:
            return False
        theirs = mine[name]
        if matchers and (not theirs or not {m.text for m in theirs} <= {m.text for m in matchers}):
            return False
    names = {name for name, _ in first}
    skeletons = {fold(name) for name in names}
    return all(name in names or fold(name) not in skeletons for name in mine)


@dataclass(frozen=True, slots=True)
class HookTrace:
    name: str
    matched: bool
    why: str

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "matched": self.matched, "why": self.why}


def trace_hooks(policy: Policy, decision: Decision, request: Request) -> list[HookTrace]:
    """For every hook on the decision's host, in order: did it match, and why (not)."""
    hooks = policy.hooks.get(decision.host, ())
    if not hooks:
        return []
    if decision.hook is None and decision.reason is not Reason.MITM_HOOK_DENIED:
        if decision.reason in (Reason.ALLOWED, Reason.HOOK_MATCHED) and decision.method is None:
            why = "not reached: the connection is intercepted, each request inside it is matched"
        else:
            why = f"not reached: decided before hooks ({decision.reason.value})"
        return [HookTrace(h.name, False, why) for h in hooks]
    path = decision.path
    method = (request.method or "").upper()
    query = parse_query(request.query)
    headers: dict[str, list[str]] = {}
    for key, value in forwarded(request.headers):
        headers.setdefault(key.lower(), []).append(value)
    out: list[HookTrace] = []
    winner: str | None = None
    for hook in hooks:
        reason = _why_not(hook, method, path, request.query, query, headers)
        if reason is None:
            if winner is None:
                winner = hook.name
                out.append(HookTrace(hook.name, True, "matched: method, path"
                                     + (", query" if hook.query else "") + (", headers" if hook.headers else "")
                                     + " (first match wins)"))
            else:
                out.append(HookTrace(hook.name, False, f"would match, but hook {winner!r} matched first"))
        else:
            out.append(HookTrace(hook.name, False, reason))
    return out


def _why_not(hook: CompiledHook, method: str, path: str | None, raw_query: str,
             query: dict[str, list[str]], headers: dict[str, list[str]]) -> str | None:
    if method not in hook.methods:
        return f"method {method} is not one of {', '.join(sorted(hook.methods))}"
    if path is None:
        return "the path is ambiguous (it would mean different things to different servers)"
    if not any(m.match_prefix(path) for m in hook.paths):
        return f"path {path} matches none of {', '.join(m.text for m in hook.paths)}"
    if hook.query:
        confused = ambiguous_key(raw_query, query, hook.query_keys, hook.query_skeletons)
        if confused is not None:
            return f"query key {confused!r} may be read as one this hook checks (ambiguous)"
        for key, matchers in hook.query:
            if not query.get(key):
                return f"query matcher {key!r}: the key is missing"
            if not _all(query[key], matchers):
                return f"query matcher {key!r}: a value matches none of {[m.text for m in matchers]}"
    if hook.headers:
        confused_header = _confused_header(headers, hook)
        if confused_header is not None:
            return f"header {confused_header!r} may be read as one this hook checks (ambiguous)"
        for key, matchers in hook.headers:
            if not headers.get(key):
                return f"header matcher {key!r}: the header is missing (or never reaches the upstream)"
            if not _all(headers[key], matchers):
                return f"header matcher {key!r}: a value matches none of {[m.text for m in matchers]}"
    return None


def _all(values: list[str], matchers: tuple[Matcher, ...]) -> bool:
    return not matchers or all(any(m.match_value(v) for m in matchers) for v in values)
