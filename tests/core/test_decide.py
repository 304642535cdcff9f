"""``Policy.decide``: every reason code, every matcher, and the invariants that must always hold."""

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from policyproxy.grammar.hosts import normalize_host
from policyproxy.grammar.paths import normalize_path
from policyproxy.policy.model import Request, Secret, Target
from policyproxy.reasons import Protocol, Reason, Source, Verdict
from tests.helpers import connect, policy, request

PROFILE = """
[permissions.ws.network]
mode = "full"
[permissions.ws.network.domains]
"api.github.com" = "allow"
"*.example.com" = "allow"
"**.openai.com" = "allow"
"api.anthropic.com" = "allow"
"10.0.0.5" = "allow"
"bad.example.com" = "deny"
"rebind.test" = "allow"
[permissions.ws.network.mitm.hooks.github_issues]
host = "api.github.com"
methods = ["POST"]
path_prefixes = ["pattern:/repos/myorg/*/issues"]
action = ["strip", "inject"]
[permissions.ws.network.mitm.hooks.github_read]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
query = { state = ["open", "pattern:clos*"] }
headers = { "x-github-api-version" = ["literal:2022-11-28"], "x-trace" = [] }
action = ["strip"]
[permissions.ws.network.mitm.actions.strip]
strip_request_headers = ["authorization", "cookie"]
[permissions.ws.network.mitm.actions.inject]
[[permissions.ws.network.mitm.actions.inject.inject_request_headers]]
name = "authorization"
secret_env_var = "GH_TOKEN"
prefix = "Bearer "
[permissions.ws.network.redaction]
"""
ENV = {"GH_TOKEN": "ghp_canary"}
READ_HEADERS = (("X-GitHub-Api-Version", "2022-11-28"), ("x-trace", "1"))


@pytest.fixture(scope="module")
def p(tmp_path_factory):
    return policy(tmp_path_factory.mktemp("decide"), PROFILE, env=ENV)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    text = PROFILE.replace('mode = "full"', 'mode = "limited"')
    return policy(tmp_path_factory.mktemp("limited"), text, env=ENV)


@pytest.mark.parametrize(("host", "reason"), [
    ("", Reason.NOT_ALLOWED),
    ("a..b", Reason.NOT_ALLOWED),
    ("bad.example.com", Reason.DENIED),
    ("BAD.EXAMPLE.COM.", Reason.DENIED),
    ("127.0.0.1", Reason.NOT_ALLOWED_LOCAL),
    ("localhost", Reason.NOT_ALLOWED_LOCAL),
    ("169.254.169.254", Reason.NOT_ALLOWED_LOCAL),
    ("[::1]", Reason.NOT_ALLOWED_LOCAL),
    ("2130706433", Reason.NOT_ALLOWED_LOCAL),
    ("nowhere.org", Reason.NOT_ALLOWED),
    ("example.com", Reason.NOT_ALLOWED),
    ("x.example.com", Reason.ALLOWED),
    ("openai.com", Reason.ALLOWED),
    ("10.0.0.5", Reason.ALLOWED),
])
def test_connection_reasons(p, host, reason):
    assert connect(p, host).reason is reason


def test_deny_answers_carry_codex_proxy_error_values(p):
    assert connect(p, "bad.example.com").reason.proxy_error == "blocked-by-denylist"
    assert connect(p, "nowhere.org").reason.proxy_error == "blocked-by-allowlist"
    assert connect(p, "localhost").reason.proxy_error == "blocked-by-allowlist"


def test_a_name_resolving_to_a_local_address_is_denied(p):
    decision = connect(p, "rebind.test", addresses=(ipaddress.ip_address("127.0.0.1"),))
    assert decision.reason is Reason.NOT_ALLOWED_LOCAL


def test_an_operator_pinned_local_address_is_trusted(p):
    decision = connect(p, "rebind.test", addresses=(ipaddress.ip_address("127.0.0.1"),), trusted=True)
    assert decision.reason is Reason.ALLOWED


