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

    enforcing: bool = True  # False when the whole policy is in report mode

    @property
    def hard(self) -> bool:
        """Whether exceeding it refuses the call (so the store must not count it)."""
        return (self.enforcing and self.rule.action is Action.DENY
                and self.rule.mode is Mode.ENFORCE)


@dataclass(frozen=True, slots=True)
class LimitResult:
    """A counter's value: with this call when it was counted, without it when refused."""

    check: LimitCheck
    count: int


class _Outcome:
    """A decision being revised by counters: trace entries and the verdict they lead to."""

    def __init__(self, policy: Policy, decision: Decision) -> None:
        self.policy = policy
        self.decision = decision
        self.trace = list(decision.trace)
        self.verdict, self.rule = decision.verdict, decision.rule
        self.category, self.reason, self.would = (decision.category, decision.reason,
                                                  decision.would)

    def within(self, rule_id: str, detail: str, stage: str) -> None:
        """A counter that is within its limit."""
        self.trace.append(TraceEntry(rule_id, False, detail, stage))

    def exceeded(self, rule_id: str, action: Action, mode: Mode, detail: str, stage: str,
                 category: str) -> None:
        """A counter over its limit: trace it, and apply it when it is enforced."""
        enforced = mode is Mode.ENFORCE and self.policy.mode is Mode.ENFORCE
        self.trace.append(TraceEntry(rule_id, True, detail, stage, action.value,
                                     "enforce" if enforced else "report"))
        if action is Action.DENY:
            self.would = "deny"
        elif action is Action.PIN and self.would == "allow":
            self.would = "pin"
        if not enforced:
            return
        if action is Action.DENY and self.verdict is not Verdict.REJECT:
            self.verdict, self.rule, self.category, self.reason = (
                Verdict.REJECT, rule_id, category, detail)
        elif action is Action.PIN and self.verdict is Verdict.FORWARD:
            self.verdict, self.rule, self.category, self.reason = (
                Verdict.CHALLENGE, rule_id, "PIN required", detail)

    def note(self, entry: TraceEntry) -> None:
        """Any other trace entry."""
        self.trace.append(entry)

    def result(self) -> Decision:
        """The revised decision."""
        return dataclasses.replace(self.decision, verdict=self.verdict, rule=self.rule,
                                   category=self.category, reason=self.reason,
                                   would=self.would, trace=tuple(self.trace))


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
            checks.append(LimitCheck(rule, f"{rule.kind.value}:{rule.id}:{value}",
                                     policy.mode is Mode.ENFORCE))
    return checks


def apply_limits(policy: Policy, decision: Decision, results: list[LimitResult],
                 taken: bool) -> Decision:
    """The decision with the limits' counters traced and their verdicts applied."""
    outcome = _Outcome(policy, decision)
    for result in results:
        limit = result.check.rule
        count = result.count if taken else result.count + 1
        unit = (f"in {_window_text(limit.window)}" if limit.kind is LimitKind.RATE
                else "at once")
        detail = f"{result.check.key}: {count} calls {unit}, limit {limit.maximum}"
        if count > limit.maximum:
            outcome.exceeded(limit.id, limit.action, limit.mode, detail + " (exceeded)",
                             "limit", "limit reached")
        else:
            outcome.within(limit.id, detail, "limit")
    return outcome.result()


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
    outcome = _Outcome(policy, decision)
    currency = policy.limits.currency
    budgets: list[float] = []
    if policy.limits.per_call_max is not None and checks:
        budgets.append(policy.limits.per_call_max)
    for check, total in zip(checks, totals, strict=True):
        limit = check.rule
        remaining = limit.maximum - total
        detail = (f"{check.key}: {total:.2f} {currency} spent in {_window_text(limit.window)},"
                  f" limit {limit.maximum:.2f}")
        if remaining > 0:
            outcome.within(limit.id, detail, "spend")
            if limit.mode is Mode.ENFORCE and policy.mode is Mode.ENFORCE:
                budgets.append(remaining)
            continue
        outcome.exceeded(limit.id, limit.action, limit.mode, detail + " (used up)", "spend",
                         "spend limit reached")
    seconds: float | None = None
    if budgets and price:
        seconds = min(budgets) / price * 60.0
        outcome.note(TraceEntry("spend-budget", True,
                                f"{price:.4f} {currency}/min (prefix {prefix or 'default'}): "
                                f"the budget left pays for {seconds:.0f} s", "spend"))
    elif checks and price is None:
        outcome.note(TraceEntry("spend-budget", False,
                                f"no rate for {number.e164 if number else '?'} in the rate deck:"
                                " spend not counted", "spend"))
    return outcome.result(), seconds


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
    outcome = _Outcome(policy, decision)
    e164 = decision.number.e164 if decision.number is not None else "?"
    for limit, key, run in runs:
        detail = f"{key}: call {run} in a row to {e164}, limit {limit.maximum}"
        if run > limit.maximum:
            outcome.exceeded(limit.id, limit.action, limit.mode, detail + " (exceeded)",
                             "limit", "limit reached")
        else:
            outcome.within(limit.id, detail, "limit")
    return outcome.result()
