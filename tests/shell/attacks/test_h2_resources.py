"""Attack class: HTTP/2 resources. Resets the client provokes the proxy into sending (MadeYouReset,
CVE-2025-8671) count as the client's own; control-frame floods and window overflows end the
connection, not the proxy; thousands of streams (answered, denied, reset, vanished) leave no file
descriptor or task behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from typing import Any

import httpx
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, DataReceived
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, SettingsFrame, WindowUpdateFrame

from policyproxy.proxy import h2_server
from tests.shell.attacks.h2_client import RawClient, attack_with, ended, status_of

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


def goaway_code(client: RawClient) -> Any:
    goaway = client.goaway()
    return None if goaway is None else goaway.error_code


def terminated(events: list[Any]) -> bool:
    return any(isinstance(e, ConnectionTerminated) for e in events)


async def raw_goaway(client: RawClient, timeout: float = 10) -> tuple[Any, bool]:
    """Read frames as they come (the client's h2 state is not consulted) until EOF: the GOAWAY's
    error code, if one came, and whether the proxy closed the connection."""
    data, closed = b"", False
    try:
        while chunk := await asyncio.wait_for(client.reader.read(65536), timeout):
            data += chunk
        closed = True
    except ConnectionError:
        closed = True
    except asyncio.TimeoutError:
        pass
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if isinstance(frame, GoAwayFrame):
            frame.parse_body(view[9:9 + length])
            return ErrorCodes(frame.error_code), closed
        view = view[9 + length:]
    return None, closed


def sockets_to(port: int) -> set[str]:
    """Inodes of this process's TCP sockets with ``port`` at either end."""
    inodes = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
                if port in (local, remote):
                    inodes.add(fields[9])
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                mine.add(link)
    return mine


class TestProvokedResets:
    """The client makes the proxy reset streams (RST_STREAM STREAM_CLOSED / FLOW_CONTROL_ERROR), so
    the streams stop counting against the concurrency limit while their work would go on."""

    def provoked(self, tmp_path, pki, upstream, provoke: Any) -> Any:
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            await client.pump(lambda events: False, timeout=0.3)
            before = len([r for r in upstream.requests if r["path"] == "/provoked"])
            encoder = Encoder()   # raw frames: the client's h2 would refuse past 100 streams it thinks open
            for n in range(h2_server.MAX_RESETS + 50):
                sid = 2 * n + 1
                head = HeadersFrame(sid, encoder.encode(client.request_headers(port, "/provoked")),
                                    flags=["END_HEADERS", "END_STREAM"])
                client.writer.write(head.serialize() + provoke(sid))
            code, closed = await raw_goaway(client)
            client.close()
            reached = len([r for r in upstream.requests if r["path"] == "/provoked"]) - before
            return code, closed, reached

        return attack_with(tmp_path, pki, upstream, CONFIG, attack)

    def test_data_after_end_stream_counts_as_a_reset(self, tmp_path, pki, upstream):
        (code, closed, reached), after, _ = self.provoked(
            tmp_path, pki, upstream, lambda sid: DataFrame(sid, b"x").serialize())
        assert (code, closed, after) == (ErrorCodes.ENHANCE_YOUR_CALM, True, 200)
        assert reached <= h2_server.MAX_RESETS + 50

    def test_stream_window_overflow_counts_as_a_reset(self, tmp_path, pki, upstream):
        def overflow(sid: int) -> bytes:
            return WindowUpdateFrame(sid, window_increment=2**31 - 1).serialize() * 2

        (code, closed, _), after, _ = self.provoked(tmp_path, pki, upstream, overflow)
        assert (code, closed, after) == (ErrorCodes.ENHANCE_YOUR_CALM, True, 200)


class TestControlFrames:
    def test_connection_window_overflow_is_goaway_flow_control_error(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.writer.write(WindowUpdateFrame(0, window_increment=2**31 - 1).serialize() * 2)
            await client.pump(terminated)
            closed = await client.closed()
            client.close()
            return goaway_code(client), closed

        (code, closed), after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack)
        assert (code, closed, after) == (ErrorCodes.FLOW_CONTROL_ERROR, True, 200)

    def test_a_settings_flood_from_a_client_that_never_reads_is_dropped(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            frame = SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 65535,
                                               SettingCodes.MAX_FRAME_SIZE: 16384}).serialize()
            batch = frame * 4096
            sent = 0
            try:
                while sent < 64 * 1024 * 1024:
                    client.writer.write(batch)
                    await asyncio.wait_for(client.writer.drain(), 10)
                    sent += len(batch)
            except (ConnectionError, asyncio.TimeoutError):
                pass
            closed = await client.closed(timeout=5)
            client.close()
            return sent, closed

        (sent, closed), after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack)
        assert closed and after == 200 and sent < 32 * 1024 * 1024

    def test_a_zero_initial_window_stalls_only_that_client(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})
            for sid in (1, 3, 5):
                client.h2.send_headers(sid, client.request_headers(port, "/sse?n=50&interval=0"), end_stream=True)
            client.flush()
            await client.pump(lambda events: False, timeout=1.5)
            got = sum(len(e.data) for e in client.events if isinstance(e, DataReceived))
            statuses = [status_of(client, sid) for sid in (1, 3, 5)]
            client.close()
            return got, statuses

        (got, statuses), after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack)
        assert got == 0 and statuses == ["200"] * 3 and after == 200


