"""The engine: what of a provider body is scanned, how it is rewritten, and what it refuses."""

import base64
import json

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import RedactionAction
from policyproxy.redaction.engine import BodyError, Redactor, is_binary_base64, loads
from policyproxy.redaction.placeholders import TextCache, Vaults

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2).decode()
SIGNATURE = base64.b64encode(bytes(range(200))).decode()
AWS = "AKIAZ7PQ3LXRN4TW2KJD"
EMAIL = "dana.kowalski@acme-corp.io"
CARD = 4539148803436467


@pytest.fixture
def redactor():
    return Redactor(RedactionSpec())


@pytest.fixture
def vault():
    return Vaults(b"k" * 32).for_scope("c")


def redact(redactor, vault, body):
    return redactor.redact_body(body, vault)


def test_placeholders_never_contain_the_value_and_are_stable_per_scope():
    vaults = Vaults(b"m" * 32)
    a, b = vaults.for_scope("alice"), vaults.for_scope("bob")
    token = a.placeholder("email", "dana@acme.io")
    assert "dana" not in token and "acme" not in token
    assert a.placeholder("email", "dana@acme.io") == token
    assert b.placeholder("email", "dana@acme.io") != token   # another client, another placeholder
    assert b.value(token) is None                            # never restored into another scope
    assert a.value(token) == "dana@acme.io"


def test_placeholders_expire_after_their_ttl():
    vault = Vaults(b"m" * 32, ttl=10).for_scope("c")
    token = vault.placeholder("email", "x@y.io", now=100.0)
    assert vault.value(token, now=105.0) == "x@y.io"
    assert vault.value(token, now=111.0) is None


def test_a_turn_costs_what_is_new_not_the_whole_history(monkeypatch):
    r = Redactor(RedactionSpec())
    vault = Vaults(b"k" * 32).for_scope("c")
    scanned: list[str] = []
    original = r.find
    monkeypatch.setattr(r, "find", lambda text: scanned.append(text) or original(text))
    history = [{"role": "user", "content": f"turn {i}: mail me at user{i}@corp.io"} for i in range(50)]
    r.redact_body({"messages": history}, vault)
    assert len(scanned) == 54   # the 50 texts, and once each the keys and names "messages", "role", ...
    scanned.clear()
    second = r.redact_body({"messages": [*history, {"role": "user", "content": "one more"}]}, vault)
    assert scanned == ["one more"]
    assert second.counts == {"email": 50}


