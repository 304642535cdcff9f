"""Outside attacks on redaction, at the core (pure functions): each class is one attack class, each
test names the attack. The wire versions are in ``tests/shell/attacks/test_redaction_bypass.py``."""

from __future__ import annotations

import json
import time

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.grammar.paths import lenient_path, normalize_path
from policyproxy.policy.model import Request, Target
from policyproxy.reasons import Protocol, Verdict
from policyproxy.redaction.engine import Redactor, loads
from policyproxy.redaction.inspect import screen_query
from policyproxy.redaction.placeholders import Vaults
from policyproxy.redaction.restore import StreamRestorer, restore_body, restore_text
from tests.helpers import policy

AWS = "AKIAZ7PQ3LXRN4TW2KJD"
GITHUB = "ghp_R8mK2vQ9xL4nT7wZ1pY6sB3cF5hJ0dG8aE2u"
EMAIL = "dana.kowalski@acme-corp.io"
ANTHROPIC = ("sk-ant-api03-Zq8Xv2LmN4pR7tY1wB5kD9fH3jG6sA0cE2uI8oP4qW7eR1tY5uI9oP3aS6dF0gH2jK4lZ7xC9vB1nM3qW5eR7tY9u"
             "I1oP3aS5dF7gH9jKAA")   # 108 characters of the opaque alphabet


@pytest.fixture(scope="module")
def redactor():
    return Redactor(RedactionSpec())


@pytest.fixture
def vault():
    return Vaults(ttl=3600, store=None, clock=time.time).for_scope("c")


def sent(redactor, vault, body) -> str:
    return json.dumps(redactor.redact_body(loads(json.dumps(body)), vault).body, ensure_ascii=False)


class TestOpaqueKeyOutsideItsBlock:
    """``signature``/``encrypted_content``/``data`` are skipped only in the block type that carries them."""

    @pytest.mark.parametrize("body", [
        {"messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "verify", "input": {"signature": ANTHROPIC}}]}]},
        {"metadata": {"signature": ANTHROPIC}},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "see", "signature": ANTHROPIC}]}]},
        {"input": [{"type": "function_call_output", "call_id": "c", "output": {"encrypted_content": ANTHROPIC}}]},
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "data": ANTHROPIC}]}]},
        {"messages": [{"role": "user", "content": [{"type": ["thinking"], "signature": ANTHROPIC}]}]},
    ])
    def test_opaque_key_outside_its_block(self, redactor, vault, body):
        assert ANTHROPIC not in sent(redactor, vault, body)

    def test_real_opaque_values_in_their_blocks_are_still_kept(self, redactor, vault):
        signature = "EqQBCkYIBxgCKkD" + "a1B2c3D4" * 20
        body = {"messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "plan", "signature": signature},
            {"type": "redacted_thinking", "data": signature}]}],
            "input": [{"type": "reasoning", "encrypted_content": "gAAAAA" + signature}]}
        assert sent(redactor, vault, body) == json.dumps(body, ensure_ascii=False)


class TestInvisibleAndFullwidthCharacters:
    """A value broken by characters a model reads through, or written in fullwidth forms."""

    @pytest.mark.parametrize(("text", "value"), [
        ("key AKIA\u200bZ7PQ3LXRN4TW2KJD here", "AKIA\u200bZ7PQ3LXRN4TW2KJD"),
        ("key AKIA\u200dZ7PQ3LXRN4TW2KJD", "AKIA\u200dZ7PQ3LXRN4TW2KJD"),
        ("ＡＫＩＡＺ７ＰＱ３ＬＸＲＮ４ＴＷ２ＫＪＤ", "ＡＫＩＡＺ７ＰＱ３ＬＸＲＮ４ＴＷ２ＫＪＤ"),
        ("mail dana.kowalski\u2060@acme-corp.io now", "dana.kowalski\u2060@acme-corp.io"),
        ("ghp_R8mK2vQ9xL4nT7\u00adwZ1pY6sB3cF5hJ0dG8aE2u", "ghp_R8mK2vQ9xL4nT7\u00adwZ1pY6sB3cF5hJ0dG8aE2u"),
        ("AKIA\ufeffZ7PQ3LXRN4TW2KJD", "AKIA\ufeffZ7PQ3LXRN4TW2KJD"),
        ("A\u202eKIAZ7PQ3LXRN4TW2KJD", "A\u202eKIAZ7PQ3LXRN4TW2KJD"),
    ])
    def test_disguised_value(self, redactor, vault, text, value):
        out = redactor.redact_text(text, vault)
        assert value not in out.text and out.counts
        assert restore_text(out.text, vault) == text   # restored exactly, invisible characters included

    def test_plain_text_spans_are_unchanged_by_the_folded_reading(self, redactor):
        text = f"{AWS} and ｆｕｌｌ width words, {EMAIL}"
        assert [(s.detector, text[s.start:s.end]) for s in redactor.find(text)] == [
            ("aws_access_key", AWS), ("email", EMAIL)]


