"""The ``[admin]`` table: where the admin listener binds and the bearer token that guards it.

```toml
[admin]
listen = "127.0.0.1:9090"    # the default; "off" disables; port 0 picks a free port
token_env_var = "PP_ADMIN_TOKEN"   # or token_file = "/abs/path"; required off loopback
```
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from policyproxy.config.reader import Reader
from policyproxy.config.schema import AdminSpec, SecretRef

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\[\]:/]+)):(?P<port>[0-9]{1,5})")


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` or ``[V6]:PORT`` (ASCII digits, 0-65535) as (host, port); None if malformed.
    ``localhost`` becomes 127.0.0.1 so the loopback check and the banner say what is bound."""
    match = _HOST_PORT.fullmatch(text.strip())
    if match is None or int(match["port"]) > 65535:
        return None
    host = match["v6"] or match["host"]
    if match["v6"]:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return ("127.0.0.1" if host.lower() == "localhost" else host), int(match["port"])


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_admin(r: Reader, raw: object) -> AdminSpec:
    at = ("admin",)
    table: dict[str, Any] = r.table(raw, at, {"listen", "token_env_var", "token_file"})
    listen = r.get(table, "listen", at, str, AdminSpec.listen)
    token_env_var = r.get(table, "token_env_var", at, str, None)
    token_file = r.get(table, "token_file", at, str, None)
    if listen != "off":
        address = parse_listen(listen)
        if address is None:
            r.error((*at, "listen"), f'must be "HOST:PORT", "[IPv6]:PORT" or "off", got {listen!r}')
        elif not is_loopback(address[0]) and token_env_var is None and token_file is None:
            r.error((*at, "listen"), f"{listen!r} is not loopback: set token_env_var or token_file so the admin "
                    "listener requires a bearer token, or listen on 127.0.0.1")
    if token_env_var is not None and token_file is not None:
        r.error((*at, "token_file"), "set only one of token_env_var and token_file")
    if token_env_var is not None and not _ENV_NAME.fullmatch(token_env_var):
        r.error((*at, "token_env_var"), f"{token_env_var!r} is not a valid environment variable name")
    if token_file is not None and not token_file.startswith("/"):
        r.error((*at, "token_file"), f"must be an absolute path, got {token_file!r}")
    token = SecretRef(env_var=token_env_var) if token_env_var else SecretRef(file=token_file) if token_file else None
    return AdminSpec(listen, token)
