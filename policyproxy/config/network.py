"""A profile's ``network`` table (after ``extends`` is merged) -> ``NetworkSpec``.

Every rule of DESIGN.md section 3 that concerns one table is checked here; cross-file rules
(requirements.toml) live in ``requirements.py``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

from policyproxy.config.reader import Reader
from policyproxy.config.schema import (
    API_SHAPES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PHONE_REGIONS,
    DEFAULT_PROXY_URL,
    DEFAULT_REDACTION_ENDPOINTS,
    DEFAULT_SECRET_TTL_SECONDS,
    DEFAULT_SOCKS_URL,
    ActionSpec,
    CustomPattern,
    DomainRule,
    HookSpec,
    InjectHeader,
    NetworkSpec,
    RedactionSpec,
    ResponseScanning,
    SecretRef,
    WebSocketRedaction,
)
from policyproxy.config.source import KeyPath
from policyproxy.grammar.headers import HOP_BY_HOP, is_upstream_name
from policyproxy.grammar.hosts import HostSyntaxError, config_host, without_scheme
from policyproxy.grammar.paths import normalize_path
from policyproxy.grammar.patterns import PATTERN_PREFIX, DomainKind, DomainPattern, PatternError, compile_matcher
from policyproxy.reasons import DetectorName, Mode, RedactionAction, Source, Verdict

DETECTOR_NAMES = tuple(d.value for d in DetectorName)   # for messages; the vocabulary is the enum

NETWORK_KEYS = frozenset({
    "enabled", "proxy_url", "enable_socks5", "socks_url", "enable_socks5_udp", "mode",
    "allow_local_binding", "allow_upstream_proxy", "dangerously_allow_non_loopback_proxy",
    "domains", "allowed_domains", "denied_domains", "mitm", "redaction",
    # Codex keys with no meaning for policyproxy: accepted so a Codex file loads, listed as ignored.
    "admin_url", "dangerously_allow_non_loopback_admin", "allow_unix_sockets",
})
CODEX_ONLY_KEYS = frozenset({"admin_url", "dangerously_allow_non_loopback_admin", "allow_unix_sockets"})
MITM_KEYS = frozenset({"enabled", "version", "hooks", "actions", "http2"})
HOOK_KEYS = frozenset({"host", "methods", "path_prefixes", "query", "headers", "body", "action",
                       "allow_plaintext_secrets"})
ACTION_KEYS = frozenset({"strip_request_headers", "inject_request_headers"})
INJECT_KEYS = frozenset({"name", "secret_env_var", "secret_file", "secret_command", "secret_ttl_seconds", "prefix"})
REDACTION_KEYS = frozenset({"enabled", "endpoints", "default_action", "detectors", "patterns",
                            "max_body_bytes", "allow_values", "allow_patterns", "allow_sha256",
                            "mapping_ttl_seconds", "mapping_store", "responses", "explain_placeholders",
                            "phone_regions", "ner_model", "websocket", "mapping_store_password_env",
                            "mapping_store_password_file", "mapping_store_ca_file", "mapping_key_env",
                            "mapping_key_file"})
PATTERN_KEYS = frozenset({"regex", "action"})

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Headers an action may not touch: they frame the message or route it, not authorise it.
FRAMING_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "proxy-connection",
})
_ACTION_CHOICES = tuple(a.value for a in RedactionAction)


def parse_network(r: Reader, net: Mapping[str, Any], source: Source = Source.PROFILE) -> NetworkSpec:
    """Validate a merged ``network`` table; problems go to ``r``, a best-effort spec comes back."""
    path: KeyPath = ()
    r.table(net, path, NETWORK_KEYS)
    mitm = r.table(net.get("mitm", {}), ("mitm",), MITM_KEYS)
    actions = parse_actions(r, mitm.get("actions", {}), ("mitm", "actions"), source)
    hooks = parse_hooks(r, mitm.get("hooks", {}), ("mitm", "hooks"), source)
    mitm_enabled = r.get(mitm, "enabled", ("mitm",), bool, None)
    r.get(mitm, "version", ("mitm",), int, None)
    redaction = None
    if "redaction" in net:
        redaction = parse_redaction(r, net["redaction"], ("redaction",))
    return NetworkSpec(
        enabled=r.get(net, "enabled", path, bool, True),
        proxy_url=r.get(net, "proxy_url", path, str, DEFAULT_PROXY_URL),
        enable_socks5=r.get(net, "enable_socks5", path, bool, True),
        socks_url=r.get(net, "socks_url", path, str, DEFAULT_SOCKS_URL),
        enable_socks5_udp=r.get(net, "enable_socks5_udp", path, bool, False),
        mode=r.choice(net, "mode", path, Mode, ("full", "limited"), Mode.FULL),
        allow_local_binding=r.get(net, "allow_local_binding", path, bool, False),
        allow_upstream_proxy=r.get(net, "allow_upstream_proxy", path, bool, False),
        dangerously_allow_non_loopback_proxy=r.get(net, "dangerously_allow_non_loopback_proxy", path, bool, False),
        domains=parse_domains(r, net, source),
        mitm_enabled=mitm_enabled,
        mitm_http2=r.get(mitm, "http2", ("mitm",), bool, True),
        hooks=hooks,
        actions=actions,
        redaction=redaction,
    )


def parse_domains(r: Reader, net: Mapping[str, Any], source: Source) -> tuple[DomainRule, ...]:
    rules: list[DomainRule] = []
    table = r.table(net.get("domains", {}), ("domains",))
    entries: list[tuple[KeyPath, str, Any]] = [(("domains", k), k, v) for k, v in table.items()]
    # Codex's older list form, accepted as the same rules.
    for key, verdict in (("allowed_domains", "allow"), ("denied_domains", "deny")):
        for i, pattern in enumerate(r.string_list(net, key, ())):
            entries.append(((key, i), pattern, verdict))
    for at, pattern, verdict in entries:
        if verdict not in ("allow", "deny"):
            r.error(at, f'must be "allow" or "deny", got {verdict!r}')
            continue
        try:
            parsed = DomainPattern.parse(pattern)
        except PatternError as exc:
            r.error(at, f"is not a valid domain pattern: {exc}")
            continue
        if parsed.kind is DomainKind.GLOBAL and verdict == "deny":
            r.error(at, 'uses the global "*" pattern as a deny; "*" is accepted only as "*" = "allow"')
            continue
        rules.append(DomainRule(pattern, Verdict(verdict), source))
    return tuple(rules)


def parse_actions(r: Reader, raw: object, path: KeyPath, source: Source) -> tuple[ActionSpec, ...]:
    actions: list[ActionSpec] = []
    for name, body in r.table(raw, path).items():
        at = (*path, name)
        table = r.table(body, at, ACTION_KEYS)
        strip = tuple(h.lower() for h in r.string_list(table, "strip_request_headers", at))
        for i, header in enumerate(strip):
            _check_header_name(r, (*at, "strip_request_headers", i), header)
        injects: list[InjectHeader] = []
        raw_injects = table.get("inject_request_headers", [])
        if not isinstance(raw_injects, list):
            r.error((*at, "inject_request_headers"), "must be an array of tables")
            raw_injects = []
        for i, item in enumerate(raw_injects):
            inject = _parse_inject(r, item, (*at, "inject_request_headers", i))
            if inject is not None:
                injects.append(inject)
        if not strip and not raw_injects:
            r.error(at, "must define at least one operation (strip_request_headers or inject_request_headers)")
        actions.append(ActionSpec(name, strip, tuple(injects), source))
    return tuple(actions)


def _parse_inject(r: Reader, item: object, at: KeyPath) -> InjectHeader | None:
    table = r.table(item, at, INJECT_KEYS)
    name = r.get(table, "name", at, str, None)
    if name is None:
        r.error(at, "needs a header name (name = \"...\")")
        return None
    _check_header_name(r, (*at, "name"), name.lower())
    env_var = r.get(table, "secret_env_var", at, str, None)
    file = r.get(table, "secret_file", at, str, None)
    command = r.string_list(table, "secret_command", at) if "secret_command" in table else None
    ttl = r.get(table, "secret_ttl_seconds", at, int, DEFAULT_SECRET_TTL_SECONDS)
    prefix = r.get(table, "prefix", at, str, "")
    if sum(source is not None for source in (env_var, file, command)) != 1:
        r.error(at, "expected exactly one of secret_env_var, secret_file or secret_command")
        return None
    if env_var is not None and not _ENV_NAME.fullmatch(env_var):
        r.error((*at, "secret_env_var"), f"{env_var!r} is not a valid environment variable name")
    if file is not None and not file.startswith("/"):
        r.error((*at, "secret_file"), f"must be an absolute path, got {file!r}")
    if command is not None and (not command or not command[0]):
        r.error((*at, "secret_command"), 'must be a non-empty argv list (secret_command = ["/usr/bin/mint", "x"])')
    if "secret_ttl_seconds" in table and command is None:
        r.error((*at, "secret_ttl_seconds"), "applies to secret_command only")
    elif ttl <= 0:
        r.error((*at, "secret_ttl_seconds"), "must be a positive number of seconds")
    if any(c in prefix for c in "\r\n\0"):
        r.error((*at, "prefix"), "must not contain CR, LF or NUL")
    ref = SecretRef(env_var, file, tuple(command) if command is not None else None, max(ttl, 1))
    return InjectHeader(name.lower(), ref, prefix)


def _check_header_name(r: Reader, at: KeyPath, name: str) -> None:
    if not _TOKEN.fullmatch(name):
        r.error(at, f"{name!r} is not a valid header name")
    elif name in FRAMING_HEADERS:
        r.error(at, f"{name!r} frames or routes the request and cannot be stripped or injected")


def parse_hooks(r: Reader, raw: object, path: KeyPath, source: Source) -> tuple[HookSpec, ...]:
    hooks: list[HookSpec] = []
    for name, body in r.table(raw, path).items():
        at = (*path, name)
        table = r.table(body, at, HOOK_KEYS)
        if "body" in table:
            r.error((*at, "body"), "is reserved for a future release and is not supported yet")
        host_text = r.get(table, "host", at, str, None)
        host = None
        if host_text is None:
            r.error(at, 'needs a host (host = "api.example.com")')
        elif "*" in host_text:
            r.error((*at, "host"), f"must be an exact host without wildcards, got {host_text!r}")
        else:
            try:
                host = config_host(host_text)
            except HostSyntaxError as exc:
                r.error((*at, "host"), str(exc))
        methods = _hook_methods(r, table, at)
        prefixes = _hook_paths(r, table, at)
        query = _value_matchers(r, table, "query", at, header_names=False)
        headers = _value_matchers(r, table, "headers", at, header_names=True)
        action = r.string_list(table, "action", at)
        if "action" not in table:
            r.error(at, "needs an action list (action = [\"...\"])")
        elif not action:
            r.error((*at, "action"), "must not be empty")
        plaintext = r.get(table, "allow_plaintext_secrets", at, bool, False)
        if host is not None:
            hooks.append(HookSpec(name, host, methods, prefixes, action, query, headers, plaintext, source))
    return tuple(hooks)


def _hook_methods(r: Reader, table: Mapping[str, Any], at: KeyPath) -> tuple[str, ...]:
    methods = r.string_list(table, "methods", at)
    if "methods" not in table:
        r.error(at, 'needs methods (methods = ["GET"])')
    elif not methods:
        r.error((*at, "methods"), "must not be empty")
    for i, method in enumerate(methods):
        if not _TOKEN.fullmatch(method):
            r.error((*at, "methods", i), f"{method!r} is not a valid HTTP method")
    return tuple(dict.fromkeys(m.upper() for m in methods))


def _hook_paths(r: Reader, table: Mapping[str, Any], at: KeyPath) -> tuple[str, ...]:
    prefixes = r.string_list(table, "path_prefixes", at)
    if "path_prefixes" not in table:
        r.error(at, 'needs path_prefixes (path_prefixes = ["/"])')
    elif not prefixes:
        r.error((*at, "path_prefixes"), "must not be empty")
    for i, prefix in enumerate(prefixes):
        where = (*at, "path_prefixes", i)
        try:
            matcher = compile_matcher(prefix, path=True)
        except PatternError as exc:
            r.error(where, str(exc))
            continue
        shown = matcher.literal if matcher.literal is not None else prefix[len(PATTERN_PREFIX):]
        if not shown.startswith("/"):
            r.error(where, f"must be an absolute path starting with '/', got {prefix!r}")
        elif matcher.literal is not None and normalize_path(matcher.literal) != matcher.literal:
            canonical = normalize_path(matcher.literal)
            hint = f" (write {canonical!r})" if canonical else ""
            r.error(where, f"{prefix!r} is not in normalised form and could never match{hint}")
    return prefixes


def _value_matchers(r: Reader, table: Mapping[str, Any], key: str, at: KeyPath, *,
                    header_names: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, values in r.table(table.get(key, {}), (*at, key)).items():
        where = (*at, key, name)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            r.error(where, "must be an array of strings (an empty array means: present with any value)")
            continue
        if header_names and not _TOKEN.fullmatch(name):
            r.error(where, f"{name!r} is not a valid header name")
        elif header_names and not is_upstream_name(name.lower(), HOP_BY_HOP):
            r.error(where, f"{name!r} never reaches the upstream (hop-by-hop, Proxy-* or set by the proxy), "
                    "so a matcher on it would check something the server never sees")
        for i, value in enumerate(values):
            try:
                compile_matcher(value, path=False)
            except PatternError as exc:
                r.error((*where, i), str(exc))
        out.append((name.lower() if header_names else name, tuple(values)))
    return tuple(out)


def parse_redaction(r: Reader, raw: object, path: KeyPath) -> RedactionSpec:
    table = r.table(raw, path, REDACTION_KEYS)
    default_action = r.choice(table, "default_action", path, RedactionAction,
                              ("mask", "redact", "block"), RedactionAction.MASK)
    if default_action is RedactionAction.OFF:
        r.error((*path, "default_action"),
                'must be "mask", "redact" or "block" (use enabled = false to turn redaction off)')
    endpoints, endpoint_apis = _endpoints(r, table, path)
    detectors: list[tuple[DetectorName, RedactionAction]] = []
    for name, action in r.table(table.get("detectors", {}), (*path, "detectors")).items():
        where = (*path, "detectors", name)
        if name not in DETECTOR_NAMES:
            r.error(where, f"is not a known detector (known: {', '.join(DETECTOR_NAMES)})")
        elif not isinstance(action, str) or action not in _ACTION_CHOICES:
            r.error(where, f'must be "off", "mask", "redact" or "block", got {action!r}')
        else:
            detectors.append((DetectorName(name), RedactionAction(action)))
    patterns: list[CustomPattern] = []
    for name, body in r.table(table.get("patterns", {}), (*path, "patterns")).items():
        where = (*path, "patterns", name)
        entry = r.table(body, where, PATTERN_KEYS)
        if name in DETECTOR_NAMES or not _NAME.fullmatch(name):
            r.error(where, "must be a new name of letters, digits, '_' or '-', not a built-in detector's")
        regex = r.get(entry, "regex", where, str, None)
        if regex is None:
            r.error(where, 'needs a regex (regex = "...")')
            continue
        try:
            if re.compile(regex).fullmatch(""):
                r.error((*where, "regex"), "matches the empty string")
        except re.error as exc:
            r.error((*where, "regex"), f"is not a valid regular expression: {exc}")
            continue
        action = r.choice(entry, "action", where, RedactionAction, _ACTION_CHOICES, default_action)
        patterns.append(CustomPattern(name, regex, action))
    max_body = r.get(table, "max_body_bytes", path, int, DEFAULT_MAX_BODY_BYTES)
    if max_body <= 0:
        r.error((*path, "max_body_bytes"), "must be a positive number of bytes")
    allow_patterns = r.string_list(table, "allow_patterns", path)
    for i, pattern in enumerate(allow_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            r.error((*path, "allow_patterns", i), f"is not a valid regular expression: {exc}")
    allow_sha256 = r.string_list(table, "allow_sha256", path)
    for i, digest in enumerate(allow_sha256):
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            r.error((*path, "allow_sha256", i), "must be a hex SHA-256 digest (64 hex digits)")
    store = r.get(table, "mapping_store", path, str, None)
    problem = store_problem(store) if store is not None else None
    if problem is not None:
        r.error((*path, "mapping_store"), problem)
    password = _secret_ref(r, table, path, "mapping_store_password")
    if password is not None and not (store or "").startswith(("redis://", "rediss://")):
        r.error((*path, "mapping_store_password_env" if password.env_var else "mapping_store_password_file"),
                "is only used with a redis:// or rediss:// mapping_store")
    ca_file = r.get(table, "mapping_store_ca_file", path, str, None)
    if ca_file is not None and not (ca_file.startswith("/") and (store or "").startswith("rediss://")):
        r.error((*path, "mapping_store_ca_file"), "must be an absolute path, with a rediss:// mapping_store")
    mapping_key = _secret_ref(r, table, path, "mapping_key")
    ttl = r.get(table, "mapping_ttl_seconds", path, int, 24 * 3600)
    if ttl <= 0:
        r.error((*path, "mapping_ttl_seconds"), "must be a positive number of seconds")
    phone_regions = r.string_list(table, "phone_regions", path) if "phone_regions" in table else DEFAULT_PHONE_REGIONS
    for i, region in enumerate(phone_regions):
        if region not in phonenumbers.SUPPORTED_REGIONS:
            r.error((*path, "phone_regions", i), f'is not a region libphonenumber knows (like "GB"), got {region!r}')
    ner_model = r.get(table, "ner_model", path, str, None)
    if ner_model is not None and importlib.util.find_spec("spacy") is None:
        r.error((*path, "ner_model"), "needs spaCy: install the [ner] extra (pip install 'policyproxy[ner]')")
    return RedactionSpec(
        enabled=r.get(table, "enabled", path, bool, True),
        endpoints=tuple(endpoints),
        endpoint_apis=endpoint_apis,
        default_action=default_action,
        detectors=tuple(detectors),
        patterns=tuple(patterns),
        max_body_bytes=max_body,
        allow_values=r.string_list(table, "allow_values", path),
        allow_patterns=allow_patterns,
        allow_sha256=allow_sha256,
        mapping_ttl_seconds=ttl,
        mapping_store=store,
        mapping_store_password=password,
        mapping_store_ca_file=ca_file,
        mapping_key=mapping_key,
        responses=r.choice(table, "responses", path, ResponseScanning, tuple(m.value for m in ResponseScanning),
                           ResponseScanning.AUDIT),
        explain_placeholders=r.get(table, "explain_placeholders", path, bool, False),
        websocket=r.choice(table, "websocket", path, WebSocketRedaction, tuple(m.value for m in WebSocketRedaction),
                           WebSocketRedaction.INSPECT),
        phone_regions=tuple(phone_regions),
        ner_model=ner_model,
    )


def api_entry(r: Reader, item: Mapping[str, Any], at: KeyPath, key: str, example: str
              ) -> tuple[str, str | None] | None:
    """``{ <key> = "...", api = "<shape>" }`` (an endpoint or a gateway route naming the API shape it
    speaks): the value and the valid shape (None when absent or wrong, the error recorded), or None
    when the value itself is missing."""
    entry = r.table(item, at, {key, "api"})
    value = r.get(entry, key, at, str, None)
    api = r.get(entry, "api", at, str, None)
    if value is None:
        r.error(at, f"needs {key} = {example}")
        return None
    if api is not None and api not in API_SHAPES:
        r.error((*at, "api"), f"must be one of {', '.join(API_SHAPES)}, got {api!r}")
        api = None
    return value, api


def _endpoints(r: Reader, table: Mapping[str, Any], path: KeyPath
               ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``endpoints``: each a ``"host/path-prefix"`` string, or ``{ endpoint = "...", api = "openai" }``
    naming the API shape a compatible host speaks (its provider in events; Gemini streams by shape)."""
    if "endpoints" not in table:
        return DEFAULT_REDACTION_ENDPOINTS, ()
    raw = table["endpoints"]
    if not isinstance(raw, list):
        r.error((*path, "endpoints"), 'must be an array of "host/path-prefix" strings or { endpoint, api } tables')
        return (), ()
    endpoints: list[str] = []
    apis: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        at = (*path, "endpoints", i)
        if isinstance(item, dict):
            entry = api_entry(r, item, at, "endpoint", '"host/path-prefix"')
            if entry is None:
                continue
            endpoint, api = entry
            if api is not None:
                apis.append((endpoint, api))
        elif isinstance(item, str):
            endpoint = item
        else:
            r.error(at, 'must be a "host/path-prefix" string or an { endpoint, api } table')
            continue
        problem = endpoint_problem(endpoint)
        if problem:
            r.error(at, problem)
        endpoints.append(endpoint)
    return tuple(endpoints), tuple(apis)


