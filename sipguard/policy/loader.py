"""Reading conf/policy.yaml into a validated, frozen Policy.

Every problem is reported as ``file:line: key.path: message`` and the
whole file is checked before any of it is used, so a reload either swaps
in a complete new policy or changes nothing. Rules that can never match or
are shadowed by an earlier rule are warnings (``sipguard check`` prints
them; the service logs them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from sipguard.policy.alerts_section import read_alerts
from sipguard.policy.jurisdiction import US_STATES
from sipguard.policy.limits_section import read_limits
from sipguard.policy.model import (
    CLASSES,
    Account,
    Action,
    BusinessHours,
    DestinationRule,
    ExtensionGroup,
    ExtensionPattern,
    Policy,
    RiskSettings,
    TimeRule,
    TypeRule,
)
from sipguard.policy.numbers import ALWAYS_EMERGENCY, DialPlan, NumberType, clean, to_e164
from sipguard.policy.reader import REGIONS, PolicyReader
from sipguard.schema import ConfigError, MarkedDict, line_of, load_marked

COUNTRY_CODES = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TOP_KEYS = ("version", "mode", "accounts", "destinations", "number_types", "time_rules", "risk",
            "limits", "blocked_numbers", "emergency_numbers", "alerts")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A policy and the warnings its file earned."""

    policy: Policy
    warnings: tuple[str, ...]


def load_policy_file(path: Path) -> LoadedPolicy:
    """Read and validate a policy file; raise ConfigError listing every problem."""
    data = load_marked(path)
    raw = path.read_bytes()
    reader = PolicyReader(path)
    if data is None:
        data = MarkedDict()
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: (top): must be a mapping"])
    reader.known_keys(data, TOP_KEYS, "")
    accounts = _accounts(reader, data)
    destinations_section = reader.mapping(data, "destinations", "destinations")
    reader.known_keys(destinations_section, ("default", "mode", "rules"), "destinations")
    default_action = reader.action(destinations_section, "default", "destinations.default",
                                   default=Action.DENY)
    destinations = _destination_rules(reader, destinations_section, "destinations.rules")
    blocked = _blocked_numbers(reader, data, accounts)
    extra_emergency = _extra_emergency(reader, data)
    limits = read_limits(reader, data)
    policy = Policy(
        # The rate deck decides budgets too: a new deck is a new policy version.
        version=hashlib.sha256(raw + limits.rate_deck.digest.encode()).hexdigest()[:12],
        accounts=tuple(accounts),
        destinations=tuple(destinations),
        default_action=default_action,
        type_rules=tuple(_type_rules(reader, data)),
        time_rules=tuple(_time_rules(reader, data)),
        risk=_risk(reader, data),
        limits=limits,
        blocked_numbers=blocked,
        extra_emergency_numbers=extra_emergency,
        alerts=read_alerts(reader, data, {account.name for account in accounts}),
        mode=reader.mode(data, "mode"),
        source=str(path),
    )
    if not accounts:
        reader.error(data, "accounts", "accounts", "must list at least one account (PBX)")
    reader.problems.raise_if_any()
    return LoadedPolicy(policy, tuple(reader.warnings))


def _dial_plan(reader: PolicyReader, item: dict[str, Any], where: str) -> DialPlan:
    region = "US"
    if "home_region" in item:
        region = reader.region(item, "home_region", f"{where}.home_region") or "US"
    plan = DialPlan(
        home_region=region,
        outside_line=str(item.get("outside_line", "") or ""),
        international_prefix=str(item.get("international_prefix",
                                          "011" if region in ("US", "CA") else "00")),
        national_prefix=str(item.get("national_prefix", "1" if region in ("US", "CA") else "0")),
    )
    for key in ("outside_line", "international_prefix", "national_prefix"):
        if isinstance(item.get(key), int):
            # YAML reads 011 as the octal number 9 and 00 as 0: only a string is safe.
            reader.error(item, key, f"{where}.{key}",
                         f'write it in quotes ("{item.get(key)}" was read as a number)')
            continue
        value = getattr(plan, key)
        if value and not (value.isascii() and value.isdigit()):
            reader.error(item, key, f"{where}.{key}", f"{value!r} must be digits")
    return plan


