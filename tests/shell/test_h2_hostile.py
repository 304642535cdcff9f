"""Hostile HTTP/2 clients on an intercepted connection, by attack class: each bound holds (the
connection is ended with GOAWAY, nothing piles up) and the proxy keeps serving other clients."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import time
from typing import Any

import httpx
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived, ResponseReceived, StreamEnded, StreamReset
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame

from policyproxy.proxy import h2_server
from tests.proxy.harness import build, pins, running

CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET", "POST"]
path_prefixes = ["/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


class RawClient:
    """An HTTP/2 client that does what it is told (h2 for the framing, raw frames where h2 would refuse)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.events: list[Any] = []

    @classmethod
    async def open(cls, proxy_port: int, port: int, ca: str) -> RawClient:
        return await cls.open_to(proxy_port, "api.github.com", port, ca)

    @classmethod
    async def open_to(cls, proxy_port: int, host: str, port: int, ca: str) -> RawClient:
        """CONNECT to ``host:port`` through the proxy, TLS with ALPN h2, the client preface sent."""
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        await writer.start_tls(context, server_hostname=host)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        client = cls(reader, writer)
        client.h2.initiate_connection()
        client.flush()
        return client

    def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())

    def request_headers(self, port: int, path: str = "/x", method: str = "GET",
                        extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        return [(":method", method), (":scheme", "https"), (":authority", f"api.github.com:{port}"),
                (":path", path), *(extra or [])]

    async def pump(self, until: Any, timeout: float = 10) -> list[Any]:
        """Read until ``until(events)`` is true or the connection closes; the events seen."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(0.01, deadline - time.monotonic()))
            except (asyncio.TimeoutError, ConnectionError):
                break
            if not data:
                break
            try:
                self.events += self.h2.receive_data(data)
            except Exception:
                break
            self.flush()
        return self.events

    def goaway(self) -> ConnectionTerminated | None:
        return next((e for e in self.events if isinstance(e, ConnectionTerminated)), None)

    async def closed(self, timeout: float = 10) -> bool:
        """The proxy closed the connection (EOF), whatever was still unread."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), deadline - time.monotonic())
            except asyncio.TimeoutError:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
            with contextlib.suppress(Exception):   # a hostile client may be in a state h2 dislikes
                self.events += self.h2.receive_data(data)
        return False

    def close(self) -> None:
        self.writer.close()


async def still_serving(proxy_port: int, port: int, ca: str) -> int:
    """A well-behaved HTTP/2 client on a new connection gets its answer."""
    trust = ssl.create_default_context(cafile=ca)
    async with httpx.AsyncClient(http2=True, proxy=f"http://127.0.0.1:{proxy_port}", verify=trust, timeout=10) as c:
        answer = await c.get(f"https://api.github.com:{port}/after")
        assert answer.http_version == "HTTP/2"
        return answer.status_code


def scenario(tmp_path, pki, upstream, attack: Any, **options: Any) -> Any:
    async def run() -> Any:
        async with running(tmp_path, CONFIG, upstream_cas=(pki[0],), pins=pins(("api.github.com",), upstream.tls_port),
                           **options) as server:
            events: list[tuple[str, int | None]] = []
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status)))
            port = server.addresses["http"][1]
            ca = str(tmp_path / "ca" / "ca.pem")
            result = await attack(port, upstream.tls_port, ca)
            after = await still_serving(port, upstream.tls_port, ca)
            return result, after, events

    return asyncio.run(run())


