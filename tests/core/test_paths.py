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
