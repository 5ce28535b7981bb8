"""The policy's ``alerts:`` section as validated, frozen objects (pure).

What traffic is normal (baselines learned from the call records, and the
expectations used until there is enough history), how far above normal each
alert level is, which alert types are on and at which levels, who hears of
them, and whether an urgent alert locks the account. The loader is
sipguard.policyalerts; the service's alerting lives in sipguard.alerts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType

WEEK = 7 * 86400.0


class Level(enum.Enum):
    """How loud an alert is."""

    NOTIFY = "notify"
    WARNING = "warning"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """0 for notify, 1 for warning, 2 for urgent."""
        return LEVELS.index(self)


LEVELS = (Level.NOTIFY, Level.WARNING, Level.URGENT)


class AlertType(enum.Enum):
    """What an alert is about."""

    TRAFFIC = "traffic"  # minutes or calls above the baseline
    FIRST_SOURCE = "first_source"  # first traffic ever from a source address
    FAILED_INTERNATIONAL = "failed_international"  # denied or failed international attempts
    DENIED_HIGH_RISK = "denied_high_risk"  # an attempt to a denied high-risk country
    LIMIT_REACHED = "limit_reached"  # a rate, concurrency, spend or run limit refused a call
    PIN_LOCKOUT = "pin_lockout"  # too many wrong PINs
    BAN = "ban"  # a source address was banned


# The level each event type fires at unless the policy says otherwise (traffic alerts
# take their level from how far above normal the traffic is).
DEFAULT_EVENT_LEVELS = MappingProxyType({
    AlertType.FIRST_SOURCE: Level.WARNING,
    AlertType.FAILED_INTERNATIONAL: Level.WARNING,
    AlertType.DENIED_HIGH_RISK: Level.WARNING,
    AlertType.LIMIT_REACHED: Level.NOTIFY,
    AlertType.PIN_LOCKOUT: Level.URGENT,
    AlertType.BAN: Level.NOTIFY,
})

JURISDICTIONS = ("interstate", "intrastate", "international", "toll-free", "domestic",
                 "unknown")
LOCK_CLASSES = ("international", "all")


@dataclass(frozen=True, slots=True)
class Expectation:
    """Traffic expected in one hour, used until an account has a week of history."""

    minutes: float
    calls: float


DEFAULT_EXPECTATIONS = MappingProxyType({
    "international": Expectation(15.0, 10.0),
    "default": Expectation(120.0, 60.0),
})


@dataclass(frozen=True, slots=True)
class AlertTypeSettings:
    """One alert type: on or off, its levels, jurisdictions and contacts."""

    enabled: bool = True
    levels: frozenset[Level] = frozenset(LEVELS)  # the levels that are sent
    jurisdictions: frozenset[str] | None = None  # None: every jurisdiction
    contacts: tuple[str, ...] | None = None  # None: the section's contacts
    level: Level | None = None  # event types: the level they fire at
    threshold: int = 10  # failed_international: attempts within the window
    window: float = 3600.0  # failed_international: seconds attempts are counted over
    repeat_after: float = 3600.0  # events: seconds before the same alert is sent again
    min_country_risk: int = 80  # denied_high_risk: the policy's country risk that counts

    def sends(self, level: Level, jurisdiction: str | None) -> bool:
        """Whether an alert of this level and jurisdiction is sent."""
        if not self.enabled or level not in self.levels:
            return False
        return (self.jurisdictions is None or jurisdiction is None
                or jurisdiction in self.jurisdictions)


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The whole ``alerts:`` section."""

    weeks: int = 4  # weeks of call records a baseline is learned from
    expectations: MappingProxyType[str, Expectation] = field(
        default_factory=lambda: DEFAULT_EXPECTATIONS)
    # Percent above the baseline at which each level fires.
    thresholds: MappingProxyType[Level, float] = field(default_factory=lambda: MappingProxyType(
        {Level.NOTIFY: 25.0, Level.WARNING: 50.0, Level.URGENT: 100.0}))
    min_minutes: float = 10.0  # traffic alerts on minutes: no alert below this many
    min_calls: int = 10  # traffic alerts on calls: no alert below this many
    contacts: tuple[str, ...] = ("log",)
    time_zone: str = "UTC"  # where "the rest of the day" of a snooze ends
    types: MappingProxyType[AlertType, AlertTypeSettings] = field(
        default_factory=lambda: MappingProxyType({}))
    lock_on_urgent: str | None = None  # international | all: lock the account's dialling
    lock_accounts: frozenset[str] | None = None  # None: every account
    line: int = 0

    def settings(self, alert_type: AlertType) -> AlertTypeSettings:
        """The settings of one type (defaults when the policy does not name it)."""
        settings = self.types.get(alert_type)
        if settings is None:
            return AlertTypeSettings(level=DEFAULT_EVENT_LEVELS.get(alert_type))
        return settings

    def contacts_for(self, alert_type: AlertType) -> tuple[str, ...]:
        """Who hears of an alert of this type."""
        own = self.settings(alert_type).contacts
        return self.contacts if own is None else own

    def event_level(self, alert_type: AlertType) -> Level:
        """The level an event type fires at."""
        return (self.settings(alert_type).level or DEFAULT_EVENT_LEVELS.get(alert_type)
                or Level.WARNING)

    def expectation(self, jurisdiction: str) -> Expectation:
        """The fallback expectation for a jurisdiction (or a country: international)."""
        return (self.expectations.get(jurisdiction) or self.expectations.get("default")
                or DEFAULT_EXPECTATIONS["default"])

    def level_for(self, percent_above: float) -> Level | None:
        """The highest level whose threshold ``percent_above`` reaches, or None."""
        reached = None
        for level in LEVELS:
            if percent_above >= self.thresholds[level]:
                reached = level
        return reached

    def locks(self, account: str) -> str | None:
        """The class an urgent alert locks for this account, or None."""
        if self.lock_on_urgent is None:
            return None
        if self.lock_accounts is not None and account not in self.lock_accounts:
            return None
        return self.lock_on_urgent
