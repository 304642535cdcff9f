"""WebSocket messages on a redaction endpoint, sans I/O: client messages redacted whole or refused,
server events restored with hold-back across messages."""

import json

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import DetectorName, RedactionAction
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vaults
from policyproxy.redaction.wsmessages import ClientMessages, MessageRefused, ServerMessages

EMAIL = "dana.kowalski@acme-corp.io"


@pytest.fixture
def vault():
    return Vaults().for_scope("s")


@pytest.fixture
def client(vault):
    spec = RedactionSpec(detectors=((DetectorName("us_ssn"), RedactionAction.BLOCK),))
    return ClientMessages(Redactor(spec), vault, limit=10_000)


def test_response_create_is_redacted_and_counted(client):
    message = json.dumps({"type": "response.create", "model": "gpt-5", "input": [
        {"type": "function_call_output", "call_id": "call_1", "output": f"owner {EMAIL}"}]})
    out = client.text(message)
    assert EMAIL not in out and "[[EMAIL_" in out
    assert json.loads(out)["type"] == "response.create" and client.model == "gpt-5"
    assert client.counts == {"email": 1}
    client.text(message)
    assert client.counts == {"email": 2}   # every message of the channel counts


def test_clean_message_goes_out_as_sent(client):
    message = '{"type":"response.create","input":"hi"}'
    assert client.text(message) is message


@pytest.mark.parametrize(("message", "reason"), [
    ("{", "not JSON"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('{"x": NaN}', "NaN is not a JSON number"),
    ('{"x": "\\ud800"}', "lone UTF-16 surrogate"),
    ('{"input": "ssn 123-45-6789"}', "blocked by detectors: us_ssn"),
    ("[" * 200 + "]" * 200, "nested deeper"),
    ('{"input": "' + "x" * 10_001 + '"}', "inspection limit"),
])
def test_refused_with_a_reason_never_the_content(client, message, reason):
    with pytest.raises(MessageRefused) as info:
        client.text(message)
    assert reason in info.value.reason and "6789" not in info.value.reason
    assert len(info.value.reason.encode()) <= 123   # fits a close frame with its code


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_server_deltas_restored_across_messages(vault, size):
    token = vault.placeholder("email", EMAIL)
    text = f"write to {token}."
    server = ServerMessages(vault)
    out = []
    for i in range(0, len(text), size):
        out += server.text(json.dumps({"type": "response.output_text.delta", "item_id": "m", "content_index": 0,
                                       "delta": text[i:i + size]}))
    out += server.text(json.dumps({"type": "response.output_text.done", "item_id": "m", "content_index": 0,
                                   "text": text}))
    events = [json.loads(m) for m in out]
    assert "".join(e["delta"] for e in events if e["type"].endswith(".delta")) == f"write to {EMAIL}."
    assert events[-1]["text"] == f"write to {EMAIL}."
    assert all(token[:3] not in m for m in out if '"delta"' in m)


def test_held_text_is_released_when_the_channel_ends(vault):
    token = vault.placeholder("email", EMAIL)
    server = ServerMessages(vault)
    held = server.text(json.dumps({"type": "response.output_text.delta", "item_id": "m", "delta": token[:5]}))
    assert [json.loads(m)["delta"] for m in held] == [""]   # the event keeps its place; its text is held
    released = [json.loads(m) for m in server.close()]
    assert released[0]["delta"] == token[:5]   # not a whole placeholder: as sent, exactly once


def test_realtime_transcript_deltas_are_held_too(vault):
    token = vault.placeholder("email", EMAIL)
    server = ServerMessages(vault)
    out = server.text(json.dumps({"type": "response.audio_transcript.delta", "item_id": "i", "delta": token[:6]}))
    out += server.text(json.dumps({"type": "response.audio_transcript.delta", "item_id": "i", "delta": token[6:]}))
    out += server.close()
    assert "".join(json.loads(m)["delta"] for m in out) == EMAIL