class TestRapidReset:
    def test_rapid_reset_gets_goaway_enhance_your_calm(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            for _ in range(h2_server.MAX_RESETS + 50):
                sid = client.h2.get_next_available_stream_id()
                client.h2.send_headers(sid, client.request_headers(port, "/sse?n=100&interval=1"), end_stream=True)
                client.h2.reset_stream(sid, ErrorCodes.CANCEL)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, ConnectionTerminated) for e in events))
            closed = await client.closed()
            goaway = client.goaway()
            client.close()
            return goaway, closed

        (goaway, closed), after, events = scenario(tmp_path, pki, upstream, attack)
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert closed and after == 200
        # Every stream the proxy started is reported once; none was left running.
        assert len([e for e in events if e[0] == "hook_matched"]) <= h2_server.MAX_RESETS + 51

    def test_resets_below_the_limit_are_ordinary_cancellations(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            for _ in range(20):
                sid = client.h2.get_next_available_stream_id()
                client.h2.send_headers(sid, client.request_headers(port, "/sse?n=100&interval=1"), end_stream=True)
                client.h2.reset_stream(sid, ErrorCodes.CANCEL)
            sid = client.h2.get_next_available_stream_id()
            client.h2.send_headers(sid, client.request_headers(port, "/fine"), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamEnded) and e.stream_id == sid for e in events))
            status = next(dict(e.headers)[":status"] for e in client.events
                          if isinstance(e, ResponseReceived) and e.stream_id == sid)
            client.close()
            return status, client.goaway()

        (status, goaway), after, _ = scenario(tmp_path, pki, upstream, attack)
        assert (status, goaway, after) == ("200", None, 200)


