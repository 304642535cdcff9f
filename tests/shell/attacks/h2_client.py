"""A hostile HTTP/2 client harness for the ``test_h2_*`` attack files: the in-process proxy with a
given profile, ``RawClient`` (from ``test_h2_hostile``) against it, and a well-behaved client after."""

from __future__ import annotations

import asyncio
from typing import Any

from h2.events import ResponseReceived, StreamEnded, StreamReset

from tests.proxy.harness import pins, running
from tests.shell.test_h2_hostile import RawClient as HostileClient
from tests.shell.test_h2_hostile import still_serving


class RawClient(HostileClient):
    """``test_h2_hostile``'s client (``open_to`` any intercepted host), with request heads for it."""

    def request_headers(self, port: int, path: str = "/x", method: str = "GET",
                        extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        host = self.writer.get_extra_info("ssl_object").server_hostname
        return [(":method", method), (":scheme", "https"), (":authority", f"{host}:{port}"), (":path", path),
                *(extra or [])]

__all__ = ["RawClient", "attack_with", "ended", "status_of"]


def attack_with(tmp_path, pki, upstream, config: str, attack: Any, env: dict[str, str] | None = None,
                pins_extra: tuple[tuple[str, int], ...] = (), **options: Any) -> Any:
    """Run ``attack(server, proxy_port, upstream_port, ca)`` against a proxy for ``config``; returns
    (result, status of a fresh h2 client afterwards, [(reason, status, path, (decision, outcome))] reported)."""
    async def run() -> Any:
        async with running(tmp_path, config, env, upstream_cas=(pki[0],),
                           pins={**pins(("api.github.com", "api.anthropic.com", "upstream.test"), upstream.tls_port),
                                 **{k: v for name, extra in pins_extra for k, v in pins((name,), extra).items()}},
                           **options) as server:
            events: list[tuple[str, int | None, str | None, Any]] = []
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status, d.path, (d, o))))
            port = server.addresses["http"][1]
            ca = str(tmp_path / "ca" / "ca.pem")
            result = await attack(server, port, upstream.tls_port, ca)
            after = await still_serving(port, upstream.tls_port, ca)
            return result, after, events

    return asyncio.run(run())


def status_of(client: RawClient, sid: int) -> str | None:
    return next((dict(e.headers)[":status"] for e in client.events
                 if isinstance(e, ResponseReceived) and e.stream_id == sid), None)


def ended(*sids: int) -> Any:
    """A ``pump`` condition: each of ``sids`` ended or was reset."""
    def done(events: list[Any]) -> bool:
        return all(any(isinstance(e, (StreamEnded, StreamReset)) and e.stream_id == sid for e in events)
                   for sid in sids)
    return done