def _business_hours(reader: PolicyReader, item: dict[str, Any], where: str) -> BusinessHours:
    section = reader.mapping(item, "business_hours", where)
    if not section:
        return BusinessHours()
    reader.known_keys(section, ("days", "start", "end"), where)
    days: set[int] = set()
    raw_days = section.get("days", ["mon", "tue", "wed", "thu", "fri"])
    if not isinstance(raw_days, list):
        reader.error(section, "days", f"{where}.days", "must be a list such as [mon, tue]")
        raw_days = []
    for index, day in enumerate(raw_days):
        name = str(day).lower()
        if name[:3] not in DAYS or name not in (name[:3], FULL_DAYS[DAYS[name[:3]]]):
            reader.error(raw_days, index, f"{where}.days[{index}]",
                         f"{day!r} is not a weekday (mon, tue, ... or monday, tuesday, ...)")
        else:
            days.add(DAYS[name[:3]])

    def clock(key: str, default: time) -> time:
        value = section.get(key)
        if value is None:
            return default
        text = str(value)  # YAML 1.2 reads 08:00 as a string (1.1 read sexagesimal 480)
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
        if (not match or int(match[1]) > 24 or int(match[2]) > 59
                or (int(match[1]) == 24 and int(match[2]) != 0)):
            reader.error(section, key, f"{where}.{key}", f"{value!r} is not a time like 08:30")
            return default
        hour, minute = int(match[1]), int(match[2])
        return time(23, 59, 59) if hour == 24 else time(hour, minute)

    hours = BusinessHours(frozenset(days), clock("start", time(8)), clock("end", time(18)))
    if hours.start >= hours.end:
        reader.error(section, "end", f"{where}.end", "must be later than start")
    return hours


