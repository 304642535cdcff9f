"""A real upstream for tests: aiohttp on loopback, plain and TLS (its own test CA), in a thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import random
import ssl
import threading
import time
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.shell.fake_llm import HANDLERS, gemini, responses_websocket

NAMES = ("api.github.com", "api.anthropic.com", "api.openai.com", "upstream.test", "tunnel.test",
         "registry.npmjs.org", "rebind.test", "localhost", "generativelanguage.googleapis.com")


def make_test_pki(directory: Path, names: tuple[str, ...] = NAMES) -> tuple[Path, Path, Path]:
    """A test CA and one server certificate for ``names`` (and 127.0.0.1): (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policyproxy test upstream CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "test-ca.pem", directory / "upstream.pem", directory / "upstream.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


PIECE = 64 * 1024


def big_piece(index: int) -> bytes:
    """The ``index``-th 64 KiB of ``/big``: each piece differs, so a piece lost, repeated or out of
    place changes the body's checksum."""
    return random.Random(index).randbytes(PIECE)


def big_digest(mib: int) -> str:
    """The SHA-256 of ``/big?mb=mib``."""
    digest = hashlib.sha256()
    for i in range(mib * 1024 * 1024 // PIECE):
        digest.update(big_piece(i))
    return digest.hexdigest()


class Upstream:
    """Records every request it receives; ``/echo`` answers with what it saw, ``/sse`` streams."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.requests: list[dict] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/sse", self.sse)
        app.router.add_route("*", "/v1/sse", self.sse)
        app.router.add_route("GET", "/ws", self.ws)
        app.router.add_route("GET", "/big", self.big)
        app.router.add_route("GET", "/v1/responses", self.responses_ws)
        app.router.add_route("GET", "/v1/realtime", self.responses_ws)
        for path in HANDLERS:
            app.router.add_route("POST", path, self.llm)
            for base in ("/compat", "/zai"):   # OpenAI/Anthropic-compatible base paths
                app.router.add_route("POST", base + path, self.llm)
        app.router.add_route("POST", "/v1beta/models/{tail}", self.gemini)
        app.router.add_route("POST", "/v1/models/{tail}", self.gemini)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self.runner.setup()
        tls = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.context)
        plain = web.TCPSite(self.runner, "127.0.0.1", 0)
        await tls.start()
        await plain.start()
        self.tls_port = tls._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.plain_port = plain._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        path, _, query = request.raw_path.partition("?")
        seen = {"method": request.method, "path": path, "query": query,
                "headers": [[k, v] for k, v in request.headers.items()], "body": body.decode("utf-8", "replace"),
                "host": request.headers.get("Host"), "tls": request.secure}
        self.requests.append(seen)
        if request.path.startswith("/status/"):
            return web.Response(status=int(request.path.split("/")[2]), text="status")
        return web.json_response(seen, headers={"x-upstream": "yes"})

    async def big(self, request: web.Request) -> web.StreamResponse:
        """``/big?mb=N``: N MiB with a Content-Length, written as fast as the reader takes it."""
        size = int(request.query.get("mb", "1")) * 1024 * 1024
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        for i in range(size // PIECE):
            await response.write(big_piece(i))
        await response.write_eof()
        return response

    async def sse(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("n", "5"))
        interval = float(request.query.get("interval", "0.1"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for i in range(count):
            payload = json.dumps({"i": i, "sent": time.time()})
            await response.write(f"id: {i}\nevent: tick\ndata: {payload}\n\n".encode())
            await asyncio.sleep(interval)
        await response.write_eof()
        return response

    async def llm(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append({"method": "POST", "path": request.path, "query": request.raw_path.partition("?")[2],
                              "headers": [[k, v] for k, v in request.headers.items()],
                              "body": raw.decode("utf-8", "replace"), "host": request.host, "tls": request.secure})
        return await HANDLERS[request.path.removeprefix("/compat").removeprefix("/zai")](request, json.loads(raw), int(request.headers.get("x-test-chunk", "4")))

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append({"method": "POST", "path": request.path, "query": request.raw_path.partition("?")[2],
                              "headers": [[k, v] for k, v in request.headers.items()],
                              "body": raw.decode("utf-8", "replace"), "host": request.host, "tls": request.secure})
        return await gemini(request)

    async def responses_ws(self, request: web.Request) -> web.WebSocketResponse:
        self.requests.append({"method": "GET", "path": request.path, "query": "", "body": "",
                              "headers": [[k, v] for k, v in request.headers.items()], "host": request.host,
                              "tls": request.secure})
        return await responses_websocket(request, self.requests)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        self.requests.append({"method": "GET", "path": "/ws", "query": "", "body": "",
                              "headers": [[k, v] for k, v in request.headers.items()], "host": request.host,
                              "tls": request.secure})
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.type == web.WSMsgType.TEXT:
                await socket.send_str("echo:" + message.data)
            elif message.type == web.WSMsgType.BINARY:
                await socket.send_bytes(message.data[::-1])
        return socket

    def last(self) -> dict:
        return self.requests[-1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
