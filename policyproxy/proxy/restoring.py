"""Decode (gzip/deflate) and restore a response body on a redaction endpoint: whole JSON or text,
or a server-sent event stream (or a Gemini JSON-array stream) restored as it flows."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from policyproxy.config.schema import ResponseScanning, Settings
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.restore import (
    ArrayStreamRestorer,
    Observer,
    ResponseScan,
    StreamRestorer,
    placeholders_in,
    restore_body,
)

# Gets the values of placeholders the vault does not hold (from the shared store) into the vault.
Fetch = Callable[[set[str]], Awaitable[None]]


class Restore:
    """The shell around the restorer: with a shared store (``fetch``), what a chunk would look up and
    the vault lacks is fetched in one round trip before the chunk is restored (``afeed``); without
    one, the chunk goes straight through (the in-process path does no more work than before)."""

    def __init__(self, vault: Vault, sse: bool, inflater: Any, scan: ResponseScan | None = None,
                 observe: Observer | None = None, array: bool = False, fetch: Fetch | None = None) -> None:
        self.vault = vault
        self.whole = not sse and not array
        self.inflater = inflater
        self.scan = scan
        self.observe = observe
        self.fetch = fetch
        self.stream: StreamRestorer | ArrayStreamRestorer | None = (
            StreamRestorer(vault, scan, observe=observe) if sse
            else ArrayStreamRestorer(vault, scan, observe) if array else None)

    def _decode(self, data: bytes) -> bytes:
        return self.inflater.decompress(data) if self.inflater is not None else data

    def feed(self, data: bytes) -> bytes:
        """A chunk restored, with what the vault holds (no store round trip)."""
        assert self.stream is not None
        return self.stream.feed(self._decode(data))

    async def afeed(self, data: bytes) -> bytes:
        """A chunk restored, fetching placeholders the vault lacks from the shared store first."""
        assert self.stream is not None
        if self.fetch is None:
            return self.stream.feed(self._decode(data))
        decoded = self._decode(data)
        if isinstance(self.stream, StreamRestorer):
            events = self.stream.receive(decoded)
            wanted = self.stream.wanted(events)
            if wanted:
                await self.fetch(wanted)
            return self.stream.release_events(events)
        # A JSON-array stream: placeholders written whole in this chunk (one split across two chunks
        # is restored only if the vault holds it).
        wanted = placeholders_in(decoded)
        if wanted:
            await self.fetch(wanted)
        return self.stream.feed(decoded)

    def close(self) -> bytes:
        assert self.stream is not None
        tail = self.inflater.flush() if self.inflater is not None else b""
        return self.stream.feed(tail) + self.stream.close()

    async def read_whole(self, upstream: _Whole) -> bytes:
        data = self._decoded_whole(await upstream.read())
        if self.fetch is not None:
            wanted = placeholders_in(data)
            if wanted:
                await self.fetch(wanted)
        return restore_body(data, self.vault, self.scan, self.observe)

    def whole_body(self, raw: bytes) -> bytes:
        """A whole (maybe compressed) body, decoded and restored (no store round trip)."""
        return restore_body(self._decoded_whole(raw), self.vault, self.scan, self.observe)

    def _decoded_whole(self, raw: bytes) -> bytes:
        data = self._decode(raw)
        return data + self.inflater.flush() if self.inflater is not None else data


def response_scan(settings: Settings, redactor: Redactor | None, vault: Vault | None) -> ResponseScan | None:
    """What the model emits is scanned on redaction endpoints unless ``redaction.responses = "off"``."""
    spec = settings.network.redaction
    if vault is None or redactor is None or spec is None or spec.responses is ResponseScanning.OFF:
        return None
    return ResponseScan(redactor.find, mask=spec.responses is ResponseScanning.MASK)


class _Whole(Protocol):
    async def read(self) -> bytes: ...


class _Headed(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def restorer(upstream: _Headed, vault: Vault, scan: ResponseScan | None,
             observe: Observer | None = None, path: str = "", fetch: Fetch | None = None) -> Restore | None:
    """How to restore this answer (an aiohttp or an httpx response), or None when it is passed through
    (placeholders stay). ``path``: a Gemini ``:streamGenerateContent`` JSON answer is a streamed array."""
    encoding = upstream.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)
    elif encoding in ("identity", ""):
        inflater = None
    else:
        return None   # an encoding we cannot decode
    content_type = upstream.headers.get("Content-Type", "").lower()
    if "text/event-stream" in content_type:
        return Restore(vault, True, inflater, scan, observe, fetch=fetch)
    if "json" in content_type or content_type.startswith("text/"):
        array = "json" in content_type and path.lower().endswith(":streamgeneratecontent")
        return Restore(vault, False, inflater, scan, observe, array=array, fetch=fetch)
    return None
