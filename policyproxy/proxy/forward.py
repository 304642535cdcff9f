"""HTTP requests the proxy can see (plain, gateway, inside interception): decide, edit, stream.

One ``forward`` serves all three; what differs is how the target is read from the request.
Bodies stream both ways (``iter_any`` into ``StreamResponse.write``, which awaits drain).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from policyproxy.config.schema import ResponseScanning
from policyproxy.policy.hosts import normalize_host
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.proxy import websocket
from policyproxy.proxy.headers import host_header, proxy_user, request_headers, response_headers
from policyproxy.reasons import Protocol
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.restore import ResponseScan, StreamRestorer, restore_body
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
    client: str         # the client's address (events)
    connection_id: str
    identity: str | None = None   # the proxy-auth user, when there is one (redaction scope)


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
    identity = None
    if app.options.proxy_credentials is not None:
        identity = proxy_user(request.headers.get("Proxy-Authorization"), app.options.proxy_credentials)
        if identity is None:
            return web.Response(status=407, text="policyproxy: proxy authentication required\n",
                                headers={"Proxy-Authenticate": 'Basic realm="policyproxy"'})
    if raw.startswith("/"):
        return await _gateway(app, request, raw, identity)
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
    return await forward(app, request, target, "http", parts.path or "/", parts.query, client_address(request),
                         identity=identity)


async def _gateway(app: ProxyApp, request: web.BaseRequest, raw: str, identity: str | None) -> web.StreamResponse:
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
                         client_address(request), identity=identity)


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
    return await forward(app, request, target, tunnel.scheme, path, query, tunnel.client, tunnel.connection_id,
                         tunnel.identity)


async def forward(app: ProxyApp, request: web.BaseRequest, target: Target, scheme: str, path: str, query: str,
                  client: str, connection_id: str | None = None, identity: str | None = None) -> web.StreamResponse:
    started = time.perf_counter()
    decision = app.policy.decide(target, Request(request.method, path, query, tuple(request.headers.items())))
    upgrade = websocket.is_upgrade(request)
    if decision.allowed and decision.redaction is not None and upgrade:
        refusal = websocket.refused(decision)
        app.report(refusal, client, 426, connection_id)
        return web.Response(status=426, text=f"policyproxy: {refusal.message}\n",
                            headers={"x-proxy-error": "blocked-by-policy"})
    vault = body = None
    counts: dict[str, int] = {}
    if decision.allowed and request.body_exists and request.headers.get("Expect", "").lower() == "100-continue":
        # The client waits for this before sending the body we are about to read or forward.
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if decision.allowed and decision.redaction is not None and app.redactor is not None:
        # One scope per client identity: a mapping is never restored into another client's response.
        vault = app.vaults.for_scope(f"user:{identity}" if identity else f"addr:{client}")
        if request.body_exists:
            inspection = await app.inspect(decision, request, vault)
            decision, counts = inspection.decision, inspection.counts
            if not decision.allowed and inspection.answer is not None:
                app.report(decision, client, inspection.answer.status, connection_id, counts)
                answer = inspection.answer
                return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))
            body = inspection.body
    elif decision.allowed and decision.redaction is not None and request.body_exists:
        decision = app.inspect_unavailable(decision)
    if not decision.allowed:
        answer = block_answer(decision)
        app.report(decision, client, answer.status, connection_id, counts)
        return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))
    if upgrade:
        default = 443 if scheme == "https" else 80
        url = URL.build(scheme=scheme, host=target.host.strip("[]"), port=target.port, path=decision.path or "/",
                        query_string=query, encoded=True)
        app.report(decision, client, 101, connection_id)
        return await websocket.relay(app, request, decision, url, host_header(target.host, target.port, default))
    timing = _Timing(started)
    try:
        scan = response_scan(app, vault)
        response = await _stream(app, request, decision, target, scheme, query, body, vault, timing, scan)
    except _UpstreamFailure as failure:
        app.report(decision, client, failure.status, connection_id, counts)
        return text_error(failure.status, failure.message)
    app.report(decision, client, response.status, connection_id, counts, timing.added_ms,
               emitted=scan.counts if scan is not None else None)
    return response


class _Timing:
    """What the proxy adds: deciding, inspecting and sending, then turning the answer's head around."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.sent = self.answered = self.prepared = None

    @property
    def added_ms(self) -> float | None:
        if self.sent is None or self.answered is None or self.prepared is None:
            return None
        return ((self.sent - self.started) + (self.prepared - self.answered)) * 1000


