"""Attack class: HTTP/2 spellings. A stream names its target and its fields in ways HTTP/1.1 cannot
(``:authority`` beside ``host``, cookie crumbs, lower-case names only): each is decided, hooked and
forwarded exactly as the one HTTP/1.1 spelling would be, and a stream that names another host on a
connection intercepted for a hooked one (connection coalescing) never borrows that connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from h2.events import ConnectionTerminated, StreamEnded, StreamReset

from tests.shell.attacks.h2_client import RawClient, attack_with, ended, status_of

TOKEN = "h2-spelling-canary-5521"
CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET", "POST"]
path_prefixes = ["/"]
action = ["strip", "inject"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie", "x-agent-key"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "x-api-key"
secret_env_var = "H2_SPELLING_TOKEN"
"""
ENV = {"H2_SPELLING_TOKEN": TOKEN}


def seen(upstream, path: str) -> list[dict]:
    return [r for r in upstream.requests if r["path"] == path]


class TestConnectionCoalescing:
    def test_a_stream_naming_another_host_is_refused_and_the_connection_goes_on(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            other = [(k, f"upstream.test:{port}" if k == ":authority" else v)
                     for k, v in client.request_headers(port, "/coalesced")]
            client.h2.send_headers(1, other, end_stream=True)
            client.h2.send_headers(3, client.request_headers(port, "/own"), end_stream=True)
            client.flush()
            await client.pump(ended(1, 3))
            client.close()
            return status_of(client, 1), status_of(client, 3)

        (coalesced, own), after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert coalesced in ("400", "421") and own == "200" and after == 200
        assert seen(upstream, "/coalesced") == []
        assert [dict((k.lower(), v) for k, v in r["headers"])["x-api-key"] for r in seen(upstream, "/own")][-1] == TOKEN

    def test_a_host_field_without_authority_naming_another_host_is_refused(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False
            headers = [(":method", "GET"), (":scheme", "https"), (":path", "/hostonly"),
                       ("host", f"upstream.test:{port}")]
            client.h2.send_headers(1, headers, end_stream=True)
            client.flush()
            await client.pump(lambda events: ended(1)(events) or any(isinstance(e, ConnectionTerminated)
                                                                    for e in events))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert status in (None, "400", "421") and after == 200
        assert seen(upstream, "/hostonly") == []


class TestFieldSpellings:
    def test_cookie_crumbs_are_all_stripped(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            crumbs = [("cookie", "a=1"), ("x-other", "keep"), ("cookie", "session=secret-crumb"), ("cookie", "c=3")]
            client.h2.send_headers(1, client.request_headers(port, "/crumbs", extra=crumbs), end_stream=True)
            client.flush()
            await client.pump(ended(1))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert (status, after) == ("200", 200)
        request = seen(upstream, "/crumbs")[-1]
        assert "cookie" not in [k.lower() for k, _ in request["headers"]]
        assert "secret-crumb" not in json.dumps(request)

    def test_an_injected_header_the_client_already_sent_reaches_the_upstream_once(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            mine = [("x-api-key", "agent-chosen"), ("x-api-key", "agent-second")]
            client.h2.send_headers(1, client.request_headers(port, "/dup", extra=mine), end_stream=True)
            client.flush()
            await client.pump(ended(1))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert (status, after) == ("200", 200)
        values = [v for k, v in seen(upstream, "/dup")[-1]["headers"] if k.lower() == "x-api-key"]
        assert values == [TOKEN]

    def test_upper_case_field_names_end_the_connection_before_anything_is_forwarded(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False
            client.h2.config.normalize_outbound_headers = False
            client.h2.send_headers(1, client.request_headers(port, "/upper", extra=[("X-Agent-Key", "k")]),
                                   end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, (ConnectionTerminated, StreamEnded, StreamReset))
                                                 for e in events))
            client.close()
            return client.goaway()

        goaway, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert goaway is not None and after == 200
        assert seen(upstream, "/upper") == []

    def test_connection_specific_fields_never_reach_the_upstream(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False
            for sid, field in ((1, ("connection", "close")), (3, ("transfer-encoding", "chunked")),
                               (5, ("upgrade", "websocket")), (7, ("keep-alive", "1")), (9, ("te", "gzip"))):
                client.h2.send_headers(sid, client.request_headers(port, f"/conn{sid}", extra=[field]),
                                       end_stream=True)
            client.flush()
            await client.pump(lambda events: any(isinstance(e, ConnectionTerminated) for e in events))
            client.close()
            return client.goaway()

        _, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert after == 200
        assert [r for r in upstream.requests if r["path"].startswith("/conn")] == []

    def test_te_trailers_is_accepted_as_grpc_clients_send_it(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.send_headers(1, client.request_headers(port, "/te", extra=[("te", "trailers")]),
                                   end_stream=True)
            client.flush()
            await client.pump(ended(1))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert (status, after) == ("200", 200)


class TestRequestSmuggling:
    """HTTP/2 to HTTP/1.1: a second ``content-length`` (or a list, or a sign) would let the upstream read
    fewer bytes than the proxy sends, and the rest become a request of the client's choosing."""

    def test_a_disagreeing_content_length_never_reaches_the_upstream(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            smuggled = f"GET /smuggled HTTP/1.1\r\nHost: api.github.com:{port}\r\n\r\n".encode()
            body = b"abcd" + smuggled
            statuses = []
            for lengths in ([("content-length", "4"), ("content-length", str(len(body)))],
                            [("content-length", str(len(body))), ("content-length", "4")],
                            [("content-length", f"4, {len(body)}")], [("content-length", f"+{len(body)}")]):
                client = await RawClient.open(proxy_port, port, ca)
                client.h2.config.validate_outbound_headers = False
                client.h2.send_headers(1, client.request_headers(port, "/smuggler", "POST", lengths))
                client.h2.send_data(1, body, end_stream=True)
                client.flush()
                await client.pump(lambda events: ended(1)(events) or any(isinstance(e, ConnectionTerminated)
                                                                        for e in events))
                statuses.append(status_of(client, 1))
                client.close()
            await asyncio.sleep(0.3)
            return statuses

        statuses, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert statuses == [None] * 4 and after == 200
        assert seen(upstream, "/smuggler") == [] and seen(upstream, "/smuggled") == []


class TestAuthoritySpellings:
    @pytest.mark.parametrize("authority", ["user:pw@api.github.com:{port}", "api.github.com:{port}@upstream.test:{port}",
                                           "api.github.com:{port}:{port}", "upstream.test:{port}#api.github.com",
                                           "api.github.com:0{port}", "127.0.0.1:{port}"])
    def test_an_authority_that_is_not_the_tunnel_host_is_refused(self, tmp_path, pki, upstream, authority):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False
            headers = [(k, authority.format(port=port) if k == ":authority" else v)
                       for k, v in client.request_headers(port, "/odd-authority")]
            client.h2.send_headers(1, headers, end_stream=True)
            client.flush()
            await client.pump(lambda events: ended(1)(events) or any(isinstance(e, ConnectionTerminated)
                                                                    for e in events))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert status in (None, "400", "421") and after == 200
        assert seen(upstream, "/odd-authority") == []

    def test_proxy_headers_sent_inside_the_tunnel_never_reach_the_upstream(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            extra = [("proxy-authorization", "Basic c2VjcmV0"), ("proxy-foo", "agent-value")]
            client.h2.send_headers(1, client.request_headers(port, "/proxy-fields", extra=extra), end_stream=True)
            client.flush()
            await client.pump(ended(1))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert (status, after) == ("200", 200)
        request = seen(upstream, "/proxy-fields")[-1]
        assert not [k for k, _ in request["headers"] if k.lower().startswith("proxy-")]


class TestPseudoHeaders:
    @pytest.mark.parametrize("shape", ["duplicate-path", "duplicate-authority", "missing-path", "missing-method",
                                       "missing-scheme", "pseudo-after-regular", "unknown-pseudo", "empty-path",
                                       "status-in-request"])
    def test_a_malformed_pseudo_header_set_forwards_nothing(self, tmp_path, pki, upstream, shape):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.config.validate_outbound_headers = False
            base = client.request_headers(port, "/pseudo-ok")
            headers = {
                "duplicate-path": [*base, (":path", "/pseudo-other")],
                "duplicate-authority": [*base, (":authority", f"upstream.test:{port}")],
                "missing-path": [h for h in base if h[0] != ":path"],
                "missing-method": [h for h in base if h[0] != ":method"],
                "missing-scheme": [h for h in base if h[0] != ":scheme"],
                "pseudo-after-regular": [*base[:3], ("x-a", "1"), base[3]],
                "unknown-pseudo": [*base, (":protocol", "websocket")],
                "empty-path": [(k, "" if k == ":path" else v) for k, v in base],
                "status-in-request": [*base, (":status", "200")],
            }[shape]
            client.h2.send_headers(1, headers, end_stream=True)
            client.flush()
            await client.pump(lambda events: ended(1)(events) or any(isinstance(e, ConnectionTerminated)
                                                                    for e in events))
            client.close()
            return status_of(client, 1)

        status, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, ENV)
        assert status in (None, "400", "405") and after == 200
        assert seen(upstream, "/pseudo-ok") == [] and seen(upstream, "/pseudo-other") == []
