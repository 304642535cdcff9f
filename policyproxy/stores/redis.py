"""The Redis mapping store: placeholder mappings and the placeholder key shared by every instance.

Several proxies behind a balancer share one Redis (or Valkey), so any instance restores a placeholder
another minted. Keys are namespaced per scope (``policyproxy:m:<sha256(scope)>:<placeholder>``) and
expire with the mapping TTL, refreshed when a turn uses the mapping again. The HMAC key comes from
``mapping_key_env``/``_file`` when configured (then values are also encrypted with AES-GCM under a
key derived from it, with the Redis key name as associated data); otherwise it is created once, by
whichever instance gets there first (``SET NX``), and stored in Redis.

Nothing here blocks the request path on its own: ``put`` only queues (the vault calls it while
redacting), ``flush`` writes the queue in one pipelined round trip, ``fetch`` reads the values of
placeholders a vault does not hold in one round trip. Every call is bounded by ``TIMEOUT``; a failure
raises ``StoreUnavailable`` (the proxy fails closed) and the next call tries again (recovery is
automatic). Queued writes that failed are kept (bounded) and go out with the next flush.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TIMEOUT = 1.0                 # seconds for connecting and for each round trip
MAX_PENDING = 100_000         # queued writes kept across failures (then the oldest are dropped)
PREFIX = "policyproxy:"
MASTER_KEY = PREFIX + "master"
_PLAIN, _SEALED = b"\x00", b"\x01"


class StoreUnavailable(Exception):
    """The shared store cannot be reached (or answered too late); the message names it, never a secret."""


def derive(key: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` from the operator's mapping key (HKDF-SHA256)."""
    return HKDF(hashes.SHA256(), 32, None, f"policyproxy {purpose}".encode()).derive(key)


