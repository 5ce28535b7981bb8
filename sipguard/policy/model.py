"""The policy as validated, frozen objects (built by sipguard.policy.loader from YAML).

Nothing here parses text: the loader checks the file once and builds
these, and evaluate() only reads them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import time
from types import MappingProxyType
from typing import Any

from sipguard.policy.alerting import AlertPolicy
from sipguard.policy.numbers import DialPlan, NumberType
from sipguard.policy.ratedeck import EMPTY_DECK, RateDeck


class Action(enum.Enum):
    """What a rule wants done with a call."""

    ALLOW = "allow"
    PIN = "pin"
    DENY = "deny"


class Mode(enum.Enum):
    """``enforce`` acts; ``report`` only records what it would have done."""

    ENFORCE = "enforce"
    REPORT = "report"


# Classes of destination an extension group may be allowed to dial.
CLASSES = ("domestic", "international", "premium")


@dataclass(frozen=True, slots=True)
class DestinationRule:
    """allow/pin/deny a region, a country calling code or an E.164 prefix."""

    id: str
    action: Action
    mode: Mode = Mode.ENFORCE
    region: str | None = None
    country_code: int | None = None
    prefix: str | None = None  # "+" and digits
    line: int = 0

    @property
    def specificity(self) -> tuple[int, int]:
        """Higher wins: a prefix beats a region beats a country code; longer prefixes win."""
        if self.prefix is not None:
            return (3, len(self.prefix))
        if self.region is not None:
            return (2, 0)
        return (1, 0)

    def matches(self, e164: str, region: str | None, country_code: int | None) -> bool:
        """Whether the rule covers this number."""
        if self.prefix is not None:
            return e164.startswith(self.prefix)
        if self.region is not None:
            return region == self.region
        return country_code is not None and country_code == self.country_code

    def describe(self) -> str:
        """The matcher as the file wrote it."""
        if self.prefix is not None:
            return f"prefix {self.prefix}"
        if self.region is not None:
            return f"region {self.region}"
        return f"country code +{self.country_code}"


_PATTERN_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}


@dataclass(frozen=True, slots=True)
class ExtensionPattern:
    """An extension pattern: exact, a range ``300-399``, or Asterisk-style ``2XX``."""

    text: str
    expression: re.Pattern[str] | None = None
    low: int | None = None
    high: int | None = None

    @classmethod
    def parse(cls, text: str) -> ExtensionPattern:
        """Build a pattern; raise ValueError when it cannot mean anything."""
        text = text.strip()
        if re.fullmatch(r"\d+-\d+", text):
            low, high = (int(part) for part in text.split("-"))
            if low > high:
                raise ValueError(f"range {text!r} runs backwards")
            return cls(text, low=low, high=high)
        if not text or not re.fullmatch(r"[0-9A-Za-z*#+_.\[\]\-]+", text):
            raise ValueError(f"{text!r} is not an extension, a range or a pattern like 2XX")
        body = text[1:] if text.startswith("_") else text
        regex = []
        index = 0
        while index < len(body):
            char = body[index]
            upper = char.upper()
            if upper in _PATTERN_CLASSES and (text.startswith("_") or char.isupper()):
                regex.append(_PATTERN_CLASSES[upper])
            elif char == "[":
                end = body.find("]", index)
                if end < 0:
                    raise ValueError(f"unclosed [ in {text!r}")
                regex.append(f"[{re.escape(body[index + 1:end]).replace(chr(92) + '-', '-')}]")
                index = end
            elif char == "." and index == len(body) - 1:
                regex.append(".+")
            else:
                regex.append(re.escape(char))
            index += 1
        return cls(text, expression=re.compile("".join(regex)))

    def matches(self, extension: str) -> bool:
        """Whether an extension falls under the pattern."""
        if self.low is not None and self.high is not None:
            return extension.isascii() and extension.isdigit() and (
                self.low <= int(extension) <= self.high)
        assert self.expression is not None
        return self.expression.fullmatch(extension) is not None


@dataclass(frozen=True, slots=True)
class ExtensionGroup:
    """Extensions that share permissions."""

    name: str
    patterns: tuple[ExtensionPattern, ...]
    may_dial: frozenset[str] | None  # None: the account's; empty: nothing but emergency
    destinations: tuple[DestinationRule, ...] = ()
    line: int = 0

    def matches(self, extension: str | None) -> bool:
        """Whether the extension belongs to the group."""
        return extension is not None and any(p.matches(extension) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Working days (0 = Monday) and hours, in the account's time zone."""

    days: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    start: time = time(8, 0)
    end: time = time(18, 0)

    def contains(self, weekday: int, moment: time) -> bool:
        """Whether a local weekday and time fall inside business hours."""
        return weekday in self.days and self.start <= moment < self.end


@dataclass(frozen=True, slots=True)
class Account:
    """One PBX (peer) and how it dials."""

    name: str
    dial_plan: DialPlan
    time_zone: str = "UTC"
    home_state: str | None = None  # US state (two letters): interstate vs intrastate in CDRs
    domestic_regions: frozenset[str] = frozenset()
    business_hours: BusinessHours = field(default_factory=BusinessHours)
    may_dial: frozenset[str] = frozenset(CLASSES[:2])
    groups: tuple[ExtensionGroup, ...] = ()
    line: int = 0

    def group_for(self, extension: str | None) -> ExtensionGroup | None:
        """The first group the extension belongs to."""
        for group in self.groups:
            if group.matches(extension):
                return group
        return None


