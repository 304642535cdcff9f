"""gRPC through an intercepted host: HTTP/2 end to end (client -> proxy -> upstream), trailers
(``grpc-status``) relayed, a hook's injected metadata seen by the server, a denied call failing with
the proxy's 403 mapped by gRPC, one event per call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from tests.proxy.harness import pins, running

TOKEN = "grpc-injected-canary-7"
CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.rpc]
host = "api.github.com"
methods = ["POST"]
path_prefixes = ["/test.Echo/"]
action = ["inject"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "x-api-key"
secret_env_var = "RPC_KEY"
"""


def _key(context: grpc.ServicerContext) -> bytes:
    return dict(context.invocation_metadata()).get("x-api-key", "none").encode()


def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_trailing_metadata((("x-trailer", "kept"),))
    return b"echo:" + request + b" key:" + _key(context)


def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(int(request)):
        yield f"tick {i} ".encode() + b"x" * 40_000   # past one stream window in total
    context.set_trailing_metadata((("x-count", request.decode()),))


def failing(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "no such luck")
    return b""


@pytest.fixture(scope="module")
def grpc_server(pki) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(unary),
                "Stream": grpc.unary_stream_rpc_method_handler(stream),
                "Fail": grpc.unary_unary_rpc_method_handler(failing)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    credentials = grpc.ssl_server_credentials([(pki[2].read_bytes(), pki[1].read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port
    server.stop(0)


def calls(tmp_path, pki, port: int, body: Any, loop: str = "asyncio"
          ) -> tuple[Any, list[tuple[str, int | None, str | None]]]:
    """Run ``body(channel)`` on a gRPC channel through the proxy; (its result, the proxy's events)."""
    async def scenario() -> tuple[Any, list[tuple[str, int | None, str | None]]]:
        events: list[tuple[str, int | None, str | None]] = []
        async with running(tmp_path, CONFIG, env={"RPC_KEY": TOKEN}, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com",), port)) as server:
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status, d.path)))
            roots = (tmp_path / "ca" / "ca.pem").read_bytes()
            options = [("grpc.http_proxy", f"http://127.0.0.1:{server.addresses['http'][1]}"),
                       ("grpc.enable_http_proxy", 1)]

            def run() -> Any:
                with grpc.secure_channel(f"api.github.com:{port}", grpc.ssl_channel_credentials(roots),
                                         options=options) as channel:
                    return body(channel)

            result = await asyncio.to_thread(run)
            await asyncio.sleep(0.1)
        return result, events

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(scenario())
    return asyncio.run(scenario())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_grpc_unary_call_through_interception(tmp_path, pki, grpc_server, loop):
    def body(channel: grpc.Channel) -> Any:
        call = channel.unary_unary("/test.Echo/Unary")
        return call.with_call(b"hello", timeout=20)

    (answer, call), events = calls(tmp_path, pki, grpc_server, body, loop)
    assert answer == b"echo:hello key:" + TOKEN.encode()   # the hook's header reached the server
    assert call.code() is grpc.StatusCode.OK                # grpc-status came back in the trailers
    assert ("x-trailer", "kept") in call.trailing_metadata()
    assert [e for e in events if e[2] is not None] == [("hook_matched", 200, "/test.Echo/Unary")]


def test_grpc_server_streaming_call_through_interception(tmp_path, pki, grpc_server):
    def body(channel: grpc.Channel) -> Any:
        call = channel.unary_stream("/test.Echo/Stream")(b"20", timeout=20)
        return [bytes(m) for m in call], call.code(), call.trailing_metadata()

    (messages, code, trailers), events = calls(tmp_path, pki, grpc_server, body)
    assert [m.partition(b" ")[2].partition(b" ")[0] for m in messages] == [str(i).encode() for i in range(20)]
    assert all(len(m) > 40_000 for m in messages)
    assert code is grpc.StatusCode.OK and ("x-count", "20") in trailers
    assert [e for e in events if e[2] is not None] == [("hook_matched", 200, "/test.Echo/Stream")]


def test_grpc_error_status_in_trailers_reaches_the_client(tmp_path, pki, grpc_server):
    def body(channel: grpc.Channel) -> Any:
        try:
            channel.unary_unary("/test.Echo/Fail")(b"x", timeout=20)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        return None

    (code, details), _ = calls(tmp_path, pki, grpc_server, body)
    assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED, "no such luck")


def test_grpc_call_the_policy_denies_fails_without_reaching_the_server(tmp_path, pki, grpc_server):
    def body(channel: grpc.Channel) -> Any:
        try:
            channel.unary_unary("/other.Service/Call")(b"x", timeout=20)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        return None

    (code, details), events = calls(tmp_path, pki, grpc_server, body)
    # gRPC maps an HTTP 403 without grpc-status to PERMISSION_DENIED.
    assert code is grpc.StatusCode.PERMISSION_DENIED, details
    assert [e for e in events if e[2] is not None] == [("mitm_hook_denied", 403, "/other.Service/Call")]


def test_grpc_large_request_and_answer_pass_every_window(tmp_path, pki, grpc_server):
    payload = bytes(range(256)) * 6000   # 1.5 MB each way: many stream and connection windows

    def body(channel: grpc.Channel) -> Any:
        return channel.unary_unary("/test.Echo/Unary")(payload, timeout=30)

    answer, _ = calls(tmp_path, pki, grpc_server, body)
    assert answer == b"echo:" + payload + b" key:" + TOKEN.encode()
