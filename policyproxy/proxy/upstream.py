"""``Upstream``: the one way out (``send``, ``ws_connect``, raw ``connect`` for tunnels).

It owns what every path must get right the same way: redirects are never followed (the client gets
the 3xx and its next request is decided again; ``ws_connect`` would follow them, so a trace hook
stops every redirect on its session before it is followed), upstream TLS is always verified, and
aiohttp's and the socket layer's errors become the small ``UpstreamError`` tree of ``errors.py``.

``send`` goes through the lean HTTP/1.1 client of ``h1_client`` (its own keep-alive pool, to the
addresses the policy checked); through an upstream proxy (``allow_upstream_proxy``) and for
WebSockets, aiohttp's client is still the one used.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from policyproxy.errors import (
    UpstreamAnswered,
    UpstreamBroken,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTLSError,
    UpstreamUnreachable,
)
from policyproxy.grammar.hosts import IPAddress
from policyproxy.proxy.h1_client import Pool
from policyproxy.proxy.h2_upstream import H2Upstream
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.pipe import PipeSide
from policyproxy.proxy.resolver import Resolver

SKIP_AUTO = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
_REDIRECT_BODY = 64 * 1024   # what of a redirect's body is relayed to the client


def upstream_context(extra_cas: tuple[Path, ...], alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """System trust plus ``--upstream-ca``; verification is never turned off."""
    context = ssl.create_default_context()
    for path in extra_cas:
        context.load_verify_locations(cafile=str(path))
    context.set_alpn_protocols(list(alpn))
    return context


def upstream_proxy(allowed: bool, scheme: str, host: str) -> str | None:
    """The proxy this proxy's own egress goes through (``allow_upstream_proxy``), from the standard
    environment variables of the policyproxy process, honouring ``NO_PROXY``."""
    if not allowed:
        return None
    proxies = urllib.request.getproxies_environment()
    # proxy_bypass_environment is urllib's NO_PROXY matcher (public, missing from typeshed).
    if not proxies or urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(scheme) or proxies.get("all")


class _Redirected(Exception):
    """Raised from the redirect trace hook: the redirect is not followed."""

    def __init__(self, answer: UpstreamAnswered) -> None:
        super().__init__(answer.message)
        self.answer = answer


async def _refuse_redirect(session: aiohttp.ClientSession, context: SimpleNamespace,
                           params: aiohttp.TraceRequestRedirectParams) -> None:
    response = params.response
    try:
        body = await response.content.read(_REDIRECT_BODY)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        body = b""
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() in ("location", "content-type"))
    response.close()
    raise _Redirected(UpstreamAnswered(response.status, headers, body))


def translate(exc: BaseException, host: str, port: int) -> UpstreamError:
    """aiohttp's, ssl's and asyncio's errors as the project's tree, naming the cause."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        why = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        return UpstreamTLSError(f"upstream TLS certificate of {host} failed verification: {why}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return UpstreamTLSError(f"TLS with {host} failed: {exc.__cause__ or exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc.os_error}")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"{host}:{port} did not answer in time")
    if isinstance(exc, ssl.SSLError):
        return UpstreamTLSError(f"TLS with {host} failed: {exc.reason}")
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status and exc.status >= 300:   # the upstream said no (or moved): the client hears it
            location = exc.headers.get("Location") if exc.headers is not None else None
            return UpstreamAnswered(exc.status, (("location", location),) if location else (),
                                    f"policyproxy: upstream refused the WebSocket: {exc.message}\n".encode())
        return UpstreamUnreachable(f"upstream refused the WebSocket: {exc.message}")
    return UpstreamUnreachable(f"upstream {host} failed: {type(exc).__name__}")


_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError, OSError)


