"""HTTP/2 to the upstream, against a small h2 server on loopback (the test CA) that misbehaves on
request: trailers on an ordinary answer, a stream reset mid-body, a GOAWAY, an origin that picks
HTTP/1.1. The client is httpx over HTTP/2 through interception."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded, TrailersReceived

from tests.proxy.harness import pins, running
from tests.shell.test_h2_hostile import RawClient

CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.h]
host = "api.github.com"
methods = ["GET", "POST"]
path_prefixes = ["/"]
action = ["inject"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "x-api-key"
secret_env_var = "KEY"
"""


class H2Origin:
    """An h2 server in its own thread: ``/trailers``, ``/reset`` (some data, then RST_STREAM), ``/goaway``,
    anything else echoes the method, path, ``x-api-key`` and body size. Records every request."""

    def __init__(self, cert: str, key: str, alpn: tuple[str, ...] = ("h2",)) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(list(alpn))
        self.seen: list[dict[str, Any]] = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self.serve, "127.0.0.1", 0, ssl=self.context))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nh1 ok")
            await writer.drain()
            writer.close()
            return
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        sizes: dict[int, int] = {}
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    heads[event.stream_id] = dict(event.headers)
                    sizes[event.stream_id] = 0
                elif isinstance(event, DataReceived):
                    sizes[event.stream_id] += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    await self.answer(conn, writer, event.stream_id, heads[event.stream_id], sizes[event.stream_id])
            writer.write(conn.data_to_send())
            await writer.drain()
        writer.close()

    async def answer(self, conn: H2Connection, writer: asyncio.StreamWriter, sid: int, head: dict[str, str],
                     size: int) -> None:
        path = head[":path"]
        self.seen.append({**head, "size": size})
        if path == "/trailers":
            conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            conn.send_data(sid, b"body")
            conn.send_headers(sid, [("x-checksum", "abc"), ("x-done", "yes")], end_stream=True)
        elif path == "/reset":
            conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            conn.send_data(sid, b"part of it")
            writer.write(conn.data_to_send())
            await writer.drain()
            await asyncio.sleep(0.1)
            conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
        elif path == "/goaway":
            conn.close_connection(ErrorCodes.NO_ERROR, last_stream_id=0)
        else:
            body = f"{head[':method']} {path} key={head.get('x-api-key')} size={size}".encode()
            conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))])
            conn.send_data(sid, body, end_stream=True)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def origin(pki) -> Iterator[H2Origin]:
    server = H2Origin(str(pki[1]), str(pki[2]))
    yield server
    server.close()


def through(tmp_path, pki, port: int, requests: Any) -> tuple[Any, list[tuple[str, int | None, str | None]]]:
    async def scenario() -> Any:
        events: list[tuple[str, int | None, str | None]] = []
        async with running(tmp_path, CONFIG, env={"KEY": "k-canary"}, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com",), port)) as server:
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status, d.path)))
            trust = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
            async with httpx.AsyncClient(http2=True, proxy=f"http://127.0.0.1:{server.addresses['http'][1]}",
                                         verify=trust, timeout=15) as client:
                result = await requests(client, f"https://api.github.com:{port}")
            await asyncio.sleep(0.1)
        return result, [e for e in events if e[2] is not None]

    return asyncio.run(scenario())


def test_requests_ride_one_upstream_connection_with_the_hook_applied(tmp_path, pki, origin):
    async def requests(client: httpx.AsyncClient, base: str) -> Any:
        first = await client.post(f"{base}/a", content=b"x" * 300_000)   # past the upstream's windows
        rest = await asyncio.gather(*(client.get(f"{base}/n/{i}") for i in range(5)))
        return [first, *rest]

    before = origin.connections
    answers, events = through(tmp_path, pki, origin.port, requests)
    assert [a.text for a in answers] == ["POST /a key=k-canary size=300000",
                                         *(f"GET /n/{i} key=k-canary size=0" for i in range(5))]
    assert origin.connections - before == 1   # multiplexed on one connection to the origin
    assert len(events) == 6 and all(e[:2] == ("hook_matched", 200) for e in events)


def test_trailers_of_an_ordinary_answer_are_relayed(tmp_path, pki, origin):
    async def scenario() -> Any:
        async with running(tmp_path, CONFIG, env={"KEY": "k"}, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com",), origin.port)) as server:
            client = await RawClient.open(server.addresses["http"][1], origin.port, str(tmp_path / "ca" / "ca.pem"))
            client.h2.send_headers(1, client.request_headers(origin.port, "/trailers"), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamEnded) for e in events))
            client.close()
            return client.events

    events = asyncio.run(scenario())
    body = b"".join(e.data for e in events if isinstance(e, DataReceived))
    trailers = [dict(e.headers) for e in events if isinstance(e, TrailersReceived)]
    assert body == b"body" and trailers == [{"x-checksum": "abc", "x-done": "yes"}]


def test_an_upstream_reset_mid_body_resets_the_clients_stream(tmp_path, pki, origin):
    async def requests(client: httpx.AsyncClient, base: str) -> Any:
        got = b""
        try:
            async with client.stream("GET", f"{base}/reset") as answer:
                async for chunk in answer.aiter_bytes():
                    got += chunk
        except httpx.RemoteProtocolError as exc:
            return got, str(exc)
        return got, None

    (got, error), events = through(tmp_path, pki, origin.port, requests)
    assert got == b"part of it"
    assert error is not None and "StreamReset" in error   # never presented as a whole body
    assert events == [("hook_matched", 200, "/reset")]


def test_an_upstream_goaway_is_a_502_for_the_refused_stream(tmp_path, pki, origin):
    async def requests(client: httpx.AsyncClient, base: str) -> Any:
        gone = await client.get(f"{base}/goaway")
        after = await client.get(f"{base}/after")   # a new upstream connection
        return gone.status_code, gone.headers.get("x-proxy-error"), after.text

    (status, error, after), _ = through(tmp_path, pki, origin.port, requests)
    assert (status, error) == (502, "upstream-error")
    assert after == "GET /after key=k-canary size=0"


def test_an_origin_that_picks_http1_is_spoken_to_in_http1(tmp_path, pki):
    origin = H2Origin(str(pki[1]), str(pki[2]), alpn=("http/1.1",))
    try:
        async def requests(client: httpx.AsyncClient, base: str) -> Any:
            answer = await client.get(f"{base}/x")
            return answer.http_version, answer.text

        (version, text), events = through(tmp_path, pki, origin.port, requests)
    finally:
        origin.close()
    assert (version, text) == ("HTTP/2", "h1 ok")   # h2 to the client, HTTP/1.1 to this origin
    assert events == [("hook_matched", 200, "/x")]
