"""``responses``: every Reason has its ``x-proxy-error`` spelled out, and every answer is well formed."""

from __future__ import annotations

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
    assert answer.status == {Reason.PII_BLOCKED: 400, Reason.STORE_UNAVAILABLE: 503}.get(reason, 403)
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
