"""``responses``: every Reason has its ``x-proxy-error`` spelled out, and every answer is well formed."""

from __future__ import annotations

import json

import pytest

from policyproxy import responses
from policyproxy.policy.model import Decision
from policyproxy.reasons import Protocol, Reason, Source, Verdict


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_every_reason_has_an_explicit_proxy_error(reason):
    assert reason in responses.PROXY_ERROR
    if reason.proxy_error is not None:   # the Codex-compatible values of the vocabulary
        assert responses.PROXY_ERROR[reason] == reason.proxy_error
    assert responses.PROXY_ERROR[reason].startswith("blocked-by-")


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
@pytest.mark.parametrize("protocol", list(Protocol), ids=lambda p: p.value)
def test_block_answer_for_every_reason_and_protocol(reason, protocol):
    decision = Decision(Verdict.DENY, reason, Source.DEFAULT, "p", protocol, "a.test", 443, message="no")
    answer = responses.block_answer(decision)
    assert answer.status == {Reason.PII_BLOCKED: 400, Reason.SECRET_UNAVAILABLE: 503,
                             Reason.STORE_UNAVAILABLE: 503}.get(reason, 403)
    assert ("x-proxy-error", responses.PROXY_ERROR[reason]) in answer.headers
    raw = responses.to_bytes(answer)
    assert raw.startswith(f"HTTP/1.1 {answer.status} ".encode())
    assert f"content-length: {len(answer.body)}".encode() in raw and raw.endswith(answer.body)


@pytest.mark.parametrize("status", [400, 405, 408, 431, 502, 504])
def test_text_answers(status):
    answer = responses.text_answer(status, "why")
    assert answer.status == status and answer.body == b"policyproxy: why\n"
    assert dict(answer.headers)["x-proxy-error"] == ("upstream-error" if status >= 500 else "bad-request")
    assert responses.to_bytes(answer).split(b"\r\n")[0] == f"HTTP/1.1 {status} {responses.PHRASES[status]}".encode()


def test_auth_required_and_head_timeout():
    assert dict(responses.auth_required().headers)["proxy-authenticate"].startswith("Basic")
    assert responses.head_timeout().status == 408


def test_socks_replies():
    assert responses.SOCKS_NOT_ALLOWED[:2] == b"\x05\x02"
    assert responses.SOCKS_SUCCEEDED[:2] == b"\x05\x00"
    assert responses.SOCKS_HOST_UNREACHABLE[:2] == b"\x05\x04"


# --- denials that say how to allow (issue 12 part 4): the texts are pinned -----------------------------

def _deny(reason: Reason, protocol: Protocol, **fields: object) -> Decision:
    values: dict = {"verdict": Verdict.DENY, "reason": reason, "source": Source.PROFILE, "profile": "workspace",
                    "protocol": protocol, "host": "evil.test", "port": 443, "message": "why"}
    values.update(fields)
    return Decision(**values)


def test_a_connect_deny_names_rule_key_and_explain_line():
    answer = responses.block_answer(_deny(Reason.NOT_ALLOWED, Protocol.HTTPS_CONNECT,
                                          message="evil.test is not on the allowlist"))
    assert answer.body.decode() == (
        "policyproxy: evil.test is not on the allowlist\n"
        "rule: no allow pattern matches evil.test\n"
        'to allow, change permissions.workspace.network.domains."evil.test" = "allow" in the profile\n'
        "reproduce: policyproxy explain --profile workspace GET https://evil.test/\n")
    headers = dict(answer.headers)
    assert headers["x-proxy-error"] == "blocked-by-allowlist"
    assert headers["x-policyproxy-config-key"] == 'permissions.workspace.network.domains."evil.test" = "allow"'
    assert headers["x-policyproxy-explain"] == "policyproxy explain --profile workspace GET https://evil.test/"


def test_an_in_tunnel_hook_deny_points_at_the_hooks_table():
    answer = responses.block_answer(_deny(Reason.MITM_HOOK_DENIED, Protocol.HTTPS_MITM, host="api.github.com",
                                          method="POST", path="/x", message="POST /x on api.github.com matches no hook"))
    assert answer.body.decode().splitlines()[1:] == [
        "rule: no hook on api.github.com matches",
        "to allow, change permissions.workspace.network.mitm.hooks in the profile",
        "reproduce: policyproxy explain --profile workspace POST https://api.github.com/x"]


def test_plain_http_json_keeps_codex_keys_and_adds_the_remedy():
    answer = responses.block_answer(_deny(Reason.DENIED, Protocol.HTTP, port=8080, method="PUT", path="/a b",
                                          rule="*.evil.test", source=Source.REQUIREMENTS))
    doc = json.loads(answer.body)
    assert list(doc)[:8] == ["status", "host", "reason", "decision", "source", "protocol", "port", "message"]
    assert {k: doc[k] for k in ("rule", "config_key", "config_in", "explain")} == {
        "rule": "deny pattern '*.evil.test'",
        "config_key": "network.denied_domains",
        "config_in": "requirements.toml (managed; ask its owners)",
        "explain": "policyproxy explain --profile workspace PUT 'http://evil.test:8080/a b'"}


def test_a_limited_mode_deny_and_a_socks_explain_line():
    answer = responses.block_answer(_deny(Reason.METHOD_NOT_ALLOWED, Protocol.SOCKS5_TCP, port=80))
    assert answer.body.decode().splitlines()[2:] == [
        "to allow, change permissions.workspace.network.mode in the profile",
        "reproduce: policyproxy explain --profile workspace --socks5 GET http://evil.test/"]


def test_hostile_hosts_and_paths_stay_inert_in_the_answer():
    answer = responses.block_answer(_deny(Reason.NOT_ALLOWED, Protocol.HTTPS_MITM, host="a\x1b[2J.test",
                                          path="/\r\nx-injected: 1", method="GET"))
    for name, value in answer.headers:
        assert value.isascii() and value.isprintable(), (name, value)
    assert all(line.isprintable() for line in answer.body.decode().splitlines())
    assert b"\r\nx-injected" not in responses.to_bytes(answer)


def test_allow_reasons_have_no_remedy():
    for reason in (Reason.ALLOWED, Reason.HOOK_MATCHED, Reason.REDACTED):
        assert responses.remedy(_deny(reason, Protocol.HTTP)) is None