class TestStreamChurn:
    def test_two_thousand_streams_leave_no_fd_or_task_behind(self, tmp_path, pki, upstream):
        """Answered, denied, reset-mid-answer and abandoned-with-the-connection streams, 2,000 in all."""

        def fds() -> int:
            """Open fds of this process, without the upstream keep-alive pool (both of its ends live here:
            the test upstream runs in a thread): what the proxy's clients leave behind."""
            return len(os.listdir("/proc/self/fd")) - len(sockets_to(upstream.tls_port))

        async def batch(proxy_port: int, port: int, ca: str, index: int) -> None:
            client = await RawClient.open(proxy_port, port, ca)
            sids = []
            for n in range(50):
                sid = client.h2.get_next_available_stream_id()
                method, path = [("GET", "/churn"), ("DELETE", "/denied"), ("GET", "/sse?n=40&interval=0.01"),
                                ("POST", "/churn")][n % 4]
                client.h2.send_headers(sid, client.request_headers(port, path, method), end_stream=method != "POST")
                if method == "POST":
                    client.h2.send_data(sid, b"b" * 100, end_stream=True)
                sids.append(sid)
            client.flush()
            await client.pump(lambda events: sum(isinstance(e, DataReceived) for e in events) >= 20)
            for sid in sids[2::4][:5]:   # some server streams are reset mid-answer
                if client.h2.streams.get(sid) is not None and not client.h2.streams[sid].closed:
                    client.h2.reset_stream(sid, ErrorCodes.CANCEL)
            client.flush()
            if index % 2:
                await client.pump(ended(*[s for s in sids if s not in sids[2::4][:5]]), timeout=20)
                client.close()
            else:   # the other half vanish with their streams open
                client.writer.transport.abort()

        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            trust = ssl.create_default_context(cafile=ca)
            async with httpx.AsyncClient(http2=True, proxy=f"http://127.0.0.1:{proxy_port}", verify=trust) as c:
                await c.get(f"https://api.github.com:{port}/warm")
            await asyncio.sleep(0.5)
            fds_before, tasks_before = fds(), len(asyncio.all_tasks())
            for wave in range(4):   # 4 waves x 10 connections x 50 streams
                await asyncio.gather(*(batch(proxy_port, port, ca, wave * 10 + i) for i in range(10)))
            for _ in range(50):   # the abandoned streams' upstream answers end within a second or two
                await asyncio.sleep(0.2)
                if fds() <= fds_before + 4 and len(asyncio.all_tasks()) <= tasks_before:
                    break
            return fds_before, fds(), tasks_before, len(asyncio.all_tasks()), len([s for s in server.context.registry.servers if getattr(s, "http2", None) is None and not getattr(s, "closed", True)])

        (fds_before, fds_after, tasks_before, tasks_after, _servers), after, events = attack_with(
            tmp_path, pki, upstream, CONFIG, attack)
        assert after == 200
        assert fds_after <= fds_before + 4, (fds_before, fds_after)
        assert tasks_after <= tasks_before, (tasks_before, tasks_after)
        assert len(events) >= 2000


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class TestTinyFrames:
    @staticmethod
    def stalled_upstream() -> socket.socket:
        """An upstream the kernel accepts and nobody reads: the proxy never pulls the body."""
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        return hole

    def test_empty_data_frames_to_a_stalled_upstream_hold_nothing(self, tmp_path, pki, upstream):
        """Zero-length DATA frames are outside flow control (CVE-2019-9518): each was held as an entry."""
        hole = self.stalled_upstream()
        stalled = hole.getsockname()[1]

        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, stalled, ca)
            client.h2.send_headers(1, client.request_headers(stalled, "/upload", "POST"))
            client.h2.send_data(1, b"first")
            client.flush()
            before = rss_mb()
            empty = DataFrame(1, b"").serialize() * 50_000
            for _ in range(12):
                client.writer.write(empty)
                await client.writer.drain()
            await client.pump(lambda events: False, timeout=1.5)
            streams = [s for h2 in server.context.registry.servers for s in getattr(h2, "streams", {}).values()]
            entries = sum(len(s.received) for s in streams)
            grown = rss_mb() - before
            client.close()
            return len(streams), entries, grown

        try:
            (streams, entries, grown), after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack,
                                                              pins_extra=(("api.github.com", stalled),), connect_timeout=30.0)
        finally:
            hole.close()
        assert streams == 1 and after == 200
        assert entries <= 2 and grown < 20, (entries, grown)

    def test_one_byte_data_frames_to_a_stalled_upstream_hold_about_the_window(self, tmp_path, pki, upstream):
        """Flow control bounds the bytes a client may send unread (1 MiB a connection), but the proxy
        held one object per DATA frame: a window filled with 1-byte frames cost ~130 bytes of memory per
        byte (~120 MB for four connections here). Merged, it costs about the window."""
        hole = self.stalled_upstream()
        stalled = hole.getsockname()[1]

        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            before = rss_mb()
            clients = []
            for _ in range(4):
                client = await RawClient.open(proxy_port, stalled, ca)
                await client.pump(lambda events: False, timeout=0.2)   # the proxy's windows
                for sid in (1, 3, 5, 7):
                    client.h2.send_headers(sid, client.request_headers(stalled, "/upload", "POST"))
                client.flush()
                for sid in (1, 3, 5, 7):
                    client.writer.write(DataFrame(sid, b"q").serialize() * client.h2.local_flow_control_window(sid))
                await client.writer.drain()
                clients.append(client)
            await asyncio.sleep(1.0)
            streams = [s for h2 in server.context.registry.servers for s in getattr(h2, "streams", {}).values()]
            held = sum(len(entry[0]) for s in streams for entry in s.received)
            grown = rss_mb() - before
            for client in clients:
                client.close()
            return len(streams), held, grown

        try:
            (streams, held, grown), after, _events = attack_with(tmp_path, pki, upstream, CONFIG, attack,
                                                           pins_extra=(("api.github.com", stalled),), connect_timeout=30.0)
        finally:
            hole.close()
        assert streams >= 8 and held > 400_000 and after == 200, [e[:3] for e in _events]   # bodies were held, unread
        assert grown < 48, f"{grown:.0f} MB for {held} bytes held"


