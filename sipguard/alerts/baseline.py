"""Baselines: how much traffic is normal for an account at this hour of the week (pure).

Traffic is kept as calls and minutes per account, per *dimension* (a
jurisdiction, ``jurisdiction:international``; and for international calls the
destination country, ``country:CU``) and per 15-minute bucket of wall-clock time
(15 minutes, so that every time zone's hours, :30 and :45 offsets included, are
whole buckets). A call counts in the bucket it started in.

What is normal for, say, Thursday 02:00–03:00 in the account's time zone is
the mean of the same local hour in each of the last N weeks that the account
has records for. An account with no such week yet (a new install, a new
customer) is compared with the policy's expectations instead.

The traffic of the hour so far is compared with the whole hour's normal, so an
alert means the hour has already gone past normal, whatever is still to come.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers

from sipguard.policy import AlertPolicy, Level
from sipguard.records import TrafficRow

BUCKET = 900.0  # seconds
HOUR = 3600.0
INTERNATIONAL = "international"


def dimensions(jurisdiction: str, region: str | None) -> list[str]:
    """What a call counts towards: its jurisdiction, and its country when international."""
    found = [f"jurisdiction:{jurisdiction}"]
    if jurisdiction == INTERNATIONAL and region:
        found.append(f"country:{region}")
    return found


class TrafficTable:
    """Calls and minutes by (account, dimension) and bucket."""

    def __init__(self, rows: Iterable[TrafficRow] = ()) -> None:
        self._cells: dict[tuple[str, str], dict[int, list[float]]] = {}
        for row in rows:
            self.add(row.account, row.jurisdiction, row.region, row.bucket, row.calls,
                     row.minutes)

    def add(self, account: str, jurisdiction: str, region: str | None, bucket: int,
            calls: float, minutes: float) -> None:
        """Count calls and minutes of one bucket."""
        for dimension in dimensions(jurisdiction, region):
            cell = self._cells.setdefault((account, dimension), {}).setdefault(bucket,
                                                                               [0.0, 0.0])
            cell[0] += calls
            cell[1] += minutes

    def cells(self) -> list[tuple[str, str]]:
        """Every (account, dimension) with traffic."""
        return list(self._cells)

    def total(self, account: str, dimension: str, start: float,
              end: float) -> tuple[float, float]:
        """Calls and minutes of the buckets that start within [start, end)."""
        cells = self._cells.get((account, dimension))
        if not cells:
            return 0.0, 0.0
        first, last = math.ceil(start / BUCKET), math.ceil(end / BUCKET)
        calls = minutes = 0.0
        for bucket in range(first, last):
            cell = cells.get(bucket)
            if cell is not None:
                calls += cell[0]
                minutes += cell[1]
        return calls, minutes


def hour_start(now: float, zone: ZoneInfo) -> datetime:
    """The start of the local hour ``now`` is in."""
    local = datetime.fromtimestamp(now, zone)
    return local.replace(minute=0, second=0, microsecond=0)


def weeks_back(hour: datetime, weeks: int) -> float:
    """The same local hour ``weeks`` weeks earlier, as epoch seconds (across DST too)."""
    earlier = hour.replace(tzinfo=None) - timedelta(weeks=weeks)
    return earlier.replace(tzinfo=hour.tzinfo).timestamp()


def slot_label(hour: datetime) -> str:
    """"Thursday 02:00–03:00"."""
    following = (hour.hour + 1) % 24
    return f"{hour.strftime('%A')} {hour.hour:02d}:00–{following:02d}:00"


@dataclass(frozen=True, slots=True)
class Normal:
    """The normal traffic for an hour; ``weeks`` 0 means the policy's expectation."""

    calls: float
    minutes: float
    weeks: int


