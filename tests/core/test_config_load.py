"""The config loader: what loads, and the exact message for each kind of mistake."""

import pytest

from policyproxy.config.schema import DEFAULT_REDACTION_ENDPOINTS, SecretRef
from policyproxy.errors import ConfigErrors
from policyproxy.policy.compile import compile_policy
from policyproxy.reasons import Mode, RedactionAction, Verdict
from tests.helpers import provider, settings, write


def errors_of(tmp_path, text, **kwargs):
    with pytest.raises(ConfigErrors) as info:
        settings(tmp_path, text, **kwargs)
    return [str(e) for e in info.value.errors]


def only_error(tmp_path, text, **kwargs):
    errors = errors_of(tmp_path, text, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


HOOKED = """
[permissions.ws.network.domains]
"api.github.com" = "allow"
[permissions.ws.network.mitm.hooks.github_write]
host = "api.github.com"
methods = ["POST"]
path_prefixes = ["/repos/myorg/"]
action = ["strip_auth"]
[permissions.ws.network.mitm.actions.strip_auth]
strip_request_headers = ["authorization"]
"""


def test_a_full_profile_loads_into_immutable_settings(tmp_path):
    s = settings(tmp_path, HOOKED)
    assert s.profile == "ws"
    assert s.network.hooks[0].name == "github_write"
    assert s.network.hooks[0].methods == ("POST",)
    assert s.network.actions[0].strip_request_headers == ("authorization",)
    assert s.network.domains[0].verdict is Verdict.ALLOW
    with pytest.raises(AttributeError):
        s.network.mode = Mode.LIMITED  # type: ignore[misc]


def test_undefined_action_names_file_line_and_key_path(tmp_path):
    text = HOOKED.replace('action = ["strip_auth"]', 'action = ["strip_auht"]')
    assert only_error(tmp_path, text) == (
        f"{tmp_path}/config.toml:8: permissions.ws.network.mitm.hooks.github_write.action "
        "references undefined action 'strip_auht'")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    assert only_error(tmp_path, "a = 1\nb = = 2\n").startswith(f"{tmp_path}/config.toml:2: is not valid TOML")


def test_unknown_network_key_is_an_error(tmp_path):
    message = only_error(tmp_path, "[permissions.ws.network]\nmod = 'full'\n")
    assert message.startswith(f"{tmp_path}/config.toml:2: permissions.ws.network.mod is not a known key")


def test_unknown_hook_key_is_an_error(tmp_path):
    message = only_error(tmp_path, HOOKED.replace('host = "api.github.com"', 'host = "api.github.com"\npaths = []'))
    assert "permissions.ws.network.mitm.hooks.github_write.paths is not a known key" in message


def test_empty_action_must_do_something(tmp_path):
    text = HOOKED + "[permissions.ws.network.mitm.actions.noop]\n"
    assert only_error(tmp_path, text).endswith(
        "permissions.ws.network.mitm.actions.noop must define at least one operation "
        "(strip_request_headers or inject_request_headers)")


def test_empty_action_list_is_an_error(tmp_path):
    text = HOOKED.replace('action = ["strip_auth"]', "action = []")
    assert only_error(tmp_path, text).endswith("permissions.ws.network.mitm.hooks.github_write.action must not be empty")


def test_body_matcher_is_reserved(tmp_path):
    text = HOOKED.replace('host = "api.github.com"', 'host = "api.github.com"\nbody = { x = 1 }')
    assert only_error(tmp_path, text).endswith(
        "permissions.ws.network.mitm.hooks.github_write.body is reserved for a future release and is not supported yet")


def test_global_deny_pattern_is_rejected(tmp_path):
    message = only_error(tmp_path, '[permissions.ws.network.domains]\n"*" = "deny"\n')
    assert message == (f'{tmp_path}/config.toml:2: permissions.ws.network.domains."*" uses the global "*" '
                       'pattern as a deny; "*" is accepted only as "*" = "allow"')


def test_global_allow_pattern_is_accepted(tmp_path):
    s = settings(tmp_path, '[permissions.ws.network.domains]\n"*" = "allow"\n')
    assert s.network.domains[0].pattern == "*"


def test_bad_method_is_an_error(tmp_path):
    text = HOOKED.replace('methods = ["POST"]', 'methods = ["PO ST"]')
    assert only_error(tmp_path, text).endswith("methods[0] 'PO ST' is not a valid HTTP method")


def test_non_absolute_path_prefix_is_an_error(tmp_path):
    text = HOOKED.replace('path_prefixes = ["/repos/myorg/"]', 'path_prefixes = ["repos/"]')
    assert only_error(tmp_path, text).endswith("path_prefixes[0] must be an absolute path starting with '/', got 'repos/'")


def test_unnormalised_path_prefix_is_an_error(tmp_path):
    text = HOOKED.replace('path_prefixes = ["/repos/myorg/"]', 'path_prefixes = ["/repos/../x/"]')
    assert only_error(tmp_path, text).endswith(
        "path_prefixes[0] '/repos/../x/' is not in normalised form and could never match (write '/x/')")


def test_wildcard_hook_host_is_an_error(tmp_path):
    text = HOOKED.replace('host = "api.github.com"', 'host = "*.github.com"')
    assert only_error(tmp_path, text).endswith("host must be an exact host without wildcards, got '*.github.com'")


def test_bad_mode_value(tmp_path):
    assert only_error(tmp_path, "[permissions.ws.network]\nmode = 'fast'\n").endswith(
        'permissions.ws.network.mode must be "full" or "limited", got "fast"')


def test_wrong_type(tmp_path):
    assert only_error(tmp_path, "[permissions.ws.network]\nallow_local_binding = 'yes'\n").endswith(
        "permissions.ws.network.allow_local_binding must be a boolean, got a string")


INJECT = HOOKED + """
[permissions.ws.network.mitm.actions.inject]
[[permissions.ws.network.mitm.actions.inject.inject_request_headers]]
name = "authorization"
SOURCE
prefix = "Bearer "
"""


def test_inject_needs_exactly_one_secret_source(tmp_path):
    text = INJECT.replace("SOURCE", 'secret_env_var = "A"\nsecret_file = "/x"')
    assert only_error(tmp_path, text).endswith("expected exactly one of secret_env_var, secret_file or secret_command")


def test_secret_file_must_be_absolute(tmp_path):
    text = INJECT.replace("SOURCE", 'secret_file = "token.txt"')
    assert only_error(tmp_path, text).endswith("secret_file must be an absolute path, got 'token.txt'")


def test_missing_env_var_names_the_variable_not_a_value(tmp_path):
    s = settings(tmp_path, INJECT.replace("SOURCE", 'secret_env_var = "CI_TOKEN"'))
    with pytest.raises(ConfigErrors) as info:
        provider(s, {})
    (error,) = info.value.errors
    assert str(error) == (f"{tmp_path}/config.toml:15: permissions.ws.network.mitm.actions.inject."
                          "inject_request_headers[0].secret_env_var names CI_TOKEN, a missing required "
                          "environment variable")


def test_unreadable_secret_file_names_the_path(tmp_path):
    s = settings(tmp_path, INJECT.replace("SOURCE", f'secret_file = "{tmp_path}/missing"'))
    with pytest.raises(ConfigErrors) as info:
        provider(s, {})
    assert f"cannot read {tmp_path}/missing: No such file or directory" in str(info.value)


def test_secret_file_is_read_and_trimmed(tmp_path):
    token = write(tmp_path, "token", "  s3cr3t-value\n")
    text = INJECT.replace("SOURCE", f'secret_file = "{token}"').replace('action = ["strip_auth"]',
                                                                       'action = ["strip_auth", "inject"]')
    s = settings(tmp_path, text)
    assert s.network.actions[1].inject_request_headers[0].secret == SecretRef(file=str(token))
    policy = compile_policy(s)
    ((name, injection),) = policy.hooks["api.github.com"][0].edits.inject
    secret = provider(s, {}).lookup(injection.secret)
    assert (name, injection.prefix + secret.reveal()) == ("authorization", "Bearer s3cr3t-value")
    assert "s3cr3t" not in repr(policy) and "s3cr3t" not in str(secret)


def test_secret_with_a_line_break_is_refused_without_showing_it(tmp_path):
    s = settings(tmp_path, INJECT.replace("SOURCE", 'secret_env_var = "TOKEN"'))
    with pytest.raises(ConfigErrors) as info:
        provider(s, {"TOKEN": "abc\r\nX-Evil: 1"})
    assert "contains a line break" in str(info.value)
    assert "abc" not in str(info.value) and "X-Evil" not in str(info.value)


def test_injecting_a_framing_header_is_refused(tmp_path):
    text = INJECT.replace("SOURCE", 'secret_env_var = "A"').replace('name = "authorization"', 'name = "Host"')
    assert only_error(tmp_path, text).endswith("name 'host' frames or routes the request and cannot be stripped or injected")


def test_all_errors_are_reported_together(tmp_path):
    text = "[permissions.ws.network]\nmode = 'x'\nbogus = 1\n[permissions.ws.network.domains]\n'*' = 'deny'\n"
    assert len(errors_of(tmp_path, text)) == 3


def test_codex_config_loads_unchanged(tmp_path):
    codex = """
    model = "gpt-5.1-codex"
    approval_policy = "on-request"
    sandbox_mode = "workspace-write"
    default_permissions = "dev"

    [features]
    web_search_request = true

    [sandbox_workspace_write]
    network_access = true

    [otel]
    environment = "dev"
    log_user_prompt = false
    exporter = { otlp-grpc = { endpoint = "http://127.0.0.1:4317", headers = { "x-token" = "abc" } } }

    [permissions.dev.filesystem]
    ":project_roots" = { "." = "write" }

    [permissions.dev.network]
    enabled = true
    proxy_url = "http://127.0.0.1:3128"
    enable_socks5 = true
    socks_url = "socks5://127.0.0.1:8081"
    enable_socks5_udp = false
    allow_upstream_proxy = false
    mode = "full"
    allow_local_binding = false
    dangerously_allow_non_loopback_proxy = false
    admin_url = "http://127.0.0.1:8080"
    allow_unix_sockets = ["/tmp/x.sock"]

    [permissions.dev.network.domains]
    "api.openai.com" = "allow"
    "**.github.com" = "allow"

    [permissions.dev.network.mitm]
    version = 1

    [permissions.dev.network.mitm.hooks.gh]
    host = "api.github.com"
    methods = ["GET"]
    path_prefixes = ["/repos/openai/"]
    action = ["strip"]

    [permissions.dev.network.mitm.actions.strip]
    strip_request_headers = ["authorization"]
    """
    s = settings(tmp_path, codex)
    assert s.profile == "dev"
    assert set(s.ignored_keys) == {"model", "approval_policy", "sandbox_mode", "features",
                                   "sandbox_workspace_write", "permissions.dev.filesystem",
                                   "permissions.dev.network.admin_url", "permissions.dev.network.allow_unix_sockets"}
    assert s.otel.exporter == "otlp-grpc" and s.otel.endpoint == "http://127.0.0.1:4317"
    assert s.otel.environment == "dev"
    assert s.network.mitm_enabled is None  # hooks alone turn interception on
    assert s.network.redaction is None     # a Codex profile does not redact
    assert s.network.hooks[0].host == "api.github.com"


@pytest.mark.parametrize("exporter", [
    'exporter = "otlp-http"\nendpoint = "http://c:4318"\nprotocol = "binary"',
    '[otel.exporter."otlp-http"]\nendpoint = "http://c:4318"\nprotocol = "binary"',
])
def test_otel_flat_and_codex_table_forms_agree(tmp_path, exporter):
    text = "[permissions.ws.network]\n[otel]\n" + exporter + "\n"
    s = settings(tmp_path, text)
    assert (s.otel.exporter, s.otel.endpoint, s.otel.protocol) == ("otlp-http", "http://c:4318", "binary")


def test_extends_merges_parent_first_and_child_overrides(tmp_path):
    text = """
    default_permissions = "child"
    [permissions.base.network]
    mode = "limited"
    [permissions.base.network.domains]
    "a.example" = "allow"
    "b.example" = "allow"
    [permissions.child]
    extends = "base"
    [permissions.child.network]
    mode = "full"
    [permissions.child.network.domains]
    "b.example" = "deny"
    """
    s = settings(tmp_path, text)
    assert s.network.mode is Mode.FULL
    assert {(r.pattern, r.verdict.value) for r in s.network.domains} == {("a.example", "allow"), ("b.example", "deny")}


def test_errors_in_an_inherited_key_name_the_parent_profile(tmp_path):
    text = """
    default_permissions = "child"
    [permissions.base.network]
    mode = "fast"
    [permissions.child]
    extends = "base"
    """
    assert "permissions.base.network.mode" in only_error(tmp_path, text)


def test_extends_cycle_is_reported(tmp_path):
    text = "default_permissions = 'a'\n[permissions.a]\nextends = 'b'\n[permissions.b]\nextends = 'a'\n"
    assert only_error(tmp_path, text).endswith("permissions.b.extends makes a cycle: a -> b -> a")


def test_profile_flag_overrides_default_permissions(tmp_path):
    text = "default_permissions = 'a'\n[permissions.a.network]\n[permissions.b.network]\nmode = 'limited'\n"
    assert settings(tmp_path, text, profile="b").network.mode is Mode.LIMITED


def test_unknown_default_profile(tmp_path):
    assert only_error(tmp_path, "default_permissions = 'nope'\n[permissions.a.network]\n").endswith(
        "default_permissions names profile 'nope', which is not defined (profiles: a)")


def test_redaction_table_defaults_and_overrides(tmp_path):
    text = """
    [permissions.ws.network.redaction]
    default_action = "redact"
    [permissions.ws.network.redaction.detectors]
    private_key = "block"
    email = "off"
    [permissions.ws.network.redaction.patterns.employee_id]
    regex = "EMP-[0-9]{6}"
    action = "mask"
    """
    red = settings(tmp_path, text).network.redaction
    assert red is not None and red.enabled
    assert red.endpoints == DEFAULT_REDACTION_ENDPOINTS
    assert {"api.openai.com/v1/completions", "api.openai.com/v1/embeddings", "api.anthropic.com/v1/complete",
            "api.openai.com/v1/realtime"} <= set(red.endpoints)
    assert dict(red.detectors) == {"private_key": RedactionAction.BLOCK, "email": RedactionAction.OFF}
    assert red.patterns[0].regex == "EMP-[0-9]{6}"


@pytest.mark.parametrize(("body", "message"), [
    ('[permissions.ws.network.redaction.detectors]\nfoo = "mask"', "detectors.foo is not a known detector"),
    ('[permissions.ws.network.redaction.patterns.x]\nregex = "("', "patterns.x.regex is not a valid regular expression"),
    ('[permissions.ws.network.redaction.patterns.x]\nregex = "a*"', "patterns.x.regex matches the empty string"),
    ('[permissions.ws.network.redaction]\nendpoints = ["api.openai.com"]', "must be host/path-prefix"),
])
def test_redaction_mistakes(tmp_path, body, message):
    assert message in only_error(tmp_path, "[permissions.ws.network]\n" + body + "\n")


@pytest.mark.parametrize("name", ["connection", "Keep-Alive", "te", "host", "expect", "proxy-authorization",
                                  "Proxy-Anything", "transfer-encoding", "upgrade"])
def test_a_header_matcher_on_a_name_that_never_reaches_the_upstream_is_refused(tmp_path, name):
    text = HOOKED.replace('action = ["strip_auth"]', f'action = ["strip_auth"]\nheaders = {{ "{name}" = [] }}')
    message = only_error(tmp_path, text)
    assert f'permissions.ws.network.mitm.hooks.github_write.headers.{name}' in message.replace(f'"{name}"', name)
    assert "never reaches the upstream" in message
