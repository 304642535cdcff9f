"""End to end with the official SDKs for the detectors of issue 10 section 2: a support-ticket paste
with names, addresses, international phones, national ids and config-format secrets never reaches the
upstream, and every value comes back restored to the client, streamed one character at a time."""

import pytest

CONFIG = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
"""
PLANTED = {
    "person_name": "Aisha Okafor",
    "street_address": "742 Evergreen Terrace, Springfield, IL 62704",
    "phone": "+49 151 23456789",
    "national_id": "529.982.247-25",
    "us_ssn": "078051120",
    "secret_assignment": "base64:q3YtVj8m1pKx7ZfA2wLcR9sN4bH6dE0gT5uI8oP1yQk=",
    "vendor_token": "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",
}
PROMPT = (
    "Ticket #4471 from {person_name} <aisha@example.org>\n"
    "Ship to: {street_address}. Mobil: {phone}. Cliente: CPF {national_id}. SSN: {us_ssn}.\n"
    "Their .env has APP_KEY={secret_assignment} and sg = SendGridAPIClient(\"{vendor_token}\").\n"
    "Version 4.12.0.1 and order 1234567890 are not personal."
).format(**PLANTED)


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


@pytest.fixture
def sdk_env(proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    return proxy


def assert_upstream_saw_placeholders_only(upstream):
    body = upstream.last()["body"]
    for detector, value in PLANTED.items():
        assert value not in body, detector
        assert f"[[{detector.upper()}_" in body, detector
    assert "4.12.0.1" in body and "1234567890" in body   # look-alikes pass untouched


def test_anthropic_one_character_stream_restores_every_value(sdk_env, upstream):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0)
    with client.messages.stream(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": PROMPT}],
                                extra_headers={"x-test-chunk": "1"}) as stream:
        text = "".join(stream.text_stream)
    assert text == PROMPT
    assert_upstream_saw_placeholders_only(upstream)


def test_openai_chat_restores_every_value(sdk_env, upstream):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0)
    reply = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": PROMPT}])
    assert reply.choices[0].message.content == PROMPT
    assert_upstream_saw_placeholders_only(upstream)