def test_an_explicitly_allowed_private_ip_literal_is_reachable(p):
    assert connect(p, "10.0.0.5").verdict is Verdict.ALLOW


def test_allow_local_binding_lifts_the_local_rule(tmp_path):
    text = '[permissions.ws.network]\nallow_local_binding = true\n[permissions.ws.network.domains]\n"*" = "allow"\n'
    assert connect(policy(tmp_path, text), "127.0.0.1").verdict is Verdict.ALLOW


def test_hooked_and_redaction_hosts_are_intercepted_others_tunnelled(p):
    assert connect(p, "api.github.com").intercept
    assert connect(p, "api.anthropic.com").intercept
    assert not connect(p, "x.example.com").intercept


def test_limited_mode_intercepts_every_https_host(limited):
    assert connect(limited, "x.example.com").intercept


def test_limited_mode_denies_writes(limited):
    decision = request(limited, "POST", "x.example.com", "/")
    assert (decision.reason, decision.reason.proxy_error) == (Reason.METHOD_NOT_ALLOWED, "blocked-by-method-policy")
    assert request(limited, "GET", "x.example.com", "/").reason is Reason.ALLOWED


def test_limited_mode_applies_after_a_hook_match(limited):
    path = "/repos/myorg/x/issues"
    assert request(limited, "POST", "api.github.com", path).reason is Reason.METHOD_NOT_ALLOWED


def test_limited_mode_without_mitm_requires_it(tmp_path):
    text = ('[permissions.ws.network]\nmode = "limited"\n[permissions.ws.network.mitm]\nenabled = false\n'
            '[permissions.ws.network.domains]\n"*" = "allow"\n')
    decision = connect(policy(tmp_path, text), "x.example.com")
    assert (decision.reason, decision.reason.proxy_error) == (Reason.MITM_REQUIRED, "blocked-by-mitm-required")


def test_first_matching_hook_wins_and_carries_its_edits(p):
    decision = request(p, "POST", "api.github.com", "/repos/myorg/site/issues")
    assert (decision.reason, decision.hook, decision.actions) == (Reason.HOOK_MATCHED, "github_issues",
                                                                  ("strip", "inject"))
    assert decision.edits.strip == ("authorization", "cookie")
    assert [(n, i.prefix, i.secret.describe()) for n, i in decision.edits.inject] == [
        ("authorization", "Bearer ", "env:GH_TOKEN")]


def test_edits_strip_then_inject(p):
    decision = request(p, "POST", "api.github.com", "/repos/myorg/site/issues")
    out = decision.edits.apply([("Authorization", "agent-token"), ("Cookie", "c"), ("Accept", "*/*")],
                               lambda ref: Secret("ghp_canary", ref.describe()))
    assert out == [("Accept", "*/*"), ("authorization", "Bearer ghp_canary")]


def test_unmatched_request_to_a_hooked_host_is_denied(p):
    decision = request(p, "DELETE", "api.github.com", "/repos/myorg/site")
    assert (decision.reason, decision.reason.proxy_error) == (Reason.MITM_HOOK_DENIED, "blocked-by-mitm-hook")


@pytest.mark.parametrize(("method", "path", "query", "headers", "hook"), [
    ("GET", "/repos/myorg/x", "state=open", READ_HEADERS, "github_read"),
    ("get", "/repos/myorg/x", "state=closed", READ_HEADERS, "github_read"),
    ("GET", "/repos/myorg/x", "state=open&page=2", READ_HEADERS, "github_read"),
    ("GET", "/repos/myorg/x", "state=all", READ_HEADERS, None),
    ("GET", "/repos/myorg/x", "state=open&state=all", READ_HEADERS, None),
    ("GET", "/repos/myorg/x", "", READ_HEADERS, None),
    ("GET", "/repos/myorg/x", "state=open", (("x-github-api-version", "2022-11-28"),), None),
    ("GET", "/repos/myorg/x", "state=open", (("x-github-api-version", "2023-01-01"), ("x-trace", "")), None),
    ("GET", "/repos/other/x", "state=open", READ_HEADERS, None),
    ("POST", "/repos/myorg/x/issues", "", (), "github_issues"),
    ("POST", "/repos/myorg/x/issues/1", "", (), None),
    ("POST", "/repos/myorg/x/y/issues", "", (), None),
    ("PUT", "/repos/myorg/x/issues", "", (), None),
])
def test_hook_matchers(p, method, path, query, headers, hook):
    assert request(p, method, "api.github.com", path, query, headers).hook == hook


