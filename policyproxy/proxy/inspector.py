"""``Inspector``: reads a request body (bounded) and redacts it, off the event loop when it is large.

Small bodies are redacted inline; larger ones on a worker thread; the new text of a large first turn
is scanned in worker processes split across cores. One inspection at a time per scope (its vault
and text cache are never touched concurrently); the per-scope locks live only while in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from policyproxy.config.schema import Settings
from policyproxy.offload import ParallelFinder
from policyproxy.policy.model import Decision
from policyproxy.reasons import Reason, Source, Verdict
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.inspect import Inspection, InspectionFailed, conclude, failed, inspect, parse_body
from policyproxy.redaction.placeholders import Vault, Vaults
from policyproxy.redaction.wsmessages import ClientMessages
from policyproxy.stores.sqlite import SqliteMappingStore

# Bodies larger than this are redacted on a worker thread, so one big request cannot stall the loop.
OFFLOAD_BYTES = 64 * 1024
# New text beyond this is scanned in worker processes, split across cores.
PARALLEL_BYTES = 256 * 1024


def redactor_for(settings: Settings) -> Redactor | None:
    spec = settings.network.redaction
    return Redactor(spec) if spec is not None and spec.enabled else None


class _ScopeLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Inspector:
    def __init__(self, settings: Settings) -> None:
        spec = settings.network.redaction
        ttl = spec.mapping_ttl_seconds if spec else 24 * 3600
        store = SqliteMappingStore(Path(spec.mapping_store)) if spec is not None and spec.mapping_store else None
        self.vaults = Vaults(ttl=ttl, store=store, clock=time.time)
        self.scanner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="policyproxy-scan")
        self.finder: ParallelFinder | None = None
        self._scopes: dict[str, _ScopeLock] = {}

    def vault(self, identity: str | None, client: str) -> Vault:
        """One scope per client identity: a mapping is never restored into another client's response."""
        return self.vaults.for_scope(f"user:{identity}" if identity else f"addr:{client}")

    def reload(self) -> None:
        if self.finder is not None:   # its workers compiled the old detectors
            self.finder.close()
            self.finder = None

    def close(self) -> None:
        self.scanner.shutdown(wait=False, cancel_futures=True)
        if self.finder is not None:
            self.finder.close()
        if self.vaults.store is not None:
            self.vaults.store.close()

    async def inspect(self, settings: Settings, redactor: Redactor, decision: Decision, request: web.BaseRequest,
                      vault: Vault) -> Inspection:
        """Step 7: read the body (bounded), then redact it."""
        assert settings.network.redaction is not None
        limit = settings.network.redaction.max_body_bytes
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                return inspect(redactor, vault, decision, bytes(body), None, limit)
        encoding = request.headers.get("Content-Encoding")
        async with self._scope(vault):
            return await self._inspect(settings, redactor, decision, vault, bytes(body), encoding, limit)

    @contextlib.asynccontextmanager
    async def _scope(self, vault: Vault) -> AsyncIterator[None]:
        scope = self._scopes.get(vault.scope)
        if scope is None:
            scope = self._scopes[vault.scope] = _ScopeLock()
        scope.users += 1
        try:
            async with scope.lock:
                yield
        finally:
            scope.users -= 1
            if scope.users == 0:
                del self._scopes[vault.scope]

    async def redact_message(self, messages: ClientMessages, data: str) -> str:
        """One WebSocket client message, under its scope's lock (a large one on a worker thread);
        ``MessageRefused`` when it must not be sent."""
        async with self._scope(messages.vault):
            if len(data) < OFFLOAD_BYTES:
                return messages.text(data)
            return await asyncio.get_running_loop().run_in_executor(self.scanner, messages.text, data)

    async def _inspect(self, settings: Settings, redactor: Redactor, decision: Decision, vault: Vault, body: bytes,
                       encoding: str | None, limit: int) -> Inspection:
        if len(body) < OFFLOAD_BYTES:
            return inspect(redactor, vault, decision, body, encoding, limit)
        loop = asyncio.get_running_loop()
        finder = self._finder(settings)
        if finder is None or not finder.ready:
            return await loop.run_in_executor(self.scanner, inspect, redactor, vault, decision, body, encoding, limit)
        try:
            raw, document = await loop.run_in_executor(self.scanner, parse_body, body, encoding, limit)
        except InspectionFailed as exc:
            return failed(decision, exc)
        texts = await loop.run_in_executor(self.scanner, redactor.unseen, document, vault)
        spans = await finder.spans(texts) if sum(map(len, texts)) >= PARALLEL_BYTES else None
        return await loop.run_in_executor(self.scanner, conclude, redactor, vault, decision, body, raw, document,
                                          spans)

    def _finder(self, settings: Settings) -> ParallelFinder | None:
        """Worker processes for large first turns, started on first need (the scan goes to a thread
        until they are up)."""
        spec = settings.network.redaction
        if spec is None or (os.cpu_count() or 1) < 2:
            return None
        if self.finder is None:
            self.finder = ParallelFinder(spec)
        return self.finder

    @staticmethod
    def unavailable(decision: Decision) -> Decision:
        """A redaction endpoint with redaction disabled by a reload race: never forward uninspected."""
        return dataclasses.replace(decision, verdict=Verdict.DENY, reason=Reason.INSPECTION_FAILED,
                                   source=Source.DEFAULT, message="redaction is not configured for this endpoint")
