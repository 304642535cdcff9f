import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyproxy.grammar.paths import normalize_path


@pytest.mark.parametrize(("raw", "canonical"), [
    ("/", "/"),
    ("/repos/myorg/x", "/repos/myorg/x"),
    ("/repos/myorg/../x", "/repos/x"),
    ("/repos/myorg/%2e%2e/x", "/repos/x"),
    ("/repos/myorg/%2E%2e/x", "/repos/x"),
    ("/repos/myorg/.%2e/x", "/repos/x"),
    ("//repos/myorg/x", "/repos/myorg/x"),
    ("/repos//myorg/", "/repos/myorg/"),
    ("/a/./b/", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/a/b/.", "/a/b/"),
    ("/..", "/"),
    ("/a/b/../../..", "/"),
    ("/%72%65%70%6f%73/myorg", "/repos/myorg"),
    ("/a%2fb", "/a%2Fb"),
    ("/a%3a", "/a%3A"),
    ("/a%252e%252e/", "/a%252e%252e/"),
    ("/Repos/MyOrg", "/Repos/MyOrg"),
])
def test_paths_normalise_to_what_is_forwarded(raw, canonical):
    assert normalize_path(raw) == canonical


@pytest.mark.parametrize("raw", [
    "", "repos", "*", "/a%", "/a%zz", "/a%2", "/a b", "/a\tb", "/a\\b", "/a#frag", "/a?q", "/é",
    "/a/..%2Fb", "/a/%2e%2e%2fb", "/a%2F..", "/a/.%5C", "/%00", "/a\x00",
])
def test_ambiguous_paths_are_refused(raw):
    assert normalize_path(raw) is None


path_chars = st.sampled_from([*list("ab/.%25fFeE2"), "%2e", "%2E", "%2f", "%2F", "%5c", "..", "//", "%41", "~"])


@given(st.lists(path_chars, max_size=20).map(lambda parts: "/" + "".join(parts)))
def test_normalisation_is_idempotent(raw):
    once = normalize_path(raw)
    if once is not None:
        assert normalize_path(once) == once


@given(st.lists(path_chars, max_size=20).map(lambda parts: "/" + "".join(parts)))
def test_normalised_paths_hold_no_dot_segments_or_empty_segments(raw):
    once = normalize_path(raw)
    if once is not None:
        segments = once.split("/")[1:-1]
        assert all(s not in ("", ".", "..") for s in segments)
        assert "%2E" not in once.upper().replace("%252E", "")


# ---- path parameters on dot-segments (issue 9.13) ------------------------------------------------
# Servlet containers cut ";params" off each segment before resolving dot-segments, so a segment that
# is ".", ".." or empty once its parameters are cut is read as a dot-segment there and not here.

@pytest.mark.parametrize("raw", [
    "/repos/myorg/..;/other/x", "/repos/myorg/..;jsessionid=x/other/x", "/repos/myorg/.;/x",
    "/repos/myorg/%2e%2e;/other/x", "/repos/myorg/%2E%2e;/other/x", "/repos/myorg/..%3b/other/x",
    "/repos/myorg/..%3B/other/x", "/repos/myorg/%2e%2E%3B/other/x", "/repos/myorg/.%2e%3bx=1/other",
    "/repos/myorg/%2e;/x", "/repos/myorg/;/../other", "/repos/myorg/;x/issues", "/;", "/..;",
    "/repos/myorg/.../other", "/repos/myorg/..../x", "/repos/myorg/%2e%2e%2e/x", "/repos/myorg/...;x/y",
])
def test_dot_segments_with_path_parameters_or_extra_dots_are_refused(raw):
    assert normalize_path(raw) is None


@pytest.mark.parametrize(("raw", "canonical"), [
    ("/repos;x/myorg/", "/repos;x/myorg/"),
    ("/repos/myorg/x/issues;v=1", "/repos/myorg/x/issues;v=1"),
    ("/a/b%3bc", "/a/b%3Bc"),
    ("/a/x...;x", "/a/x...;x"),
    ("/a/.x", "/a/.x"),
    ("/a/..x", "/a/..x"),
])
def test_parameters_on_ordinary_segments_are_kept_as_written(raw, canonical):
    assert normalize_path(raw) == canonical


path_chars_with_params = st.sampled_from(["a", "/", ".", "..", ";", "%3b", "%2e", "x=1", "//"])


@given(st.lists(path_chars_with_params, max_size=12).map(lambda parts: "/" + "".join(parts)))
def test_no_normalised_path_holds_a_parameterised_dot_segment(raw):
    once = normalize_path(raw)
    if once is not None:
        for segment in once.split("/")[1:]:
            head = segment.replace("%3B", ";").split(";")[0]
            assert head not in (".", "..") and (head or segment == ""), (raw, once)
        assert normalize_path(once) == once
