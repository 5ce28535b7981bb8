"""Reading the policy's ``alerts:`` section (baselines, levels, types, contacts, locks).

Split from sipguard.policy.loader like the limits; the same ``file:line: key.path:
message`` reporting applies. A contact is ``log``, ``email:ADDRESS``,
``sms:+NUMBER`` or ``webhook:NAME``; which email server, SMS provider and
webhooks exist is the service configuration's business (sipguard.yaml), so
the service checks the names when it loads the policy.
"""

from __future__ import annotations

import math
import re
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sipguard.policy.alerting import (
    DEFAULT_EVENT_LEVELS,
    DEFAULT_EXPECTATIONS,
    JURISDICTIONS,
    LEVELS,
    LOCK_CLASSES,
    AlertPolicy,
    AlertType,
    AlertTypeSettings,
    Expectation,
    Level,
)
from sipguard.policy.limits_section import seconds_of
from sipguard.policy.reader import PolicyReader
from sipguard.schema import line_of

SECTION_KEYS = ("baseline", "thresholds", "min_minutes", "min_calls", "contacts", "time_zone",
                "lock_on_urgent", "lock_accounts", "types")
TYPE_KEYS = ("enabled", "levels", "jurisdictions", "contacts", "level", "threshold", "window",
             "repeat_after", "min_country_risk")
MAXIMUM = 1e12  # past this a number is a typo (and a 400-digit one would not fit a float)
EMAIL = re.compile(r"[^@\s:]+@[^@\s]+\.[^@\s]+|[^@\s:]+@localhost")
PHONE = re.compile(r"\+[1-9]\d{6,14}")
WEBHOOK_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def read_alerts(reader: PolicyReader, data: dict[str, Any],
                accounts: set[str]) -> AlertPolicy:
    """The ``alerts:`` section (defaults for whatever it leaves out)."""
    section = reader.mapping(data, "alerts", "alerts")
    if not section:
        return AlertPolicy()
    reader.known_keys(section, SECTION_KEYS, "alerts")
    weeks, expectations = _baseline(reader, section)
    thresholds = _thresholds(reader, section)
    contacts = _contacts(reader, section, "contacts", "alerts.contacts")
    zone = str(section.get("time_zone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        reader.error(section, "time_zone", "alerts.time_zone",
                     f"{zone!r} is not a time zone (such as America/New_York)")
        zone = "UTC"
    lock = section.get("lock_on_urgent")
    if lock in (None, False, "off", "none"):
        lock = None
    elif lock not in LOCK_CLASSES:
        reader.error(section, "lock_on_urgent", "alerts.lock_on_urgent",
                     f"{lock!r} is not off, international or all")
        lock = None
    lock_accounts = None
    if "lock_accounts" in section:
        names = reader.sequence(section, "lock_accounts", "alerts.lock_accounts")
        for index, name in enumerate(names):
            if str(name) not in accounts:
                reader.error(names, index, f"alerts.lock_accounts[{index}]",
                             f"{name!r} is not an account of this policy")
        lock_accounts = frozenset(str(name) for name in names)
    return AlertPolicy(
        weeks=weeks,
        expectations=expectations,
        thresholds=thresholds,
        min_minutes=_number(reader, section, "min_minutes", "alerts.min_minutes", 10.0),
        min_calls=int(_number(reader, section, "min_calls", "alerts.min_calls", 10,
                              integer=True)),
        contacts=contacts if contacts is not None else ("log",),
        time_zone=zone,
        types=_types(reader, section),
        lock_on_urgent=lock,
        lock_accounts=lock_accounts,
        line=line_of(data, "alerts"),
    )


def _number(reader: PolicyReader, section: dict[str, Any], key: str, where: str,
            default: float, integer: bool = False) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)) or value < 0 or (
            integer and not isinstance(value, int)):
        kind = "a whole number" if integer else "a number"
        reader.error(section, key, where, f"{value!r} is not {kind} of 0 or more")
        return default
    if value > MAXIMUM:
        shown = repr(value) if len(repr(value)) <= 20 else repr(value)[:17] + "..."
        reader.error(section, key, where, f"{shown} is too large (at most {MAXIMUM:g})")
        return default
    return float(value)


def _baseline(reader: PolicyReader,
              section: dict[str, Any]) -> tuple[int, MappingProxyType[str, Expectation]]:
    baseline = reader.mapping(section, "baseline", "alerts.baseline")
    reader.known_keys(baseline, ("weeks", "expected"), "alerts.baseline")
    weeks = int(_number(reader, baseline, "weeks", "alerts.baseline.weeks", 4, integer=True))
    if not 1 <= weeks <= 52:
        reader.error(baseline, "weeks", "alerts.baseline.weeks", "must be 1 to 52")
        weeks = 4
    expected = dict(DEFAULT_EXPECTATIONS)
    raw = reader.mapping(baseline, "expected", "alerts.baseline.expected")
    for name, item in raw.items():
        where = f"alerts.baseline.expected.{name}"
        if name not in (*JURISDICTIONS, "default"):
            reader.error(raw, name, where,
                         f"unknown jurisdiction (known: {', '.join(JURISDICTIONS)}, default)")
            continue
        if not isinstance(item, dict):
            reader.error(raw, name, where, "must be a mapping such as {minutes: 15, calls: 10}")
            continue
        reader.known_keys(item, ("minutes", "calls"), where)
        fallback = expected.get(name, DEFAULT_EXPECTATIONS["default"])
        expected[name] = Expectation(
            _number(reader, item, "minutes", f"{where}.minutes", fallback.minutes),
            _number(reader, item, "calls", f"{where}.calls", fallback.calls))
    return weeks, MappingProxyType(expected)


