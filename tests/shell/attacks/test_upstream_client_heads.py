"""Attacks on the lean upstream client (``h1_client``) with answer heads llhttp parses but no client may
be given, through a real proxy on asyncio's loop and on uvloop: each becomes a 502 naming the fault,
never a 500 with a traceback and never relayed as it came."""

from __future__ import annotations

import pytest

from tests.shell.attacks.test_upstream_keepalive import OK, read_head, through_proxy


def answering(answer: bytes):
    async def handle(reader, writer, hosts):
        while True:
            await read_head(reader, hosts)
            writer.write(answer)
            await writer.drain()
    return handle


class TestControlBytesInTheStatusLine:
    @pytest.mark.parametrize("reason", [b"O\x00K", b"O\x0bK", b"O\x7fK", b"O\x1bK"])
    def test_a_control_byte_in_the_reason_is_a_502(self, tmp_path, on_both_loops, reason):
        answer = b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok"
        answers, _ = on_both_loops(through_proxy(tmp_path, answering(answer), [("GET", "a.test")]))
        assert answers[0].startswith(b"HTTP/1.1 502 ")
        assert answers[0].endswith(b"unreadable answer: control character in the reason phrase\n")

    def test_a_tab_in_the_reason_is_relayed(self, tmp_path, on_both_loops):
        answers, _ = on_both_loops(through_proxy(tmp_path, answering(b"HTTP/1.1 200 O\tK\r\nContent-Length: 2\r\n\r\nok"),
                                       [("GET", "a.test")]))
        assert answers[0].startswith(b"HTTP/1.1 200 O\tK\r\n") and answers[0].endswith(b"\r\n\r\nok")

    def test_status_000_is_a_502(self, tmp_path, on_both_loops):
        answers, _ = on_both_loops(through_proxy(tmp_path, answering(b"HTTP/1.1 000 X\r\nContent-Length: 2\r\n\r\nok"),
                                       [("GET", "a.test")]))
        assert answers[0].startswith(b"HTTP/1.1 502 ") and b"unreadable answer: status 000" in answers[0]


class TestUnaskedUpgrade:
    def test_101_to_a_plain_get_is_a_502_and_its_bytes_never_reach_the_client(self, tmp_path, on_both_loops):
        answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nRAW-AFTER-101"
        answers, hosts = on_both_loops(through_proxy(tmp_path, answering(answer), [("GET", "a.test")] * 2))
        for got in answers:
            assert got.startswith(b"HTTP/1.1 502 ") and b"101 Switching Protocols to a request" in got
            assert b"RAW-AFTER-101" not in got
        assert len(hosts) == 2   # the connection was not kept: each GET opened its own


def test_ok_answer_still_relayed(tmp_path, on_both_loops):
    """The control: the same scripted upstream with a well-formed head is relayed as it came."""
    answers, _ = on_both_loops(through_proxy(tmp_path, answering(OK), [("GET", "a.test")] * 2))
    assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") and a.endswith(b"\r\n\r\nok") for a in answers)