@pytest.mark.parametrize("path", [
    "/repos/myorg/../other/x/issues", "/repos/myorg/%2e%2e/other/x/issues", "/repos/myorg/x/..%2F..%2Fissues",
    "/repos/%6dyorg/x/../../other/x/issues", "/REPOS/MYORG/x/issues", "/repos/myorg/x/issues%2F", "/repos\\myorg/x/issues",
])
def test_path_prefix_bypasses_are_denied(p, path):
    decision = request(p, "POST", "api.github.com", path)
    assert decision.reason is Reason.MITM_HOOK_DENIED


@pytest.mark.parametrize(("path", "forwarded"), [
    ("//repos/myorg/x/issues", "/repos/myorg/x/issues"),
    ("/repos/%6dyorg/x/issues", "/repos/myorg/x/issues"),
    ("/repos/./myorg/x/issues", "/repos/myorg/x/issues"),
])
def test_equivalent_spellings_match_and_forward_the_canonical_path(p, path, forwarded):
    decision = request(p, "POST", "api.github.com", path)
    assert (decision.hook, decision.path) == ("github_issues", forwarded)


@pytest.mark.parametrize("path", [
    "/repos/myorg/..;/other/x", "/repos/myorg/..;jsessionid=x/other/x", "/repos/myorg/%2e%2e;/other/x",
    "/repos/myorg/..%3b/other/x", "/repos/myorg/%2e%2E%3B/other/x", "/repos/myorg/.;/x", "/repos/myorg/;/../other/x",
])
def test_path_parameters_on_dot_segments_are_denied_on_hooked_hosts(p, path):
    """9.13: servlet containers read ``..;`` as ``..``; the injected token must not reach /repos/other."""
    decision = request(p, "GET", "api.github.com", path, "state=open", READ_HEADERS)
    assert (decision.verdict, decision.reason) == (Verdict.DENY, Reason.MITM_HOOK_DENIED)
    assert "ambiguous" in decision.message


def test_path_parameters_on_ordinary_segments_do_not_widen_a_prefix(p):
    assert request(p, "GET", "api.github.com", "/repos;x/myorg/x", "state=open", READ_HEADERS).hook is None
    decision = request(p, "GET", "api.github.com", "/repos/myorg/x;v=1", "state=open", READ_HEADERS)
    assert (decision.hook, decision.path) == ("github_read", "/repos/myorg/x;v=1")


# 9.12 (a): headers the upstream never receives cannot satisfy a header matcher.
@pytest.mark.parametrize("headers", [
    (("Connection", "x-github-api-version"), *READ_HEADERS),
    (("connection", "keep-alive, X-GitHub-Api-Version"), *READ_HEADERS),
    (("Connection", "keep-alive"), ("Connection", "x-trace"), *READ_HEADERS),
    (("Connection", " x-trace ,"), *READ_HEADERS),
    (("Proxy-Connection", "x-github-api-version"), *READ_HEADERS),
])
def test_a_header_dropped_before_the_upstream_cannot_satisfy_a_matcher(p, headers):
    decision = request(p, "GET", "api.github.com", "/repos/myorg/x", "state=open", headers)
    assert (decision.reason, decision.hook) == (Reason.MITM_HOOK_DENIED, None)


