"""Attack class: policy over HTTP/2 streams. A body the proxy must inspect and cannot (too big, split
across DATA frames, cut off) is refused on its stream and never forwarded; a reload in the middle of
a connection decides the next stream by the new policy; one event per stream, without the secret
the proxy injected."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from h2.errors import ErrorCodes
from h2.events import DataReceived, StreamReset

from policyproxy.policy.compile import compile_policy
from tests.helpers import provider, settings
from tests.shell.attacks.h2_client import RawClient, attack_with, ended, status_of

REDACTION = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
max_body_bytes = 4096
[permissions.r.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/"]
action = ["strip"]
[permissions.r.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""
EMAIL, AWS = "dana.kowalski@acme-corp.io", "AKIAZ7PQ3LXRN4TW2KJD"


def anthropic_headers(client: RawClient, port: int) -> list[tuple[str, str]]:
    return [(k, f"api.anthropic.com:{port}" if k == ":authority" else v)
            for k, v in client.request_headers(port, "/v1/messages", "POST", [("content-type", "application/json")])]


def llm_paths(upstream) -> list[str]:
    return [r["body"] for r in upstream.requests if r["path"] == "/v1/messages"]


class TestInspectedBodies:
    def test_a_body_over_the_limit_in_small_frames_is_refused_and_never_forwarded(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open_to(proxy_port, "api.anthropic.com", port, ca)
            before = len(llm_paths(upstream))
            body = json.dumps({"model": "m", "max_tokens": 5,
                               "messages": [{"role": "user", "content": f"{EMAIL} " + "x" * 20000}]}).encode()
            client.h2.send_headers(1, anthropic_headers(client, port))   # no content-length: only the frames tell
            for at in range(0, 12000, 1000):
                client.h2.send_data(1, body[at:at + 1000])
                client.flush()
            await client.pump(lambda events: any(isinstance(e, StreamReset) for e in events) or ended(1)(events))
            status = status_of(client, 1)
            client.h2.send_headers(3, client.request_headers(port, "/next"), end_stream=True)
            client.flush()
            await client.pump(ended(3))
            client.close()
            return status, status_of(client, 3), len(llm_paths(upstream)) - before

        (status, next_status, reached), after, _ = attack_with(tmp_path, pki, upstream, REDACTION, attack)
        assert status in ("403", "413") and next_status == "200" and reached == 0 and after == 200

    def test_a_secret_split_across_data_frames_is_redacted(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open_to(proxy_port, "api.anthropic.com", port, ca)
            body = json.dumps({"model": "m", "max_tokens": 5,
                               "messages": [{"role": "user", "content": f"mail {EMAIL} key {AWS}"}]}).encode()
            client.h2.send_headers(1, anthropic_headers(client, port))
            for at in range(len(body)):   # one byte a frame
                client.h2.send_data(1, body[at:at + 1], end_stream=at == len(body) - 1)
            client.flush()
            await client.pump(ended(1))
            answer = b"".join(e.data for e in client.events if isinstance(e, DataReceived) and e.stream_id == 1)
            client.close()
            return status_of(client, 1), answer

        (status, answer), after, _ = attack_with(tmp_path, pki, upstream, REDACTION, attack)
        assert status == "200" and after == 200
        sent = llm_paths(upstream)[-1]
        assert EMAIL not in sent and AWS not in sent and "[[EMAIL_" in sent
        assert json.loads(answer)["content"][0]["text"] == f"mail {EMAIL} key {AWS}"   # restored

    def test_a_body_cut_off_by_a_reset_is_never_forwarded(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open_to(proxy_port, "api.anthropic.com", port, ca)
            before = len(llm_paths(upstream))
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": EMAIL}]}).encode()
            client.h2.send_headers(1, anthropic_headers(client, port))
            client.h2.send_data(1, body[:-3])
            client.flush()
            await asyncio.sleep(0.3)
            client.h2.reset_stream(1, ErrorCodes.CANCEL)
            client.h2.send_headers(3, client.request_headers(port, "/next"), end_stream=True)
            client.flush()
            await client.pump(ended(3))
            await asyncio.sleep(0.3)
            client.close()
            return status_of(client, 3), len(llm_paths(upstream)) - before

        (next_status, reached), after, _ = attack_with(tmp_path, pki, upstream, REDACTION, attack)
        assert (next_status, reached, after) == ("200", 0, 200)

    def test_a_client_vanishing_mid_upload_is_reported_once_and_nothing_is_forwarded(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open_to(proxy_port, "api.anthropic.com", port, ca)
            before = len(llm_paths(upstream))
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": EMAIL}]}).encode()
            client.h2.send_headers(1, anthropic_headers(client, port))
            client.h2.send_data(1, body[:-3])
            client.flush()
            await asyncio.sleep(0.3)
            client.writer.transport.abort()
            await asyncio.sleep(0.5)
            return len(llm_paths(upstream)) - before

        reached, after, events = attack_with(tmp_path, pki, upstream, REDACTION, attack)
        assert (reached, after) == (0, 200)
        assert [path for _, _, path, _ in events].count("/v1/messages") == 1


HOOKED = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
action = ["inject"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "authorization"
secret_env_var = "H2_POLICY_TOKEN"
prefix = "Bearer "
"""
TOKEN = "ghp_h2_policy_canary_40411"


class TestReloadMidConnection:
    def test_the_next_stream_on_an_open_connection_gets_the_new_policy(self, tmp_path, pki, upstream):
        tighter = HOOKED.replace('path_prefixes = ["/repos/myorg/"]', 'path_prefixes = ["/repos/other/"]')

        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.send_headers(1, client.request_headers(port, "/repos/myorg/a"), end_stream=True)
            client.h2.send_headers(3, client.request_headers(port, "/sse?n=1"), end_stream=True)   # not hooked
            client.flush()
            await client.pump(ended(1, 3))
            new = settings(tmp_path / "new", tighter)
            server.reload(new, compile_policy(new), provider(new, {"H2_POLICY_TOKEN": TOKEN}))
            client.h2.send_headers(5, client.request_headers(port, "/repos/myorg/a"), end_stream=True)
            client.flush()
            await client.pump(ended(5))
            client.close()
            return [status_of(client, sid) for sid in (1, 3, 5)]

        (tmp_path / "new").mkdir()
        statuses, after, _ = attack_with(tmp_path, pki, upstream, HOOKED, attack, {"H2_POLICY_TOKEN": TOKEN})
        assert statuses == ["200", "403", "403"] and after == 403   # /after: not hooked


class TestEvents:
    def test_one_event_per_stream_and_never_the_injected_secret(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            for n in range(10):
                client.h2.send_headers(2 * n + 1, client.request_headers(port, f"/repos/myorg/e{n}"), end_stream=True)
            client.h2.send_headers(21, client.request_headers(port, "/denied"), end_stream=True)
            client.flush()
            await client.pump(ended(*range(1, 22, 2)))
            client.close()
            await asyncio.sleep(0.2)

        _, after, events = attack_with(tmp_path, pki, upstream, HOOKED, attack, {"H2_POLICY_TOKEN": TOKEN})
        assert after == 403   # /after: not hooked
        paths = sorted(path for _, _, path, _ in events if path)
        assert paths == sorted([*(f"/repos/myorg/e{n}" for n in range(10)), "/denied", "/after"])
        assert TOKEN not in repr(events)   # the decisions and outcomes the sinks were given
        reached = [r for r in upstream.requests if r["path"].startswith("/repos/myorg/e")]
        assert all(dict((k.lower(), v) for k, v in r["headers"])["authorization"] == f"Bearer {TOKEN}"
                   for r in reached)
