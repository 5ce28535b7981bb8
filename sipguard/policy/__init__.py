"""The fraud policy: pure functions from a call attempt to a decision.

``evaluate(policy, attempt, usage) -> Decision``: the decision carries the
trace of every rule consulted, which the logs, ``sipguard explain`` and the
tests all read. Nothing here does I/O or reads a clock; the YAML loader is
sipguard.policyfile.
"""

from sipguard.policy.decision import CallAttempt, Decision, TraceEntry, Usage, Verdict
from sipguard.policy.engine import evaluate
from sipguard.policy.model import (
    Account,
    Action,
    BusinessHours,
    DestinationRule,
    ExtensionGroup,
    ExtensionPattern,
    LimitKind,
    LimitRule,
    Limits,
    Mode,
    Policy,
    RiskSettings,
    TimeRule,
    TypeRule,
)
from sipguard.policy.numbers import DialPlan, Number, NumberType, analyse, clean, is_emergency

__all__ = [
    "Account",
    "Action",
    "BusinessHours",
    "CallAttempt",
    "Decision",
    "DestinationRule",
    "DialPlan",
    "ExtensionGroup",
    "ExtensionPattern",
    "LimitKind",
    "LimitRule",
    "Limits",
    "Mode",
    "Number",
    "NumberType",
    "Policy",
    "RiskSettings",
    "TimeRule",
    "TraceEntry",
    "TypeRule",
    "Usage",
    "Verdict",
    "analyse",
    "clean",
    "evaluate",
    "is_emergency",
]