class UpstreamResponse(Protocol):
    """An upstream's answer, its head read and its body still to come, whatever client fetched it
    (HTTP/1.1 or HTTP/2). Body errors are ``UpstreamBroken``; ``release`` gives the connection back
    (or closes it when the body was not read to its end)."""

    status: int
    reason: str

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive lookups (Content-Type, Content-Encoding, ...); read-only, so an
        implementation may build it on first use."""
        ...

    def header_items(self) -> list[tuple[str, str]]:
        """The head as received: order and repeated names kept."""
        ...

    def body_complete(self) -> bool:
        """The whole body is already here (``read`` will not wait)."""
        ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        ...

    def trailers(self) -> list[tuple[str, str]]:
        """Trailer fields, once the body was read to its end (HTTP/2 and chunked HTTP/1.1)."""
        ...

    def release(self) -> None: ...


class _AiohttpResponse:
    """``UpstreamResponse`` over aiohttp's client response."""

    __slots__ = ("_response", "headers", "reason", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.reason = response.reason or ""
        self.headers: Mapping[str, str] = response.headers

    def header_items(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._response.raw_headers]

    def body_complete(self) -> bool:
        return self._response.content.is_eof()

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except _BODY_FAILURES as exc:
            raise UpstreamBroken(f"the answer's body broke off: {type(exc).__name__}") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _BODY_FAILURES as exc:
            raise UpstreamBroken(f"the answer's body broke off: {type(exc).__name__}") from None

    def trailers(self) -> list[tuple[str, str]]:
        return []   # aiohttp's client drops trailers

    def release(self) -> None:
        self._response.release()


_BODY_FAILURES = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError,
                  asyncio.TimeoutError, OSError)


class UpstreamSeam(Protocol):
    """What the pipeline and the opening need of the way out; tests pass plain recording objects."""

    async def send(self, method: str, url: URL, headers: list[tuple[str, str]], data: Any,
                   proxy: str | None, http2: bool = False) -> UpstreamResponse: ...

    async def ws_connect(self, url: URL, headers: list[tuple[str, str]], protocols: Iterable[str],
                         proxy: str | None, compress: int = 0) -> aiohttp.ClientWebSocketResponse[bool]: ...

    async def connect(self, host: str, addresses: tuple[IPAddress, ...], port: int,
                      proxy: str | None) -> PipeSide: ...