def _accounts(reader: PolicyReader, data: dict[str, Any]) -> list[Account]:
    accounts: list[Account] = []
    names: set[str] = set()
    for index, item in enumerate(reader.sequence(data, "accounts", "accounts")):
        where = f"accounts[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            reader.error(data["accounts"], index, where, "needs a name (the peer's name)")
            continue
        reader.known_keys(item, ("name", "home_region", "home_state", "outside_line",
                                 "international_prefix", "national_prefix", "time_zone",
                                 "domestic_regions", "business_hours", "may_dial",
                                 "extension_groups"), where)
        if item["name"] in names:
            reader.error(item, "name", f"{where}.name", f"account {item['name']!r} is listed twice")
        names.add(item["name"])
        plan = _dial_plan(reader, item, where)
        zone = str(item.get("time_zone", "UTC"))
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            reader.error(item, "time_zone", f"{where}.time_zone",
                         f"{zone!r} is not a time zone (such as America/New_York)")
            zone = "UTC"
        domestic: set[str] = set()
        for position, region in enumerate(reader.sequence(item, "domestic_regions", where)):
            holder = MarkedDict({"region": region})
            holder.key_lines = {"region": line_of(item["domestic_regions"], position)}
            code = reader.region(holder, "region", f"{where}.domestic_regions[{position}]")
            if code:
                domestic.add(code)
        may_dial = reader.classes(item, "may_dial", f"{where}.may_dial")
        groups = _groups(reader, item, where)
        home_state = item.get("home_state")
        if home_state is not None and (plan.home_region != "US"
                                       or str(home_state).upper() not in US_STATES):
            reader.error(item, "home_state", f"{where}.home_state",
                         "must be a US state's two letters (such as NY), for a US account")
            home_state = None
        accounts.append(Account(
            name=item["name"], dial_plan=plan, time_zone=zone,
            home_state=str(home_state).upper() if home_state is not None else None,
            domestic_regions=frozenset(domestic) or frozenset({plan.home_region}),
            business_hours=_business_hours(reader, item, f"{where}.business_hours"),
            may_dial=may_dial if may_dial is not None else frozenset(("domestic",)),
            groups=tuple(groups), line=line_of(data["accounts"], index),
        ))
    return accounts


def _groups(reader: PolicyReader, account: dict[str, Any], where: str) -> list[ExtensionGroup]:
    groups: list[ExtensionGroup] = []
    for index, item in enumerate(reader.sequence(account, "extension_groups", where)):
        at = f"{where}.extension_groups[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            reader.error(account["extension_groups"], index, at, "needs a name and extensions")
            continue
        reader.known_keys(item, ("name", "extensions", "may_dial", "destinations"), at)
        patterns: list[ExtensionPattern] = []
        raw = reader.sequence(item, "extensions", at)
        if not raw:
            reader.error(item, "extensions", f"{at}.extensions",
                         "must list extensions, ranges (300-399) or patterns (2XX)")
        for position, text in enumerate(raw):
            try:
                patterns.append(ExtensionPattern.parse(str(text)))
            except ValueError as error:
                reader.error(raw, position, f"{at}.extensions[{position}]", str(error))
        rules = _destination_rules(reader, item, f"{at}.destinations", key="destinations")
        groups.append(ExtensionGroup(item["name"], tuple(patterns),
                                     reader.classes(item, "may_dial", f"{at}.may_dial"),
                                     tuple(rules), line_of(account["extension_groups"], index)))
    return groups


def _destination_rules(reader: PolicyReader, section: dict[str, Any], where: str,
                       key: str = "rules") -> list[DestinationRule]:
    rules: list[DestinationRule] = []
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    for index, item in enumerate(reader.sequence(section, key, where)):
        at = f"{where}[{index}]"
        line = line_of(section[key], index)
        if not isinstance(item, dict):
            reader.error(section[key], index, at, "must be a mapping with action and a matcher")
            continue
        reader.known_keys(item, ("id", "region", "country_code", "prefix", "action", "mode"), at)
        matchers = [name for name in ("region", "country_code", "prefix") if name in item]
        if len(matchers) != 1:
            reader.error(item, "action" if "action" in item else (matchers or ["id"])[0], at,
                         "needs exactly one of region, country_code, prefix")
            continue
        matcher = matchers[0]
        region = country_code = prefix = None
        if matcher == "region":
            region = reader.region(item, "region", f"{at}.region")
            label = f"region:{region}"
        elif matcher == "country_code":
            text = str(item["country_code"]).lstrip("+")
            if not text.isdigit() or int(text) not in COUNTRY_CODES:
                reader.error(item, "country_code", f"{at}.country_code",
                             f"{item['country_code']!r} is not a country calling code")
                continue
            country_code = int(text)
            label = f"country_code:+{country_code}"
        else:
            text = "".join(char for char in str(item["prefix"]) if char not in " -.()")
            if not text.startswith("+") or not text[1:].isdigit():
                reader.error(item, "prefix", f"{at}.prefix",
                             f"{item['prefix']!r} must be an E.164 prefix such as +1900")
                continue
            prefix = text
            if not any(text[1:].startswith(str(code)) or str(code).startswith(text[1:])
                       for code in COUNTRY_CODES):
                reader.warn(line, f"{at}.prefix",
                            f"{prefix} starts with no country calling code: it can never match")
            label = f"prefix:{prefix}"
        rule = DestinationRule(
            id=str(item.get("id") or label), action=reader.action(item, "action", f"{at}.action"),
            mode=reader.mode(item, at), region=region, country_code=country_code,
            prefix=prefix, line=line)
        identity = (matcher, label)
        if identity in seen:
            first_id, first_line = seen[identity]
            reader.warn(line, at, f"shadowed: rule {first_id!r} (line {first_line}) has the same "
                        f"{matcher} and comes first, so this rule never decides")
        else:
            seen[identity] = (rule.id, line)
        rules.append(rule)
    return rules


def _type_rules(reader: PolicyReader, data: dict[str, Any]) -> list[TypeRule]:
    section = reader.mapping(data, "number_types", "number_types")
    rules: list[TypeRule] = []
    names = {kind.value: kind for kind in NumberType}
    for key, value in section.items():
        where = f"number_types.{key}"
        if key not in names:
            reader.error(section, key, where, f"unknown number type (known: {', '.join(names)})")
            continue
        if isinstance(value, dict):
            holder: dict[str, Any] = value
            reader.known_keys(value, ("action", "mode"), where)
        else:
            marked = MarkedDict({"action": value})
            marked.key_lines = {"action": line_of(section, key)}
            holder = marked
        rules.append(TypeRule(f"type:{key}", names[key],
                              reader.action(holder, "action", where),
                              reader.mode(holder, where), line_of(section, key)))
    return rules


def _time_rules(reader: PolicyReader, data: dict[str, Any]) -> list[TimeRule]:
    rules: list[TimeRule] = []
    for index, item in enumerate(reader.sequence(data, "time_rules", "time_rules")):
        at = f"time_rules[{index}]"
        if not isinstance(item, dict):
            reader.error(data["time_rules"], index, at, "must be a mapping")
            continue
        reader.known_keys(item, ("id", "when", "classes", "action", "mode"), at)
        when = item.get("when", "outside_business_hours")
        if when not in ("outside_business_hours", "inside_business_hours"):
            reader.error(item, "when", f"{at}.when",
                         "must be outside_business_hours or inside_business_hours")
        classes = reader.classes(item, "classes", f"{at}.classes") or frozenset(CLASSES)
        rules.append(TimeRule(str(item.get("id") or f"time:{index}"),
                              when == "outside_business_hours", classes,
                              reader.action(item, "action", f"{at}.action"),
                              reader.mode(item, at), line_of(data["time_rules"], index)))
    return rules


def _risk(reader: PolicyReader, data: dict[str, Any]) -> RiskSettings:
    section = reader.mapping(data, "risk", "risk")
    if not section:
        return RiskSettings()
    reader.known_keys(section, ("mode", "thresholds", "weights", "country_risk"), "risk")
    defaults = RiskSettings()
    thresholds = reader.mapping(section, "thresholds", "risk.thresholds")
    weights = reader.mapping(section, "weights", "risk.weights")
    reader.known_keys(thresholds, ("pin", "deny"), "risk.thresholds")
    weight_keys = ("country", "default_country_risk", "new_destination", "outside_business_hours",
                   "per_recent_international_call", "recent_calls_cap", "number_types")
    reader.known_keys(weights, weight_keys, "risk.weights")

    def number(mapping: dict[str, Any], key: str, where: str, default: float,
               high: float = 100) -> float:
        value = mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            reader.error(mapping, key, where, f"must be a number from 0 to {high:g}")
            return default
        return float(value)

    type_points = dict(defaults.type_points)
    raw_types = reader.mapping(weights, "number_types", "risk.weights.number_types")
    names = {kind.value: kind for kind in NumberType}
    for key in raw_types:
        if key not in names:
            reader.error(raw_types, key, f"risk.weights.number_types.{key}", "unknown number type")
        else:
            type_points[names[key]] = int(number(raw_types, key,
                                                 f"risk.weights.number_types.{key}", 0))
    country_risk: dict[str, int] = {}
    raw_country = reader.mapping(section, "country_risk", "risk.country_risk")
    for key in raw_country:
        if str(key).upper() not in REGIONS:
            reader.error(raw_country, key, f"risk.country_risk.{key}", "unknown region code")
        else:
            country_risk[str(key).upper()] = int(number(raw_country, key,
                                                        f"risk.country_risk.{key}", 0))
    pin_at = int(number(thresholds, "pin", "risk.thresholds.pin", defaults.pin_at))
    deny_at = int(number(thresholds, "deny", "risk.thresholds.deny", defaults.deny_at))
    if pin_at > deny_at:
        reader.error(thresholds, "pin", "risk.thresholds.pin", "must not be above deny")
    return RiskSettings(
        type_points=MappingProxyType(type_points),
        country_risk=MappingProxyType(country_risk),
        default_country_risk=int(number(weights, "default_country_risk",
                                        "risk.weights.default_country_risk",
                                        defaults.default_country_risk)),
        country_weight=number(weights, "country", "risk.weights.country",
                              defaults.country_weight, high=1),
        new_destination_points=int(number(weights, "new_destination",
                                          "risk.weights.new_destination",
                                          defaults.new_destination_points)),
        outside_hours_points=int(number(weights, "outside_business_hours",
                                        "risk.weights.outside_business_hours",
                                        defaults.outside_hours_points)),
        points_per_recent_call=int(number(weights, "per_recent_international_call",
                                          "risk.weights.per_recent_international_call",
                                          defaults.points_per_recent_call)),
        recent_calls_cap=int(number(weights, "recent_calls_cap", "risk.weights.recent_calls_cap",
                                    defaults.recent_calls_cap)),
        pin_at=pin_at, deny_at=deny_at, mode=reader.mode(section, "risk"),
        line=line_of(data, "risk"),
    )


def _blocked_numbers(reader: PolicyReader, data: dict[str, Any],
                     accounts: list[Account]) -> frozenset[str]:
    """The E.164 forms of the blocked numbers, read with every account's dial plan.

    "00442079460321" and "011442079460321" in the file both block +442079460321,
    however the PBX then spells it.
    """
    numbers: set[str] = set()
    plans = [account.dial_plan for account in accounts] or [DialPlan()]
    raw = reader.sequence(data, "blocked_numbers", "blocked_numbers")
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            # YAML turns +442079460321 into a number (losing the +) and 011... into octal.
            message = (f"{item!r} is an emergency number and can never be blocked"
                       if str(item) in ALWAYS_EMERGENCY else
                       f'write the number in quotes, such as "+442079460321" ({item!r} was '
                       "read as a number)")
            reader.error(raw, index, f"blocked_numbers[{index}]", message)
            continue
        text = clean(item)
        if text.lstrip("+") in ALWAYS_EMERGENCY or not text.lstrip("+").isdigit():
            reader.error(raw, index, f"blocked_numbers[{index}]",
                         f"{item!r} is an emergency number and can never be blocked"
                         if text.lstrip("+") in ALWAYS_EMERGENCY
                         else f"{item!r} is not a number")
            continue
        for plan in plans:
            e164 = to_e164(text, plan)[1]
            if e164 is not None:
                numbers.add(e164)
    return frozenset(numbers)


def _extra_emergency(reader: PolicyReader, data: dict[str, Any]) -> frozenset[str]:
    numbers: set[str] = set()
    raw = reader.sequence(data, "emergency_numbers", "emergency_numbers")
    for index, item in enumerate(raw):
        text = clean(str(item))
        if not text.isdigit() or len(text) > 6:
            reader.error(raw, index, f"emergency_numbers[{index}]",
                         f"{item!r} is not a short emergency number")
            continue
        numbers.add(text)
    return frozenset(numbers)


def load_policy(path: Path) -> Policy:
    """The policy of a file (warnings dropped; see load_policy_file)."""
    return load_policy_file(path).policy
