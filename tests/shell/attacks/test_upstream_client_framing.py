"""Attacks on the lean upstream client's body framing through a real proxy, on asyncio's loop and uvloop:
a chunked answer whose trailers or chunk extensions never end must not grow the proxy's memory (llhttp
bounds neither; httptools keeps every trailer field), while many tiny chunks of a real body still pass."""

from __future__ import annotations

import pytest

from tests.shell.attacks.test_upstream_client_liveness import get, proxied

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
MB = 1024 * 1024


def flooding(start: bytes, line: bytes, sent: list[int]):
    """Answers with ``start`` then repeats ``line`` (up to 64 MB) and counts what the proxy took."""
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(CHUNKED + start)
        block = line * (64 * 1024 // len(line))
        try:
            while sent[0] < 64 * MB:
                writer.write(block)
                await writer.drain()
                sent[0] += len(block)
            writer.write(b"\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
    return handle


class TestEndlessChunkedFraming:
    @pytest.mark.parametrize(("start", "line"), [
        (b"2\r\nok\r\n0\r\n", b"X-Trailer: " + b"y" * 51 + b"\r\n"),   # trailer fields without end
        (b"2\r\nok\r\n0\r\nX-Trailer: ", b"y" * 64),                      # one trailer value without end
        (b"2\r\nok\r\n1;ext=", b"e" * 64),                                # a chunk extension without end
    ], ids=["trailer-fields", "trailer-value", "chunk-extension"])
    def test_the_answer_is_cut_after_256_kib_that_bring_no_body(self, tmp_path, on_both_loops, start, line):
        sent = [0]
        answer = on_both_loops(proxied(tmp_path, flooding(start, line, sent), get))
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert not answer.endswith(b"0\r\n\r\n")   # the client sees the truncation (no last chunk)
        assert sent[0] < 16 * MB   # cut near 256 KiB plus what the sockets buffered, not read to 64 MB

    def test_many_tiny_chunks_of_a_real_body_pass(self, tmp_path, on_both_loops):
        async def tiny(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(CHUNKED + b"1\r\nx\r\n" * 200_000 + b"0\r\nX-Done: 1\r\n\r\n")   # 1.2 MB, 200 KB of body
            await writer.drain()
            await reader.read()
        answer = on_both_loops(proxied(tmp_path, tiny, get))
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"").count(b"x") == 200_000
        assert answer.endswith(b"0\r\n\r\n")



class TestTransferCodingNeverOffered:
    @pytest.mark.parametrize("coding", [b"gzip, chunked", b"gzip"])
    def test_a_gzip_transfer_coding_is_a_502_never_relayed_still_coded(self, tmp_path, on_both_loops, coding):
        """The proxy sends no TE: gzip-coded bytes under a dropped Transfer-Encoding would reach the
        client (or the restorer of a redaction endpoint) as if they were the body."""
        async def coded(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n\x1f\x8b\x08CODED")
            await writer.drain()
            writer.close()
        answer = on_both_loops(proxied(tmp_path, coded, get))
        assert answer.startswith(b"HTTP/1.1 502 ") and b"never offered" in answer
        assert b"CODED" not in answer
