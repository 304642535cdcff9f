"""Decode (gzip/deflate) and restore a response body on a redaction endpoint: whole JSON or text,
or a server-sent event stream restored as it flows."""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp

from policyproxy.redaction import jsontext
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.restore import StreamRestorer, restore_json, restore_text


class Restore:
    def __init__(self, vault: Vault, sse: bool, inflater: Any) -> None:
        self.vault = vault
        self.whole = not sse
        self.inflater = inflater
        self.stream = StreamRestorer(vault) if sse else None

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
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return restore_text(data.decode("utf-8", "replace"), self.vault).encode("utf-8")
        return jsontext.dumps(restore_json(document, self.vault))


def restorer(upstream: aiohttp.ClientResponse, vault: Vault) -> Restore | None:
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
        return Restore(vault, True, inflater)
    if "json" in content_type or content_type.startswith("text/"):
        return Restore(vault, False, inflater)
    return None
