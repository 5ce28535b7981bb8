"""The admin web server on an admin address that is never one of the SIP listeners:
Prometheus metrics, the dashboard (server-rendered pages, inline SVG charts) and its
JSON API, and their access control (token, Basic, sessions, CSRF).

Owns: everything served over HTTP. May import every package below it (config, alerts,
records, edge, screening, pin, policy, store, schema), never the service or the CLI.
"""

from sipguard.web.access import Access
from sipguard.web.admin import AdminServer
from sipguard.web.dashboard import Dashboard, Parts
from sipguard.web.metrics import Metrics

__all__ = [
    "Access",
    "AdminServer",
    "Dashboard",
    "Metrics",
    "Parts",
]