def test_connection_naming_other_headers_still_matches(p):
    headers = (("Connection", "keep-alive, x-other"), ("x-other", "1"), *READ_HEADERS)
    assert request(p, "GET", "api.github.com", "/repos/myorg/x", "state=open", headers).hook == "github_read"


@pytest.mark.parametrize("name", ["X_GitHub_Api_Version", "x_github_api_version", "X-GITHUB_API-VERSION"])
def test_a_header_name_servers_fold_into_a_checked_one_is_ambiguous(p, name):
    decision = request(p, "GET", "api.github.com", "/repos/myorg/x", "state=open", ((name, "evil"), *READ_HEADERS))
    assert (decision.reason, decision.hook) == (Reason.MITM_HOOK_DENIED, None)
    assert "ambiguous" in decision.message and name.lower() in decision.message


# 9.12 (b): query keys a server may read as the hook's `state` key.
@pytest.mark.parametrize("query", [
    "state=open&State=all", "state=open&STATE=all", "state=open&state[]=all", "state[]=all&state=open",
    "state=open&state%00=all", "state=open&state+=all", "state=open&state%20=all", "state=open&%20state=all",
    "state=open&ｓｔａｔｅ=all", "state=open&%EF%BD%93tate=all", "state=open&ſtate=all", "state=open&st.ate=all",
    "state=open&st_ate=all", "state=open;state=all", "state=open&x=1;state=all", "state=open;x", "State=open",
    "state=open&state%=all", "state=open&state%C0=all", "state=open&state[0]=all", "state=open&state%5Bx%5D=all",
    "state=open&state%00junk=all",
])
def test_query_keys_servers_may_read_as_a_checked_key_are_ambiguous(p, query):
    decision = request(p, "GET", "api.github.com", "/repos/myorg/x", query, READ_HEADERS)
    assert (decision.verdict, decision.reason, decision.hook) == (Verdict.DENY, Reason.MITM_HOOK_DENIED, None)
    assert "ambiguous" in decision.message, decision.message


@pytest.mark.parametrize("query", ["state=open", "st%61te=open", "%73tate=open", "state=open&page=2&states=x",
                                   "state=open&statement=1", "state=open&x=a;b"])
def test_query_keys_that_are_the_key_or_plainly_another_still_match(p, query):
    assert request(p, "GET", "api.github.com", "/repos/myorg/x", query, READ_HEADERS).hook == "github_read"


def test_an_ambiguous_key_for_one_hook_does_not_block_a_hook_that_ignores_it(tmp_path):
    text = PROFILE + """
[permissions.ws.network.mitm.hooks.any_read]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
action = ["strip"]
"""
    decision = request(policy(tmp_path, text, env=ENV), "GET", "api.github.com", "/repos/myorg/x",
                       "state=open&State=all", READ_HEADERS)
    assert decision.hook == "any_read"


def test_plain_http_hook_that_injects_a_secret_is_refused(p):
    decision = request(p, "POST", "api.github.com", "/repos/myorg/x/issues", protocol=Protocol.HTTP, port=80)
    assert decision.reason is Reason.MITM_HOOK_DENIED and "allow_plaintext_secrets" in decision.message


def test_plain_http_hook_with_allow_plaintext_secrets_injects(tmp_path):
    text = PROFILE.replace('action = ["strip", "inject"]', 'action = ["strip", "inject"]\nallow_plaintext_secrets = true')
    decision = request(policy(tmp_path, text, env=ENV), "POST", "api.github.com", "/repos/myorg/x/issues",
                       protocol=Protocol.HTTP, port=80)
    assert decision.reason is Reason.HOOK_MATCHED


