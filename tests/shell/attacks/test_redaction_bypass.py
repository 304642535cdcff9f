"""Outside attacks on redaction: a planted secret must never reach the upstream of a redaction
endpoint unredacted, whatever the path spelling, body framing or value encoding. Each test is named
after the attack; classes group the attack classes."""

from __future__ import annotations

import gzip
import json
import ssl
import zlib

import httpx
import pytest

CONFIG = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
"""
AWS = "AKIAZ7PQ3LXRN4TW2KJD"
GITHUB = "ghp_R8mK2vQ9xL4nT7wZ1pY6sB3cF5hJ0dG8aE2u"
EMAIL = "dana.kowalski@acme-corp.io"
SECRETS = (AWS, GITHUB, EMAIL)


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def _client(proxy) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle)), timeout=30)


def _anthropic_body(text: str) -> bytes:
    return json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}).encode()


PROMPT = f"key {AWS} token {GITHUB} mail {EMAIL}"


def _post(proxy, upstream, path: str, content: bytes, headers: dict[str, str] | None = None,
          scheme: str = "https", host: str = "api.anthropic.com") -> tuple[httpx.Response, str | None]:
    """(the proxy's answer, the body the upstream saw or None when nothing reached it)."""
    before = len(upstream.requests)
    port = upstream.tls_port if scheme == "https" else upstream.plain_port
    with _client(proxy) as client:
        response = client.post(f"{scheme}://{host}:{port}{path}", content=content,
                               headers={"Content-Type": "application/json", **(headers or {})})
    seen = upstream.requests[before:]
    return response, (seen[-1]["body"] + seen[-1]["path"] + seen[-1]["query"]) if seen else None


def assert_no_secret_reached(seen: str | None) -> None:
    if seen is None:
        return
    for value in SECRETS:
        assert value not in seen, value


class TestPathSpellings:
    """Other spellings of a redaction endpoint's path that an upstream routes to the same handler."""

    @pytest.mark.parametrize("path", [
        "/v1/messages/", "//v1/messages", "/V1/Messages", "/v1/messages;x", "/v1/%6dessages",
        "/v1/./messages", "/x/../v1/messages", "/v1%2Fmessages", "/v1%2fmessages", "/v1%5Cmessages",
        "/v1;x/messages", "/v1%3Bx/messages", "/%2Fv1/messages", "/v1/messages%2F",
    ])
    def test_path_spelling(self, proxy, upstream, path):
        _, seen = _post(proxy, upstream, path, _anthropic_body(PROMPT))
        assert_no_secret_reached(seen)
        assert seen is None or "[[AWS_ACCESS_KEY_" in seen   # inspected, not merely refused

    @pytest.mark.parametrize("path", ["/v1%2Fchat%2Fcompletions", "/v1/chat%2Fcompletions", "/v1%2Fresponses"])
    def test_openai_path_with_encoded_slash(self, proxy, upstream, path):
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}], "input": PROMPT}).encode()
        _, seen = _post(proxy, upstream, path, body, host="api.openai.com")
        assert_no_secret_reached(seen)

    def test_plain_http_to_the_same_endpoint(self, proxy, upstream):
        _, seen = _post(proxy, upstream, "/v1/messages", _anthropic_body(PROMPT), scheme="http")
        assert_no_secret_reached(seen)

    def test_uppercase_host(self, proxy, upstream):
        _, seen = _post(proxy, upstream, "/v1/messages", _anthropic_body(PROMPT), host="API.ANTHROPIC.COM")
        assert_no_secret_reached(seen)

    @pytest.mark.parametrize("query", [f"prompt={AWS}", f"q={EMAIL.replace('@', '%40')}", f"x=1&{GITHUB}="])
    def test_query_string_prompt(self, proxy, upstream, query):
        response, seen = _post(proxy, upstream, f"/v1/messages?{query}", _anthropic_body("hi"))
        assert seen is None
        assert response.status_code == 403 and "query string" in response.text
        assert AWS not in response.text and GITHUB not in response.text

    def test_query_without_a_finding_still_passes(self, proxy, upstream):
        response, seen = _post(proxy, upstream, "/v1/messages?beta=true", _anthropic_body("hi"))
        assert response.status_code == 200 and seen is not None