def _secret_ref(r: Reader, table: dict[str, Any], path: KeyPath, name: str) -> SecretRef | None:
    """``<name>_env`` or ``<name>_file`` (at most one): where a store secret is read from at start."""
    env_var = r.get(table, f"{name}_env", path, str, None)
    file = r.get(table, f"{name}_file", path, str, None)
    if env_var is not None and file is not None:
        r.error((*path, f"{name}_file"), f"set only one of {name}_env and {name}_file")
        return None
    if env_var is not None and not _ENV_NAME.fullmatch(env_var):
        r.error((*path, f"{name}_env"), f"{env_var!r} is not a valid environment variable name")
        return None
    if file is not None and not file.startswith("/"):
        r.error((*path, f"{name}_file"), f"must be an absolute path, got {file!r}")
        return None
    return SecretRef(env_var, file) if env_var is not None or file is not None else None


def store_problem(store: str) -> str | None:
    """Why ``mapping_store`` is unusable, or None: an absolute SQLite path, or ``redis[s]://host[:port][/db]``
    with at most a user name in it (a password in the URL would be printed by ``config show``)."""
    if store.startswith("/"):
        return None
    if not store.startswith(("redis://", "rediss://")):
        return f'must be an absolute path (SQLite) or a redis:// or rediss:// URL, got {store!r}'
    parts = urlsplit(store)
    if parts.password is not None:
        return ("has a password in the URL; put it in mapping_store_password_env or mapping_store_password_file "
                "(the URL is shown by check and config show)")
    try:
        parts.port   # noqa: B018 - raises on a bad port
    except ValueError:
        return f"has an invalid port: {shown_url(store)!r}"
    if not parts.hostname:
        return 'needs a host, like "redis://redis:6379/0"'
    if parts.query or parts.fragment:
        return "takes no query or fragment: use the mapping_store_* keys for options"
    if parts.path not in ("", "/") and not (parts.path[1:].isdigit() and parts.path[1:].isascii()):
        return f"database must be a number (like /0), got {parts.path!r}"
    return None


def shown_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``host/path-prefix`` is not a usable redaction endpoint, or None.

    A scheme would be read as the host ``https`` (and the endpoint never match), a port or user info
    would be dropped, so each is refused with the endpoint that was probably meant.
    """
    meant = without_scheme(endpoint)
    if meant is not None:
        hint = f': did you mean "{meant}"?' if meant and endpoint_problem(meant) is None else ""
        return f"{endpoint!r} has a scheme; endpoints are host/path-prefix (any port){hint}"
    host, slash, path = endpoint.partition("/")
    if not slash:
        return f"must be host/path-prefix (like 'api.openai.com/v1/responses'), got {endpoint!r}"
    if "*" in host:
        return f"{host!r} is not an exact host"
    try:
        config_host(host)
    except HostSyntaxError as exc:
        if exc.meant is None:
            return str(exc)
        meant = f"{exc.meant}/{path}"
        return f"{endpoint!r}: {str(exc).partition(': did you mean')[0]}: did you mean \"{meant}\"?"
    if normalize_path("/" + path) is None:
        return f"'/{path}' is not a valid path prefix"
    return None
