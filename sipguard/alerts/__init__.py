"""Alerts: baselines learned from the call records, alerts at three levels, the channels
that carry them (webhook, email, SMS, the log) and the locks an urgent one can set."""

from __future__ import annotations

from sipguard.alerts.model import Alert
from sipguard.alerts.settings import AlertSettings, load_alert_settings
from sipguard.alerts.watch import Alerting

__all__ = ["Alert", "AlertSettings", "Alerting", "load_alert_settings"]
