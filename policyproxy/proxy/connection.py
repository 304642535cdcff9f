"""``Connection``: who opened a client connection and what for, fixed once it is opened."""

from __future__ import annotations

from dataclasses import dataclass

from policyproxy.reasons import Protocol


@dataclass(frozen=True, slots=True)
class Connection:
    """A client connection: a CONNECT or SOCKS5 tunnel (``host``/``port`` set), or the HTTP listener's
    own connection (``host`` empty: each request names its target)."""

    client: str                   # the client's address (events)
    connection_id: str | None     # tunnels only; plain listener requests have none
    identity: str | None = None   # the proxy-auth user, when there is one (redaction scope)
    host: str = ""                # as the client named it (CONNECT authority or SOCKS5 address)
    port: int = 0
    protocol: Protocol = Protocol.HTTP
    scheme: str = "https"         # inside a tunnel: "https" after TLS interception, "http" over SOCKS5
    trusted: bool = False         # operator-pinned destination

    def inner(self, scheme: str, trusted: bool) -> Connection:
        """The same connection once its inner HTTP is served (interception or plain HTTP over SOCKS5)."""
        return Connection(self.client, self.connection_id, self.identity, self.host, self.port, self.protocol,
                          scheme, trusted)