class TestHeaderFloods:
    def test_continuation_flood_is_cut_off(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            await client.pump(lambda events: False, timeout=0.3)   # the proxy's SETTINGS
            block = Encoder().encode(client.request_headers(port))
            first = HeadersFrame(1, block[:5])                      # no END_HEADERS: CONTINUATIONs follow
            client.writer.write(first.serialize())
            sent = 0
            try:
                for _ in range(5000):                               # never END_HEADERS
                    client.writer.write(ContinuationFrame(1, b"\x00" * 1024).serialize())
                    sent += 1
                    await client.writer.drain()
            except ConnectionError:
                pass
            closed = await client.closed()
            client.close()
            return sent, closed, client.goaway()

        (_, closed, goaway), after, events = scenario(tmp_path, pki, upstream, attack)
        assert closed and after == 200
        assert goaway is None or goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.ENHANCE_YOUR_CALM)
        assert not [e for e in events if e[0] == "hook_matched" and e[1] != 200]   # no request was started

    def test_oversized_header_list_is_refused(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            await client.pump(lambda events: False, timeout=0.3)
            before = len(upstream.requests)
            big = [(f"x-filler-{i}", "v" * 1000) for i in range(h2_server.MAX_HEADER_LIST // 1000 + 8)]
            client.h2.send_headers(1, client.request_headers(port, extra=big), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, (ConnectionTerminated, StreamReset, ResponseReceived))
                                                 for e in events))
            closed = await client.closed()
            client.close()
            return closed, client.goaway(), len(upstream.requests) - before

        (closed, goaway, reached), after, _ = scenario(tmp_path, pki, upstream, attack)
        assert reached == 0 and after == 200
        assert closed and goaway is not None and goaway.error_code in (ErrorCodes.ENHANCE_YOUR_CALM,
                                                                       ErrorCodes.PROTOCOL_ERROR)


class TestStreamLimits:
    def test_more_streams_than_advertised_ends_the_connection(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            # Sent before the proxy's SETTINGS are read (or acknowledged): the limit holds from the start.
            for _ in range(h2_server.MAX_STREAMS + 1):   # streams that stay open (slow answers)
                sid = client.h2.get_next_available_stream_id()
                client.h2.send_headers(sid, client.request_headers(port, "/sse?n=3&interval=1"), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, ConnectionTerminated) for e in events))
            closed = await client.closed()
            client.close()
            return closed, client.goaway()

        (closed, goaway), after, _ = scenario(tmp_path, pki, upstream, attack)
        assert closed and after == 200
        assert goaway is not None and goaway.error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.REFUSED_STREAM)

    def test_a_client_that_respects_the_limit_gets_every_answer(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            trust = ssl.create_default_context(cafile=ca)
            async with httpx.AsyncClient(http2=True, proxy=f"http://127.0.0.1:{proxy_port}", verify=trust,
                                         timeout=30, limits=httpx.Limits(max_connections=1)) as client:
                answers = await asyncio.gather(*(client.get(f"https://api.github.com:{port}/n/{i}")
                                                 for i in range(h2_server.MAX_STREAMS + 50)))
            return sorted({(a.http_version, a.status_code) for a in answers})

        statuses, after, _ = scenario(tmp_path, pki, upstream, attack)
        assert statuses == [("HTTP/2", 200)] and after == 200


class TestSlowClients:
    def test_a_client_that_never_sends_its_preface_is_closed(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
            writer.write(f"CONNECT api.github.com:{port} HTTP/1.1\r\nHost: api.github.com:{port}\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            context = ssl.create_default_context(cafile=ca)
            context.set_alpn_protocols(["h2"])
            await writer.start_tls(context, server_hostname="api.github.com")
            started = time.monotonic()
            try:
                while await asyncio.wait_for(reader.read(65536), 10):
                    pass
            except (ConnectionError, asyncio.TimeoutError):
                pass
            writer.close()
            return time.monotonic() - started

        waited, after, _ = scenario(tmp_path, pki, upstream, attack, head_timeout=1.0)
        assert waited < 5 and after == 200

    def test_a_client_that_does_not_read_is_sent_no_more_than_its_window(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            sid = client.h2.get_next_available_stream_id()
            client.h2.send_headers(sid, client.request_headers(port, "/sse?n=4000&interval=0"), end_stream=True)
            client.flush()
            await asyncio.sleep(1.0)
            await client.pump(lambda events: False, timeout=1.0)   # read, but never acknowledge
            received = sum(len(e.data) for e in client.events if isinstance(e, DataReceived))
            client.close()
            return received

        received, after, _ = scenario(tmp_path, pki, upstream, attack)
        assert 0 < received <= 65535 and after == 200


class TestSpellings:
    def test_host_header_that_differs_from_authority_ends_the_connection(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False   # h2 would refuse to send this
            before = len(upstream.requests)
            sid = client.h2.get_next_available_stream_id()
            client.h2.send_headers(sid, client.request_headers(port, extra=[("host", "evil.test")]), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, (StreamEnded, ConnectionTerminated)) for e in events))
            client.close()
            return client.goaway(), len(upstream.requests) - before

        (goaway, reached), after, _ = scenario(tmp_path, pki, upstream, attack)
        assert goaway is not None and goaway.error_code == ErrorCodes.PROTOCOL_ERROR   # RFC 9113 8.3.1
        assert (reached, after) == (0, 200)

    @pytest.mark.parametrize("authority", ["API.GITHUB.COM", "api.github.com."])
    def test_other_spellings_of_the_authority_are_the_same_host(self, tmp_path, pki, upstream, authority):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            headers = [(k, f"{authority}:{port}" if k == ":authority" else v)
                       for k, v in client.request_headers(port, "/spelled", extra=[("cookie", "a=1")])]
            client.h2.send_headers(1, headers, end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamEnded) for e in events))
            status = next(dict(e.headers)[":status"] for e in client.events if isinstance(e, ResponseReceived))
            client.close()
            return status

        status, after, _ = scenario(tmp_path, pki, upstream, attack)
        assert status == "200" and after == 200
        seen = upstream.last() if upstream.last()["path"] == "/after" else None
        assert seen is not None   # the last request was the check; the spelled one came before it
        spelled = [r for r in upstream.requests if r["path"] == "/spelled"][-1]
        assert "cookie" not in {k.lower() for k, _ in spelled["headers"]}   # the hook applied


class TestVanishingClients:
    def test_a_stream_reset_mid_answer_is_reported_once_and_the_connection_goes_on(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.send_headers(1, client.request_headers(port, "/sse?n=200&interval=0.02"), end_stream=True)
            client.flush()
            await client.pump(lambda events: sum(isinstance(e, DataReceived) for e in events) >= 3)
            client.h2.reset_stream(1, ErrorCodes.CANCEL)
            client.h2.send_headers(3, client.request_headers(port, "/next"), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamEnded) and e.stream_id == 3 for e in events))
            status = next(dict(e.headers)[":status"] for e in client.events
                          if isinstance(e, ResponseReceived) and e.stream_id == 3)
            client.close()
            await asyncio.sleep(0.3)
            return status

        status, after, events = scenario(tmp_path, pki, upstream, attack)
        assert status == "200" and after == 200
        # One event per stream (/sse, whose head was sent, /next, /after), none twice.
        assert [e for e in events if e[0] == "hook_matched"] == [("hook_matched", 200)] * 3

    def test_a_connection_dropped_mid_answer_reports_its_streams(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            for sid in (1, 3):
                client.h2.send_headers(sid, client.request_headers(port, "/sse?n=200&interval=0.02"), end_stream=True)
            client.flush()
            await client.pump(lambda events: sum(isinstance(e, DataReceived) for e in events) >= 4)
            client.writer.transport.abort()
            await asyncio.sleep(0.5)

        _, after, events = scenario(tmp_path, pki, upstream, attack)
        assert after == 200
        assert [e for e in events if e[0] == "hook_matched"] == [("hook_matched", 200)] * 3   # both streams, /after


class TestStop:
    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
    def test_a_stop_sends_goaway_and_lets_open_streams_finish(self, tmp_path, pki, upstream):
        async def run() -> Any:
            server = build(tmp_path, CONFIG, upstream_cas=(pki[0],), pins=pins(("api.github.com",), upstream.tls_port))
            await server.start()
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sS", "-N", "--http2", "-v", "-x", f"http://127.0.0.1:{server.addresses['http'][1]}",
                "--cacert", str(tmp_path / "ca" / "ca.pem"),
                f"https://api.github.com:{upstream.tls_port}/sse?n=5&interval=0.3",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            assert curl.stdout is not None
            first = await asyncio.wait_for(curl.stdout.readuntil(b"\n\n"), 10)   # the stream is under way
            await server.stop(drain=5)
            rest, err = await asyncio.wait_for(curl.communicate(), 10)
            return curl.returncode, (first + rest).count(b"event: tick"), err.decode()

        code, ticks, err = asyncio.run(run())
        assert (code, ticks) == (0, 5), err   # the open stream was answered to its end

    def test_a_stop_does_not_wait_out_the_drain_for_an_idle_client_that_never_reads(self, tmp_path, pki, upstream):
        """An idle pooled h2 connection whose client does not read never answers TLS's close_notify: the
        stop closes it at once instead of waiting the whole drain (it took 10 s before)."""
        async def run() -> Any:
            server = build(tmp_path, CONFIG, upstream_cas=(pki[0],), pins=pins(("api.github.com",), upstream.tls_port))
            await server.start()
            client = await RawClient.open(server.addresses["http"][1], upstream.tls_port,
                                          str(tmp_path / "ca" / "ca.pem"))
            client.h2.send_headers(1, client.request_headers(upstream.tls_port), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamEnded) for e in events))
            client.writer.transport.pause_reading()   # idle, and reads nothing more (no close_notify back)
            started = time.monotonic()
            await server.stop(drain=5)
            took = time.monotonic() - started
            client.writer.transport.abort()
            return took

        assert asyncio.run(run()) < 2.5