def test_signed_encrypted_and_binary_values_are_never_altered():
    r = Redactor(RedactionSpec())
    vault = Vaults(b"k" * 32).for_scope("c")
    body = {"messages": [{"role": "assistant", "content": [
        {"type": "thinking", "thinking": "plan", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": SIGNATURE},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "mail a@b.io"}]}],
        "input": [{"type": "reasoning", "encrypted_content": SIGNATURE, "summary": []}]}
    out = r.redact_body(body, vault).body
    blocks = out["messages"][0]["content"]
    assert blocks[:4] == body["messages"][0]["content"][:4]
    assert blocks[4]["text"].startswith("mail [[EMAIL_")
    assert out["input"] == body["input"]




# ---- structural bypasses, one class per attack class -------------------------------------------------

class TestDataUrls:
    @pytest.mark.parametrize("text", [
        f"data:x;base64,{AWS}",                                    # any media type used to skip the string
        f"data:image/png;base64,{AWS}",                            # valid base64, but no image in it
        f"data:image/png;base64,{PNG[:40]} {AWS}",                 # an image's start, then text
        f"data:image/png;base64,{PNG} {AWS}",                      # a real image, then text
        f"data:text/plain;base64,{PNG}{AWS}",
    ])
    def test_text_dressed_as_a_data_url_is_scanned(self, redactor, vault, text):
        out = redact(redactor, vault, {"messages": [{"role": "user", "content": text}]})
        assert AWS not in json.dumps(out.body) and out.counts

    @pytest.mark.parametrize("text", [f"data:image/png;base64,{PNG}", PNG, f"DATA:application/pdf;base64,"
                                      f"{base64.b64encode(b'%PDF-1.7' + bytes(300)).decode()}"])
    def test_real_media_is_skipped(self, text):
        assert is_binary_base64(text)


class TestOpaqueTypes:
    def test_a_top_level_image_type_skips_nothing(self, redactor, vault):
        out = redact(redactor, vault, {"type": "image", "messages": [{"role": "user", "content": f"key {AWS}"}]})
        assert AWS not in json.dumps(out.body)

    @pytest.mark.parametrize("kind", ["image", "thinking", "redacted_thinking", "reasoning", "input_audio", "file",
                                      "input_image", "base64", "image_url", "input_file"])
    def test_siblings_of_an_opaque_value_are_scanned(self, redactor, vault, kind):
        block = {"type": kind, "text": f"key {AWS}", "thinking": EMAIL, "data": EMAIL, "signature": SIGNATURE,
                 "source": {"type": "base64", "media_type": "image/png", "data": PNG, "note": EMAIL}}
        out = redact(redactor, vault, {"messages": [{"role": "user", "content": [block]}]}).body
        seen = out["messages"][0]["content"][0]
        assert AWS not in json.dumps(seen) and EMAIL not in json.dumps(seen)
        assert seen["signature"] == SIGNATURE and seen["source"]["data"] == PNG

    @pytest.mark.parametrize("key", ["signature", "encrypted_content"])
    def test_a_secret_in_an_opaque_key_is_masked_unless_it_has_the_opaque_shape(self, redactor, vault, key):
        out = redact(redactor, vault, {"input": [{"type": "reasoning", key: f"{AWS} and {EMAIL}"}]})
        assert AWS not in json.dumps(out.body) and EMAIL not in json.dumps(out.body)


class TestEverythingTheProviderReads:
    @pytest.mark.parametrize("body", [
        {"metadata": {AWS: 1}},
        {"metadata": {"user_id": EMAIL}},
        {"tools": [{"name": "t", "description": f"use key {AWS}", "input_schema": {"type": "object"}}]},
        {"tools": [{"type": "function", "function": {"name": "t", "parameters": {"properties": {
            "x": {"description": EMAIL, "enum": [AWS]}}}}}]},
        {"stop_sequences": [AWS]}, {"stop": [EMAIL]},
        {"tool_choice": {"type": "tool", "name": AWS}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "description": EMAIL}}},
        {"text_format": {"description": EMAIL}}, {"instructions": EMAIL}, {"system": [{"type": "text", "text": EMAIL}]},
        {"prompt": [f"key {AWS}"]}, {"prompt": EMAIL}, {"input": [EMAIL, AWS]}, {"input": EMAIL},
    ])
    def test_values_and_keys_outside_messages_are_scanned(self, redactor, vault, body):
        out = json.dumps(redact(redactor, vault, {"model": "m", **body}).body)
        assert AWS not in out and EMAIL not in out

    def test_a_masked_key_is_restored_as_a_key(self, redactor, vault):
        from policyproxy.redaction.restore import restore_json

        out = redact(redactor, vault, {"metadata": {AWS: "x", f"mail {EMAIL}": 2}}).body
        assert AWS not in json.dumps(out)
        assert restore_json(out, vault) == {"metadata": {AWS: "x", f"mail {EMAIL}": 2}}

    def test_identifiers_lose_secrets_but_keep_their_pii_shaped_parts(self, redactor, vault):
        body = {"model": "model-2024-08-06 +1 415 555 0123 10.0.0.1", "id": AWS, "metadata": {"id": EMAIL},
                "messages": [{"role": "user", "content": "call +1 415 555 0123", "tool_call_id": f"call_{AWS}"}]}
        out = redact(redactor, vault, body)
        assert out.body["model"] == body["model"]
        assert AWS not in json.dumps(out.body) and EMAIL not in json.dumps(out.body)
        assert out.counts.get("phone") == 1   # in the message, not in the model name


class TestDuplicateKeys:
    @pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"m": [{"content": "x", "content": "y"}]}'])
    def test_duplicate_keys_are_refused(self, text):
        with pytest.raises(BodyError, match="duplicate key"):
            loads(text)

    def test_duplicate_keys_inside_function_arguments_are_refused(self, redactor, vault):
        arguments = json.dumps({"q": "x"})[:-1] + f', "q": "{AWS}"}}'
        body = {"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": arguments}}]}]}
        with pytest.raises(BodyError, match="arguments: duplicate key"):
            redact(redactor, vault, body)

    def test_a_secret_key_is_not_echoed_in_the_error(self):
        with pytest.raises(BodyError) as info:
            loads(json.dumps({AWS: 1})[:-1] + f', "{AWS}": 2}}')
        assert AWS not in str(info.value)


class TestNumbers:
    def test_a_card_number_sent_as_a_number_is_masked_as_a_string(self, redactor, vault):
        out = redact(redactor, vault, {"metadata": {"card": CARD}, "max_tokens": 128000, "stream": True}).body
        assert isinstance(out["metadata"]["card"], str) and out["metadata"]["card"].startswith("[[")
        assert out["max_tokens"] == 128000 and out["stream"] is True

    @pytest.mark.parametrize("number", [float(CARD), -CARD, loads("4.539148803436467e15")])
    def test_other_spellings_of_the_number_are_masked_too(self, redactor, vault, number):
        out = redact(redactor, vault, {"n": number}).body
        assert isinstance(out["n"], str) and str(CARD) not in out["n"]

    @pytest.mark.parametrize("number", [True, 0.5, 1e300, 128000, -5])
    def test_other_numbers_are_left_alone(self, redactor, vault, number):
        assert redact(redactor, vault, {"n": number}).body["n"] == number

    def test_a_blocked_detector_blocks_a_number(self, vault):
        r = Redactor(RedactionSpec(detectors=(("credit_card", RedactionAction.BLOCK),)))
        assert r.redact_body({"n": CARD}, vault).blocked == {"credit_card"}


