"""Reading the policy's ``limits:`` section: rate, concurrency, duration and spend.

Split from sipguard.policy.loader to keep each loader module focused; the same
``file:line: key.path: message`` reporting applies.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sipguard.policy.model import (
    CLASSES,
    LIMIT_SCOPES,
    Action,
    ConsecutiveRule,
    DurationLimit,
    LimitKind,
    LimitRule,
    Limits,
    SpendRule,
)
from sipguard.policy.ratedeck import RateDeck
from sipguard.policy.reader import PolicyReader
from sipguard.schema import line_of

WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


RULE_KEYS = ("id", "per", "class", "max", "window", "action", "mode")


def _rule_items(reader: PolicyReader, raw: list[Any], where: str, keys: tuple[str, ...],
                scopes: tuple[str, ...]) -> Iterator[tuple[int, str, dict[str, Any], str]]:
    """The rules of a list that are mappings with known keys and a valid ``per``."""
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            reader.error(raw, index, at, "must be a mapping")
            continue
        reader.known_keys(item, keys, at)
        per = item.get("per")
        if per not in scopes:
            choices = f"{', '.join(scopes[:-1])} or {scopes[-1]}"
            reader.error(item, "per", f"{at}.per", f"{per!r} is not {choices}")
            continue
        yield index, at, item, str(per)


def _classes(reader: PolicyReader, item: dict[str, Any], at: str) -> frozenset[str] | None:
    """``class: international`` or a list of classes (``any`` = all); None when invalid."""
    wanted = item.get("class", "any")
    names = wanted if isinstance(wanted, list) else [wanted]
    if any(name not in (*CLASSES, "any") for name in names):
        reader.error(item, "class", f"{at}.class",
                     f"{wanted!r} is not a class (any, {', '.join(CLASSES)} or a list of them)")
        return None
    return frozenset(CLASSES) if "any" in names else frozenset(names)


def seconds_of(reader: PolicyReader, item: dict[str, Any], key: str, where: str) -> float | None:
    """A duration written as 90, "90s", "5m", "1h" or "1d"."""
    value = item.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", str(value).strip().lower())
    if match is None or float(match[1]) <= 0:
        reader.error(item, key, where, f"{value!r} is not a duration such as 90s, 5m, 1h, 1d")
        return None
    return float(match[1]) * WINDOW_UNITS[match[2]]


def read_limits(reader: PolicyReader, data: dict[str, Any]) -> Limits:
    section = reader.mapping(data, "limits", "limits")
    if not section:
        return Limits()
    reader.known_keys(section, ("rate", "concurrency", "duration", "spend", "consecutive",
                                "on_store_failure", "lease_seconds"), "limits")
    rules: list[LimitRule] = []
    ids: set[str] = set()
    for kind in (LimitKind.RATE, LimitKind.CONCURRENCY):
        allowed = ("id", "per", "class", "region", "max", "action", "mode")
        keys = (*allowed, "window") if kind is LimitKind.RATE else allowed
        raw = reader.sequence(section, kind.value, f"limits.{kind.value}")
        for index, at, item, per in _rule_items(reader, raw, f"limits.{kind.value}", keys,
                                                LIMIT_SCOPES):
            maximum = item.get("max")
            if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 0:
                reader.error(item, "max", f"{at}.max", "must be a whole number, 0 or more")
                continue
            window = 0.0
            if kind is LimitKind.RATE:
                seconds = seconds_of(reader, item, "window", f"{at}.window")
                if seconds is None:
                    continue
                window = seconds
            classes = _classes(reader, item, at)
            if classes is None:
                continue
            region = reader.region(item, "region", f"{at}.region") if "region" in item else None
            rule_id = str(item.get("id") or f"{kind.value}:{index}")
            if rule_id in ids:
                reader.error(item, "id", f"{at}.id", f"limit id {rule_id!r} is used twice")
            ids.add(rule_id)
            rules.append(LimitRule(rule_id, kind, per, maximum,
                                   reader.action(item, "action", f"{at}.action",
                                                 default=Action.DENY),
                                   window, classes, region, reader.mode(item, at),
                                   line_of(raw, index)))
    durations: list[DurationLimit] = []
    raw_durations = reader.sequence(section, "duration", "limits.duration")
    for index, item in enumerate(raw_durations):
        at = f"limits.duration[{index}]"
        if not isinstance(item, dict):
            reader.error(raw_durations, index, at, "must be a mapping")
            continue
        reader.known_keys(item, ("id", "class", "max"), at)
        seconds = seconds_of(reader, item, "max", f"{at}.max")
        classes = _classes(reader, item, at)
        if seconds is not None and classes is not None:
            durations.append(DurationLimit(str(item.get("id") or f"duration:{index}"), classes,
                                           seconds, line_of(raw_durations, index)))
    failure = dict(Limits().on_store_failure)
    raw_failure = reader.mapping(section, "on_store_failure", "limits.on_store_failure")
    for key, value in raw_failure.items():
        if key not in CLASSES or value not in ("open", "closed"):
            reader.error(raw_failure, key, f"limits.on_store_failure.{key}",
                         f"must be one of {', '.join(CLASSES)} set to open or closed")
            continue
        failure[key] = value
    lease = section.get("lease_seconds", 120)
    if isinstance(lease, bool) or not isinstance(lease, int | float) or lease < 5:
        reader.error(section, "lease_seconds", "limits.lease_seconds", "must be 5 or more")
        lease = 120
    spend, deck, per_call_max, currency = _spend(reader, section)
    consecutive = _consecutive(reader, section)
    # Ids name the counters in the store: two rules with one id would share one.
    named: list[tuple[str, list[tuple[str, int]]]] = [
        ("limits.spend.rules", [(rule.id, rule.line) for rule in spend]),
        ("limits.consecutive", [(rule.id, rule.line) for rule in consecutive]),
    ]
    for where, entries in named:
        seen: set[str] = set()
        for index, (rule_id, line) in enumerate(entries):
            if rule_id in ids or rule_id in seen:
                reader.problems.add(line, f"{where}[{index}].id",
                                    f"limit id {rule_id!r} is used twice")
            seen.add(rule_id)
        ids |= seen
    return Limits(rules=tuple(rules), durations=tuple(durations), spend=tuple(spend),
                  consecutive=tuple(consecutive),
                  rate_deck=deck, per_call_max=per_call_max, currency=currency,
                  on_store_failure=MappingProxyType(failure), lease_seconds=float(lease))


def _spend(reader: PolicyReader, limits: dict[str, Any]
           ) -> tuple[list[SpendRule], RateDeck, float | None, str]:
    section = reader.mapping(limits, "spend", "limits.spend")
    if not section:
        return [], RateDeck.build({}), None, "USD"
    reader.known_keys(section, ("rate_deck", "default_per_minute", "currency", "per_call_max",
                                "rules"), "limits.spend")
    default = section.get("default_per_minute")
    if default is not None and (isinstance(default, bool) or not isinstance(default, int | float)
                                or default < 0):
        reader.error(section, "default_per_minute", "limits.spend.default_per_minute",
                     "must be a price of 0 or more")
        default = None
    deck = RateDeck.build({}, None if default is None else float(default))
    if "rate_deck" in section:
        deck_path = reader.path.parent / str(section["rate_deck"])
        deck = _rate_deck(reader, section, deck_path, deck.default)
    per_call_max = section.get("per_call_max")
    if per_call_max is not None and (isinstance(per_call_max, bool)
                                     or not isinstance(per_call_max, int | float)
                                     or per_call_max <= 0):
        reader.error(section, "per_call_max", "limits.spend.per_call_max",
                     "must be an amount above 0")
        per_call_max = None
    rules: list[SpendRule] = []
    raw = reader.sequence(section, "rules", "limits.spend.rules")
    for index, at, item, per in _rule_items(reader, raw, "limits.spend.rules", RULE_KEYS,
                                            ("account", "system", "country")):
        maximum = item.get("max")
        if isinstance(maximum, bool) or not isinstance(maximum, int | float) or maximum < 0:
            reader.error(item, "max", f"{at}.max", "must be an amount, 0 or more")
            continue
        window = seconds_of(reader, item, "window", f"{at}.window")
        classes = _classes(reader, item, at)
        if window is None or classes is None:
            continue
        rules.append(SpendRule(
            str(item.get("id") or f"spend:{index}"), per, float(maximum), window,
            reader.action(item, "action", f"{at}.action", default=Action.DENY),
            classes, reader.mode(item, at), line_of(raw, index)))
    return rules, deck, None if per_call_max is None else float(per_call_max), str(
        section.get("currency", "USD"))


def _rate_deck(reader: PolicyReader, section: dict[str, Any], path: Path,
               default: float | None) -> RateDeck:
    """prefix,price_per_minute[,description] lines; # starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reader.error(section, "rate_deck", "limits.spend.rate_deck",
                     f"cannot read {path}: {error.strerror or error}")
        return RateDeck.build({}, default)
    prices: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = [field.strip() for field in line.split("#", 1)[0].split(",")]
        if not fields[0] or fields[0].lower() == "prefix":
            continue
        prefix = fields[0] if fields[0].startswith("+") else "+" + fields[0]
        try:
            price = float(fields[1])
        except (IndexError, ValueError):
            reader.problems.messages.append(
                f"{path}:{number}: price: {line.strip()!r} is not prefix,price_per_minute")
            continue
        if not prefix[1:].isdigit() or price < 0:
            reader.problems.messages.append(
                f"{path}:{number}: prefix: {line.strip()!r} needs digits and a price >= 0")
            continue
        prices[prefix] = price
    return RateDeck.build(prices, default, hashlib.sha256(text.encode()).hexdigest())


def _consecutive(reader: PolicyReader, section: dict[str, Any]) -> list[ConsecutiveRule]:
    rules: list[ConsecutiveRule] = []
    raw = reader.sequence(section, "consecutive", "limits.consecutive")
    for index, at, item, per in _rule_items(reader, raw, "limits.consecutive", RULE_KEYS,
                                            ("extension", "account")):
        maximum = item.get("max")
        if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
            reader.error(item, "max", f"{at}.max", "must be a whole number, 1 or more")
            continue
        window = seconds_of(reader, item, "window", f"{at}.window") if "window" in item else 3600.0
        classes = _classes(reader, item, at)
        if window is None or classes is None:
            continue
        rules.append(ConsecutiveRule(
            str(item.get("id") or f"consecutive:{index}"), per, maximum,
            reader.action(item, "action", f"{at}.action", default=Action.PIN), window,
            classes, reader.mode(item, at), line_of(raw, index)))
    return rules
