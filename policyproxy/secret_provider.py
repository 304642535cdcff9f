"""``SecretProvider``: the shell that turns a secret reference into its current value, per request.

The compiled policy holds only ``SecretRef`` references (``policy.model.Injection``); the pipeline asks
this provider for their values when a request needs them, so secrets rotate without a reload:

- ``secret_env_var``: read at start (a process's environment does not change).
- ``secret_file``: ``stat``-ed on every use; when its inode, size, mtime or ctime changed it is read
  again, and the new value replaces the old one in a single assignment (a request sees the old or the
  new value, never a mix). A file that vanished, is empty or is unreadable keeps the last good value
  (Kubernetes swaps projected files by renaming a symlink; a writer that truncates first would
  otherwise hand out half a token).
- ``secret_command``: an argv (no shell) run at start and again when its value gets old: stdout
  trimmed is the value, or JSON ``{"value": "...", "expires_at": "RFC 3339" | epoch seconds}``. A value
  lives ``secret_ttl_seconds`` (or until ``expires_at`` if earlier); past three quarters of that a use
  starts a refresh in the background and keeps using the current value; a failed refresh keeps the
  last good value until it expires, after which requests needing it are denied (``SecretUnavailable``,
  reason ``secret_unavailable``) until a refresh succeeds.

No message here ever contains a value, a command's output or its stderr: only the env var name, the
file path or the command's name and exit status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import select
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from policyproxy.config.schema import SecretRef, Settings
from policyproxy.config.source import read_secret_file
from policyproxy.errors import ConfigError, ConfigErrors, PolicyProxyError
from policyproxy.policy.model import Secret
from policyproxy.stores.secrets import resolve_store_secrets

log = logging.getLogger("policyproxy")

COMMAND_TIMEOUT = 10.0          # seconds a secret_command may run
MAX_OUTPUT = 64 * 1024          # bytes of stdout read from a secret_command
REFRESH_AT = 0.75               # fraction of a command value's life after which a use refreshes it


class SecretUnavailable(PolicyProxyError):
    """A secret a request needs has no usable value (expired and not refreshed); names the source only."""


class SecretFailure(Exception):
    """Why one read of a source failed; the message names the source, never a value."""


@dataclass(frozen=True, slots=True)
class _Value:
    secret: Secret
    stamp: tuple[int, ...] = ()      # file: (dev, ino, size, mtime_ns, ctime_ns) of what was read
    fetched: float = 0.0             # command: monotonic time of minting
    expires: float = math.inf        # command: monotonic time after which the value is not used


def _checked(value: str, origin: str) -> str:
    if not value:
        raise SecretFailure(f"the secret from {origin} is empty")
    if any(c in value for c in "\r\n\0") or not value.isprintable():
        raise SecretFailure(f"the secret from {origin} contains a line break or control character")
    return value


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def command_name(ref: SecretRef) -> str:
    return os.path.basename((ref.command or ("?",))[0])


def parse_command_output(out: bytes, origin: str, now_wall: float) -> tuple[str, float | None]:
    """The value and, when the output is JSON with ``expires_at``, its lifetime left in seconds."""
    try:
        text = out.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretFailure(f"{origin} printed something that is not UTF-8") from None
    if not text.startswith("{"):
        return _checked(text, origin), None
    try:
        doc = json.loads(text)
    except ValueError:
        raise SecretFailure(f"{origin} printed invalid JSON") from None
    value = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(value, str):
        raise SecretFailure(f'{origin} printed JSON without a string "value"')
    expires_at = doc.get("expires_at")
    if expires_at is None:
        return _checked(value.strip(), origin), None
    if isinstance(expires_at, (int, float)) and not isinstance(expires_at, bool):
        deadline = float(expires_at)
    elif isinstance(expires_at, str):
        try:
            parsed = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            raise SecretFailure(f'{origin} printed an "expires_at" that is not RFC 3339') from None
        if parsed.tzinfo is None:
            raise SecretFailure(f'{origin} printed an "expires_at" without a time zone')
        deadline = parsed.timestamp()
    else:
        raise SecretFailure(f'{origin} printed an "expires_at" that is neither a time nor a number')
    return _checked(value.strip(), origin), deadline - now_wall


def _run_sync(argv: tuple[str, ...]) -> tuple[int, bytes]:
    """Run at start (and on a reload): at most ``COMMAND_TIMEOUT`` and ``MAX_OUTPUT`` bytes, else killed."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + COMMAND_TIMEOUT
    out = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(argv, COMMAND_TIMEOUT)
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            if len(out) > MAX_OUTPUT:
                raise SecretFailure(f"{command_name_of(argv)!r} printed more than {MAX_OUTPUT // 1024} KiB")
        return proc.wait(max(0.1, deadline - time.monotonic())), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


