"""Replaying past call records through a policy: what would it have decided?

Each policy is run over the records in the order the calls were made, on a
fresh in-memory state store and a simulated clock: a call is screened at its
start time (so business hours, rate windows and budgets see the time it was
really placed), and a call the policy lets through holds its concurrency
leases until its recorded end and is charged its recorded length. Rate,
concurrency, consecutive-call and spend limits are thus counted as they
would have been, given the same traffic.

Comparing two policies over the same records gives the calls one treats more
strictly (challenged or blocked where the other let through; blocked where the
other challenged) and the reverse. Counters start empty at the first record
replayed: windows that reach back before it count less than they did live.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipguard.logs import silent_logger
from sipguard.policy import CallAttempt, Decision, LoadedPolicy, Verdict
from sipguard.records.record import CallRecord
from sipguard.screening import Screener, Screening
from sipguard.store import MemoryStore


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a policy decided for one recorded call."""

    record: CallRecord
    decision: Decision

    @property
    def stops(self) -> bool:
        """Whether the call would have been blocked or challenged (not simply let through)."""
        return self.decision.verdict is not Verdict.FORWARD


@dataclass(frozen=True, slots=True)
class Difference:
    """A call two policies decide differently about."""

    record: CallRecord
    current: Decision
    candidate: Decision

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        return {"id": record.id, "call_id": record.call_id, "started_at": record.started_at,
                "account": record.account, "extension": record.extension,
                "dialled": record.dialled, "e164": record.e164, "recorded": record.action,
                "current": {"action": self.current.action, "rule": self.current.rule},
                "candidate": {"action": self.candidate.action, "rule": self.candidate.rule}}


LEASE_FOR_EVER = 10 * 365 * 86400.0  # seconds
STRICTNESS = {Verdict.FORWARD: 0, Verdict.CHALLENGE: 1, Verdict.REJECT: 2}


async def replay(records: Sequence[CallRecord], loaded: LoadedPolicy,
                 path: Path) -> list[Replayed]:
    """Run ``loaded`` over ``records`` (any order); the results follow the records' order."""
    # Leases live as long as the longest call: nothing renews them on a simulated clock.
    policy = loaded.policy
    endless = dataclasses.replace(policy, limits=dataclasses.replace(
        policy.limits, lease_seconds=LEASE_FOR_EVER))
    screener = Screener(path, dataclasses.replace(loaded, policy=endless), silent_logger(),
                        MemoryStore())
    order = sorted(range(len(records)), key=lambda index: records[index].started_at)
    decisions: dict[int, Decision] = {}
    endings: list[tuple[float, int, Screening, float]] = []  # (end, tie, screening, seconds)
    tie = itertools.count()
    for index in order:
        record = records[index]
        while endings and endings[0][0] <= record.started_at:
            await _end(screener, *heapq.heappop(endings))
        attempt = CallAttempt(call_id=record.call_id, account=record.account,
                              source=record.source, caller=record.caller or "",
                              dialled=record.dialled, extension=record.extension)
        screening = await screener.screen(attempt, record.started_at, f"replay-{record.id}",
                                          wall_clock=_at(record.started_at))
        decisions[index] = screening.decision
        if screening.decision.verdict is not Verdict.REJECT:
            end = record.ended_at if record.ended_at is not None else record.started_at
            heapq.heappush(endings, (end, next(tie), screening, record.duration))
    while endings:
        await _end(screener, *heapq.heappop(endings))
    return [Replayed(record, decisions[index]) for index, record in enumerate(records)]


async def _end(screener: Screener, end: float, _: int, screening: Screening,
               seconds: float) -> None:
    if screening.lease_keys:
        await screener.release(screening.lease_keys, screening.lease_id)
    await screener.charge(screening, seconds, _at(end))


def differences(current: Sequence[Replayed],
                candidate: Sequence[Replayed]) -> tuple[list[Difference], list[Difference]]:
    """(calls the candidate treats more strictly than the current policy, and the reverse).

    Strictness goes allow < pin < deny: a call the current policy let through and the
    candidate challenges or blocks is stopped by it, and so is one the current policy
    challenged and the candidate blocks.
    """
    stopped: list[Difference] = []
    released: list[Difference] = []
    for now, new in zip(current, candidate, strict=True):
        before, after = STRICTNESS[now.decision.verdict], STRICTNESS[new.decision.verdict]
        if after > before:
            stopped.append(Difference(now.record, now.decision, new.decision))
        elif after < before:
            released.append(Difference(now.record, now.decision, new.decision))
    return stopped, released


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
