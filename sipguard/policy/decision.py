"""Call attempts and the decisions taken on them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    """What happens to the call."""

    FORWARD = "forward"
    CHALLENGE = "challenge"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class CallAttempt:
    """Everything screening knows about one outbound INVITE."""

    call_id: str
    account: str
    source: str
    caller: str
    dialled: str
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One rule consulted: its id, whether it matched, and what it saw."""

    rule: str
    matched: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of screening, with the trace of every rule consulted."""

    verdict: Verdict
    reason: str
    trace: tuple[TraceEntry, ...] = ()
    rule: str | None = None

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The ids of the rules that matched."""
        return tuple(entry.rule for entry in self.trace if entry.matched)
