import re

import pytest
import re2

from policyproxy.grammar.patterns import DomainIndex, DomainPattern, PatternError, compile_matcher, glob_to_regex


@pytest.mark.parametrize(("pattern", "host", "matches"), [
    ("api.github.com", "api.github.com", True),
    ("api.github.com", "x.api.github.com", False),
    ("API.GitHub.com.", "api.github.com", True),
    ("*.github.com", "api.github.com", True),
    ("*.github.com", "a.b.github.com", True),
    ("*.github.com", "github.com", False),
    ("*.github.com", "evilgithub.com", False),
    ("**.github.com", "github.com", True),
    ("**.github.com", "api.github.com", True),
    ("**.github.com", "notgithub.com", False),
    ("*", "anything.example", True),
    ("127.0.0.1", "127.0.0.1", True),
    ("[::1]", "::1", True),
    ("bücher.de", "xn--bcher-kva.de", True),
])
def test_domain_pattern_matching(pattern, host, matches):
    parsed = DomainPattern.parse(pattern)
    assert parsed.matches(host) is matches
    index = DomainIndex.build([(parsed, "payload")])
    assert (index.lookup(host) == "payload") is matches


@pytest.mark.parametrize("pattern", ["api.*.com", "a*b.com", "**", "*.", "bad host", "?.x.com"])
def test_unsupported_domain_patterns_are_rejected(pattern):
    with pytest.raises(PatternError):
        DomainPattern.parse(pattern)


def test_index_prefers_the_most_specific_pattern():
    index = DomainIndex.build([(DomainPattern.parse(p), p) for p in ["*", "**.example.com", "*.a.example.com"]])
    assert index.lookup("x.a.example.com") == "*.a.example.com"
    assert index.lookup("example.com") == "**.example.com"
    assert index.lookup("other.org") == "*"


@pytest.mark.parametrize(("outer", "inner", "covered"), [
    ("**.github.com", "api.github.com", True),
    ("**.github.com", "github.com", True),
    ("**.github.com", "*.github.com", True),
    ("**.github.com", "**.api.github.com", True),
    ("*.github.com", "github.com", False),
    ("*.github.com", "**.github.com", False),
    ("*.github.com", "*.github.com", True),
    ("*.github.com", "**.api.github.com", True),
    ("api.github.com", "api.github.com", True),
    ("api.github.com", "*.api.github.com", False),
    ("**.github.com", "*", False),
])
def test_pattern_coverage_for_requirements(outer, inner, covered):
    assert DomainPattern.parse(outer).covers(DomainPattern.parse(inner)) is covered


@pytest.mark.parametrize(("matcher", "path", "matches"), [
    ("/repos/", "/repos/x", True),
    ("/repos/", "/repo", False),
    ("literal:/repos/", "/repos/x", True),
    ("literal:pattern:x", "pattern:x", True),
    ("pattern:/repos/*/issues", "/repos/a/issues", True),
    ("pattern:/repos/*/issues", "/repos/a/b/issues", False),
    ("pattern:/repos/*/issues", "/repos/a/issues/1", False),
    ("pattern:/repos/**", "/repos/a/b/c", True),
    ("pattern:/repos/*/issues**", "/repos/a/issues/1", True),
    ("pattern:/v?/x", "/v1/x", True),
    ("pattern:/v?/x", "/v//x", False),
    ("pattern:/v[12]/x", "/v2/x", True),
    ("pattern:/v[!12]/x", "/v3/x", True),
    ("pattern:/v[!12]/x", "/v1/x", False),
    ("pattern:/a\\*b", "/a*b", True),
    ("pattern:/a\\*b", "/axb", False),
])
def test_path_matchers(matcher, path, matches):
    assert compile_matcher(matcher, path=True).match_prefix(path) is matches


@pytest.mark.parametrize(("matcher", "value", "matches"), [
    ("open", "open", True),
    ("open", "opened", False),
    ("pattern:clos*", "closed", True),
    ("pattern:*", "a/b/c", True),
    ("pattern:a*z", "a/b/z", True),
    ("literal:2022-11-28", "2022-11-28", True),
])
def test_value_matchers_cross_slashes(matcher, value, matches):
    assert compile_matcher(matcher, path=False).match_value(value) is matches