class TestOddRequests:
    @pytest.mark.parametrize("path", ["/repos/myorg/../other/x", "/repos/myorg/%2e%2e/other/x", "//repos/other/x",
                                      "*", "https://api.github.com/repos/myorg/x"])
    def test_path_tricks_are_refused_as_on_http1(self, tmp_path, pki, upstream, path):
        config = CONFIG.replace('path_prefixes = ["/"]', 'path_prefixes = ["/repos/myorg/"]')

        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            before = len(upstream.requests)
            client.h2.send_headers(1, client.request_headers(port, path), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, (StreamEnded, StreamReset, ConnectionTerminated))
                                                 for e in events))
            status = next((dict(e.headers)[":status"] for e in client.events if isinstance(e, ResponseReceived)), None)
            client.close()
            return status, len(upstream.requests) - before

        async def run() -> Any:
            async with running(tmp_path, config, upstream_cas=(pki[0],),
                               pins=pins(("api.github.com",), upstream.tls_port)) as server:
                return await attack(server.addresses["http"][1], upstream.tls_port, str(tmp_path / "ca" / "ca.pem"))

        status, reached = asyncio.run(run())
        assert status in ("400", "403") and reached == 0

    def test_connect_inside_the_tunnel_is_405(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.send_headers(1, [(":method", "CONNECT"), (":authority", "elsewhere.test:443")])
            client.flush()
            await client.pump(lambda events: any(isinstance(e, ResponseReceived) for e in events))
            status = next((dict(e.headers)[":status"] for e in client.events if isinstance(e, ResponseReceived)), None)
            client.close()
            return status

        status, after, _ = scenario(tmp_path, pki, upstream, attack)
        assert (status, after) == ("405", 200)

    @pytest.mark.parametrize("value", ["b\\r\\nInjected: 1", "b\\x00c", "b\\nc"])
    def test_control_characters_in_a_header_value_never_reach_the_upstream(self, tmp_path, pki, upstream, value):
        value = value.encode().decode("unicode_escape")

        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False
            before = len(upstream.requests)
            client.h2.send_headers(1, client.request_headers(port, "/ctl", extra=[("x-a", value)]), end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, (StreamEnded, StreamReset, ConnectionTerminated))
                                                 for e in events))
            client.close()
            return [r for r in upstream.requests[before:] if r["path"] == "/ctl"]

        reached, after, _ = scenario(tmp_path, pki, upstream, attack)
        assert (reached, after) == ([], 200)   # h2 ends such a connection (PROTOCOL_ERROR): nothing is forwarded


