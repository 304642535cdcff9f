"""The forward pipeline against the ``Upstream`` seam as a plain recording function (a real client
socket in front): what it is asked to send, the answer the client gets for each error of the tree,
and exactly one event per request."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
from typing import Any

import pytest

from policyproxy.errors import UpstreamError, UpstreamTimeout, UpstreamTLSError, UpstreamUnreachable
from policyproxy.proxy.h1_server import H1Listener
from policyproxy.proxy.handlers import h1_plain_handler
from policyproxy.proxy.listeners import HttpEntry
from tests.proxy.harness import build

CONFIG = """
[permissions.t.network.domains]
"a.test" = "allow"
[permissions.t.network.mitm.hooks.h]
host = "a.test"
methods = ["GET"]
path_prefixes = ["/hooked/"]
action = ["inject"]
allow_plaintext_secrets = true
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "x-api-key"
secret_env_var = "KEY"
"""


class FailingUpstream:
    def __init__(self, error: UpstreamError) -> None:
        self.error = error
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    async def send(self, method: str, url: Any, headers: list[tuple[str, str]], data: Any,
                   proxy: str | None) -> Any:
        self.sent.append((method, str(url), {k.lower(): v for k, v in headers}))
        raise self.error


def exchange(tmp_path, error: UpstreamError, path: str) -> tuple[bytes, list[Any], FailingUpstream]:
    async def run() -> tuple[bytes, list[Any], FailingUpstream]:
        server = build(tmp_path, CONFIG, env={"KEY": "canary-key-9"},
                       pins={("a.test", 80): ipaddress.ip_address("93.184.216.34")})
        upstream = FailingUpstream(error)
        ctx = dataclasses.replace(server.context, upstream=upstream)
        events: list[Any] = []
        ctx.reporter.sinks.append(lambda decision, outcome: events.append((decision.reason.value, outcome.status)))
        plain = H1Listener(h1_plain_handler(ctx), ctx.heads, 5, 5, 64 * 1024)
        listener = await asyncio.get_running_loop().create_server(lambda: HttpEntry(ctx, plain), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(f"GET http://a.test{path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        listener.close()
        await plain.shutdown(1)
        return answer, events, upstream

    return asyncio.run(run())


@pytest.mark.parametrize(("error", "status"), [
    (UpstreamUnreachable("cannot connect to a.test:80: refused"), 502),
    (UpstreamTLSError("TLS with a.test failed: bad"), 502),
    (UpstreamTimeout("a.test:80 did not answer in time"), 504),
])
def test_each_upstream_error_is_its_status_and_one_event(tmp_path, error, status):
    answer, events, upstream = exchange(tmp_path, error, "/hooked/x")
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"x-proxy-error: upstream-error" in answer.lower() and error.message.encode() in answer
    assert events == [("hook_matched", status)]
    method, url, headers = upstream.sent[0]
    assert (method, url) == ("GET", "http://a.test/hooked/x")
    assert headers["x-api-key"] == "canary-key-9" and headers["host"] == "a.test"
    assert b"canary" not in answer


def test_a_denied_request_is_never_sent(tmp_path):
    answer, events, upstream = exchange(tmp_path, UpstreamTimeout("x"), "/other")
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["reason"] == "mitm_hook_denied"
    assert events == [("mitm_hook_denied", 403)] and upstream.sent == []
