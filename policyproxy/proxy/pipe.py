"""A byte tunnel between two transports, with backpressure in both directions.

Each side's protocol writes what it reads to the other transport; when that transport's buffer
passes its high-water mark, reading from the source pauses until it drains. An EOF from one side is
passed on as a half-close; once both sides have sent theirs, both transports are closed (a tunnel
whose two halves are done must not hold its two descriptors until the idle sweep).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Screens the first bytes a client sends into a tunnel before any is relayed: None (need more),
# True (relay them and stop screening), False (close the tunnel).
Gate = Callable[[bytes], "bool | None"]


class PipeSide(asyncio.Protocol):
    """Reads from its own transport and writes into ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: PipeSide | None = None
        self.pending = bytearray()   # read before the other end was joined
        self.eof = False             # this side's peer sent its FIN: nothing more will be read here
        self.gate: Gate | None = None
        self.held = bytearray()      # read while the gate has not decided
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self.last_active = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_active = self.closed.get_loop().time()
        if self.gate is not None:
            self.held += data
            verdict = self.gate(bytes(self.held))
            if verdict is None:
                return
            self.gate = None
            if not verdict:
                if self.transport is not None:
                    self.transport.close()   # connection_lost closes the peer
                return
            data = bytes(self.held)
            self.held.clear()
        peer = self.peer
        if peer is None:
            self.pending += data
        elif peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.gate is not None:
            return False  # the client stopped before the gate could decide: nothing is relayed
        peer = self.peer
        if peer is not None and peer.eof:
            return False  # both directions are done: closing this side closes the peer (connection_lost)
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


def idle_since(side: PipeSide) -> float:
    """When either direction of the tunnel last carried data."""
    return max(side.last_active, side.peer.last_active if side.peer is not None else side.last_active)


def join(client: asyncio.Transport, upstream_side: PipeSide, gate: Gate | None = None) -> PipeSide:
    """Turn ``client`` into one end of a tunnel whose other end is ``upstream_side``; ``gate`` screens
    what the client sends first."""
    client_side = PipeSide()
    client_side.gate = gate
    client_side.connection_made(client)
    client_side.peer, upstream_side.peer = upstream_side, client_side
    client.set_protocol(client_side)
    if upstream_side.pending:
        client.write(bytes(upstream_side.pending))
        upstream_side.pending.clear()
    client.resume_reading()
    return client_side