class TestHeaderCompression:
    def test_a_huge_header_table_size_does_not_make_the_proxy_keep_every_answer_field(self, tmp_path, pki, upstream):
        """SETTINGS_HEADER_TABLE_SIZE is what the client allows the proxy's encoder, not what the proxy
        must keep: taken as offered (1 GiB here), each denied answer's ``x-policyproxy-rule`` (naming the
        path) stayed in the connection's HPACK table, ~300 bytes a request, for the connection's life."""
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 2**30})
            client.flush()
            await client.pump(lambda events: False, timeout=0.3)   # the proxy's ACK
            for n in range(60):
                sid = client.h2.get_next_available_stream_id()
                client.h2.send_headers(sid, client.request_headers(port, f"/unique/{n}/" + "p" * 200, "DELETE"),
                                       end_stream=True)
            client.flush()
            await client.pump(lambda events: False, timeout=1.5)
            tables = [h2.h2.encoder.header_table for h2 in server.context.registry.servers
                      if getattr(h2, "h2", None) is not None and not h2.closed]
            client.close()
            return [(table.maxsize, table._current_size) for table in tables]

        tables, after, events = attack_with(tmp_path, pki, upstream, CONFIG, attack)
        assert after == 200 and len([e for e in events if e[1] == 403]) >= 30   # the denials were answered
        assert tables and all(maxsize <= 4096 and size <= 4096 for maxsize, size in tables), tables
