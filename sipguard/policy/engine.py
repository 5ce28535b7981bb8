"""evaluate(policy, attempt, usage) -> Decision: the screening stages, in order.

Theory of operation
-------------------
The stages run in a fixed order and each adds entries to the trace:

1. emergency: an emergency number is forwarded at once, whatever follows;
2. account and extension group (unknown account: deny; a group that may
   dial nothing, such as voicemail or DISA: deny);
3. the number: not dialable once cleaned: deny;
4. hard blocks: the blocked-number list and number-type rules (premium
   rate, shared cost, UAN, personal numbers, invalid numbers);
5. destinations, default deny: the most specific rule wins (a prefix over
   a region over a country code, a longer prefix over a shorter one; the
   extension group's own rules before the policy's at equal specificity);
6. the class the number falls in (domestic, international, premium) must
   be one the extension group may dial;
7. time rules (business hours in the account's time zone);
8. the risk score (0–100) against its pin and deny thresholds.

Every rule with an opinion says allow, pin or deny. Enforced opinions
combine as: any deny rejects, else any pin challenges, else the call is
forwarded when a destination rule allowed it. Rules in report mode (or a
whole policy in report mode) are traced with what they would have done but
do not change the verdict. Unknown accounts and undialable strings fail
closed in every mode.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sipguard.policy.decision import CallAttempt, Decision, TraceEntry, Usage, Verdict
from sipguard.policy.model import Account, Action, DestinationRule, Mode, Policy
from sipguard.policy.numbers import (
    DialPlan,
    Number,
    NumberType,
    analyse,
    clean,
    is_emergency,
    strip_outside_line,
)

NO_USAGE = Usage()

# The short reasons a 403 may carry (RFC 3326 Reason text); never rule internals.
CATEGORIES = {
    "account": "unknown account",
    "group": "extension may not dial out",
    "number": "number not dialable",
    "blocked": "destination not allowed",
    "type:premium_rate": "premium rate",
    "type": "destination not allowed",
    "destination": "destination not allowed",
    "class": "destination class not allowed for this extension",
    "time": "outside business hours",
    "risk": "risk score too high",
}

# How the trace names where an extension was read (CallAttempt.extension_source); the
# extension header says nothing, the fallbacks say what a forger could have set.
EXTENSION_SOURCES = {
    "identity": " (from P-Asserted-Identity: no extension header)",
    "from": " (from the From header: no extension header)",
}


@dataclass(slots=True)
class _Opinion:
    action: Action
    rule: str
    stage: str
    enforced: bool
    detail: str
    # False for the fallback that stands in for a report-mode rule: if every rule
    # were enforced, that report-mode rule would decide instead.
    counts_if_all_enforced: bool = True


class _Screening:
    """The state of one evaluation: trace and opinions."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.trace: list[TraceEntry] = []
        self.opinions: list[_Opinion] = []

    def note(self, stage: str, rule: str, matched: bool, detail: str) -> None:
        self.trace.append(TraceEntry(rule, matched, detail, stage))

    def opine(self, stage: str, rule: str, action: Action, mode: Mode, detail: str,
              always: bool = False, fallback: bool = False) -> None:
        enforced = always or (mode is Mode.ENFORCE and self.policy.mode is Mode.ENFORCE)
        shown = "enforce" if enforced else "report"
        self.trace.append(TraceEntry(rule, True, detail, stage, action.value, shown))
        self.opinions.append(_Opinion(action, rule, stage, enforced, detail,
                                      counts_if_all_enforced=not fallback))