@pytest.mark.parametrize("bad", ["pattern:", "pattern:/a\\", "pattern:/a[b"])
def test_broken_globs_are_rejected(bad):
    with pytest.raises(PatternError):
        compile_matcher(bad, path=True)


# ---- attack: catastrophic backtracking in hook globs ---------------------------------------------
# A glob with several wildcards, compiled to a backtracking regex, took seconds to hours on a long
# request path the agent chooses (`*x*x*x*y` on 3,000 x's), blocking the proxy's event loop.

HOSTILE = [
    ("pattern:/a/*x*x*x*y", "/a/" + "x" * 8000, True),
    ("pattern:/a/**/b/**/c/**/d", "/a/" + "b/c/" * 2000 + "x", True),
    ("pattern:/repos/**/issues/**/comments/**/x", "/repos/" + "issues/comments/" * 500 + "y", True),
    ("pattern:*a*a*a*a*b", "a" * 8000, False),
    ("pattern:**a**a**a**b", "a" * 8000, False),
]


def test_hostile_inputs_against_many_wildcards_match_in_linear_time():
    import subprocess
    import sys

    code = (
        "import time\n"
        "from policyproxy.grammar.patterns import compile_matcher\n"
        f"cases = {HOSTILE!r}\n"
        "worst = 0.0\n"
        "for glob, value, path in cases:\n"
        "    m = compile_matcher(glob, path=path)\n"
        "    t = time.perf_counter()\n"
        "    assert not m.match_value(value) and not m.match_prefix(value)\n"
        "    worst = max(worst, time.perf_counter() - t)\n"
        "print(worst)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 0.1


@pytest.mark.parametrize(("glob", "path", "value", "matches"), [
    ("pattern:/repos/*/issues", True, "/repos/x/issues", True),
    ("pattern:/repos/*/issues", True, "/repos/x/y/issues", False),
    ("pattern:/repos/**/issues", True, "/repos/x/y/issues", True),
    ("pattern:/a/*x*y", True, "/a/1x2y", True),
    ("pattern:/a/*x*y", True, "/a/1x/2y", False),
    ("pattern:/a/**x**y", True, "/a/1x/2y", True),
    ("pattern:/a/[!b]*c*d", True, "/a/xcd", True),
    ("pattern:/a/[!b]*c*d", True, "/a//cd", False),
    ("pattern:/a/[!b]*c*d", True, "/a/bcd", False),
    ("pattern:Bearer * *", False, "Bearer a b", True),
    ("pattern:a*b*c", False, "a/x/b/y/c", True),
    ("pattern:a\\*b*c", False, "a*bzc", True),
    ("pattern:a\\*b*c", False, "axbzc", False),
    ("pattern:ü*ß*", False, "üxßy", True),
    ("pattern:a?b*c", False, "a\nb\nc", True),
])
def test_glob_semantics_are_the_same_on_either_engine(glob, path, value, matches):
    assert compile_matcher(glob, path=path).match_value(value) is matches
    regex, _ = glob_to_regex(glob.removeprefix("pattern:"), path=path)
    assert (re.fullmatch(regex, value) is not None) is matches
    assert (re2.fullmatch(regex, value) is not None) is matches


@pytest.mark.parametrize(("glob", "engine"), [
    ("/repos/myorg/*/issues", "re"), ("/repos/*/r1/**", "re"), ("/repos/**", "re"), ("/a/\\**", "re"),
    ("/a/**/b/**", "re"), ("/a/*/b/*", "re2"), ("*a*b", "re2"), ("/a/**/b/**/c", "re2"),
])
def test_only_globs_that_can_backtrack_badly_pay_for_re2(glob, engine):
    regex = compile_matcher("pattern:" + glob, path=True).regex
    assert type(regex).__module__.split(".")[0] == engine