class Upstream:
    def __init__(self, options: ProxyOptions, resolver: Resolver) -> None:
        self.options = options
        self.resolver = resolver
        self.tls = upstream_context(options.upstream_cas)
        self.session: aiohttp.ClientSession | None = None
        self.ws_session: aiohttp.ClientSession | None = None
        self.h2 = H2Upstream(resolver, upstream_context(options.upstream_cas, ("h2", "http/1.1")),
                             options.connect_timeout, options.read_timeout)
        self.pool = Pool(self.tls, options.connect_timeout, options.read_timeout)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=self.resolver, use_dns_cache=False, limit=0, limit_per_host=0,
                                         keepalive_timeout=60, ssl=self.tls)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.options.connect_timeout,
                                        sock_read=self.options.read_timeout)
        common: dict[str, Any] = {"connector": connector, "timeout": timeout, "auto_decompress": False,
                                  "trust_env": False, "cookie_jar": aiohttp.DummyCookieJar()}
        # ``send`` passes allow_redirects=False; ``ws_connect`` has no such switch, so its session (same
        # connection pool) refuses every redirect from a trace hook. Traces cost a few calls per request,
        # hence not on the session every request uses.
        trace = aiohttp.TraceConfig()
        trace.on_request_redirect.append(_refuse_redirect)
        self.session = aiohttp.ClientSession(**common)
        self.ws_session = aiohttp.ClientSession(**common, connector_owner=False, trace_configs=[trace])

    async def close(self) -> None:
        self.h2.close()
        self.pool.close()
        if self.ws_session is not None:
            await self.ws_session.close()
        if self.session is not None:
            await self.session.close()

    async def send(self, method: str, url: URL, headers: list[tuple[str, str]], data: Any,
                   proxy: str | None, http2: bool = False) -> UpstreamResponse:
        """The upstream's answer head (its body still to read); redirects come back as they are.
        ``http2``: the client speaks HTTP/2, so an upstream that offers it is spoken to in HTTP/2.
        Other direct requests go through the lean HTTP/1.1 client (``h1_client``) to the addresses the
        policy checked; through an upstream proxy (``allow_upstream_proxy``) aiohttp's client sends them."""
        if http2 and proxy is None and url.scheme == "https":
            answer = await self.h2.send(method, url, headers, data)
            if answer is not None:
                return answer
        if proxy is None:
            host, port = url.raw_host or "", url.port or 0
            return await self.pool.send(method, url.scheme, host, port, await self.resolver.checked(host, port),
                                        url.raw_path_qs, headers, data)
        assert self.session is not None
        try:
            return _AiohttpResponse(await self.session.request(
                method, url, headers=headers, data=data, allow_redirects=False, skip_auto_headers=SKIP_AUTO,
                ssl=self.tls if url.scheme == "https" else False, proxy=proxy))
        except _FAILURES as exc:
            raise translate(exc, url.host or "", url.port or 0) from None

    async def ws_connect(self, url: URL, headers: list[tuple[str, str]], protocols: Iterable[str],
                         proxy: str | None, compress: int = 0) -> aiohttp.ClientWebSocketResponse[bool]:
        """An established WebSocket, or ``UpstreamAnswered`` with the upstream's non-101 answer.
        ``compress``: offer permessage-deflate (window bits), as the client offered it."""
        assert self.ws_session is not None
        try:
            return await self.ws_session.ws_connect(
                url.with_scheme("wss" if url.scheme == "https" else "ws"), headers=headers, protocols=protocols,
                autoping=False, ssl=self.tls, max_msg_size=0, proxy=proxy, compress=compress)
        except _Redirected as redirected:
            raise redirected.answer from None
        except _FAILURES as exc:
            raise translate(exc, url.host or "", url.port or 0) from None

    async def connect(self, host: str, addresses: tuple[IPAddress, ...], port: int, proxy: str | None) -> PipeSide:
        """A pipe end connected to the first reachable of ``addresses`` (or through ``proxy``)."""
        if proxy is not None:
            return await self._connect_via_proxy(proxy, host, port)
        loop = asyncio.get_running_loop()
        error: UpstreamError = UpstreamUnreachable(f"cannot connect to {host}:{port}: cannot resolve")
        for address in addresses:
            side = PipeSide()

            def protocol(side: PipeSide = side) -> PipeSide:
                return side

            try:
                await asyncio.wait_for(loop.create_connection(protocol, str(address), port),
                                       self.options.connect_timeout)
            except asyncio.TimeoutError:
                error = UpstreamTimeout(f"cannot connect to {host}:{port}: timed out")
                continue
            except OSError as exc:
                error = UpstreamUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or type(exc).__name__}")
                continue
            sock = side.transport.get_extra_info("socket") if side.transport else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return side
        raise error

    async def _connect_via_proxy(self, proxy_url: str, host: str, port: int) -> PipeSide:
        """CONNECT through an upstream HTTP proxy, then hand the raw connection to a pipe end."""
        parts = urlsplit(proxy_url)
        timeout = self.options.connect_timeout
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 80), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamUnreachable(f"upstream proxy {parts.hostname} unreachable: {type(exc).__name__}") from None
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            raise UpstreamUnreachable("upstream proxy did not answer the CONNECT") from None
        status = head.split(b" ", 2)[1:2]
        if status != [b"200"]:
            writer.close()
            raise UpstreamUnreachable(
                f"upstream proxy refused the CONNECT ({b''.join(status).decode('latin-1') or '?'})")
        transport = writer.transport
        side = PipeSide()
        side.connection_made(transport)
        transport.set_protocol(side)
        # No public way to take back what a StreamReader buffered past the answer: those bytes belong
        # to the tunnel, so they are read from its private buffer.
        if reader._buffer:  # type: ignore[attr-defined]
            side.data_received(bytes(reader._buffer))  # type: ignore[attr-defined]
        return side
