"""``Inspector``: reads a request body (bounded) and redacts it, off the event loop when it is large.

Small bodies are redacted inline; larger ones on a worker thread; the new text of a large first turn
is scanned in worker processes split across cores. One inspection at a time per scope (its vault
and text cache are never touched concurrently); the per-scope locks live only while in use.

With a Redis ``mapping_store`` the placeholder key is read from Redis on first need, the mappings a
request minted or refreshed are written in one pipelined round trip before it is forwarded, and
placeholders a response holds that this instance never minted are fetched before restoring. When
Redis cannot be reached, redaction endpoints are refused (``store_unavailable``, 503): nothing goes
out whose mapping could not be kept, and the next request tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from policyproxy.config.schema import RedactionSpec, Settings
from policyproxy.config.source import process_environment, read_secret_file
from policyproxy.errors import ConfigError, ConfigErrors
from policyproxy.offload import ParallelFinder
from policyproxy.policy.model import Decision
from policyproxy.reasons import Reason, Source, Verdict
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.inspect import Inspection, InspectionFailed, conclude, failed, inspect, parse_body
from policyproxy.redaction.placeholders import MappingStore, Vault, Vaults
from policyproxy.redaction.wsmessages import ClientMessages, MessageRefused
from policyproxy.stores.redis import RedisMappingStore, StoreUnavailable, derive
from policyproxy.stores.secrets import resolve_store_secrets
from policyproxy.stores.sqlite import SqliteMappingStore


class Body(Protocol):
    """What ``inspect`` reads of a request (an ``exchange.Exchange``)."""

    headers: Mapping[str, str]

    def body(self) -> AsyncIterator[bytes]: ...

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


def open_store(spec: RedactionSpec | None) -> tuple[MappingStore | None, bytes | None]:
    """The configured mapping store and the placeholder key from outside it (None: the store's own).

    Read once at start: a reload keeps the store the proxy started with."""
    if spec is None:
        return None, None
    problems: list[str] = []
    password, key = resolve_store_secrets(spec, process_environment(), read_secret_file,
                                          lambda where, message: problems.append(f"{where}: {message}"))
    if problems:
        raise ConfigErrors([ConfigError(problem) for problem in problems])
    master = derive(key, "placeholder hmac") if key is not None else None
    store = spec.mapping_store
    if store is None:
        return None, master
    if store.startswith(("redis://", "rediss://")):
        try:
            return RedisMappingStore(store, password=password, key=key, ca_file=spec.mapping_store_ca_file), master
        except ImportError as exc:   # a broken install: say what is missing, not a traceback
            raise ConfigErrors([ConfigError(f"redaction.mapping_store: a Redis store needs redis-py ({exc})")]) \
                from None
    return SqliteMappingStore(Path(store)), master


class Inspector:
    def __init__(self, settings: Settings) -> None:
        spec = settings.network.redaction
        self.ttl = spec.mapping_ttl_seconds if spec else 24 * 3600
        store, master = open_store(spec if spec is not None and spec.enabled else None)
        self.remote = store if isinstance(store, RedisMappingStore) else None
        # With Redis and no key of our own, the key is in Redis: the vaults wait for it (``open_vault``).
        self._vaults = None if self.remote is not None and master is None else \
            Vaults(master, ttl=self.ttl, store=store, clock=time.time)
        self.store = store
        self.scanner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="policyproxy-scan")
        self.finder: ParallelFinder | None = None
        self._scopes: dict[str, _ScopeLock] = {}

    @property
    def vaults(self) -> Vaults:
        if self._vaults is None:
            raise StoreUnavailable("the placeholder key has not been read from the mapping store yet")
        return self._vaults

    def vault(self, identity: str | None, client: str) -> Vault:
        """One scope per client identity: a mapping is never restored into another client's response."""
        return self.vaults.for_scope(f"user:{identity}" if identity else f"addr:{client}")

    async def open_vault(self, identity: str | None, client: str) -> Vault:
        """``vault``, reading the placeholder key from the shared store first if it is not known yet."""
        if self._vaults is None:
            assert self.remote is not None
            master = await self.remote.open()
            if self._vaults is None:
                self._vaults = Vaults(master, ttl=self.ttl, store=self.remote, clock=time.time)
        return self.vault(identity, client)

    def fetcher(self, vault: Vault) -> Callable[[set[str]], Awaitable[None]] | None:
        """How a restorer gets placeholders ``vault`` does not hold (None: every mapping is local)."""
        remote = self.remote
        if remote is None:
            return None

        async def fetch(tokens: set[str]) -> None:
            missing = vault.missing(tokens)
            if not missing:
                return
            try:
                found = await remote.fetch(vault.scope, missing, time.time())
            except StoreUnavailable:
                return   # left as placeholders (never a wrong value); the request path fails closed
            for token, (value, expires) in found.items():
                vault.learn(token, value, expires)

        return fetch

    async def readiness(self) -> list[str]:
        """Why redaction endpoints cannot be served now (``/readyz``)."""
        if self.remote is None:
            return []
        problem = await self.remote.ping()
        return [f"mapping_store: {problem}"] if problem else []

    def reload(self) -> None:
        if self.finder is not None:   # its workers compiled the old detectors
            self.finder.close()
            self.finder = None

    def close(self) -> None:
        self.scanner.shutdown(wait=False, cancel_futures=True)
        if self.finder is not None:
            self.finder.close()
        if self.store is not None:
            self.store.close()

    async def aclose(self) -> None:
        """``close``, and the shared store's connections."""
        self.close()
        if self.remote is not None:
            await self.remote.aclose()

    async def inspect(self, settings: Settings, redactor: Redactor, decision: Decision, request: Body,
                      vault: Vault) -> Inspection:
        """Step 7: read the body (bounded), then redact it."""
        assert settings.network.redaction is not None
        limit = settings.network.redaction.max_body_bytes
        body = bytearray()
        async for chunk in request.body():
            body += chunk
            if len(body) > limit:
                return inspect(redactor, vault, decision, bytes(body), None, limit)
        encoding = request.headers.get("Content-Encoding")
        async with self._scope(vault):
            inspection = await self._inspect(settings, redactor, decision, vault, bytes(body), encoding, limit)
        if self.remote is not None and inspection.decision.allowed:
            try:   # what this request minted or refreshed, in one round trip, before it goes out
                await self.remote.flush(time.time())
            except StoreUnavailable as exc:
                return Inspection(self.store_down(decision, exc), None)
        return inspection

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
                text = messages.text(data)
            else:
                text = await asyncio.get_running_loop().run_in_executor(self.scanner, messages.text, data)
        if self.remote is not None:
            try:   # the mappings this message minted, shared before it goes out (as for HTTP bodies)
                await self.remote.flush(time.time())
            except StoreUnavailable:
                raise MessageRefused("the shared mapping store is unavailable") from None
        return text

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
    def store_down(decision: Decision, exc: StoreUnavailable) -> Decision:
        """Fail closed: a mapping that cannot be shared would leave the conversation unrestorable elsewhere."""
        return dataclasses.replace(decision, verdict=Verdict.DENY, reason=Reason.STORE_UNAVAILABLE,
                                   source=Source.DEFAULT, message=f"redaction endpoint refused: {exc}")

    @staticmethod
    def unavailable(decision: Decision) -> Decision:
        """A redaction endpoint with redaction disabled by a reload race: never forward uninspected."""
        return dataclasses.replace(decision, verdict=Verdict.DENY, reason=Reason.INSPECTION_FAILED,
                                   source=Source.DEFAULT, message="redaction is not configured for this endpoint")
