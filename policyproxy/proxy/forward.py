"""HTTP requests the proxy can see (plain, gateway, inside interception): decide, edit, stream.

One ``forward`` serves all three; what differs is how the target is read from the request.
Bodies stream both ways (``iter_any`` into ``StreamResponse.write``, which awaits drain).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from policyproxy.policy.hosts import normalize_host
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.proxy import websocket
from policyproxy.proxy.headers import host_header, request_headers, response_headers
from policyproxy.reasons import Protocol
from policyproxy.responses import block_answer

if TYPE_CHECKING:
    from policyproxy.proxy.app import ProxyApp

SKIP_AUTO = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


@dataclass(frozen=True)
class Tunnel:
    """What an intercepted connection was opened for."""

    host: str           # as the client named it (CONNECT authority or SOCKS5 address)
    port: int
    scheme: str         # "https" after TLS interception, "http" for plain HTTP over SOCKS5
    trusted: bool       # operator-pinned
    client: str
    connection_id: str


def text_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=f"policyproxy: {message}\n",
                        headers={"x-proxy-error": "upstream-error" if status >= 500 else "bad-request"})


def client_address(request: web.BaseRequest) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else "unknown"


async def handle_plain(app: ProxyApp, request: web.BaseRequest) -> web.StreamResponse:
    """The HTTP listener: absolute-form ``http://`` requests, or ``/<route>/...`` gateway requests."""
    raw = request.raw_path
    if request.method == "CONNECT":
        return text_error(400, "CONNECT must be the first request on a connection")
    if raw.startswith("/"):
        return await _gateway(app, request, raw)
    parts = urlsplit(raw)
    if parts.scheme.lower() != "http":
        return text_error(400, f"absolute-form requests must be http:// (use CONNECT for {parts.scheme}://)")
    if parts.username is not None or parts.password is not None:
        return text_error(400, "URLs with user:password are refused")
    try:
        port = parts.port or 80
    except ValueError:
        return text_error(400, "invalid port in request URL")
    host = parts.hostname or ""
    header = request.headers.get("Host")
    if header is not None and not _same_authority(header, host, port, 80):
        return text_error(400, f"Host header {header!r} does not match the request URL")
    target = await app.target(host, port, Protocol.HTTP)
    return await forward(app, request, target, "http", parts.path or "/", parts.query, client_address(request))


async def _gateway(app: ProxyApp, request: web.BaseRequest, raw: str) -> web.StreamResponse:
    route, _, rest = raw[1:].partition("/")
    base = app.routes.get(route)
    if base is None:
        known = ", ".join(f"/{name}/" for name in app.routes)
        return text_error(400, f"this is a proxy: send absolute-form requests, CONNECT, or a gateway route ({known})")
    upstream = urlsplit(base)
    path, _, query = ("/" + rest).partition("?")
    scheme = upstream.scheme
    port = upstream.port or (443 if scheme == "https" else 80)
    target = await app.target(upstream.hostname or "", port, Protocol.GATEWAY, trusted=True)
    return await forward(app, request, target, scheme, upstream.path.rstrip("/") + path, query,
                         client_address(request))


async def handle_intercepted(app: ProxyApp, tunnel: Tunnel, request: web.BaseRequest) -> web.StreamResponse:
    if request.method == "CONNECT":
        return text_error(405, "CONNECT inside an intercepted tunnel is not allowed")
    raw = request.raw_path
    if not raw.startswith("/"):
        return text_error(400, "requests inside a tunnel must use origin-form targets")
    default = 443 if tunnel.scheme == "https" else 80
    header = request.headers.get("Host")
    if header is None or not _same_authority(header, tunnel.host, tunnel.port, default):
        return text_error(400, f"Host header {header!r} does not match the tunnel target {tunnel.host}")
    protocol = Protocol.HTTPS_MITM if tunnel.scheme == "https" else Protocol.HTTP
    target = await app.target(tunnel.host, tunnel.port, protocol, trusted=tunnel.trusted)
    path, _, query = raw.partition("?")
    return await forward(app, request, target, tunnel.scheme, path, query, tunnel.client, tunnel.connection_id)


