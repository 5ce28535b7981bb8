"""Limits: which counters a call touches, and what their counts mean (pure).

The state store does the counting (atomically, and shared between nodes
with Redis); this module only says which counters a call touches and turns
the counts into a decision:

- :func:`limit_checks` lists the counters of the limits that apply to a call;
- the store's ``try_take`` counts the call on all of them at once, unless a
  ``deny`` limit would be exceeded, in which case it counts nothing;
- :func:`apply_limits` adds each counter to the decision's trace and changes
  the verdict when an enforced limit is exceeded (deny, or pin).

Emergency calls and calls the policy already rejected never reach limits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sipguard.policy.decision import Decision, TraceEntry, Verdict
from sipguard.policy.model import (
    Action,
    ConsecutiveRule,
    LimitKind,
    LimitRule,
    Mode,
    Policy,
    SpendRule,
)


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One counter a call touches."""

    rule: LimitRule
    key: str

    @property
    def hard(self) -> bool:
        """Whether exceeding it refuses the call (so the store must not count it)."""
        return self.rule.action is Action.DENY and self.rule.mode is Mode.ENFORCE


@dataclass(frozen=True, slots=True)
class LimitResult:
    """A counter's value: with this call when it was counted, without it when refused."""

    check: LimitCheck
    count: int


def _scope_value(rule: LimitRule, account: str, extension: str | None, e164: str,
                 region: str | None) -> str:
    if rule.per == "extension":
        return f"{account}/{extension or '-'}"
    if rule.per == "account":
        return account
    if rule.per == "number":
        return e164
    if rule.per == "country":
        return region or "-"
    return "*"


def limit_checks(policy: Policy, decision: Decision, account: str,
                 extension: str | None) -> list[LimitCheck]:
    """The counters of every limit that applies to this call."""
    number = decision.number
    if number is None or number.e164 is None or decision.number_class is None:
        return []
    checks: list[LimitCheck] = []
    for rule in policy.limits.rules:
        if rule.applies(decision.number_class, number.region):
            value = _scope_value(rule, account, extension, number.e164, number.region)
            checks.append(LimitCheck(rule, f"{rule.kind.value}:{rule.id}:{value}"))
    return checks


def apply_limits(policy: Policy, decision: Decision, results: list[LimitResult],
                 taken: bool) -> Decision:
    """The decision with the limits' counters traced and their verdicts applied."""
    trace = list(decision.trace)
    verdict, rule, category, reason = (decision.verdict, decision.rule, decision.category,
                                       decision.reason)
    would = decision.would
    for result in results:
        limit = result.check.rule
        count = result.count if taken else result.count + 1
        over = count > limit.maximum
        unit = (f"in {_window_text(limit.window)}" if limit.kind is LimitKind.RATE
                else "at once")
        detail = f"{result.check.key}: {count} calls {unit}, limit {limit.maximum}"
        enforced = limit.mode is Mode.ENFORCE and policy.mode is Mode.ENFORCE
        if not over:
            trace.append(TraceEntry(limit.id, False, detail, "limit"))
            continue
        trace.append(TraceEntry(limit.id, True, detail + " (exceeded)", "limit",
                                limit.action.value, "enforce" if enforced else "report"))
        if limit.action is Action.DENY:
            would = "deny"
        elif limit.action is Action.PIN and would == "allow":
            would = "pin"
        if not enforced:
            continue
        if limit.action is Action.DENY and verdict is not Verdict.REJECT:
            verdict, rule, category, reason = Verdict.REJECT, limit.id, "limit reached", detail
        elif limit.action is Action.PIN and verdict is Verdict.FORWARD:
            verdict, rule, category, reason = Verdict.CHALLENGE, limit.id, "PIN required", detail
    return dataclasses.replace(decision, verdict=verdict, rule=rule, category=category,
                               reason=reason, would=would, trace=tuple(trace))


def max_duration(policy: Policy, number_class: str | None) -> float | None:
    """The longest call the duration limits allow for this class, or None."""
    limits = [limit.seconds for limit in policy.limits.durations
              if number_class is not None and number_class in limit.classes]
    return min(limits) if limits else None


def _window_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class SpendCheck:
    """One spend counter a call is charged to."""

    rule: SpendRule
    key: str


def spend_checks(policy: Policy, decision: Decision, account: str) -> list[SpendCheck]:
    """The spend counters of every spend rule that applies to this call."""
    number = decision.number
    if number is None or number.e164 is None or decision.number_class is None:
        return []
    checks = []
    for rule in policy.limits.spend:
        if rule.applies(decision.number_class):
            scope = {"account": account, "country": number.region or "-"}.get(rule.per, "*")
            checks.append(SpendCheck(rule, f"spend:{rule.id}:{scope}"))
    return checks