def shown(url: str) -> str:
    """The store's URL without credentials, for messages and ``/readyz``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisMappingStore:
    """``MappingStore`` on Redis; ``remote`` tells the inspector to flush and fetch."""

    remote = True

    def __init__(self, url: str, *, password: str | None = None, key: bytes | None = None,
                 ca_file: str | None = None, timeout: float = TIMEOUT) -> None:
        # redis-py is imported only when a Redis store is configured: a proxy without one never loads it.
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
        options: dict[str, Any] = {}
        if url.startswith("rediss://") and ca_file:
            options["ssl_ca_certs"] = ca_file
        self.where = shown(url)
        self.timeout = timeout
        self._client = aioredis.Redis.from_url(
            url, password=password, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0, max_connections=256, **options)
        self._master = derive(key, "placeholder hmac") if key is not None else None
        self._aead = AESGCM(derive(key, "mapping encryption")) if key is not None else None
        self._pending: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()   # large bodies are redacted on worker threads, which ``put``
        self._inflight: set[asyncio.Future[None]] = set()
        self.problem: str | None = None   # why the last call failed (None: the last call worked)
        self._failed = False              # a write failed since the last one that worked

    # ---- MappingStore (synchronous, called by the vault) ----------------------------------------
    def master(self) -> bytes:
        if self._master is None:
            raise StoreUnavailable(f"the placeholder key has not been read from {self.where} yet")
        return self._master

    def load(self, scope: str) -> dict[str, tuple[str, float]]:
        return {}   # lazily: a vault asks for what it is missing (``fetch``)

    def put(self, scope: str, token: str, value: str, expires: float) -> None:
        with self._lock:
            self._pending.pop((scope, token), None)
            self._pending[(scope, token)] = (value, expires)
            while len(self._pending) > MAX_PENDING:
                del self._pending[next(iter(self._pending))]

    def close(self) -> None:
        """Nothing to do synchronously; ``aclose`` closes the connections."""

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- the I/O ----------------------------------------------------------------------------------
    @staticmethod
    def key(scope: str, token: str) -> str:
        return f"{PREFIX}m:{hashlib.sha256(scope.encode()).hexdigest()[:32]}:{token}"

    async def _run(self, what: str, call: Any) -> Any:
        try:
            result = await asyncio.wait_for(call, self.timeout)
        except self._errors as exc:
            self._failed = True
            self.problem = f"{self.where} {what}: {type(exc).__name__}"
            raise StoreUnavailable(f"the mapping store {self.where} is unavailable ({type(exc).__name__})") from None
        self.problem = None
        return result

    async def open(self) -> bytes:
        """The placeholder key: the configured one, else the one in Redis (created once, atomically)."""
        if self._master is None:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(MASTER_KEY, secrets.token_bytes(32), nx=True)
            pipe.get(MASTER_KEY)
            _, master = await self._run("reading the placeholder key", pipe.execute())
            if not isinstance(master, bytes) or len(master) < 32:
                raise StoreUnavailable(f"the placeholder key in {self.where} ({MASTER_KEY}) is not 32 bytes")
            self._master = master
        return self._master

    async def flush(self, now: float) -> None:
        """Write every queued mapping (expiry = its TTL from now) in one round trip, and wait for the
        writes already in flight (another request may have taken this one's mappings with it): when
        this returns, every mapping the caller queued is in Redis. Nothing queued or in flight and the
        last call failed: check the store is back (so a down store keeps failing closed)."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if batch:
            task = asyncio.ensure_future(self._write(batch, now))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        elif not self._inflight:
            if self.problem is not None:
                await self._run("ping", self._client.ping())
            return
        waiting = set(self._inflight)
        await asyncio.wait(waiting)   # never cancels the others' writes
        for write in waiting:
            if write.exception() is not None:
                raise StoreUnavailable(f"the mapping store {self.where} is unavailable (writing mappings)")

    async def _write(self, batch: dict[tuple[str, str], tuple[str, float]], now: float) -> None:
        pipe = self._client.pipeline(transaction=False)
        if self._master is not None and self._aead is None and self._failed:
            # The key lives in Redis: after an outage, put it back in case Redis lost it (restarted without
            # persistence), so an instance started afterwards adopts it instead of minting other placeholders.
            pipe.set(MASTER_KEY, self._master, nx=True)
        for (scope, token), (value, expires) in batch.items():
            name = self.key(scope, token)
            pipe.set(name, self._seal(name, value), px=max(1, int((expires - now) * 1000)))
        try:
            await self._run("writing mappings", pipe.execute())
            self._failed = False
        except StoreUnavailable:
            self._failed = True
            with self._lock:
                for item, entry in batch.items():   # kept for the next flush, newer writes win
                    self._pending.setdefault(item, entry)
            raise

    async def fetch(self, scope: str, tokens: list[str], now: float) -> dict[str, tuple[str, float]]:
        """placeholder -> (value, expires) for those of ``tokens`` the store holds, in one round trip."""
        if not tokens:
            return {}
        pipe = self._client.pipeline(transaction=False)
        names = [self.key(scope, token) for token in tokens]
        for name in names:
            pipe.get(name)
            pipe.pttl(name)
        answers = await self._run("reading mappings", pipe.execute())
        found: dict[str, tuple[str, float]] = {}
        for i, token in enumerate(tokens):
            raw, ttl = answers[2 * i], answers[2 * i + 1]
            value = self._open(names[i], raw) if isinstance(raw, bytes) else None
            if value is not None and isinstance(ttl, int) and ttl > 0:
                found[token] = (value, now + ttl / 1000)
        return found

    async def ping(self) -> str | None:
        """None when the store answers, else why not (for ``/readyz``)."""
        try:
            await self._run("ping", self._client.ping())
            if self._master is None:
                await self.open()
        except StoreUnavailable as exc:
            return str(exc)
        return None

    # ---- values at rest ---------------------------------------------------------------------------
    def _seal(self, name: str, value: str) -> bytes:
        if self._aead is None:
            return _PLAIN + value.encode()
        nonce = os.urandom(12)
        return _SEALED + nonce + self._aead.encrypt(nonce, value.encode(), name.encode())

    def _open(self, name: str, raw: bytes) -> str | None:
        """The stored value, or None when it cannot be read with this instance's key (never guessed)."""
        if raw[:1] == _PLAIN and self._aead is None:
            return raw[1:].decode("utf-8", "replace")
        if raw[:1] == _SEALED and self._aead is not None and len(raw) > 29:
            try:
                return self._aead.decrypt(raw[1:13], raw[13:], name.encode()).decode()
            except InvalidTag:
                return None
        return None