class _UpstreamFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _stream(app: ProxyApp, request: web.BaseRequest, decision: Decision, target: Target, scheme: str,
                  query: str, body: bytes | None, vault: Vault | None, timing: _Timing,
                  scan: ResponseScan | None = None) -> web.StreamResponse:
    default = 443 if scheme == "https" else 80
    url = URL.build(scheme=scheme, host=target.host.strip("[]"), port=target.port,
                    path=decision.path or "/", query_string=query, encoded=True)
    authority = host_header(target.host, target.port, default)
    headers = request_headers(request.headers.items(), decision.edits, authority)
    data: Any = request.content if request.body_exists else None
    if vault is not None:
        # The body was read and maybe rewritten; the answer must come uncompressed to be restored.
        dropped = {"accept-encoding"} | ({"content-length", "content-encoding"} if body is not None else set())
        headers = [(k, v) for k, v in headers if k.lower() not in dropped] + [("Accept-Encoding", "identity")]
        if body is not None:
            data = body
    timing.sent = time.perf_counter()
    try:
        upstream = await app.session.request(
            request.method, url, headers=headers, data=data, allow_redirects=False,
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
    timing.answered = time.perf_counter()
    async with upstream:
        no_body = request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
        restore = None if vault is None or no_body else _restorer(upstream, vault, scan)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        raw = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers)
        for name, value in response_headers(raw):
            if restore is not None and name.lower() == "content-encoding":
                continue   # decoded to be restored
            response.headers.add(name, value)
        length = upstream.headers.get("Content-Length")
        if restore is None and length is not None and length.isdigit() and not no_body:
            response.content_length = int(length)
        if restore is not None and restore.whole:
            whole = await restore.read_whole(upstream)
            response.content_length = len(whole)
            await response.prepare(request)
            timing.prepared = time.perf_counter()
            await response.write(whole)
            await response.write_eof()
            return response
        await response.prepare(request)
        timing.prepared = time.perf_counter()
        if not no_body:
            try:
                async for chunk in upstream.content.iter_any():
                    out = restore.feed(chunk) if restore is not None else chunk
                    if out:
                        await response.write(out)
                if restore is not None:
                    tail = restore.close()
                    if tail:
                        await response.write(tail)
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, asyncio.TimeoutError):
                # The upstream broke mid-body: release what the restorer held back (restored), then end
                # the client's connection so it sees a truncation.
                if restore is not None and request.transport is not None and not request.transport.is_closing():
                    tail = restore.close()
                    if tail:
                        await response.write(tail)
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        return response


class _Restore:
    """Decode (gzip/deflate) and restore a response body on a redaction endpoint."""

    def __init__(self, vault: Vault, sse: bool, inflater: Any, scan: ResponseScan | None = None) -> None:
        self.vault = vault
        self.whole = not sse
        self.inflater = inflater
        self.scan = scan
        self.stream = StreamRestorer(vault, scan) if sse else None

    def _decode(self, data: bytes) -> bytes:
        return self.inflater.decompress(data) if self.inflater is not None else data

    def feed(self, data: bytes) -> bytes:
        assert self.stream is not None
        return self.stream.feed(self._decode(data))

    def close(self) -> bytes:
        assert self.stream is not None
        tail = self.inflater.flush() if self.inflater is not None else b""
        return self.stream.feed(tail) + self.stream.close()

    async def read_whole(self, upstream: aiohttp.ClientResponse) -> bytes:
        data = self._decode(await upstream.read())
        if self.inflater is not None:
            data += self.inflater.flush()
        return restore_body(data, self.vault, self.scan)


def response_scan(app: ProxyApp, vault: Vault | None) -> ResponseScan | None:
    """What the model emits is scanned on redaction endpoints unless ``redaction.responses = "off"``."""
    spec = app.settings.network.redaction
    if vault is None or app.redactor is None or spec is None or spec.responses is ResponseScanning.OFF:
        return None
    return ResponseScan(app.redactor.find, mask=spec.responses is ResponseScanning.MASK)


def _restorer(upstream: aiohttp.ClientResponse, vault: Vault, scan: ResponseScan | None) -> _Restore | None:
    encoding = upstream.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)
    elif encoding in ("identity", ""):
        inflater = None
    else:
        return None   # an encoding we cannot decode: passed through, placeholders stay
    content_type = upstream.headers.get("Content-Type", "").lower()
    if "text/event-stream" in content_type:
        return _Restore(vault, True, inflater, scan)
    if "json" in content_type or content_type.startswith("text/"):
        return _Restore(vault, False, inflater, scan)
    return None


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
