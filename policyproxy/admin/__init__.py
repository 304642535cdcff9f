"""The admin listener: health, readiness and status, off the proxy port (loopback by default).

``AdminState`` is what the proxy updates (bound listeners, the current settings); ``AdminServer``
serves it over aiohttp. Later endpoints (``/metrics``, ``/api/decisions``, the page at ``/``) add
fields to the state and routes to ``server.build_app``; the proxy never hands the admin its whole app.
"""

from policyproxy.admin.server import AdminError, AdminServer, build_app, resolve_token, start_admin
from policyproxy.admin.state import AdminState

__all__ = ["AdminError", "AdminServer", "AdminState", "build_app", "resolve_token", "start_admin"]
