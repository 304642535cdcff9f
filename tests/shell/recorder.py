"""A second upstream for attack tests: records every request; ``/redirect/<code>?to=URL`` answers
that redirect (for plain requests and WebSocket upgrades alike), everything else answers 200.
Runs like ``Upstream`` (its thread, loop and test certificate), with its own routes."""

from __future__ import annotations

from aiohttp import web

from tests.shell.upstream import Upstream

_REDIRECTS = {301: web.HTTPMovedPermanently, 302: web.HTTPFound, 303: web.HTTPSeeOther,
              307: web.HTTPTemporaryRedirect, 308: web.HTTPPermanentRedirect}


class Recorder(Upstream):
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
        self.requests.append({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.items()}})
        if request.path.startswith("/redirect/"):
            raise _REDIRECTS[int(request.path.split("/")[2])](request.query["to"])
        return web.Response(text="reached")

    def paths(self, since: int) -> list[str]:
        return [seen["path"] for seen in self.requests[since:]]
