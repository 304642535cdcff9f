"""A bench upstream: HTTPS on loopback. /small (2 bytes), /big?mb=N (streamed), /sse (first event at once).

Usage: python bench/upstream_server.py CERT KEY  -> prints its port, serves until killed.
"""

import asyncio
import ssl
import sys

from aiohttp import web

CHUNK = b"x" * 65536


async def small(request: web.Request) -> web.Response:
    return web.Response(body=b"ok")


async def big(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("mb", "100")) * 1024 * 1024
    response = web.StreamResponse()
    response.content_length = size
    await response.prepare(request)
    for _ in range(size // len(CHUNK)):
        await response.write(CHUNK)
    return response


async def sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: first\n\n")
    await asyncio.sleep(0.05)
    await response.write(b"data: second\n\n")
    return response


async def main() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    app = web.Application()
    app.router.add_get("/small", small)
    app.router.add_get("/big", big)
    app.router.add_get("/sse", sse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=4096)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