def normal_for(policy: AlertPolicy, history: TrafficTable, account: str, dimension: str,
               hour: datetime, first_seen: float | None) -> Normal:
    """The mean of this local hour over the weeks the account has records for."""
    starts = [weeks_back(hour, weeks) for weeks in range(1, policy.weeks + 1)]
    if first_seen is not None:
        first_hour = first_seen - first_seen % BUCKET
        starts = [start for start in starts if start >= first_hour]
    else:
        starts = []
    if not starts:
        jurisdiction = (INTERNATIONAL if dimension.startswith("country:")
                        else dimension.partition(":")[2])
        expected = policy.expectation(jurisdiction)
        return Normal(expected.calls, expected.minutes, 0)
    totals = [history.total(account, dimension, start, start + HOUR) for start in starts]
    return Normal(sum(calls for calls, _ in totals) / len(totals),
                  sum(minutes for _, minutes in totals) / len(totals), len(totals))


@dataclass(frozen=True, slots=True)
class Finding:
    """Traffic above normal: what, how much, and the level it reaches."""

    account: str
    dimension: str
    measure: str  # minutes | calls
    current: float
    normal: float
    percent: float | None  # above normal; None when nothing is normal at this hour
    level: Level
    label: str  # "Thursday 02:00–03:00"
    hour: float  # the hour's start, epoch seconds
    weeks: int  # weeks the normal is learned from (0: the policy's expectation)

    @property
    def jurisdiction(self) -> str:
        """The jurisdiction this traffic belongs to."""
        if self.dimension.startswith("country:"):
            return INTERNATIONAL
        return self.dimension.partition(":")[2]

    @property
    def key(self) -> str:
        """What the finding is about, without its level (one per hour)."""
        return f"traffic:{self.account}:{self.dimension}:{self.measure}:{int(self.hour)}"

    def text(self) -> str:
        """"International minutes for account acme are 180% above normal for a Thursday
        02:00–03:00 (42 min vs 15 min)"."""
        kind, _, value = self.dimension.partition(":")
        if kind == "country":
            code = phonenumbers.country_code_for_region(value)
            what = f"{self.measure.capitalize()} to {value}" + (f" (+{code})" if code else "")
        else:
            what = f"{value.capitalize()} {self.measure}"
        unit = "min" if self.measure == "minutes" else "calls"
        expected = " expected (no history yet)" if self.weeks == 0 else ""
        if self.percent is None:
            return (f"{what} for account {self.account}: {_amount(self.current)} {unit} where "
                    f"none are normal for a {self.label}{expected.replace(' expected', '')}")
        return (f"{what} for account {self.account} are {self.percent:.0f}% above normal for "
                f"a {self.label} ({_amount(self.current)} {unit} vs "
                f"{_amount(self.normal)} {unit}{expected})")


def _amount(value: float) -> str:
    return f"{value:.1f}" if value < 10 and value != int(value) else f"{value:.0f}"


def findings(policy: AlertPolicy, current: TrafficTable, history: TrafficTable,
             first_seen: dict[str, float], zones: dict[str, ZoneInfo],
             now: float) -> Iterator[Finding]:
    """Every (account, dimension, measure) whose traffic this hour is above normal by at
    least the notify threshold, and above the policy's minimum."""
    for account, dimension in current.cells():
        hour = hour_start(now, zones.get(account) or ZoneInfo("UTC"))
        start = hour.timestamp()
        calls, minutes = current.total(account, dimension, start, now + BUCKET)
        normal = normal_for(policy, history, account, dimension, hour,
                            first_seen.get(account))
        for measure, value, usual, minimum in (
                ("minutes", minutes, normal.minutes, policy.min_minutes),
                ("calls", calls, normal.calls, float(policy.min_calls))):
            if value <= 0 or value < minimum:
                continue
            percent = None if usual <= 0 else (value - usual) / usual * 100.0
            level = Level.URGENT if percent is None else policy.level_for(percent)
            if level is not None:
                yield Finding(account, dimension, measure, value, usual, percent, level,
                              slot_label(hour), start, normal.weeks)
