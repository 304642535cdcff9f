"""Settings -> ``Policy``: indexes built once, at start or reload.

Injected secrets stay references (``Injection``): ``secret_provider.SecretProvider`` (the shell) reads
them at start (a missing one is a ``ConfigError`` naming the variable, path or command, never the value)
and again when a request needs one, so rotation needs no reload.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from policyproxy.config.schema import HookSpec, Settings
from policyproxy.errors import ConfigError, ConfigErrors
from policyproxy.grammar.hosts import normalize_host, parse_ip, url_host
from policyproxy.grammar.paths import normalize_path
from policyproxy.grammar.patterns import DomainIndex, DomainKind, DomainPattern, compile_matcher
from policyproxy.policy.decide import CompiledHook, Policy
from policyproxy.policy.model import HeaderEdits, Injection
from policyproxy.reasons import Source, Verdict


def compile_policy(settings: Settings) -> Policy:
    """Pure: injected secrets stay references (``Injection``); the shell's ``SecretProvider`` reads them."""
    net = settings.network
    errors: list[ConfigError] = []
    where = str(settings.config_file) if settings.config_file else None

    def error(key: str, message: str) -> None:
        full = f"permissions.{settings.profile}.network.{key}"
        errors.append(ConfigError(message, file=where, line=settings.line_of(full), key=full))

    edits = {action.name: HeaderEdits(action.strip_request_headers,
                                      tuple((i.name, Injection(i.secret, i.prefix))
                                            for i in action.inject_request_headers))
             for action in net.actions}
    hooks: dict[str, list[CompiledHook]] = {}
    for spec in net.hooks:
        hooks.setdefault(spec.host, []).append(_compile_hook(spec, edits))
    if net.mitm_enabled is False and net.hooks:
        error("mitm.enabled", "is false, but hooks need interception: remove it or the hooks")
    redaction = net.redaction if net.redaction is not None and net.redaction.enabled else None
    if redaction is not None and net.mitm_enabled is False:
        error("mitm.enabled", "is false, but redaction needs interception: remove it or disable redaction")
    for name, url in settings.gateway_routes:
        if url.startswith("http://"):
            for hook in hooks.get(url_host(url) or "", ()):
                if hook.edits.inject and not hook.allow_plaintext_secrets:
                    error(f"mitm.hooks.{hook.name}",
                          f"injects a secret, and gateway route {name!r} reaches its host over plain http; "
                          "set allow_plaintext_secrets = true to permit it")
    if errors:
        raise ConfigErrors(errors)

    rules = [(DomainPattern.parse(rule.pattern), rule) for rule in net.domains]
    endpoints: dict[str, list[tuple[str, str]]] = {}
    routed: dict[str, list[tuple[str, str]]] = {}
    apis: dict[str, str] = {}
    if redaction is not None:
        apis = dict(redaction.endpoint_apis)
        for endpoint in redaction.endpoints:
            _add_endpoint(endpoints, endpoint)
        # A gateway route that names its API shape is a redaction endpoint (host and base path) for
        # requests through that route only: CONNECT traffic to the same host (a local server) is not.
        routes = dict(settings.gateway_routes)
        for name, api in settings.gateway_apis:
            parts = urlsplit(routes[name])
            endpoint = f"{parts.hostname}{parts.path.rstrip('/')}/"
            _add_endpoint(routed, endpoint)
            apis[endpoint] = api
    return Policy(
        profile=settings.profile,
        mode=net.mode,
        allow_local_binding=net.allow_local_binding,
        mitm_enabled=net.mitm_enabled is not False,
        deny=DomainIndex.build((p, r) for p, r in rules if r.verdict is Verdict.DENY),
        allow=DomainIndex.build((p, r) for p, r in rules if r.verdict is Verdict.ALLOW),
        hooks={host: tuple(items) for host, items in hooks.items()},
        endpoints={host: tuple(items) for host, items in endpoints.items()},
        gateway_paths=tuple(sorted({p for items in endpoints.values() for p, _ in items})),
        endpoint_apis=apis,
        route_endpoints={host: tuple(items) for host, items in routed.items()},
        allowed_literals=frozenset(p.domain for p, r in rules if r.verdict is Verdict.ALLOW
                                   and p.kind is DomainKind.EXACT and parse_ip(p.domain) is not None),
        local_source=Source.REQUIREMENTS if "allow_local_binding" in settings.managed_keys else Source.DEFAULT,
        mode_source=Source.REQUIREMENTS if "mode" in settings.managed_keys else Source.PROFILE,
    )


def _add_endpoint(index: dict[str, list[tuple[str, str]]], endpoint: str) -> None:
    host, _, path = endpoint.partition("/")
    canonical = normalize_path("/" + path) or "/" + path
    index.setdefault(normalize_host(host) or host.lower(), []).append((canonical.lower(), endpoint))


def _compile_hook(hook: HookSpec, edits: dict[str, HeaderEdits]) -> CompiledHook:
    # Actions run in order, each stripping then injecting; composed here into one edit.
    strip: list[str] = []
    inject: dict[str, Injection] = {}
    for name in hook.actions:
        action = edits.get(name, HeaderEdits())
        strip += action.strip
        for header in action.strip:
            inject.pop(header, None)
        for header, value in action.inject:
            inject.pop(header, None)
            inject[header] = value
    return CompiledHook(
        name=hook.name,
        methods=frozenset(hook.methods),
        paths=tuple(compile_matcher(p, path=True) for p in hook.path_prefixes),
        query=tuple((k, tuple(compile_matcher(v, path=False) for v in vs)) for k, vs in hook.query),
        headers=tuple((k, tuple(compile_matcher(v, path=False) for v in vs)) for k, vs in hook.headers),
        actions=hook.actions,
        edits=HeaderEdits(tuple(dict.fromkeys(strip)), tuple(inject.items())),
        allow_plaintext_secrets=hook.allow_plaintext_secrets,
        source=hook.source,
    )
