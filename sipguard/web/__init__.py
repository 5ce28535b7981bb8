"""The admin web server: Prometheus metrics (and, later, the dashboard) on an admin
address that is never one of the SIP listeners."""

from sipguard.web.admin import AdminServer

__all__ = ["AdminServer"]