@pytest.mark.parametrize(("host", "path", "endpoint"), [
    ("api.anthropic.com", "/v1/messages", "api.anthropic.com/v1/messages"),
    ("api.anthropic.com", "/v1/messages/count_tokens", "api.anthropic.com/v1/messages"),
    ("API.ANTHROPIC.COM", "/V1/Messages", "api.anthropic.com/v1/messages"),
    ("api.anthropic.com", "//v1//messages", "api.anthropic.com/v1/messages"),
    ("api.openai.com", "/v1/responses", "api.openai.com/v1/responses"),
    ("api.openai.com", "/v1/chat/completions", "api.openai.com/v1/chat/completions"),
    ("api.anthropic.com", "/api/claude_code/policy_limits", None),
])
def test_redaction_endpoints_are_identified(p, host, path, endpoint):
    decision = request(p, "POST", host, path, query="beta=true")
    assert decision.allowed
    assert (decision.redaction.endpoint if decision.redaction else None) == endpoint


def test_an_ambiguous_path_to_a_redaction_host_fails_closed(p):
    decision = request(p, "POST", "api.anthropic.com", "/v1/%2e%2e%2fmessages")
    assert decision.reason is Reason.INSPECTION_FAILED


def test_gateway_requests_are_redacted_by_path_whatever_the_host(tmp_path):
    text = '[permissions.ws.network.domains]\n"llm.corp" = "allow"\n[permissions.ws.network.redaction]\n'
    decision = request(policy(tmp_path, text), "POST", "llm.corp", "/v1/chat/completions", protocol=Protocol.GATEWAY)
    assert decision.redaction is not None


def test_sources(p, tmp_path):
    assert connect(p, "nowhere.org").source is Source.DEFAULT
    assert connect(p, "x.example.com").source is Source.PROFILE
    assert request(p, "POST", "api.github.com", "/repos/myorg/x/issues").source is Source.PROFILE


# ---- invariants ------------------------------------------------------------------------------
# Each property states the whole outcome (allowed or the deny reason) for every input, so a wrong
# answer on either branch fails it.

labels = st.sampled_from(["api", "github", "com", "example", "bad", "x", "openai", "10", "localhost"])
hosts = st.lists(labels, min_size=1, max_size=4).map(".".join)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get"])
segments = st.sampled_from(["repos", "myorg", "other", "issues", "..", ".", "%2e%2e", "%2F", "%6dyorg", "", "x",
                            "..;", "%2e%2e%3b", ";x"])
# Most paths start inside or next to the hooked prefix, so every branch of the hooks is reached.
stems = st.sampled_from(["", "/repos/myorg", "/repos/myorg/x", "/repos/myorg/x/issues", "/repos", "/repos/other/x"])
paths = st.tuples(stems, st.lists(segments, max_size=4)).map(
    lambda t: (t[0] + "/" + "/".join(t[1])) if t[1] or not t[0] else t[0])
# (query, whether github_read's `state` matcher accepts it)
QUERIES = [("", False), ("state=open", True), ("state=all", False), ("state=open&state=all", False),
           ("state=closed", True), ("state=open&page=2", True), ("st%61te=open", True),
           ("State=all&state=open", False), ("state[]=all&state=open", False), ("state=open;state=all", False),
           ("state%00=all&state=open", False), ("ｓｔａｔｅ=all&state=open", False)]
queries = st.sampled_from(QUERIES)
header_sets = st.sampled_from([
    (READ_HEADERS, True),
    ((("x-github-api-version", "2022-11-28"),), False),
    ((("Connection", "x-github-api-version"), *READ_HEADERS), False),
    ((("X_GitHub_Api_Version", "evil"), *READ_HEADERS), False),
    ((("x-github-api-version", "2022-11-28"), ("x-trace", "1"), ("x-github-api-version", "2023")), False),
])
ALLOWED_REASONS = {Reason.ALLOWED, Reason.HOOK_MATCHED}


