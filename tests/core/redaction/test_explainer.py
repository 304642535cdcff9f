"""The placeholder explainer: added after the client's own system text, never moving a cached prefix."""

import json

import pytest

from policyproxy.redaction.explainer import EXPLAINER, add_explainer

CACHED = {"type": "text", "text": "You are a coding agent." * 50, "cache_control": {"type": "ephemeral"}}


def prefix_kept(before, after):
    """Everything the client sent is still there, in order, with the same bytes, before the note."""
    a, b = json.dumps(before), json.dumps(after)
    return EXPLAINER in b and b != a


@pytest.mark.parametrize("system", [None, "", "Be brief.", [CACHED], [CACHED, {"type": "text", "text": "tail"}]])
def test_anthropic_note_goes_after_every_system_block_and_adds_no_cache_marker(system):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if system is not None:
        body["system"] = system
    out = add_explainer(body, "/v1/messages")
    if isinstance(system, list):
        assert out["system"][:len(system)] == system
        assert out["system"][-1] == {"type": "text", "text": EXPLAINER}
    elif system:
        assert out["system"] == f"{system}\n\n{EXPLAINER}"
    else:
        assert out["system"] == EXPLAINER
    assert out["messages"] == body["messages"] and prefix_kept(body, out)
    assert add_explainer(out, "/v1/messages") == out   # never twice


def test_openai_chat_note_goes_after_the_leading_system_messages():
    messages = [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"},
                {"role": "system", "content": "late"}]
    out = add_explainer({"messages": messages}, "/v1/chat/completions")["messages"]
    assert out == [messages[0], {"role": "developer", "content": EXPLAINER}, *messages[1:]]
    plain = add_explainer({"messages": [{"role": "user", "content": "hi"}]}, "/v1/chat/completions")["messages"]
    assert plain[0] == {"role": "system", "content": EXPLAINER}


def test_responses_note_is_appended_to_the_instructions():
    assert add_explainer({"input": "x", "instructions": "Be brief."}, "/v1/responses")["instructions"] == \
        f"Be brief.\n\n{EXPLAINER}"
    assert add_explainer({"input": "x"}, "/v1/responses")["instructions"] == EXPLAINER


def test_every_turn_gets_the_same_note_in_the_same_place():
    turn1 = {"system": [CACHED], "messages": [{"role": "user", "content": "a"}]}
    turn2 = {"system": [CACHED], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                              {"role": "user", "content": "c"}]}
    one, two = add_explainer(turn1, "/v1/messages"), add_explainer(turn2, "/v1/messages")
    assert one["system"] == two["system"]


@pytest.mark.parametrize(("body", "path"), [({"input": ["x"]}, "/v1/embeddings"), ({"prompt": "x"}, "/v1/completions"),
                                            ([1, 2], "/v1/messages")])
def test_other_shapes_are_left_alone(body, path):
    assert add_explainer(body, path) is body