def apply_spend(policy: Policy, decision: Decision, checks: list[SpendCheck],
                totals: list[float]) -> tuple[Decision, float | None]:
    """The decision with the budgets applied, and the longest the budgets let the call last.

    A budget already used up refuses (or challenges) the call; otherwise the
    call may last as long as the smallest remaining budget (and the per-call
    maximum) pays for at the rate deck's price.
    """
    number = decision.number
    deck = policy.limits.rate_deck
    price, prefix = deck.price(number.e164 or "") if number is not None else (None, None)
    trace = list(decision.trace)
    verdict, rule, category, reason, would = (decision.verdict, decision.rule, decision.category,
                                              decision.reason, decision.would)
    currency = policy.limits.currency
    budgets: list[float] = []
    if policy.limits.per_call_max is not None and checks:
        budgets.append(policy.limits.per_call_max)
    for check, total in zip(checks, totals, strict=True):
        limit = check.rule
        remaining = limit.maximum - total
        detail = (f"{check.key}: {total:.2f} {currency} spent in {_window_text(limit.window)},"
                  f" limit {limit.maximum:.2f}")
        enforced = limit.mode is Mode.ENFORCE and policy.mode is Mode.ENFORCE
        if remaining > 0:
            trace.append(TraceEntry(limit.id, False, detail, "spend"))
            if enforced:
                budgets.append(remaining)
            continue
        trace.append(TraceEntry(limit.id, True, detail + " (used up)", "spend",
                                limit.action.value, "enforce" if enforced else "report"))
        would = "deny" if limit.action is Action.DENY else ("pin" if would == "allow" else would)
        if not enforced:
            continue
        if limit.action is Action.DENY and verdict is not Verdict.REJECT:
            verdict, rule, category, reason = (Verdict.REJECT, limit.id, "spend limit reached",
                                               detail)
        elif limit.action is Action.PIN and verdict is Verdict.FORWARD:
            verdict, rule, category, reason = Verdict.CHALLENGE, limit.id, "PIN required", detail
    seconds: float | None = None
    if budgets and price:
        seconds = min(budgets) / price * 60.0
        trace.append(TraceEntry("spend-budget", True,
                                f"{price:.4f} {currency}/min (prefix {prefix or 'default'}): "
                                f"the budget left pays for {seconds:.0f} s", "spend"))
    elif checks and price is None:
        trace.append(TraceEntry("spend-budget", False,
                                f"no rate for {number.e164 if number else '?'} in the rate deck:"
                                " spend not counted", "spend"))
    changed = dataclasses.replace(decision, verdict=verdict, rule=rule, category=category,
                                  reason=reason, would=would, trace=tuple(trace))
    return changed, seconds


def consecutive_checks(policy: Policy, decision: Decision, account: str,
                       extension: str | None) -> list[tuple[ConsecutiveRule, str]]:
    """The runs of consecutive calls this call extends: (rule, key)."""
    number = decision.number
    if number is None or number.e164 is None or decision.number_class is None:
        return []
    checks = []
    for rule in policy.limits.consecutive:
        if decision.number_class in rule.classes:
            scope = account if rule.per == "account" else f"{account}/{extension or '-'}"
            checks.append((rule, f"streak:{rule.id}:{scope}"))
    return checks


def apply_consecutive(policy: Policy, decision: Decision,
                      runs: list[tuple[ConsecutiveRule, str, int]]) -> Decision:
    """The decision with each run of calls to one number traced and its limit applied."""
    trace = list(decision.trace)
    verdict, rule, category, reason, would = (decision.verdict, decision.rule, decision.category,
                                              decision.reason, decision.would)
    e164 = decision.number.e164 if decision.number is not None else "?"
    for limit, key, run in runs:
        detail = f"{key}: call {run} in a row to {e164}, limit {limit.maximum}"
        enforced = limit.mode is Mode.ENFORCE and policy.mode is Mode.ENFORCE
        if run <= limit.maximum:
            trace.append(TraceEntry(limit.id, False, detail, "limit"))
            continue
        trace.append(TraceEntry(limit.id, True, detail + " (exceeded)", "limit",
                                limit.action.value, "enforce" if enforced else "report"))
        would = "deny" if limit.action is Action.DENY else ("pin" if would == "allow" else would)
        if not enforced:
            continue
        if limit.action is Action.DENY and verdict is not Verdict.REJECT:
            verdict, rule, category, reason = Verdict.REJECT, limit.id, "limit reached", detail
        elif limit.action is Action.PIN and verdict is Verdict.FORWARD:
            verdict, rule, category, reason = Verdict.CHALLENGE, limit.id, "PIN required", detail
    return dataclasses.replace(decision, verdict=verdict, rule=rule, category=category,
                               reason=reason, would=would, trace=tuple(trace))