class TestBodyFraming:
    """The same JSON in another framing or encoding: redacted, or refused before the upstream."""

    @pytest.mark.parametrize(("name", "encode", "coding"), [
        ("gzip_gzip", lambda b: gzip.compress(gzip.compress(b)), "gzip, gzip"),
        ("GZIP_upper", gzip.compress, "GZIP"),
        ("deflate_zlib", zlib.compress, "deflate"),
        ("deflate_raw", lambda b: zlib.compress(b)[2:-4], "deflate"),
        ("identity_gzip", gzip.compress, "identity, gzip"),
        ("x_gzip", gzip.compress, "x-gzip"),
    ])
    def test_content_encoding(self, proxy, upstream, name, encode, coding):
        _, seen = _post(proxy, upstream, "/v1/messages", encode(_anthropic_body(PROMPT)),
                               {"Content-Encoding": coding})
        assert_no_secret_reached(seen)

    def test_two_content_encoding_header_lines(self, proxy, upstream):
        body = gzip.compress(gzip.compress(_anthropic_body(PROMPT)))
        before = len(upstream.requests)
        with _client(proxy) as client:
            request = client.build_request("POST", f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                                           content=body)
            request.headers = httpx.Headers([("Host", request.headers["Host"]), ("Content-Type", "application/json"),
                                             ("Content-Encoding", "gzip"),
                                             ("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))])
            client.send(request)
        seen = upstream.requests[before:]
        assert_no_secret_reached(seen[-1]["body"] if seen else None)

    @pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"])
    def test_unicode_transformation_formats(self, proxy, upstream, codec):
        _, seen = _post(proxy, upstream, "/v1/messages", _anthropic_body(PROMPT).decode().encode(codec))
        if seen is not None:
            # whatever got through must be decodable text without the secret in any encoding
            for value in SECRETS:
                assert value.encode(codec.replace("-sig", "")) not in seen.encode("utf-8", "surrogatepass")
        assert_no_secret_reached(seen)

    def test_text_plain_content_type(self, proxy, upstream):
        _, seen = _post(proxy, upstream, "/v1/messages", _anthropic_body(PROMPT), {"Content-Type": "text/plain"})
        assert_no_secret_reached(seen)

    def test_chunked_body(self, proxy, upstream):
        before = len(upstream.requests)
        body = _anthropic_body(PROMPT)
        with _client(proxy) as client:
            client.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                        content=iter([body[:7], body[7:40], body[40:]]), headers={"Content-Type": "application/json"})
        seen = upstream.requests[before:]
        assert_no_secret_reached(seen[-1]["body"] if seen else None)

    def test_expect_100_continue(self, proxy, upstream):
        _, seen = _post(proxy, upstream, "/v1/messages", _anthropic_body(PROMPT), {"Expect": "100-continue"})
        assert_no_secret_reached(seen)

    def test_get_with_a_body(self, proxy, upstream):
        before = len(upstream.requests)
        with _client(proxy) as client:
            client.request("GET", f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                           content=_anthropic_body(PROMPT))
        seen = upstream.requests[before:]
        assert_no_secret_reached(seen[-1]["body"] if seen else None)


class TestJsonPositions:
    """Every place in the JSON the provider reads, and spellings of keys."""

    @pytest.mark.parametrize("raw", [
        '{"model":"m","messages":[{"role":"user","content":"hi"}],"\\u0061pi_key":"%(s)s","api_key":"x"}',
        '{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"%(s)s":1}}',
        '{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64",'
        '"media_type":"image/png","data":"%(s)s"}}]}]}',
        '{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"url",'
        '"url":"https://x.test/?k=%(s)s"}}]}]}',
        '{"model":"m","messages":[{"role":"user","content":"data:text/plain;base64,x %(s)s"}]}',
        '{"model":"m","messages":[{"role":"user","content":"\\u0041KIAZ7PQ3LXRN4TW2KJD"}]}',
        '{"model":"m","tools":[{"name":"t","input_schema":{"type":"object","properties":{"%(s)s":{}}}}]}',
        '{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"%(s)s",'
        '"content":[{"type":"text","text":"%(s)s"}]}]}]}',
        '{"model":"m","type":"image","messages":[{"role":"user","content":"%(s)s"}]}',
        '{"model":"m","messages":[{"role":"user","content":"%(s)s"}],"messages":[]}',
        '{"model":"m","messages":[{"role":"user","content":"%(s)s"}],"m\\u0065ssages":[]}',
        '{"model":"m","messages":[{"role":"user","content":[{"type":"document","source":{"type":"text",'
        '"media_type":"text/plain","data":"%(s)s"}}]}]}',
        '{"model":"m","messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64",'
        '"media_type":"application/pdf","data":"%(b64)s"}}]}]}',
    ])
    def test_position(self, proxy, upstream, raw):
        import base64

        b64 = base64.b64encode(b"%PDF-1.4 " + PROMPT.encode() * 8).decode()
        _, seen = _post(proxy, upstream, "/v1/messages", (raw % {"s": AWS, "b64": b64}).encode())
        assert_no_secret_reached(seen)


class TestOtherRoutesToTheEndpoint:
    """The same endpoint reached through SOCKS5 and through the gateway, with the path spelled so a
    lenient upstream routes it there."""

    @pytest.mark.parametrize("path", ["/v1/messages", "/v1%2Fmessages", "/v1;x/messages"])
    def test_socks5_with_path_spelling(self, proxy, upstream, tmp_path, path):
        import subprocess

        body = tmp_path / "body.json"
        body.write_bytes(_anthropic_body(PROMPT))
        before = len(upstream.requests)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--path-as-is", "-x", f"socks5h://127.0.0.1:{proxy.socks_port}",
                        "--cacert", str(proxy.bundle), "-H", "Content-Type: application/json",
                        "--data-binary", f"@{body}", f"https://api.anthropic.com:{upstream.tls_port}{path}"],
                       check=True, timeout=30)
        seen = upstream.requests[before:]
        assert seen, "the request reached no upstream"
        assert_no_secret_reached(seen[-1]["body"])
        assert "[[AWS_ACCESS_KEY_" in seen[-1]["body"]

    @pytest.mark.parametrize("path", ["/anthropic/v1/messages", "/anthropic/v1%2Fmessages", "/anthropic/v1;x/messages",
                                      "/anthropic%2Fv1/messages"])
    def test_gateway_with_path_spelling(self, start_proxy, upstream, path):
        gateway = start_proxy(CONFIG + f'[gateway.routes]\nanthropic = "https://api.anthropic.com:{upstream.tls_port}"\n')
        before = len(upstream.requests)
        with httpx.Client(timeout=30) as client:
            client.post(f"{gateway.url}{path}", content=_anthropic_body(PROMPT),
                        headers={"Content-Type": "application/json"})
        seen = upstream.requests[before:]
        assert_no_secret_reached(seen[-1]["body"] if seen else None)


