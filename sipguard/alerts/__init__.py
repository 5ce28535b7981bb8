"""Alerts: baselines learned from the call records, alerts at three levels, the channels
that carry them (webhook, email, SMS, the log), the journal of acknowledgments, the
locks an urgent one can set, and the control-socket handlers for alerts and locks.

Owns: watching traffic against what is usual and telling people. May import:
``sipguard.records`` (the baselines' history), ``sipguard.screening`` (locks),
``sipguard.policy``, ``sipguard.store``, ``sipguard.control`` and ``sipguard.schema``.
"""

from __future__ import annotations

from sipguard.alerts.control import alert_handlers, lock_handlers
from sipguard.alerts.model import Alert
from sipguard.alerts.settings import AlertSettings, load_alert_settings
from sipguard.alerts.watch import Alerting

__all__ = [
    "Alert",
    "AlertSettings",
    "Alerting",
    "alert_handlers",
    "load_alert_settings",
    "lock_handlers",
]
