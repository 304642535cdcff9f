"""``server.tune_process``: the process-wide settings ``serve`` makes once, on asyncio's own loop.

asyncio's TLS transports read the socket ``max_size`` bytes at a time into a buffer they allocate up
front: a connection starts at 32 KiB (an idle intercepted client holds two TLS connections) and grows
to 256 KiB once a read fills it (a bulk body: 32 KiB reads cost ~150 ms more CPU per 100 MB).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import hashlib
import ssl
import sys

import pytest

from policyproxy.proxy import server
from tests.shell.upstream import PIECE, big_piece, make_test_pki


@pytest.fixture
def tuned(monkeypatch):
    """``tune_process`` for one test; the module attribute and the switch interval are put back after."""
    monkeypatch.setattr(asyncio.sslproto, "SSLProtocol", asyncio.sslproto.SSLProtocol)
    monkeypatch.setattr(sys, "setswitchinterval", lambda interval: None)
    server.tune_process()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def read_buffer(writer: asyncio.StreamWriter) -> int:
    """The size of the buffer the TLS layer reads the socket into (no public way to reach the SSL
    protocol under a transport: its private attribute)."""
    return len(writer.transport._ssl_protocol.get_buffer(-1))  # type: ignore[attr-defined]


@pytest.mark.skipif(not hasattr(asyncio.sslproto.SSLProtocol, "get_buffer"), reason="Python 3.10's SSLProtocol")
def test_a_tls_connection_reads_32_kib_until_a_bulk_body_and_then_256_kib(tuned, pki):
    pieces = 64   # 4 MiB

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(b"hello")   # small: the client's buffer stays small
        await reader.readexactly(4)
        for i in range(pieces):
            writer.write(big_piece(i))
            await writer.drain()
        writer.close()

    async def case() -> tuple[int, int, str]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki[1], pki[2])
        listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, server_hostname="upstream.test",
                                                       ssl=ssl.create_default_context(cafile=str(pki[0])))
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        idle = read_buffer(writer)
        writer.write(b"bulk")
        body = await reader.readexactly(pieces * PIECE)
        bulk = read_buffer(writer)
        writer.close()
        listener.close()
        return idle, bulk, hashlib.sha256(body).hexdigest()

    idle, bulk, digest = asyncio.run(case())
    assert (idle, bulk) == (server.TLS_READ_BUFFER, server.TLS_BULK_READ_BUFFER) == (32 * 1024, 256 * 1024)
    assert digest == hashlib.sha256(b"".join(big_piece(i) for i in range(pieces))).hexdigest()