def evaluate(policy: Policy, attempt: CallAttempt, usage: Usage = NO_USAGE) -> Decision:
    """Screen one attempt; the decision carries the trace of every rule consulted."""
    screening = _Screening(policy)
    account = policy.account(attempt.account)
    plan = account.dial_plan if account is not None else _fallback_plan(policy)

    cleaned = clean(attempt.dialled)
    if is_emergency(attempt.dialled, plan) or (
        policy.extra_emergency_numbers
        and {cleaned, strip_outside_line(cleaned, plan)} & policy.extra_emergency_numbers
    ):
        screening.note("emergency", "emergency", True,
                       f"{cleaned} is an emergency number: always forwarded")
        return _decide(screening, attempt, None, None, None, emergency=True)
    screening.note("emergency", "emergency", False, f"{cleaned} is not an emergency number")

    if account is None:
        screening.opine("account", "unknown-account", Action.DENY, Mode.ENFORCE,
                        f"no account named {attempt.account!r} in the policy", always=True)
        return _decide(screening, attempt, None, None, None)
    # Extensions come from headers the caller controls: read other scripts' digits
    # as ASCII so that "７００" is extension 700, as a PBX would take it.
    extension = clean(attempt.extension) if attempt.extension else None
    group = account.group_for(extension)
    may_dial = account.may_dial if group is None or group.may_dial is None else group.may_dial
    read_from = EXTENSION_SOURCES.get(attempt.extension_source, "")
    named = f"extension {extension or '(none)'}{read_from}"
    if group is None:
        screening.note("group", "group:(account)", True,
                       f"{named} is in no group: account permissions {sorted(may_dial)}")
    elif not may_dial:
        screening.opine("group", f"group:{group.name}", Action.DENY, Mode.ENFORCE,
                        f"{named} ({group.name}) may not dial out", always=True)
        return _decide(screening, attempt, None, None, None)
    else:
        screening.note("group", f"group:{group.name}", True,
                       f"{named} is in {group.name}: may dial {sorted(may_dial)}")

    number = analyse(attempt.dialled, plan)
    if number.e164 is None:
        screening.opine("number", "not-dialable", Action.DENY, Mode.ENFORCE,
                        f"{cleaned!r}: {number.problem}", always=True)
        return _decide(screening, attempt, number, None, None)
    screening.note("number", "number", True,
                   f"{number.e164}: region {number.region or 'none'}, "
                   f"{number.number_type.value}")

    _hard_blocks(screening, number)
    _destinations(screening, account, group.destinations if group else (), number)
    number_class = _number_class(account, number)
    if number_class in may_dial:
        screening.note("class", f"class:{number_class}", True,
                       f"{number_class} is allowed for this extension")
    else:
        screening.opine("class", f"class:{number_class}", Action.DENY, Mode.ENFORCE,
                        f"{number_class} is not among {sorted(may_dial)}")
    outside_hours = _time_rules(screening, account, attempt.when, number_class)
    score = _risk(screening, number, number_class, outside_hours, usage, account)
    return _decide(screening, attempt, number, number_class, score)


def _fallback_plan(policy: Policy) -> DialPlan:
    return policy.accounts[0].dial_plan if policy.accounts else DialPlan()


def _hard_blocks(screening: _Screening, number: Number) -> None:
    policy = screening.policy
    e164 = number.e164 or ""
    if e164 in policy.blocked_numbers:
        screening.opine("blocked", "blocked-number", Action.DENY, Mode.ENFORCE,
                        f"{e164} is on the blocked-number list")
    rule = policy.type_rule(number.number_type)
    if rule is None:
        screening.note("type", f"type:{number.number_type.value}", False,
                       f"no rule for {number.number_type.value} numbers")
        return
    screening.opine("type", rule.id, rule.action, rule.mode,
                    f"{e164} is a {number.number_type.value} number")


def _destinations(screening: _Screening, account: Account,
                  group_rules: tuple[DestinationRule, ...], number: Number) -> None:
    """The most specific destination rule decides.

    A rule in report mode only reports: the rule that decides for real is
    the most specific *enforced* one (or the default), so a report-mode
    allow can never open a destination the enforced rules deny.
    """
    policy = screening.policy
    e164 = number.e164 or ""
    best = _most_specific(group_rules, policy.destinations, number, enforced_only=False)
    fallback = False
    if best is not None and best.mode is Mode.REPORT:
        screening.opine("destination", best.id, best.action, best.mode,
                        f"{best.describe()} matches {e164} (most specific rule, report only)")
        best = _most_specific(group_rules, policy.destinations, number, enforced_only=True)
        fallback = True
    if best is None:
        screening.opine("destination", "default", policy.default_action, policy.mode,
                        f"no enforced destination rule matches {e164} "
                        f"({number.region or 'no region'}): default {policy.default_action.value}",
                        fallback=fallback)
        return
    screening.opine("destination", best.id, best.action, best.mode,
                    f"{best.describe()} matches {e164} (most specific rule)", fallback=fallback)


def _most_specific(group_rules: tuple[DestinationRule, ...],
                   policy_rules: tuple[DestinationRule, ...], number: Number,
                   enforced_only: bool) -> DestinationRule | None:
    e164 = number.e164 or ""
    best: DestinationRule | None = None
    best_key: tuple[int, int, int] | None = None
    for priority, rules in ((1, group_rules), (0, policy_rules)):
        for rule in rules:
            if enforced_only and rule.mode is Mode.REPORT:
                continue
            if rule.matches(e164, number.region, number.country_code):
                key = (*rule.specificity, priority)
                if best_key is None or key > best_key:
                    best, best_key = rule, key
    return best


def _number_class(account: Account, number: Number) -> str:
    if number.number_type is NumberType.PREMIUM_RATE:
        return "premium"
    domestic = account.domestic_regions or frozenset({account.dial_plan.home_region})
    return "domestic" if number.region in domestic else "international"


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_time(account: Account, when: datetime) -> datetime:
    moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return moment.astimezone(_zone(account.time_zone))