async def _run_async(argv: tuple[str, ...]) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None

    async def collect() -> bytes:
        assert proc.stdout is not None
        out = b""
        while chunk := await proc.stdout.read(65536):
            out += chunk
            if len(out) > MAX_OUTPUT:
                raise SecretFailure(f"{command_name_of(argv)!r} printed more than {MAX_OUTPUT // 1024} KiB")
        await proc.wait()
        return out

    try:
        out = await asyncio.wait_for(collect(), COMMAND_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            # Read the dead process's pipe to its end: asyncio's wait() returns only once every pipe is
            # closed, and a reader paused at its limit (a runaway writer) would otherwise wait forever.
            await proc.communicate()
    return proc.returncode or 0, out


def command_name_of(argv: tuple[str, ...]) -> str:
    return os.path.basename(argv[0]) if argv else "?"


class SecretProvider:
    """Current values of the secrets one configuration injects; see the module docstring.

    ``env``, ``clock`` (monotonic) and ``wall`` (epoch seconds) are injectable for tests.
    """

    def __init__(self, refs: Iterable[tuple[SecretRef, str]], env: Mapping[str, str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._refs: dict[SecretRef, str] = {}     # ref -> the config key that names it (for messages)
        for ref, key in refs:
            self._refs.setdefault(ref, key)
        self._env = os.environ if env is None else env
        self._clock = clock
        self._wall = wall
        self._values: dict[SecretRef, _Value] = {}
        self._refreshing: dict[SecretRef, asyncio.Task[None]] = {}
        self._next_try: dict[SecretRef, float] = {}

    # --- start ---------------------------------------------------------------------------------------

    @classmethod
    def for_settings(cls, settings: Settings, env: Mapping[str, str] | None = None, *,
                     previous: SecretProvider | None = None, missing_ok: bool = False,
                     clock: Callable[[], float] = time.monotonic,
                     wall: Callable[[], float] = time.time) -> tuple[SecretProvider, list[ConfigError]]:
        """Read every secret ``settings`` injects. Problems are raised as ``ConfigErrors`` (naming the key
        and the source), or with ``missing_ok`` (``check --no-secrets``) returned as warnings, commands
        then not run. ``previous`` (a reload) lends the values of unchanged command sources."""
        provider = cls(secret_refs(settings), env, clock=clock, wall=wall)
        where = str(settings.config_file) if settings.config_file else None
        problems: list[ConfigError] = []
        for ref, key in provider._refs.items():
            line = settings.line_of(key)
            if missing_ok and ref.command is not None:
                if shutil.which(ref.command[0]) is None:
                    problems.append(ConfigError(f"runs {ref.command[0]!r}, which is not found or not executable "
                                                "here (not run: --no-secrets)", file=where, line=line, key=key))
                continue
            kept = previous._values.get(ref) if previous is not None and ref.command is not None else None
            if kept is not None and clock() < kept.expires:
                provider._values[ref] = kept
                continue
            try:
                provider._values[ref] = provider._read(ref)
            except SecretFailure as exc:
                problems.append(ConfigError(str(exc), file=where, line=line, key=key))
        spec = settings.network.redaction
        if spec is not None and spec.enabled:   # the mapping store's own secrets: checked here too
            resolve_store_secrets(spec, provider._env, read_secret_file, lambda key, message: problems.append(
                ConfigError(message, file=where, line=settings.line_of(f"permissions.{settings.profile}.network.{key}"),
                            key=f"permissions.{settings.profile}.network.{key}")))
        if problems and not missing_ok:
            raise ConfigErrors(problems)
        return provider, problems

    def _read(self, ref: SecretRef) -> _Value:
        """One synchronous read of ``ref`` (at start: commands run here too)."""
        if ref.env_var is not None:
            value = self._env.get(ref.env_var)
            if value is None:
                raise SecretFailure(f"names {ref.env_var}, a missing required environment variable")
            return _Value(Secret(_checked(value.strip(), f"environment variable {ref.env_var}"), ref.describe()))
        if ref.file is not None:
            return self._read_file(ref.file, ref)
        origin = repr(command_name(ref))
        try:
            status, out = _run_sync(ref.command or ())
        except subprocess.TimeoutExpired:
            raise SecretFailure(f"{origin} did not finish within {COMMAND_TIMEOUT:g} s") from None
        except OSError as exc:
            raise SecretFailure(f"{origin} cannot be run: {exc.strerror or type(exc).__name__}") from None
        return self._minted(ref, status, out, origin)

    def _minted(self, ref: SecretRef, status: int, out: bytes, origin: str) -> _Value:
        if status != 0:
            raise SecretFailure(f"{origin} exited with status {status}")
        value, lifetime = parse_command_output(out, origin, self._wall())
        now = self._clock()
        life = float(ref.ttl_seconds) if lifetime is None else min(float(ref.ttl_seconds), lifetime)
        if life <= 0:
            raise SecretFailure(f"{origin} printed a value that has already expired")
        return _Value(Secret(value, ref.describe()), fetched=now, expires=now + life)

    def _read_file(self, path: str, ref: SecretRef) -> _Value:
        for _ in range(3):   # a file rewritten while it was read is read again
            try:
                # Non-blocking, then checked: a FIFO or device put in the file's place must never stall
                # the event loop (a stat-then-open would race with the swap).
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    before = os.fstat(fd)
                    if not stat.S_ISREG(before.st_mode):
                        raise SecretFailure(f"{path} is not a regular file")
                    data = os.read(fd, MAX_OUTPUT)
                finally:
                    os.close(fd)
                after = os.stat(path)
            except OSError as exc:
                raise SecretFailure(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
            if _stamp(before) == _stamp(after):
                try:
                    text = data.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise SecretFailure(f"{path} is not UTF-8 text") from None
                return _Value(Secret(_checked(text, f"file {path}"), ref.describe()), stamp=_stamp(after))
        raise SecretFailure(f"{path} kept changing while it was read")

    # --- per request ---------------------------------------------------------------------------------

    async def prepare(self, refs: Iterable[SecretRef]) -> None:
        """Before a request uses ``refs``: re-read changed files, refresh old command values (waiting
        only when a value has expired)."""
        for ref in refs:
            if ref.file is not None:
                self._check_file(ref)
            elif ref.command is not None:
                await self._check_command(ref)

    def lookup(self, ref: SecretRef) -> Secret:
        """The value to inject now; ``SecretUnavailable`` when there is none (never read, or expired)."""
        current = self._values.get(ref)
        if current is None or self._clock() >= current.expires:
            what = "has expired and could not be refreshed" if current is not None else "could not be read"
            raise SecretUnavailable(f"the secret from {ref.describe()} {what}")
        return current.secret

    def _check_file(self, ref: SecretRef) -> None:
        assert ref.file is not None
        current = self._values.get(ref)
        try:
            stamp = _stamp(os.stat(ref.file))
        except OSError:
            return   # gone for now (a symlink swap in progress): keep the last good value
        if current is not None and stamp == current.stamp:
            return
        try:
            fresh = self._read_file(ref.file, ref)
        except SecretFailure as exc:
            log.warning("secret_file %s changed but cannot be used (%s); keeping the previous value",
                        ref.file, exc)
            return
        self._values[ref] = fresh   # one assignment: a request sees the old value or the new one

    async def _check_command(self, ref: SecretRef) -> None:
        now = self._clock()
        current = self._values.get(ref)
        if current is not None and now < current.fetched + REFRESH_AT * (current.expires - current.fetched):
            return
        running = self._refreshing.get(ref)
        if running is None and now >= self._next_try.get(ref, 0.0):
            running = asyncio.get_running_loop().create_task(self._refresh(ref))
            self._refreshing[ref] = running
            running.add_done_callback(lambda _: self._refreshing.pop(ref, None))
        if running is not None and (current is None or now >= current.expires):
            await asyncio.shield(running)   # no usable value: this request waits for the new one

    async def _refresh(self, ref: SecretRef) -> None:
        origin = repr(command_name(ref))
        try:
            try:
                status, out = await _run_async(ref.command or ())
            except asyncio.TimeoutError:
                raise SecretFailure(f"{origin} did not finish within {COMMAND_TIMEOUT:g} s") from None
            except OSError as exc:
                raise SecretFailure(f"{origin} cannot be run: {exc.strerror or type(exc).__name__}") from None
            self._values[ref] = self._minted(ref, status, out, origin)
            self._next_try.pop(ref, None)
        except SecretFailure as exc:
            current = self._values.get(ref)
            life = float(ref.ttl_seconds) if current is None else current.expires - current.fetched
            self._next_try[ref] = self._clock() + max(0.2, min(30.0, life / 8))
            kept = ("keeping the last value until it expires" if current is not None
                    and self._clock() < current.expires else "requests that need it are denied")
            log.warning("refreshing the secret for %s failed: %s; %s", self._refs.get(ref, ref.describe()), exc, kept)


def secret_refs(settings: Settings) -> list[tuple[SecretRef, str]]:
    """Every injected secret source with the config key that names it."""
    base = f"permissions.{settings.profile}.network.mitm.actions"
    out: list[tuple[SecretRef, str]] = []
    for action in settings.network.actions:
        for i, inject in enumerate(action.inject_request_headers):
            ref = inject.secret
            field = "secret_env_var" if ref.env_var is not None else "secret_file" if ref.file else "secret_command"
            out.append((ref, f"{base}.{action.name}.inject_request_headers[{i}].{field}"))
    return out