@dataclass(frozen=True, slots=True)
class TypeRule:
    """What to do with a number type (premium rate, shared cost, invalid…)."""

    id: str
    number_type: NumberType
    action: Action
    mode: Mode = Mode.ENFORCE
    line: int = 0


@dataclass(frozen=True, slots=True)
class TimeRule:
    """An action for some classes inside or outside business hours."""

    id: str
    outside_business_hours: bool
    classes: frozenset[str]
    action: Action
    mode: Mode = Mode.ENFORCE
    line: int = 0


def _frozen(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(dict(mapping))


DEFAULT_TYPE_POINTS = {
    NumberType.PREMIUM_RATE: 50, NumberType.SHARED_COST: 25, NumberType.UAN: 20,
    NumberType.PERSONAL_NUMBER: 30, NumberType.VOIP: 15, NumberType.PAGER: 10,
    NumberType.VOICEMAIL: 10, NumberType.MOBILE: 5, NumberType.INVALID: 40,
}


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """How the 0–100 risk score is made and what it leads to."""

    type_points: MappingProxyType[NumberType, int] = field(
        default_factory=lambda: _frozen(DEFAULT_TYPE_POINTS))
    country_risk: MappingProxyType[str, int] = field(default_factory=lambda: _frozen({}))
    default_country_risk: int = 20
    country_weight: float = 0.5
    new_destination_points: int = 15
    outside_hours_points: int = 15
    points_per_recent_call: int = 3
    recent_calls_cap: int = 20
    pin_at: int = 60
    deny_at: int = 90
    mode: Mode = Mode.ENFORCE
    line: int = 0


class LimitKind(enum.Enum):
    """A count over a sliding window, or live calls held as leases."""

    RATE = "rate"
    CONCURRENCY = "concurrency"


# What a limit is counted per.
LIMIT_SCOPES = ("extension", "account", "system", "number", "country")


@dataclass(frozen=True, slots=True)
class LimitRule:
    """At most ``maximum`` calls per ``window`` seconds (rate) or at once (concurrency).

    The limit counts the calls it applies to: those of ``classes`` (and of
    ``region`` when set), grouped by ``per``. Over the limit, ``action``
    applies (deny, pin, or allow with ``mode: report`` to only log it).
    """

    id: str
    kind: LimitKind
    per: str
    maximum: int
    action: Action
    window: float = 0.0
    classes: frozenset[str] = frozenset(CLASSES)
    region: str | None = None
    mode: Mode = Mode.ENFORCE
    line: int = 0

    def applies(self, number_class: str, region: str | None) -> bool:
        """Whether a call of this class and region counts towards the limit."""
        if self.region is not None:
            return region == self.region
        return number_class in self.classes


@dataclass(frozen=True, slots=True)
class ConsecutiveRule:
    """At most ``maximum`` calls in a row to one number, ``per`` extension or account.

    Calling another number starts the count again; so does ``window`` seconds
    without a call. Targeted pumping calls one number again and again.
    """

    id: str
    per: str
    maximum: int
    action: Action = Action.PIN
    window: float = 3600.0
    classes: frozenset[str] = frozenset(CLASSES)
    mode: Mode = Mode.ENFORCE
    line: int = 0


@dataclass(frozen=True, slots=True)
class DurationLimit:
    """The longest call allowed for some classes, in seconds."""

    id: str
    classes: frozenset[str]
    seconds: float
    line: int = 0


@dataclass(frozen=True, slots=True)
class SpendRule:
    """At most ``maximum`` (currency units) spent per ``window`` seconds.

    Counted ``per`` account, system or country, on calls of ``classes``.
    """

    id: str
    per: str
    maximum: float
    window: float
    action: Action = Action.DENY
    classes: frozenset[str] = frozenset(CLASSES)
    mode: Mode = Mode.ENFORCE
    line: int = 0

    def applies(self, number_class: str) -> bool:
        """Whether a call of this class is counted."""
        return number_class in self.classes


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits section of a policy."""

    rules: tuple[LimitRule, ...] = ()
    durations: tuple[DurationLimit, ...] = ()
    spend: tuple[SpendRule, ...] = ()
    consecutive: tuple[ConsecutiveRule, ...] = ()
    rate_deck: RateDeck = EMPTY_DECK
    per_call_max: float | None = None
    currency: str = "USD"
    # What a class does while the state store cannot be reached.
    on_store_failure: MappingProxyType[str, str] = field(default_factory=lambda: _frozen(
        {"domestic": "open", "international": "closed", "premium": "closed"}))
    lease_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole policy file, validated."""

    version: str
    accounts: tuple[Account, ...]
    destinations: tuple[DestinationRule, ...]
    default_action: Action = Action.DENY
    type_rules: tuple[TypeRule, ...] = ()
    time_rules: tuple[TimeRule, ...] = ()
    risk: RiskSettings = field(default_factory=RiskSettings)
    limits: Limits = field(default_factory=Limits)
    blocked_numbers: frozenset[str] = frozenset()
    extra_emergency_numbers: frozenset[str] = frozenset()
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    mode: Mode = Mode.ENFORCE
    source: str = ""

    def account(self, name: str | None) -> Account | None:
        """The account of that name, or None."""
        for account in self.accounts:
            if account.name == name:
                return account
        return None

    def type_rule(self, number_type: NumberType) -> TypeRule | None:
        """The rule for a number type, or None."""
        for rule in self.type_rules:
            if rule.number_type is number_type:
                return rule
        return None
