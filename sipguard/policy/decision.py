"""Call attempts and the decisions taken on them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sipguard.policy.numbers import Number


class Verdict(enum.Enum):
    """What happens to the call."""

    FORWARD = "forward"
    CHALLENGE = "challenge"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class CallAttempt:
    """Everything screening knows about one outbound INVITE.

    ``dialled`` is the Request-URI's user part, unescaped (never the To
    header); ``when`` is the time of the call (UTC), None for "now" in tests.
    """

    call_id: str
    account: str
    source: str
    caller: str
    dialled: str
    extension: str | None = None
    when: datetime | None = None
    # Where the extension was read: "header" (the configured extension header, which
    # the PBX's pre-dial handler sets), "identity" (P-Asserted-Identity) or "from"
    # (the From user, which a caller can forge); "" when it was given (explain, tests).
    extension_source: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """What the state store knows about recent calls (filled in by the service)."""

    international_calls_last_hour: int = 0
    destination_seen_before: bool | None = None  # None: not known


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One rule consulted: its id, whether it matched, what it would do, and why."""

    rule: str
    matched: bool
    detail: str
    stage: str = ""
    action: str | None = None  # allow | pin | deny when the rule has an opinion
    mode: str = "enforce"

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain data (JSON, logs)."""
        return {"stage": self.stage, "rule": self.rule, "matched": self.matched,
                "action": self.action, "mode": self.mode, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of screening, with the trace of every rule consulted.

    ``action`` is what is done; ``would`` is what an all-enforcing policy
    would do (they differ only when report mode let a call through).
    ``category`` is the short, public reason that goes into a 403's Reason.
    """

    verdict: Verdict
    reason: str
    trace: tuple[TraceEntry, ...] = ()
    rule: str | None = None
    category: str = ""
    would: str = ""
    number: Number | None = None
    number_class: str | None = None
    risk_score: int | None = None
    policy_version: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        """allow, pin or deny."""
        return {Verdict.FORWARD: "allow", Verdict.CHALLENGE: "pin", Verdict.REJECT: "deny"}[
            self.verdict]

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The ids of the rules that matched."""
        return tuple(entry.rule for entry in self.trace if entry.matched)

    def as_dict(self) -> dict[str, Any]:
        """The decision as plain data (``sipguard explain --json``, logs)."""
        number = self.number
        return {
            "action": self.action,
            "would": self.would or self.action,
            "rule": self.rule,
            "category": self.category,
            "reason": self.reason,
            "number": None if number is None else {
                "dialled": number.dialled, "cleaned": number.cleaned, "e164": number.e164,
                "region": number.region, "type": number.number_type.value,
                "class": self.number_class,
            },
            "risk_score": self.risk_score,
            "policy_version": self.policy_version,
            "trace": [entry.as_dict() for entry in self.trace],
        }