class TestLenientPathReadings:
    """Paths a lenient server routes to a redaction endpoint are redaction endpoints."""

    CONFIG = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
"""

    @pytest.mark.parametrize(("path", "read"), [
        ("/v1%2Fmessages", "/v1/messages"), ("/v1%5cmessages", "/v1/messages"), ("/v1;x/messages", "/v1/messages"),
        ("/v1%3Bx/messages", "/v1/messages"), ("/%2Fv1/chat%2Fcompletions", "/v1/chat/completions"),
        ("/v1/messages", "/v1/messages"), ("/a;b", "/a"),
    ])
    def test_lenient_reading(self, path, read):
        assert lenient_path(normalize_path(path)) == read

    @pytest.mark.parametrize("path", ["/v1%2Fmessages", "/v1%2fmessages", "/v1%5Cmessages", "/v1;x/messages",
                                      "/V1%2FMESSAGES", "/%2Fv1/messages", "/v1%3Bjsessionid=1/messages"])
    def test_encoded_separator_or_parameter_in_endpoint_path(self, tmp_path, path):
        p = policy(tmp_path, self.CONFIG)
        for protocol in (Protocol.HTTPS_MITM, Protocol.HTTP):
            decision = p.decide(Target("api.anthropic.com", 443, protocol), Request("POST", path, "", ()))
            assert decision.verdict is Verdict.ALLOW and decision.redaction is not None, (path, protocol)

    def test_other_paths_are_not_endpoints(self, tmp_path):
        p = policy(tmp_path, self.CONFIG)
        decision = p.decide(Target("api.anthropic.com", 443, Protocol.HTTPS_MITM),
                            Request("GET", "/v1%2Fmodels", "", ()))
        assert decision.redaction is None


class TestQueryString:
    """A redaction endpoint's query string is scanned; a finding refuses the request."""

    @pytest.mark.parametrize("query", [f"q={AWS}", f"x=1&{GITHUB}=", "to=dana.kowalski%40acme-corp.io",
                                       "note=" + AWS.replace("A", "%41"), "m=dana.kowalski%2Btag%40acme-corp.io"])
    def test_secret_in_query(self, tmp_path, redactor, query):
        p = policy(tmp_path, TestLenientPathReadings.CONFIG)
        decision = p.decide(Target("api.openai.com", 443, Protocol.HTTPS_MITM),
                            Request("POST", "/v1/responses", query, ()))
        screened = screen_query(redactor, decision, query)
        assert screened.verdict is Verdict.DENY and "query string" in (screened.message or "")
        assert AWS not in (screened.message or "") and GITHUB not in (screened.message or "")

    @pytest.mark.parametrize("query", ["", "beta=true", "api-version=2024-10-21", "limit=20&order=desc"])
    def test_ordinary_queries_pass(self, tmp_path, redactor, query):
        p = policy(tmp_path, TestLenientPathReadings.CONFIG)
        decision = p.decide(Target("api.openai.com", 443, Protocol.HTTPS_MITM),
                            Request("POST", "/v1/responses", query, ()))
        assert screen_query(redactor, decision, query) is decision


