"""The fraud policy: pure functions from a call attempt to a decision.

Until the full policy engine lands this package holds the interim rule:
a dialled number that starts with a blocked prefix is rejected; everything
else is forwarded. Emergency numbers are always forwarded, whatever the
rules say. Every decision carries the trace of the rules it consulted.
"""

from sipguard.policy.decision import CallAttempt, Decision, TraceEntry, Verdict
from sipguard.policy.prefix import EMERGENCY_NUMBERS, PrefixPolicy, dialled_digits, evaluate

__all__ = [
    "EMERGENCY_NUMBERS",
    "CallAttempt",
    "Decision",
    "PrefixPolicy",
    "TraceEntry",
    "Verdict",
    "dialled_digits",
    "evaluate",
]
