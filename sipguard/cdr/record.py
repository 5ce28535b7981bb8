"""One call record (CDR) per call attempt, with its decision and trace (pure).

A record is built when a call ends, from three things the service has at
hand: the controller's call (times, legs, SIP status, PIN outcome, who
ended it), the decision screening took on it (number, rules, trace, policy
version) and the last call event the controller logged for it (its end
reason). Times are wall-clock seconds since the epoch (UTC); ``duration`` is
how long the call was answered, and ``cost`` what the rate deck makes of it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Columns, in the order exports write them.
FIELDS = (
    "id", "call_id", "node", "started_at", "answered_at", "ended_at", "account", "extension",
    "source", "caller", "dialled", "e164", "region", "number_type", "number_class", "state",
    "jurisdiction", "decision", "action", "would", "category", "rule", "rules", "risk_score",
    "policy_version", "reason", "status", "duration", "cost", "trunk", "pin_outcome",
    "ended_by", "end_reason", "trace",
)  # fmt: skip
TIME_FIELDS = ("started_at", "answered_at", "ended_at")
NUMBER_FIELDS = ("risk_score", "status", "duration", "cost")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything recorded about one call attempt."""

    call_id: str
    started_at: float
    account: str
    source: str
    dialled: str
    decision: str  # forward | challenge | reject | unscreened (ended before a decision)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    node: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    extension: str | None = None
    caller: str | None = None
    e164: str | None = None
    region: str | None = None
    number_type: str | None = None
    number_class: str | None = None
    state: str | None = None  # the US state of the number, when it has one
    jurisdiction: str = "unknown"
    action: str | None = None  # allow | pin | deny
    would: str | None = None  # what an all-enforcing policy would have done
    category: str | None = None
    rule: str | None = None  # the deciding rule
    rules: tuple[str, ...] = ()  # every rule that matched
    risk_score: int | None = None
    policy_version: str | None = None
    reason: str | None = None  # why the decision was taken
    status: int | None = None  # the final SIP status the PBX got
    duration: float = 0.0  # seconds answered
    cost: float = 0.0
    trunk: str | None = None
    pin_outcome: str | None = None
    ended_by: str | None = None  # pbx | trunk | sipguard
    end_reason: str | None = None
    trace: tuple[str, ...] = ()

    def as_row(self) -> dict[str, Any]:
        """Plain values by column (rules and trace as JSON text), for databases and spools."""
        row = {name: getattr(self, name) for name in FIELDS}
        row["rules"] = json.dumps(list(self.rules))
        row["trace"] = json.dumps(list(self.trace))
        return row

    def as_values(self) -> tuple[Any, ...]:
        """The values of :meth:`as_row` in FIELDS order (an INSERT's parameters)."""
        row = self.as_row()
        return tuple(row[name] for name in FIELDS)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CallRecord:
        """A record back from :meth:`as_row` (unknown keys are ignored)."""
        values = {name: row[name] for name in FIELDS if name in row}
        for name in ("rules", "trace"):
            raw = values.get(name)
            values[name] = tuple(json.loads(raw)) if isinstance(raw, str) and raw else tuple(
                raw or ())
        return cls(**values)

    def for_export(self) -> dict[str, Any]:
        """The record as ops read it: times in ISO 8601 UTC, lists joined."""
        row: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
        for name in TIME_FIELDS:
            value = row[name]
            row[name] = None if value is None else iso_time(value)
        row["rules"] = " ".join(self.rules)
        row["trace"] = " | ".join(self.trace)
        return row

    def replace(self, **changes: Any) -> CallRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def iso_time(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
