"""A second upstream for attack tests: records every request; ``/redirect/<code>?to=URL`` answers
that redirect (for plain requests and WebSocket upgrades alike), everything else answers 200."""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

from aiohttp import web


class Recorder:
    def __init__(self, cert: Path, key: Path) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
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
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        tls = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.context)
        plain = web.TCPSite(self.runner, "127.0.0.1", 0)
        await tls.start()
        await plain.start()
        self.tls_port = tls._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.plain_port = plain._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, {k.lower(): v for k, v in request.headers.items()}))
        if request.path.startswith("/redirect/"):
            code = int(request.path.split("/")[2])
            raise _redirect(code, request.query["to"])
        return web.Response(text="reached")

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _redirect(code: int, location: str) -> web.HTTPException:
    classes = {301: web.HTTPMovedPermanently, 302: web.HTTPFound, 303: web.HTTPSeeOther,
               307: web.HTTPTemporaryRedirect, 308: web.HTTPPermanentRedirect}
    return classes[code](location)