def _thresholds(reader: PolicyReader, section: dict[str, Any]) -> MappingProxyType[Level, float]:
    defaults = AlertPolicy().thresholds
    raw = reader.mapping(section, "thresholds", "alerts.thresholds")
    reader.known_keys(raw, tuple(level.value for level in LEVELS), "alerts.thresholds")
    thresholds = {level: _number(reader, raw, level.value, f"alerts.thresholds.{level.value}",
                                 defaults[level])
                  for level in LEVELS}
    values = [thresholds[level] for level in LEVELS]
    if values != sorted(values) or len(set(values)) != len(values):
        reader.error(section, "thresholds", "alerts.thresholds",
                     "notify, warning and urgent must rise in that order "
                     f"(they are {', '.join(f'{value:g}%' for value in values)})")
        return defaults
    return MappingProxyType(thresholds)


def _contacts(reader: PolicyReader, section: dict[str, Any], key: str,
              where: str) -> tuple[str, ...] | None:
    if key not in section:
        return None
    contacts = reader.sequence(section, key, where)
    for index, contact in enumerate(contacts):
        problem = contact_problem(str(contact))
        if problem is not None:
            reader.error(contacts, index, f"{where}[{index}]", problem)
    return tuple(str(contact) for contact in contacts)


def contact_problem(contact: str) -> str | None:
    """Why a contact is not one, or None."""
    kind, _, target = contact.partition(":")
    if contact == "log":
        return None
    if kind == "email" and EMAIL.fullmatch(target):
        return None
    if kind == "sms" and PHONE.fullmatch(target):
        return None
    if kind == "webhook" and WEBHOOK_NAME.fullmatch(target):
        return None
    return (f"{contact!r} is not a contact (log, email:ADDRESS, sms:+NUMBER in E.164, "
            "webhook:NAME)")


def _types(reader: PolicyReader,
           section: dict[str, Any]) -> MappingProxyType[AlertType, AlertTypeSettings]:
    raw = reader.mapping(section, "types", "alerts.types")
    known = tuple(alert_type.value for alert_type in AlertType)
    types: dict[AlertType, AlertTypeSettings] = {}
    for name, value in raw.items():
        where = f"alerts.types.{name}"
        if name not in known:
            reader.error(raw, name, where, f"unknown alert type (known: {', '.join(known)})")
            continue
        item = {} if value is None else value
        if not isinstance(item, dict):
            reader.error(raw, name, where, "must be a mapping such as {enabled: false}")
            continue
        alert_type = AlertType(name)
        types[alert_type] = _type(reader, item, where, alert_type)
    return MappingProxyType(types)


def _type(reader: PolicyReader, item: dict[str, Any], where: str,
          alert_type: AlertType) -> AlertTypeSettings:
    reader.known_keys(item, TYPE_KEYS, where)
    defaults = AlertTypeSettings()
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        reader.error(item, "enabled", f"{where}.enabled", "must be true or false")
        enabled = True
    levels = frozenset(LEVELS)
    if "levels" in item:
        names = reader.sequence(item, "levels", f"{where}.levels")
        found = [_level(reader, names, index, f"{where}.levels[{index}]")
                 for index in range(len(names))]
        levels = frozenset(level for level in found if level is not None)
    jurisdictions = None
    if "jurisdictions" in item:
        names = reader.sequence(item, "jurisdictions", f"{where}.jurisdictions")
        for index, name in enumerate(names):
            if name not in JURISDICTIONS:
                reader.error(names, index, f"{where}.jurisdictions[{index}]",
                             f"{name!r} is not one of {', '.join(JURISDICTIONS)}")
        jurisdictions = frozenset(str(name) for name in names)
    level = DEFAULT_EVENT_LEVELS.get(alert_type)
    if "level" in item:
        if alert_type is AlertType.TRAFFIC:
            reader.error(item, "level", f"{where}.level", "traffic alerts take their level "
                         "from the thresholds; use levels: to choose which are sent")
        else:
            level = _level(reader, item, "level", f"{where}.level") or level
    window = defaults.window
    if "window" in item:
        window = seconds_of(reader, item, "window", f"{where}.window") or window
    repeat_after = defaults.repeat_after
    if "repeat_after" in item:
        repeat_after = seconds_of(reader, item, "repeat_after", f"{where}.repeat_after") or \
            repeat_after
    threshold = int(_number(reader, item, "threshold", f"{where}.threshold",
                            defaults.threshold, integer=True))
    if threshold < 1:
        reader.error(item, "threshold", f"{where}.threshold", "must be 1 or more")
        threshold = defaults.threshold
    risk = int(_number(reader, item, "min_country_risk", f"{where}.min_country_risk",
                       defaults.min_country_risk, integer=True))
    if risk > 100:
        reader.error(item, "min_country_risk", f"{where}.min_country_risk",
                     "must be 0 to 100 (the policy's country risk scale)")
        risk = defaults.min_country_risk
    return AlertTypeSettings(
        enabled=enabled, levels=levels, jurisdictions=jurisdictions,
        contacts=_contacts(reader, item, "contacts", f"{where}.contacts"),
        level=level, threshold=threshold, window=window, repeat_after=repeat_after,
        min_country_risk=risk)


def _level(reader: PolicyReader, container: Any, key: str | int, where: str) -> Level | None:
    value = container[key]
    try:
        return Level(str(value).lower())
    except ValueError:
        reader.error(container, key, where, f"{value!r} is not notify, warning or urgent")
        return None
