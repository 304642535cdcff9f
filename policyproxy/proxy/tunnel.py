"""A byte tunnel between two transports, with backpressure in both directions.

Each side's protocol writes what it reads to the other transport; when that transport's buffer
passes its high-water mark, reading from the source pauses until it drains.
"""

from __future__ import annotations

import asyncio


class PipeSide(asyncio.Protocol):
    """Reads from its own transport and writes into ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: PipeSide | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # keep the other direction open (half-close)
        return False

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()
        if not self.closed.done():
            self.closed.set_result(None)


def join(client: asyncio.Transport, upstream_side: PipeSide) -> PipeSide:
    """Turn ``client`` into one end of a tunnel whose other end is ``upstream_side``."""
    client_side = PipeSide()
    client_side.connection_made(client)
    client_side.peer, upstream_side.peer = upstream_side, client_side
    client.set_protocol(client_side)
    client.resume_reading()
    return client_side