def _time_rules(screening: _Screening, account: Account, when: datetime | None,
                number_class: str) -> bool:
    if when is None:
        # The engine never reads a clock; without a time, assume the stricter case.
        inside = False
        screening.note("time", "business-hours", False,
                       "time of the call unknown: treated as outside business hours")
    else:
        local = _local_time(account, when)
        inside = account.business_hours.contains(local.weekday(), local.time())
        screening.note("time", "business-hours", inside,
                       f"{local:%a %H:%M} {account.time_zone}: "
                       f"{'inside' if inside else 'outside'} business hours")
    for rule in screening.policy.time_rules:
        applies = (rule.outside_business_hours != inside) and number_class in rule.classes
        if applies:
            screening.opine("time", rule.id, rule.action, rule.mode,
                            f"{number_class} call {'outside' if not inside else 'inside'} "
                            f"business hours")
        else:
            screening.note("time", rule.id, False, "does not apply")
    return not inside


def _risk(screening: _Screening, number: Number, number_class: str, outside_hours: bool,
          usage: Usage, account: Account) -> int:
    risk = screening.policy.risk
    parts: list[str] = []
    score = risk.type_points.get(number.number_type, 0)
    if score:
        parts.append(f"{number.number_type.value} +{score}")
    domestic = account.domestic_regions or frozenset({account.dial_plan.home_region})
    if number.region not in domestic:
        country = risk.country_risk.get(number.region or "", risk.default_country_risk)
        points = round(country * risk.country_weight)
        score += points
        parts.append(f"country {number.region or '?'} risk {country} x {risk.country_weight}"
                     f" +{points}")
    if usage.destination_seen_before is False:
        score += risk.new_destination_points
        parts.append(f"never called before +{risk.new_destination_points}")
    if outside_hours and number_class != "domestic":
        score += risk.outside_hours_points
        parts.append(f"outside business hours +{risk.outside_hours_points}")
    velocity = min(risk.recent_calls_cap,
                   usage.international_calls_last_hour * risk.points_per_recent_call)
    if velocity:
        score += velocity
        parts.append(f"{usage.international_calls_last_hour} international calls in the "
                     f"last hour +{velocity}")
    score = max(0, min(100, score))
    detail = f"score {score} ({', '.join(parts) or 'no risk factors'})"
    if score >= risk.deny_at:
        screening.opine("risk", "risk-score", Action.DENY, risk.mode,
                        f"{detail} >= deny threshold {risk.deny_at}")
    elif score >= risk.pin_at:
        screening.opine("risk", "risk-score", Action.PIN, risk.mode,
                        f"{detail} >= pin threshold {risk.pin_at}")
    else:
        screening.note("risk", "risk-score", False, f"{detail} below {risk.pin_at}")
    return score


def _combine(opinions: list[_Opinion], enforced_only: bool) -> tuple[Action, _Opinion | None]:
    if enforced_only:
        considered = [o for o in opinions if o.enforced]
    else:
        opinions = [o for o in opinions if o.counts_if_all_enforced]
        considered = opinions
    for wanted in (Action.DENY, Action.PIN):
        for opinion in considered:
            if opinion.action is wanted:
                return wanted, opinion
    allows = [o for o in opinions if o.stage == "destination" and o.action is Action.ALLOW]
    destination = [o for o in opinions if o.stage == "destination"]
    if allows:
        return Action.ALLOW, allows[0]
    if enforced_only and destination and not any(o.enforced for o in destination):
        return Action.ALLOW, destination[0]  # the destination rule is only reporting
    return Action.DENY, (destination[0] if destination else None)


def _decide(screening: _Screening, attempt: CallAttempt, number: Number | None,
            number_class: str | None, score: int | None, emergency: bool = False) -> Decision:
    policy = screening.policy
    trace = tuple(screening.trace)
    if emergency:
        return Decision(Verdict.FORWARD, "emergency number", trace, "emergency",
                        category="emergency", would="allow", number=number,
                        policy_version=policy.version)
    action, deciding = _combine(screening.opinions, enforced_only=True)
    would, _ = _combine(screening.opinions, enforced_only=False)
    verdict = {Action.ALLOW: Verdict.FORWARD, Action.PIN: Verdict.CHALLENGE,
               Action.DENY: Verdict.REJECT}[action]
    rule = deciding.rule if deciding is not None else "default"
    stage = deciding.stage if deciding is not None else "destination"
    if action is Action.ALLOW:
        category = "allowed"
    elif action is Action.PIN:
        category = "PIN required"
    else:
        category = CATEGORIES.get(f"{stage}:{number.number_type.value}" if number else "",
                                  CATEGORIES.get(stage, "destination not allowed"))
    reason = deciding.detail if deciding is not None else "no rule allowed the call"
    return Decision(verdict, reason, trace, rule, category=category, would=would.value,
                    number=number, number_class=number_class, risk_score=score,
                    policy_version=policy.version)