PEM = '-----BEGIN PRIVATE KEY-----\nMIIEv"QI\\BADAN\n-----END PRIVATE KEY-----'   # a quote, a backslash, newlines


class TestResponseFraming:
    """Answers framed in ways the restorer must still restore exactly (never corrupt, never leave a
    placeholder)."""

    def test_ndjson_answer_restores_values_escaped(self, vault):
        token = vault.placeholder("private_key", PEM)
        body = (json.dumps({"message": {"content": f"key {token}"}}) + "\n" + json.dumps({"done": True}) + "\n")
        lines = restore_body(body.encode(), vault).decode().splitlines()
        assert [json.loads(line) for line in lines] == [{"message": {"content": f"key {PEM}"}}, {"done": True}]

    def test_text_that_is_not_json_lines_is_restored_as_text(self, vault):
        token = vault.placeholder("email", EMAIL)
        assert restore_body(f"hello {token}\n{{not json".encode(), vault).decode() == f"hello {EMAIL}\n{{not json"

    @pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
    def test_sse_line_endings_fed_byte_by_byte(self, vault, newline):
        token = vault.placeholder("email", EMAIL)
        events = "".join(f"data: {json.dumps({'choices': [{'delta': {'content': part}}]})}{newline}{newline}"
                         for part in ("mail ", token[:5], token[5:], " ok")) + f"data: [DONE]{newline}{newline}"
        restorer = StreamRestorer(vault)
        out = b"".join(restorer.feed(bytes([b])) for b in events.encode()) + restorer.close()
        text = "".join(json.loads(line[6:])["choices"][0]["delta"]["content"]
                       for line in out.decode().split(newline) if line.startswith("data: {"))
        assert text == f"mail {EMAIL} ok" and "[[" not in out.decode()


class TestPastesFromOutside:
    """Shapes from the outside recall run (bench/redteam10_recall.py) that no detector found: each
    generalised to its format, with the near-misses that must stay unmatched."""

    @pytest.mark.parametrize(("text", "value", "detector"), [
        ("$ mysql -h db.prod -u root -py8yueDrrBxgm billing < dump.sql", "y8yueDrrBxgm", "secret_assignment"),
        ('mysql -uroot -p"Tr0ub4dor&3x" db', "Tr0ub4dor&3x", "secret_assignment"),
        ("mysqldump -u app -p'S3cr3tPw' shop > x.sql", "S3cr3tPw", "secret_assignment"),
        ("Ship to: 396 King St W, Toronto, ON M5V 2T6", "396 King St W, Toronto, ON M5V 2T6", "street_address"),
        ("Alt: 3 George St, Sydney NSW 2000", "3 George St, Sydney NSW 2000", "street_address"),
        ("Adres: Keizersgracht 399, 1015 CJ Amsterdam", "Keizersgracht 399, 1015 CJ Amsterdam", "street_address"),
        ("Dirección: Calle Mayor 36, 28013 Madrid", "Calle Mayor 36, 28013 Madrid", "street_address"),
        ("Thanks for your help!\n\nBest regards,\nOlusegun Adeyemi\nSenior Engineer", "Olusegun Adeyemi",
         "person_name"),
        ("Cordialement,\nCharlotte Dubois\n", "Charlotte Dubois", "person_name"),
        ("IBAN FR7630006000011234567890189 (titulaire Mateus Oliveira)", "Mateus Oliveira", "person_name"),
        ("Account holder: Priya Natarajan", "Priya Natarajan", "person_name"),
    ])
    def test_outside_paste(self, redactor, text, value, detector):
        found = [(s.detector, text[s.start:s.end]) for s in redactor.find(text)]
        assert (detector, value) in found, found

    @pytest.mark.parametrize("text", [
        "mysql -u root -p db", "mysql -u root -p${MYSQL_PASSWORD} db", "mysql is down\nssh -p2222 host",
        "Best regards,\nThe Team", "Best,\nAcme\n", "the account holder must sign", "Calle 5",
        "Thanks,\nSenior Engineer\n",
    ])
    def test_near_miss_stays_unmatched(self, redactor, text):
        assert [text[s.start:s.end] for s in redactor.find(text)] == []
