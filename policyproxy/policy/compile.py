"""Settings -> ``Policy``: indexes built and secrets read once, at start or reload.

Secrets are read through injected ``env`` and ``read_file`` so tests touch neither; a missing one is
a ``ConfigError`` naming the variable or path, never the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policyproxy.config.schema import ActionSpec, HookSpec, RedactionSpec, SecretRef, Settings
from policyproxy.config.source import process_environment, read_secret_file
from policyproxy.errors import ConfigError, ConfigErrors
from policyproxy.grammar.hosts import normalize_host, parse_ip, url_host
from policyproxy.grammar.paths import normalize_path
from policyproxy.grammar.patterns import DomainIndex, DomainKind, DomainPattern, compile_matcher
from policyproxy.policy.decide import CompiledHook, Policy
from policyproxy.policy.model import HeaderEdits, Secret
from policyproxy.reasons import Source, Verdict

ReadFile = Callable[[str], str]


def compile_policy(settings: Settings, env: Mapping[str, str] | None = None,
                   read_file: ReadFile = read_secret_file) -> Policy:
    env = process_environment() if env is None else env
    net = settings.network
    errors: list[ConfigError] = []
    where = str(settings.config_file) if settings.config_file else None

    def error(key: str, message: str) -> None:
        full = f"permissions.{settings.profile}.network.{key}"
        errors.append(ConfigError(message, file=where, line=settings.line_of(full), key=full))

    edits = {action.name: _resolve_action(action, env, read_file, error) for action in net.actions}
    hooks: dict[str, list[CompiledHook]] = {}
    for spec in net.hooks:
        hooks.setdefault(spec.host, []).append(_compile_hook(spec, edits))
    if net.mitm_enabled is False and net.hooks:
        error("mitm.enabled", "is false, but hooks need interception: remove it or the hooks")
    redaction = net.redaction if net.redaction is not None and net.redaction.enabled else None
    if redaction is not None and net.mitm_enabled is False:
        error("mitm.enabled", "is false, but redaction needs interception: remove it or disable redaction")
    if redaction is not None:
        resolve_store_secrets(redaction, env, read_file, error)
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
    if redaction is not None:
        for endpoint in redaction.endpoints:
            host, _, path = endpoint.partition("/")
            canonical = normalize_path("/" + path) or "/" + path
            endpoints.setdefault(normalize_host(host) or host.lower(), []).append((canonical.lower(), endpoint))
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
        allowed_literals=frozenset(p.domain for p, r in rules if r.verdict is Verdict.ALLOW
                                   and p.kind is DomainKind.EXACT and parse_ip(p.domain) is not None),
        local_source=Source.REQUIREMENTS if "allow_local_binding" in settings.managed_keys else Source.DEFAULT,
        mode_source=Source.REQUIREMENTS if "mode" in settings.managed_keys else Source.PROFILE,
    )


def _resolve_action(action: ActionSpec, env: Mapping[str, str], read_file: ReadFile,
                    error: Callable[[str, str], None]) -> HeaderEdits:
    injected: list[tuple[str, Secret]] = []
    for i, inject in enumerate(action.inject_request_headers):
        key = f"mitm.actions.{action.name}.inject_request_headers[{i}]"
        value = _resolve_secret(inject.secret, env, read_file, key, error)
        if value is not None:
            injected.append((inject.name, Secret(inject.prefix + value, inject.secret.describe())))
    return HeaderEdits(action.strip_request_headers, tuple(injected))


MIN_MAPPING_KEY = 32   # characters of the operator's mapping key (e.g. ``openssl rand -base64 32``)


def resolve_store_secrets(spec: RedactionSpec, env: Mapping[str, str], read_file: ReadFile,
                          error: Callable[[str, str], None]) -> tuple[str | None, bytes | None]:
    """The Redis password and the mapping key, read from their sources (errors name the key, never a value)."""
    password = key = None
    if spec.mapping_store_password is not None:
        password = _resolve_secret(spec.mapping_store_password, env, read_file, "redaction.mapping_store_password",
                                   error, suffixes=("_env", "_file"))
    if spec.mapping_key is not None:
        text = _resolve_secret(spec.mapping_key, env, read_file, "redaction.mapping_key", error,
                               suffixes=("_env", "_file"))
        if text is not None and len(text) < MIN_MAPPING_KEY:
            error("redaction.mapping_key", f"the key from {spec.mapping_key.describe()} is shorter than "
                  f"{MIN_MAPPING_KEY} characters (make one with: openssl rand -base64 32)")
        elif text is not None:
            key = text.encode()
    return password, key


def _resolve_secret(ref: SecretRef, env: Mapping[str, str], read_file: ReadFile, key: str,
                    error: Callable[[str, str], None],
                    suffixes: tuple[str, str] = (".secret_env_var", ".secret_file")) -> str | None:
    if ref.env_var is not None:
        value = env.get(ref.env_var)
        if value is None:
            error(f"{key}{suffixes[0]}", f"names {ref.env_var}, a missing required environment variable")
            return None
        value = value.strip()
        origin = f"environment variable {ref.env_var}"
    else:
        assert ref.file is not None
        try:
            value = read_file(ref.file)
        except OSError as exc:
            error(f"{key}{suffixes[1]}", f"cannot read {ref.file}: {exc.strerror or type(exc).__name__}")
            return None
        except UnicodeDecodeError:
            error(f"{key}{suffixes[1]}", f"{ref.file} is not UTF-8 text")
            return None
        origin = f"file {ref.file}"
    if not value:
        error(key, f"the secret from {origin} is empty")
        return None
    if any(c in value for c in "\r\n\0") or not value.isprintable():
        error(key, f"the secret from {origin} contains a line break or control character")
        return None
    return value


def _compile_hook(hook: HookSpec, edits: dict[str, HeaderEdits]) -> CompiledHook:
    # Actions run in order, each stripping then injecting; composed here into one edit.
    strip: list[str] = []
    inject: dict[str, Secret] = {}
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
