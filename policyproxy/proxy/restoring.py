"""Decode (gzip/deflate) and restore a response body on a redaction endpoint: whole JSON or text,
or a server-sent event stream restored as it flows."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from policyproxy.config.schema import ResponseScanning, Settings
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.restore import ResponseScan, StreamRestorer, placeholders_in, restore_body

# Gets the values of placeholders the vault does not hold (from the shared store) into the vault.
Fetch = Callable[[set[str]], Awaitable[None]]


class Restore:
    """The shell around the restorer: with a shared store (``fetch``), what a chunk would look up and
    the vault lacks is fetched in one round trip before the chunk is restored; without one, the chunk
    goes straight through (the in-process path does no more work than before)."""

    def __init__(self, vault: Vault, sse: bool, inflater: Any, scan: ResponseScan | None = None,
                 fetch: Fetch | None = None) -> None:
        self.vault = vault
        self.whole = not sse
        self.inflater = inflater
        self.scan = scan
        self.fetch = fetch
        self.stream = StreamRestorer(vault, scan) if sse else None

    def _decode(self, data: bytes) -> bytes:
        return self.inflater.decompress(data) if self.inflater is not None else data

    async def feed(self, data: bytes) -> bytes:
        assert self.stream is not None
        if self.fetch is None:
            return self.stream.feed(self._decode(data))
        events = self.stream.receive(self._decode(data))
        wanted = self.stream.wanted(events)
        if wanted:
            await self.fetch(wanted)
        return self.stream.release(events)

    def close(self) -> bytes:
        assert self.stream is not None
        tail = self.inflater.flush() if self.inflater is not None else b""
        return self.stream.feed(tail) + self.stream.close()

    async def read_whole(self, upstream: aiohttp.ClientResponse) -> bytes:
        data = self._decode(await upstream.read())
        if self.inflater is not None:
            data += self.inflater.flush()
        if self.fetch is not None:
            wanted = placeholders_in(data)
            if wanted:
                await self.fetch(wanted)
        return restore_body(data, self.vault, self.scan)


def response_scan(settings: Settings, redactor: Redactor | None, vault: Vault | None) -> ResponseScan | None:
    """What the model emits is scanned on redaction endpoints unless ``redaction.responses = "off"``."""
    spec = settings.network.redaction
    if vault is None or redactor is None or spec is None or spec.responses is ResponseScanning.OFF:
        return None
    return ResponseScan(redactor.find, mask=spec.responses is ResponseScanning.MASK)


def restorer(upstream: aiohttp.ClientResponse, vault: Vault, scan: ResponseScan | None,
             fetch: Fetch | None = None) -> Restore | None:
    """How to restore this answer, or None when it is passed through (placeholders stay)."""
    encoding = upstream.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)
    elif encoding in ("identity", ""):
        inflater = None
    else:
        return None   # an encoding we cannot decode
    content_type = upstream.headers.get("Content-Type", "").lower()
    if "text/event-stream" in content_type:
        return Restore(vault, True, inflater, scan, fetch)
    if "json" in content_type or content_type.startswith("text/"):
        return Restore(vault, False, inflater, scan, fetch)
    return None
