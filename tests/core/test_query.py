"""``grammar.query``: parsing as the standard library does, and keys servers may fold together."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policyproxy.grammar.query import ambiguous_key, key_skeleton, parse_query

KEYS = frozenset({"state"})


@pytest.mark.parametrize(("raw", "confused"), [
    ("State=x", "State"), ("state[]=x", "state[]"), ("state%00=x", "state\x00"), ("state+=x", "state "),
    ("state%20=x", "state "), ("ｓｔａｔｅ=x", "ｓｔａｔｅ"), ("st.ate=x", "st.ate"), ("state=a;state=b", "state"),
    ("state[0]=x", "state[0]"), ("state%5Bx%5D=x", "state[x]"), ("state%00junk=x", "state\x00junk"),
    ("a=1;State=b", "State"), ("state;x=1", "state"), ("state=a;b", "state"),
])
def test_keys_a_server_may_read_as_state(raw, confused):
    assert ambiguous_key(raw, parse_query(raw), KEYS) == confused


@pytest.mark.parametrize("raw", ["state=x", "st%61te=x", "state=x&states=y", "state=x&stat=y", "x=1;y=2",
                                 "", "&&"])
def test_plain_queries_are_not_ambiguous(raw):
    assert ambiguous_key(raw, parse_query(raw), KEYS) is None


def test_skeleton_keeps_a_key_with_no_letters_or_digits():
    assert key_skeleton("[]") == "[]" and key_skeleton("STATE[]") == "state"


@given(st.text(alphabet="ab=&%+2F0;", max_size=30))
def test_semicolon_parsing_agrees_with_the_standard_library(raw):
    from urllib.parse import parse_qsl

    both = raw.replace("&", ";")
    expected: dict[str, list[str]] = {}
    for key, value in parse_qsl(both, keep_blank_values=True, separator=";"):
        expected.setdefault(key, []).append(value)
    assert parse_query(raw, semicolons=True) == expected
