"""The service configuration (``sipguard.yaml``), validated once into frozen objects.

Owns: reading and checking every section (listen addresses, peers, trunks, SIP timers,
store, records, PIN, IVR, edge, TCP/TLS, admin, alerts) with ``file:line: key.path:
message`` errors, and opening the state store it names. May import every package below
it (sip, schema, store, transports, b2bua, pin, records, edge, alerts), none above.
"""

from sipguard.config.sections import AdminSettings
from sipguard.config.settings import (
    ListenAddress,
    Settings,
    exposed_secrets,
    find_config,
    load_settings,
    settings_or_report,
)
from sipguard.config.stores import make_store

__all__ = [
    "AdminSettings",
    "ListenAddress",
    "Settings",
    "exposed_secrets",
    "find_config",
    "load_settings",
    "make_store",
    "settings_or_report",
]
