"""Keep same-user processes (the agent) out of the proxy's memory and environment.

The agent runs as the developer, like ``run`` and the proxy. Without this, it could read the secrets
``run`` withholds from it straight from ``/proc/<pid>/environ`` of its parent or of the proxy, or
ptrace either. ``PR_SET_DUMPABLE = 0`` makes those files root-owned and forbids same-uid ptrace
(and core dumps, which would hold the secrets too). It does not survive ``exec``: the agent itself
stays a normal process.
"""

from __future__ import annotations

import ctypes
import sys

PR_SET_DUMPABLE = 4


def make_undumpable() -> bool:
    """Mark this process non-dumpable (Linux); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
