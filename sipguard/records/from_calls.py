"""Call records from the call events the B2BUA produces (the service's side of CDRs).

The service hands :class:`CallRecords` three things and gets a
:class:`~sipguard.records.record.CallRecord` back when a call is over:

- the decision screening took (:meth:`screened`), kept until the call ends;
- every ``call.*`` log event the controller emits (:meth:`observe`): the last
  one that ends a call (``call.ended``, ``call.failed``, ``call.rejected``,
  ``call.pin_refused``) says why it ended;
- the finished call itself (:meth:`finished`): its times, trunk, SIP status,
  PIN outcome and who hung up.

Times on the loop's clock are turned into wall-clock time once per record.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from sipguard.b2bua import Call
from sipguard.policy import Decision, Policy, jurisdiction, number_state
from sipguard.records.record import CallRecord

ENDING_EVENTS = frozenset({"call.ended", "call.failed", "call.rejected", "call.pin_refused"})
MAX_NOTES = 20_000  # end reasons of calls not finished yet (bounded: strangers' INVITEs too)


class CallRecords:
    """Builds one record per finished call."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._decisions: dict[int, Decision] = {}
        self._notes: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()

    def screened(self, call_key: int, decision: Decision) -> None:
        """Keep a live call's decision (with its trace) for its record."""
        self._decisions[call_key] = decision

    def observe(self, event: str, fields: dict[str, Any]) -> None:
        """Note why a call ended, from the controller's log event."""
        if event not in ENDING_EVENTS:
            return
        call_id = fields.get("call_id")
        if not isinstance(call_id, str):
            return
        reason = str(fields.get("reason") or fields.get("pin") or event.split(".", 1)[1])
        self._notes[call_id] = (event, reason)
        self._notes.move_to_end(call_id)
        while len(self._notes) > MAX_NOTES:
            self._notes.popitem(last=False)

    def finished(self, call: Call, answered_seconds: float, loop_now: float,
                 policy: Policy) -> CallRecord:
        """The record of a call that is over (its decision and note are forgotten)."""
        decision = self._decisions.pop(call.key, None)
        note = self._notes.pop(call.attempt.call_id, None)
        offset = time.time() - loop_now  # loop clock -> wall clock

        def wall(value: float | None) -> float | None:
            return None if value is None else round(value + offset, 3)

        attempt = call.attempt
        number = decision.number if decision is not None else None
        e164 = number.e164 if number is not None else None
        region = number.region if number is not None else None
        number_type = number.number_type.value if number is not None else None
        account = policy.account(attempt.account)
        home_region = account.dial_plan.home_region if account is not None else "US"
        home_state = account.home_state if account is not None else None
        answered_at = call.answered_at if call.trunk_answered else None
        ended_at = call.ended_at if call.ended_at is not None else loop_now
        cost = (policy.limits.rate_deck.cost(e164, answered_seconds)
                if e164 is not None and answered_seconds > 0 else 0.0)
        return CallRecord(
            call_id=attempt.call_id or "",
            node=self.node,
            started_at=wall(call.started_at) or time.time(),
            answered_at=wall(answered_at),
            ended_at=wall(ended_at),
            account=attempt.account or "",
            extension=attempt.extension,
            source=attempt.source,
            caller=attempt.caller or None,
            dialled=attempt.dialled or "",
            e164=e164,
            region=region,
            number_type=number_type,
            state=number_state(e164, region),
            jurisdiction=jurisdiction(home_region, home_state, e164, region, number_type),
            **_decision_fields(decision),
            status=call.pbx_invite.final_status,
            trunk_status=(call.trunk_invite.final_status
                          if call.trunk_invite is not None else None),
            duration=round(answered_seconds, 3),
            cost=cost,
            trunk=call.trunk_name or None,
            pin_outcome=call.pin_outcome,
            ended_by=call.ended_by,
            end_reason=note[1] if note is not None else None,
        )


def _decision_fields(decision: Decision | None) -> dict[str, Any]:
    """What a record takes from the decision (a call that ended first has none)."""
    if decision is None:
        return {"decision": "unscreened"}
    return {"decision": decision.verdict.value, "action": decision.action,
            "would": decision.would or decision.action, "category": decision.category or None,
            "rule": decision.rule, "rules": decision.rule_ids,
            "number_class": decision.number_class, "risk_score": decision.risk_score,
            "policy_version": decision.policy_version or None, "reason": decision.reason,
            "trace": tuple(f"{entry.rule}: {entry.detail}" for entry in decision.trace)}