@hsettings(max_examples=300, deadline=None)
@given(host=hosts, method=methods, path=paths, query=queries)
def test_deny_always_wins(p, host, method, path, query):
    for target in (host, "bad.example.com", "BAD.Example.COM.", f"{host}.bad.example.com", host.upper() + "."):
        decision = p.decide(Target(target, 443, Protocol.HTTPS_MITM), Request(method, path, query[0]))
        canonical = normalize_host(target)
        denied = canonical == "bad.example.com"   # an exact deny: its subdomains fall under "*.example.com"
        assert (decision.reason is Reason.DENIED) == denied, (target, decision)
        assert decision.allowed == (decision.reason in ALLOWED_REASONS)
        assert (p.deny.lookup(decision.host) is not None) == denied


def _expected_hook(method: str, path: str, query: tuple[str, bool], headers: tuple[object, bool]) -> str | None:
    """An oracle for the two hooks of PROFILE on api.github.com, written without the engine."""
    canonical = normalize_path(path)
    if canonical is None:
        return None
    if method.upper() == "POST" and re.fullmatch(r"/repos/myorg/[^/]*/issues", canonical):
        return "github_issues"
    if method.upper() == "GET" and canonical.startswith("/repos/myorg/") and query[1] and headers[1]:
        return "github_read"
    return None


@hsettings(max_examples=400, deadline=None)
@given(method=methods, path=paths, query=queries, headers=header_sets)
def test_a_hooked_host_allows_exactly_the_matched_requests(p, method, path, query, headers):
    decision = p.decide(Target("api.github.com", 443, Protocol.HTTPS_MITM),
                        Request(method, path, query[0], headers[0]))
    expected = _expected_hook(method, path, query, headers)
    assert decision.hook == expected, (method, path, query, decision.message)
    if expected is None:
        assert (decision.verdict, decision.reason) == (Verdict.DENY, Reason.MITM_HOOK_DENIED)
        assert decision.reason.proxy_error == "blocked-by-mitm-hook"
    else:
        assert (decision.verdict, decision.reason) == (Verdict.ALLOW, Reason.HOOK_MATCHED)
        # what is forwarded is the canonical path, and it starts with what the hook allowed
        assert decision.path == normalize_path(path) and decision.path.startswith("/repos/myorg/")


@hsettings(max_examples=300, deadline=None)
@given(method=methods, path=paths, query=queries)
def test_no_encoding_reaches_outside_the_prefix(p, method, path, query):
    decision = p.decide(Target("api.github.com", 443, Protocol.HTTPS_MITM),
                        Request(method, path, query[0], READ_HEADERS))
    if decision.allowed:
        assert "/../" not in decision.path and "%2E" not in decision.path.upper()
        assert not any(s.replace("%3B", ";").split(";")[0] in ("", ".", "..") for s in decision.path.split("/")[1:-1])
    else:
        assert decision.reason is Reason.MITM_HOOK_DENIED and decision.hook is None


@given(st.text(alphabet="ab=&%+2F0;", max_size=30))
def test_query_parsing_agrees_with_the_standard_library(raw):
    from urllib.parse import parse_qsl

    from policyproxy.grammar.query import parse_query

    expected: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        expected.setdefault(key, []).append(value)
    assert parse_query(raw) == expected


@pytest.mark.parametrize("written", ["API.OpenAI.com/v1/responses", "api.openai.com./v1/responses",
                                     "[::1]/v1/responses"])
def test_a_redaction_endpoint_matches_its_host_however_it_was_spelled(tmp_path, written):
    """An endpoint host written in capitals, with a trailing dot or as a bracketed IPv6 literal still redacts."""
    host = "::1" if written.startswith("[") else "api.openai.com"
    text = (f'[permissions.ws.network]\nallow_local_binding = true\n[permissions.ws.network.domains]\n"{host}" = "allow"\n'
            f'[permissions.ws.network.redaction]\nendpoints = ["{written}"]\n')
    decision = request(policy(tmp_path, text), "POST", host, "/v1/responses")
    assert decision.allowed and decision.redaction is not None and decision.redaction.endpoint == written
