import pytest

from policyproxy.proxy import socks5_codec as s


def test_greeting_needs_all_its_bytes():
    assert s.parse_greeting(b"\x05") is None
    assert s.parse_greeting(b"\x05\x02\x00") is None
    assert s.parse_greeting(b"\x05\x02\x00\x02rest") == (frozenset({0, 2}), 4)


@pytest.mark.parametrize(("data", "reply"), [
    (b"\x04\x01\x00", s.GENERAL_FAILURE),
    (b"\x05\x00", s.GENERAL_FAILURE),
])
def test_bad_greetings(data, reply):
    with pytest.raises(s.Socks5Error) as info:
        s.parse_greeting(data)
    assert info.value.reply == reply


@pytest.mark.parametrize(("data", "host", "port"), [
    (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x01\xbb", "127.0.0.1", 443),
    (b"\x05\x01\x00\x03\x0eapi.github.com\x00\x50", "api.github.com", 80),
    (b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01" + b"\x1f\x90", "::1", 8080),
])
def test_connect_requests(data, host, port):
    request, used = s.parse_request(data)
    assert (request.command, request.host, request.port, used) == (s.CMD_CONNECT, host, port, len(data))
    assert s.parse_request(data[:-1]) is None


@pytest.mark.parametrize(("data", "reply"), [
    (b"\x05\x01\x00\x05\x00\x00", s.ADDRESS_NOT_SUPPORTED),
    (b"\x05\x01\x00\x03\x00\x00\x00", s.ADDRESS_NOT_SUPPORTED),
    (b"\x05\x01\x01\x01\x00\x00\x00\x00\x00\x00", s.GENERAL_FAILURE),
    (b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50", s.ADDRESS_NOT_SUPPORTED),
])
def test_malformed_requests_name_their_reply(data, reply):
    with pytest.raises(s.Socks5Error) as info:
        s.parse_request(data)
    assert info.value.reply == reply


def test_user_pass():
    assert s.parse_user_pass(b"\x01\x05agent\x06s3cret") == (("agent", "s3cret"), 14)
    assert s.parse_user_pass(b"\x01\x05agent\x06s3cre") is None


def test_replies():
    assert s.reply(s.NOT_ALLOWED) == b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00"
    assert s.method_reply(s.NO_ACCEPTABLE) == b"\x05\xff"