async def forward(app: ProxyApp, request: web.BaseRequest, target: Target, scheme: str, path: str, query: str,
                  client: str, connection_id: str | None = None) -> web.StreamResponse:
    decision = app.policy.decide(target, Request(request.method, path, query, tuple(request.headers.items())))
    upgrade = websocket.is_upgrade(request)
    if decision.allowed and decision.redaction is not None and upgrade:
        refusal = websocket.refused(decision)
        app.report(refusal, client, 426, connection_id)
        return web.Response(status=426, text=f"policyproxy: {refusal.message}\n",
                            headers={"x-proxy-error": "blocked-by-policy"})
    if decision.allowed and decision.redaction is not None and request.body_exists:
        # Fail closed: a body this profile says must be inspected is never forwarded uninspected.
        decision = app.inspect(decision)
    if not decision.allowed:
        answer = block_answer(decision)
        app.report(decision, client, answer.status, connection_id)
        return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))
    if upgrade:
        default = 443 if scheme == "https" else 80
        url = URL.build(scheme=scheme, host=target.host.strip("[]"), port=target.port, path=decision.path or "/",
                        query_string=query, encoded=True)
        app.report(decision, client, 101, connection_id)
        return await websocket.relay(app, request, decision, url, host_header(target.host, target.port, default))
    try:
        response = await _stream(app, request, decision, target, scheme, query)
    except _UpstreamFailure as failure:
        app.report(decision, client, failure.status, connection_id)
        return text_error(failure.status, failure.message)
    app.report(decision, client, response.status, connection_id)
    return response


class _UpstreamFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _stream(app: ProxyApp, request: web.BaseRequest, decision: Decision, target: Target, scheme: str,
                  query: str) -> web.StreamResponse:
    default = 443 if scheme == "https" else 80
    url = URL.build(scheme=scheme, host=target.host.strip("[]"), port=target.port,
                    path=decision.path or "/", query_string=query, encoded=True)
    authority = host_header(target.host, target.port, default)
    headers = request_headers(request.headers.items(), decision.edits, authority)
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = request.content if request.body_exists else None
    try:
        upstream = await app.session.request(
            request.method, url, headers=headers, data=body, allow_redirects=False,
            skip_auto_headers=SKIP_AUTO, ssl=app.upstream_ssl if scheme == "https" else False,
            proxy=app.upstream_proxy(scheme, target.host))
    except aiohttp.ClientConnectorCertificateError as exc:
        why = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        raise _UpstreamFailure(502, f"upstream TLS certificate of {target.host} failed verification: {why}") from None
    except aiohttp.ClientSSLError as exc:
        raise _UpstreamFailure(502, f"TLS with {target.host} failed: {exc.__cause__ or exc}") from None
    except aiohttp.ClientConnectorError as exc:
        why = exc.strerror or exc.os_error
        raise _UpstreamFailure(502, f"cannot connect to {target.host}:{target.port}: {why}") from None
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise _UpstreamFailure(504, f"{target.host}:{target.port} did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise _UpstreamFailure(502, f"upstream {target.host} failed: {type(exc).__name__}") from None
    except ssl.SSLError as exc:
        raise _UpstreamFailure(502, f"TLS with {target.host} failed: {exc.reason}") from None
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        raw = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers)
        for name, value in response_headers(raw):
            response.headers.add(name, value)
        length = upstream.headers.get("Content-Length")
        no_body = request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
        if length is not None and length.isdigit() and not no_body:
            response.content_length = int(length)
        await response.prepare(request)
        if not no_body:
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, asyncio.TimeoutError):
                # The upstream broke mid-body: end the client's connection so it sees a truncation.
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        return response


def _same_authority(header: str, host: str, port: int, default_port: int) -> bool:
    """Whether a ``Host`` header names ``host:port`` (port omitted means the scheme's default)."""
    parts = urlsplit("//" + header.strip())
    try:
        header_port = parts.port or default_port
    except ValueError:
        return False
    if parts.username is not None or parts.path or parts.query or not parts.hostname:
        return False
    return normalize_host(parts.hostname) == normalize_host(host) and header_port == port