class TestUnreadBodies:
    def test_a_denied_upload_is_stopped_with_rst_stream_no_error(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.send_headers(1, client.request_headers(port, "/x", method="DELETE"))   # the body never ends
            client.h2.send_data(1, b"y" * 1000)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamReset) for e in events))
            status = next((dict(e.headers)[":status"] for e in client.events if isinstance(e, ResponseReceived)), None)
            reset = next((e.error_code for e in client.events if isinstance(e, StreamReset)), None)
            client.close()
            return status, reset

        (status, reset), after, _ = scenario(tmp_path, pki, upstream, attack)
        assert (status, reset, after) == ("403", ErrorCodes.NO_ERROR, 200)


class TestControlFloods:
    def test_a_ping_flood_from_a_client_that_never_reads_is_dropped(self, tmp_path, pki, upstream):
        async def attack(proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            ping = PingFrame(0, opaque_data=b"12345678").serialize()
            batch = ping * 4096
            sent = 0
            try:
                while sent < 64 * 1024 * 1024:   # 64 MB of PINGs would be 64 MB of acks queued
                    client.writer.write(batch)
                    await asyncio.wait_for(client.writer.drain(), 10)
                    sent += len(batch)
            except (ConnectionError, asyncio.TimeoutError):
                pass
            closed = await client.closed(timeout=5)
            client.close()
            return sent, closed

        (sent, closed), after, _ = scenario(tmp_path, pki, upstream, attack)
        assert closed and after == 200
        # Cut off after a few MB (4 MiB of acks queued, plus the kernel's buffers); without the bound the
        # proxy went on queueing acks (30 MB before TLS backpressure stalled the sender).
        assert sent < 16 * 1024 * 1024
