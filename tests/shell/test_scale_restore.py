"""The sans-IO side of restoring placeholders another instance minted: the restorer names what it would
look up (``StreamRestorer.wanted``, ``placeholders_in``) before anything is released, so the shell can
fetch it in one round trip; split placeholders, tool arguments and masking hold-back included."""

from __future__ import annotations

import json

import pytest

from policyproxy.redaction.placeholders import Vaults
from policyproxy.redaction.restore import ResponseScan, StreamRestorer, placeholders_in, restore_body

EMAIL = "jane.roe@example.com"


def minted() -> tuple[str, Vaults]:
    """A placeholder minted by "instance A"; "instance B" shares the key but holds no mapping."""
    master = b"m" * 32
    token = Vaults(master).for_scope("addr:1").placeholder("email", EMAIL)
    return token, Vaults(master)


def anthropic_stream(text: str, size: int, json_args: bool = False) -> bytes:
    kind, field = ("input_json_delta", "partial_json") if json_args else ("text_delta", "text")
    out = []
    for i in range(0, len(text), size):
        payload = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: text[i:i + size]}}
        out.append(f"event: content_block_delta\ndata: {json.dumps(payload)}\n\n")
    out.append('event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}\n\n')
    return "".join(out).encode()


def chat_stream(text: str, size: int) -> bytes:
    out = [f"data: {json.dumps({'choices': [{'delta': {'content': text[i:i + size]}}]})}\n\n"
           for i in range(0, len(text), size)]
    return ("".join(out) + "data: [DONE]\n\n").encode()


def delta_text(output: bytes) -> str:
    text = ""
    for line in output.decode().splitlines():
        if line.startswith("data: {"):
            payload = json.loads(line[6:])
            if payload.get("type") == "content_block_delta":
                delta = payload["delta"]
                text += delta.get("text", delta.get("partial_json", ""))
            elif "choices" in payload:
                text += payload["choices"][0]["delta"].get("content") or ""
    return text


def feed_like_the_shell(restorer: StreamRestorer, vault, data: bytes, piece: int) -> tuple[bytes, set[str]]:
    """What ``proxy/restoring.Restore.feed`` does: receive, ask, fetch (here: learn), release."""
    out, asked = b"", set()
    for i in range(0, len(data), piece):
        events = restorer.receive(data[i:i + piece])
        wanted = restorer.wanted(events)
        asked |= wanted
        for token in vault.missing(wanted):
            if token == TOKEN:
                vault.learn(token, EMAIL, 10.0 ** 9)
        out += restorer.release_events(events)
    return out + restorer.close(), asked


TOKEN, _ = minted()


class TestSplitPlaceholders:
    @pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 40])
    @pytest.mark.parametrize("piece", [1, 9, 4096])
    def test_anthropic_text_split_across_events_and_chunks(self, size, piece):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        text = f"mail {TOKEN} now [x] and ]]"
        out, asked = feed_like_the_shell(StreamRestorer(vault), vault, anthropic_stream(text, size), piece)
        assert delta_text(out) == f"mail {EMAIL} now [x] and ]]"
        assert TOKEN in asked

    @pytest.mark.parametrize("size", [1, 4, 13])
    def test_chat_content_split_across_events(self, size):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        out, _ = feed_like_the_shell(StreamRestorer(vault), vault, chat_stream(f"{TOKEN}!", size), 7)
        assert delta_text(out) == f"{EMAIL}!"

    def test_tool_arguments_get_the_value_json_escaped(self):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        args = json.dumps({"to": TOKEN})
        out, _ = feed_like_the_shell(StreamRestorer(vault), vault, anthropic_stream(args, 3, json_args=True), 5)
        assert json.loads(delta_text(out)) == {"to": EMAIL}

    def test_text_held_back_for_masking_is_asked_for_too(self):
        """With ``responses = "mask"`` text waits for a line end before release; the dry run still names
        the placeholder in the chunk that completes it, not later when nothing would fetch it."""
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        restorer = StreamRestorer(vault, ResponseScan(lambda text: [], mask=True))
        first = restorer.receive(anthropic_stream(f"to {TOKEN} and", 4)[:-60])
        assert TOKEN in restorer.wanted(first)

    def test_the_dry_run_changes_nothing(self):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        restorer = StreamRestorer(vault)
        data = anthropic_stream(f"a {TOKEN} b", 3)
        events = restorer.receive(data)
        held_before = dict(restorer.held)
        assert restorer.wanted(events) == {TOKEN}
        assert restorer.wanted(events) == {TOKEN}   # asking twice gives the same answer
        assert restorer.held == held_before
        assert delta_text(restorer.release_events(events) + restorer.close()) == f"a {TOKEN} b"   # unknown stays

    def test_nothing_is_asked_when_no_placeholder_can_end(self):
        _, vaults = minted()
        restorer = StreamRestorer(vaults.for_scope("addr:1"))
        assert restorer.wanted(restorer.receive(anthropic_stream("[[EMAIL_12", 2))) == set()


class TestWholeBodies:
    def test_placeholders_in_a_json_body_are_named_and_restored_after_learning(self):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        body = json.dumps({"content": [{"text": f"hi {TOKEN}"}], TOKEN: 1}).encode()
        wanted = placeholders_in(body)
        assert wanted == {TOKEN} and vault.missing(wanted) == [TOKEN]
        vault.learn(TOKEN, EMAIL, 10.0 ** 9)
        assert json.loads(restore_body(body, vault)) == {"content": [{"text": f"hi {EMAIL}"}], EMAIL: 1}

    def test_a_learned_mapping_expires_like_a_minted_one(self):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        vault.learn(TOKEN, EMAIL, 5.0)
        assert vault.value(TOKEN, now=4.0) == EMAIL
        assert vault.missing([TOKEN], now=6.0) == [TOKEN] and vault.value(TOKEN, now=6.0) is None

    def test_learned_mappings_are_bounded_like_minted_ones(self):
        _, vaults = minted()
        vault = vaults.for_scope("addr:1")
        vault.max_entries = 3
        for i in range(10):
            vault.learn(f"[[EMAIL_{i:08x}]]", f"v{i}", 10.0)
        assert len(vault.entries) == 3