class TestBadInput:
    @pytest.mark.parametrize(("text", "why"), [
        ('{"a": "\\ud800 ' + AWS + '"}', "lone UTF-16 surrogate"),
        ('{"a": "\\udc00"}', "lone UTF-16 surrogate"),
        ('{"a": {"\\ud83d": 1}}', "lone UTF-16 surrogate"),
        ("[" * 1000 + "]" * 1000, "nested deeper"),
        ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"), ('{"a": 1e999}', "out of range"),
    ])
    def test_input_parsers_disagree_on_is_refused_by_name(self, text, why):
        with pytest.raises(BodyError, match=why):
            loads(text)

    def test_a_refused_number_is_not_echoed(self):
        with pytest.raises(BodyError) as info:
            loads(f'{{"n": {CARD}e999}}')
        assert str(CARD) not in str(info.value)

    def test_nesting_the_parser_accepts_is_refused_by_the_walk(self, redactor, vault):
        body = loads("[" * 500 + "]" * 500)
        with pytest.raises(BodyError, match="nested deeper"):
            redact(redactor, vault, body)

    @pytest.mark.parametrize("text", ['{"a": "\\ud83d\\ude00"}', '{"a": "\\\\ud800"}', '{"n": 1e308}',
                                      '{"n": 123456789012345678901234567890}'])
    def test_valid_json_passes(self, text):
        assert loads(text) == json.loads(text)


class TestReload:
    def test_text_seen_under_old_rules_is_judged_again_by_new_rules(self, vault):
        text = "ssn 123-45-6789"
        lax = Redactor(RedactionSpec(detectors=(("us_ssn", RedactionAction.OFF),)))
        assert not lax.redact_body({"input": text}, vault).counts
        strict = Redactor(RedactionSpec(detectors=(("us_ssn", RedactionAction.BLOCK),)))
        assert strict.redact_body({"input": text}, vault).blocked == {"us_ssn"}
        assert Redactor(RedactionSpec()).unseen({"input": "new"}, vault) == ["input", "new"]


class TestBoundedState:
    def test_the_text_cache_is_bounded_by_entries_and_characters(self):
        cache = TextCache(max_entries=3, max_chars=100)
        for i in range(5):
            cache.put(i, i, 10)
        assert len(cache) == 3 and 0 not in cache and 4 in cache
        cache.put("big", 1, 90)
        assert cache.chars <= 100 and "big" in cache
        cache.put("huge", 1, 101)
        assert "huge" not in cache

    def test_all_scopes_together_are_bounded(self, redactor):
        vaults = Vaults(b"k" * 32, max_cache_chars=10_000)
        for i in range(20):
            redactor.redact_body({"input": f"{i} " + "x" * 2000}, vaults.for_scope(f"s{i}"))
        vaults.for_scope("last")
        assert sum(v.cache.chars for v in vaults._vaults.values()) <= 10_000 + 2100
        assert len(vaults) < 10

    def test_vaults_and_their_entries_are_bounded(self):
        vaults = Vaults(b"k" * 32, max_scopes=2)
        first = vaults.for_scope("a")
        vaults.for_scope("b"), vaults.for_scope("c")
        assert len(vaults) == 2 and vaults.for_scope("a") is not first
        vault = vaults.for_scope("d")
        vault.max_entries = 10
        tokens = [vault.placeholder("email", f"u{i}@x.io") for i in range(15)]
        assert len(vault.entries) == 10 and vault.value(tokens[0]) is None and vault.value(tokens[-1])


def test_the_redaction_core_imports_no_io():
    import ast
    from pathlib import Path

    import policyproxy.redaction as package

    forbidden = {"asyncio", "aiohttp", "socket", "ssl", "subprocess", "threading", "multiprocessing", "concurrent",
                 "sqlite3", "os"}
    modules = sorted(Path(package.__file__).parent.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        imported = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & forbidden, (module.name, imported & forbidden)


def test_response_scanning_and_explainer_keys(tmp_path):
    from policyproxy.config.schema import ResponseScanning
    from policyproxy.errors import ConfigErrors
    from tests.helpers import settings

    head = "[permissions.p.network.redaction]\n"
    default = settings(tmp_path, head).network.redaction
    assert default.responses is ResponseScanning.AUDIT and default.explain_placeholders is False
    chosen = settings(tmp_path, head + 'responses = "mask"\nexplain_placeholders = true\n').network.redaction
    assert chosen.responses is ResponseScanning.MASK and chosen.explain_placeholders is True
    with pytest.raises(ConfigErrors) as info:
        settings(tmp_path, head + 'responses = "loud"\n')
    assert "permissions.p.network.redaction.responses" in str(info.value) and '"audit"' in str(info.value)
