"""The fraud policy: pure functions from a call attempt to a decision.

``evaluate(policy, attempt, usage) -> Decision``: the decision carries the
trace of every rule consulted, which the logs, ``sipguard explain`` and the
tests all read. The decision never does I/O or reads a clock.

Owns: the model, numbers (phonenumbers), the engine, limits, explain, and the policy
file: loading and validating it (:mod:`loader`, :mod:`reader`, :mod:`limits_section`,
:mod:`alerts_section`: ``file:line: key.path: message``) and editing its alerts section
(:mod:`edit`). May import: ``sipguard.schema`` only; no sockets, asyncio, clock or
logging (the architecture test checks it).
"""

from sipguard.policy.alerting import WEEK, AlertPolicy, AlertType, Level
from sipguard.policy.decision import CallAttempt, Decision, TraceEntry, Usage, Verdict
from sipguard.policy.edit import EDITABLE, current_values, edit_alerts
from sipguard.policy.engine import evaluate
from sipguard.policy.explain import format_decision
from sipguard.policy.jurisdiction import jurisdiction, number_state
from sipguard.policy.limits import (
    LimitResult,
    apply_consecutive,
    apply_limits,
    apply_spend,
    consecutive_checks,
    limit_checks,
    max_duration,
    spend_checks,
)
from sipguard.policy.loader import LoadedPolicy, load_policy_file
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
    "EDITABLE",
    "WEEK",
    "Account",
    "Action",
    "AlertPolicy",
    "AlertType",
    "BusinessHours",
    "CallAttempt",
    "Decision",
    "DestinationRule",
    "DialPlan",
    "ExtensionGroup",
    "ExtensionPattern",
    "Level",
    "LimitKind",
    "LimitResult",
    "LimitRule",
    "Limits",
    "LoadedPolicy",
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
    "apply_consecutive",
    "apply_limits",
    "apply_spend",
    "clean",
    "consecutive_checks",
    "current_values",
    "edit_alerts",
    "evaluate",
    "format_decision",
    "is_emergency",
    "jurisdiction",
    "limit_checks",
    "load_policy_file",
    "max_duration",
    "number_state",
    "spend_checks",
]
