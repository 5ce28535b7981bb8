"""Screening a call attempt: the policy in force (reloaded on SIGHUP or a file change),
the decision with usage filled in, limits and spend counted in the state store, account
locks and the kill switch, and the store-outage rule (fail open or closed by class).

Owns: what every front door asks before a call goes out. May import: ``sipguard.policy``,
``sipguard.store`` and ``sipguard.schema``; never SIP or the service.
"""

from sipguard.screening.locks import SCOPES, Lock, Locks
from sipguard.screening.screener import Charge, Screener, Screening, UsageTracker, failed_closed

__all__ = [
    "SCOPES",
    "Charge",
    "Lock",
    "Locks",
    "Screener",
    "Screening",
    "UsageTracker",
    "failed_closed",
]