class TestDisguisedValuesOnTheWire:
    """Values a model reads through but a plain regex would not, sent with the official SDK."""

    ANTHROPIC_KEY = ("sk-ant-api03-Zq8Xv2LmN4pR7tY1wB5kD9fH3jG6sA0cE2uI8oP4qW7eR1tY5uI9oP3aS6dF0gH2jK4lZ7xC9vB1nM3qW5e"
                     "R7tY9uI1oP3aS5dF7gH9jKAA")

    @pytest.mark.parametrize("text", ["key AKIA\u200bZ7PQ3LXRN4TW2KJD", "ＡＫＩＡＺ７ＰＱ３ＬＸＲＮ４ＴＷ２ＫＪＤ",
                                      "AKIA\u00adZ7PQ3LXRN4TW2KJD", "dana.kowalski\u2060@acme-corp.io"])
    def test_invisible_or_fullwidth_characters(self, proxy, upstream, monkeypatch, text):
        import unicodedata

        anthropic = pytest.importorskip("anthropic")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
        client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}",
                                     max_retries=0)
        message = client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": text}])
        seen = json.loads(upstream.last()["body"])["messages"][0]["content"]
        folded = "".join(c for c in unicodedata.normalize("NFKC", seen) if unicodedata.category(c) != "Cf")
        assert AWS not in folded and EMAIL not in folded
        assert message.content[0].text == text   # the echo comes back restored exactly

    def test_signature_key_in_a_tool_input(self, proxy, upstream, monkeypatch):
        anthropic = pytest.importorskip("anthropic")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy.bundle))
        client = anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}",
                                     max_retries=0)
        client.messages.create(model="claude-x", max_tokens=10, messages=[
            {"role": "user", "content": "sign it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "sign",
                                               "input": {"signature": self.ANTHROPIC_KEY}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}])
        assert self.ANTHROPIC_KEY not in upstream.last()["body"]
