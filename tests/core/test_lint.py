"""``policy.lint``: warnings for hooks that can never match, and explain's per-hook trace.

The coverage test must be sound (a hook it calls shadowed really never matches first): a property test
drives both hooks through ``Policy.decide`` on generated requests.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from policyproxy.policy.lint import covers, lint, trace_hooks
from policyproxy.policy.model import Request, Target
from policyproxy.reasons import Protocol, Reason
from tests.helpers import policy

HEAD = """
[permissions.ws.network]
MODE
[permissions.ws.network.domains]
"api.x.com" = "allow"
"evil.test" = "deny"
[permissions.ws.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


def hook(name: str, host: str = "api.x.com", methods: str = '["GET"]', paths: str = '["/"]', extra: str = "") -> str:
    return (f"[permissions.ws.network.mitm.hooks.{name}]\nhost = \"{host}\"\nmethods = {methods}\n"
            f"path_prefixes = {paths}\naction = [\"strip\"]\n{extra}\n")


def codes(tmp_path, *hooks: str, mode: str = "", requirements: str | None = None) -> list[tuple[str, str]]:
    p = policy(tmp_path, HEAD.replace("MODE", mode) + "".join(hooks), requirements=requirements)
    return [(f.code, f.key.split(".hooks.")[1]) for f in lint(p)]


def test_a_clean_profile_has_no_warnings(tmp_path):
    assert codes(tmp_path, hook("a", paths='["/repos/"]'), hook("b", paths='["/users/"]')) == []


def test_a_hook_behind_a_broader_earlier_hook_is_shadowed(tmp_path):
    found = codes(tmp_path, hook("broad", methods='["GET", "POST"]', paths='["/repos/"]'),
                  hook("narrow", paths='["/repos/myorg/", "pattern:/repos/x/*"]',
                       extra='query = { state = ["open"] }'))
    assert found == [("hook_shadowed", "narrow")]


@pytest.mark.parametrize("later", [
    hook("later", methods='["DELETE"]'),                                      # another method
    hook("later", paths='["/other/"]', extra=""),                            # another path
])
def test_a_hook_that_can_still_match_is_not_shadowed(tmp_path, later):
    assert codes(tmp_path, hook("first", paths='["/repos/"]'), later) == []


def test_a_narrower_earlier_hook_does_not_shadow(tmp_path):
    assert codes(tmp_path, hook("first", extra='query = { state = ["open"] }'), hook("later")) == []
    assert codes(tmp_path, hook("first", extra='headers = { "x-v" = ["1"] }'),
                 hook("later", extra='headers = { "x-v" = ["1", "2"] }')) == []


def test_a_hook_on_a_denied_or_unlisted_host_is_reported(tmp_path):
    found = codes(tmp_path, hook("denied", host="evil.test"), hook("unlisted", host="other.test"))
    assert found == [("hook_host_denied", "denied"), ("hook_host_denied", "unlisted")]


def test_write_methods_in_limited_mode_are_reported(tmp_path):
    found = codes(tmp_path, hook("w", methods='["POST"]', paths='["/a/"]'),
                  hook("mixed", methods='["GET", "PUT"]', paths='["/b/"]'), mode='mode = "limited"')
    assert found == [("hook_method_impossible", "w.methods"), ("hook_method_impossible", "mixed.methods")]


MANAGED = """
[network.mitm.hooks.audit_all]
host = "api.x.com"
methods = ["GET", "POST"]
path_prefixes = ["/"]
action = ["strip_auth"]
[network.mitm.actions.strip_auth]
strip_request_headers = ["authorization"]
"""


def test_a_managed_hook_that_takes_a_profile_hooks_requests_is_reported(tmp_path):
    found = codes(tmp_path, hook("mine", paths='["/repos/"]'), requirements=MANAGED)
    assert found == [("hook_shadowed_by_managed", "mine")]
    partial = MANAGED.replace('path_prefixes = ["/"]', 'path_prefixes = ["/repos/secret/"]')
    assert codes(tmp_path, hook("mine", paths='["/repos/"]'), requirements=partial) == [
        ("hook_overlaps_managed", "mine")]


def test_a_managed_hook_on_an_allowed_host_without_profile_hooks_is_reported(tmp_path):
    assert codes(tmp_path, requirements=MANAGED) == [("managed_hook_hooks_host", "audit_all")]


# --- soundness of ``covers`` ---------------------------------------------------------------------------

PATHS = ["/", "/a/", "/a/b", "/a/b/c", "pattern:/a/*", "pattern:/a/**", "pattern:/a/*/c", "/b"]
QUERIES = ["", 'query = { k = [] }', 'query = { k = ["1"] }', 'query = { k = ["1", "2"] }',
           'query = { k = ["pattern:*"] }', 'query = { K = ["1"] }', 'query = { k = ["1"], K = ["1"] }']
HEADERS = ["", 'headers = { "x-v" = [] }', 'headers = { "x-v" = ["1"] }', 'headers = { "x_v" = ["1"] }',
           'headers = { "x-v" = ["1"], "x_v" = ["1"] }']
METHODS = ['["GET"]', '["GET", "POST"]', '["POST"]']
REQUEST_PATHS = ["/", "/a/", "/a/b", "/a/b/c", "/a/x/c", "/b", "/a/b/c/d", "/ab"]
REQUEST_QUERIES = ["", "k=1", "k=2", "k=1&k=2", "k=3", "K=1", "k=1&K=1", "k=1;k=2"]
REQUEST_HEADERS = [(), (("x-v", "1"),), (("x-v", "2"),), (("x_v", "1"),), (("x-v", "1"), ("x_v", "1"))]


hook_specs = st.tuples(st.sampled_from(METHODS), st.lists(st.sampled_from(PATHS), min_size=1, max_size=2),
                       st.sampled_from(QUERIES), st.sampled_from(HEADERS))


@hsettings(max_examples=150, deadline=None)
@given(first=hook_specs, later=hook_specs)
def test_covers_never_claims_what_a_request_disproves(tmp_path_factory, first, later):
    def text(name: str, h: tuple) -> str:
        paths = "[" + ", ".join(f'"{p}"' for p in h[1]) + "]"
        return hook(name, methods=h[0], paths=paths, extra="\n".join(x for x in h[2:] if x))

    p = policy(tmp_path_factory.mktemp("cov"), HEAD.replace("MODE", "") + text("first", first) + text("later", later))
    first_hook, later_hook = p.hooks["api.x.com"]
    if not covers(first_hook, later_hook):
        return
    alone = {name: policy(tmp_path_factory.mktemp("alone"), HEAD.replace("MODE", "") + text(name, h))
             for name, h in (("first", first), ("later", later))}
    target = Target("api.x.com", 443, Protocol.HTTPS_MITM)
    for method in ("GET", "POST"):
        for path in REQUEST_PATHS:
            for query in REQUEST_QUERIES:
                for headers in REQUEST_HEADERS:
                    request = Request(method, path, query, headers)
                    if alone["later"].decide(target, request).hook == "later":
                        assert alone["first"].decide(target, request).hook == "first", request


# --- explain's trace ---------------------------------------------------------------------------------

TRACE = HEAD.replace("MODE", "") + hook("posts", methods='["POST"]') + hook(
    "issues", paths='["/repos/myorg/"]', extra='query = { state = ["open"] }') + hook(
    "versioned", paths='["/repos/"]', extra='headers = { "x-api-version" = ["2022-11-28"] }') + hook("anything")


@pytest.mark.parametrize(("query", "headers", "expected"), [
    ("state=open", (), {"issues": True}),
    ("state=closed", (("x-api-version", "2022-11-28"),), {"versioned": True}),
    ("", (), {"anything": True}),
])
def test_the_trace_names_the_first_match_and_why_the_others_did_not(tmp_path, query, headers, expected):
    p = policy(tmp_path, TRACE)
    request = Request("GET", "/repos/myorg/x", query, headers)
    decision = p.decide(Target("api.x.com", 443, Protocol.HTTPS_MITM), request)
    trace = {t.name: t for t in trace_hooks(p, decision, request)}
    assert [name for name, t in trace.items() if t.matched] == [decision.hook] == list(expected)
    assert trace["posts"].why == "method GET is not one of POST"
    if query == "":
        assert trace["issues"].why == "query matcher 'state': the key is missing"
        assert trace["versioned"].why.startswith("header matcher 'x-api-version': the header is missing")
    if query == "state=closed":
        assert trace["issues"].why == "query matcher 'state': a value matches none of ['open']"
        assert trace["anything"].why == "would match, but hook 'versioned' matched first"


def test_the_trace_agrees_with_decide_on_every_request(tmp_path):
    p = policy(tmp_path, TRACE)
    for method in ("GET", "POST", "PUT"):
        for path in ("/", "/repos/myorg/x", "/repos/other", "/repos/myorg/..;/x"):
            for query in ("", "state=open", "state=open&State=all", "state=x"):
                for headers in ((), (("x-api-version", "2022-11-28"),), (("x_api_version", "1"),)):
                    request = Request(method, path, query, headers)
                    decision = p.decide(Target("api.x.com", 443, Protocol.HTTPS_MITM), request)
                    matched = [t.name for t in trace_hooks(p, decision, request) if t.matched]
                    assert matched == ([decision.hook] if decision.hook else [])
                    if decision.reason is Reason.MITM_HOOK_DENIED:
                        assert matched == []
