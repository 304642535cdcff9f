import pytest

from policyproxy.grammar.patterns import DomainIndex, DomainPattern, PatternError, compile_matcher


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
