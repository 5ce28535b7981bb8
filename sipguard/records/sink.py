"""What stores call records: the CdrSink Protocol every backend implements.

Writes are idempotent by record id (a record written twice, after a crash
between the database's commit and the spool's cleanup, is kept once). A sink
that cannot be reached raises :class:`CdrUnavailableError`; the recorder keeps
the records in its spool and tries again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sipguard.records.record import CallRecord

# What `sipguard report` (and the dashboard) can group by -> the SQL expression.
GROUPS = {
    "country": "COALESCE(region, '?')",
    "extension": "COALESCE(account, '?') || '/' || COALESCE(extension, '-')",
    "jurisdiction": "COALESCE(jurisdiction, 'unknown')",
    "source": "COALESCE(source, '?')",
    "state": "COALESCE(state, '-')",
    "account": "COALESCE(account, '?')",
    "decision": "COALESCE(decision, '?')",
    "rule": "COALESCE(rule, '-')",
}


class CdrUnavailableError(Exception):
    """The CDR database cannot be reached, or is not working (try again later)."""


class CdrRefusedError(Exception):
    """The database refuses these records themselves (trying again will not help)."""


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Calls and minutes for one value of a grouping."""

    key: str
    calls: int
    answered: int
    minutes: float
    cost: float
    blocked: int  # rejected by the policy


@dataclass(frozen=True, slots=True)
class TrafficRow:
    """Calls and minutes of one account, jurisdiction and country in one time bucket
    (what baselines are learned from)."""

    account: str
    jurisdiction: str
    region: str
    bucket: int  # int(started_at // bucket seconds)
    calls: int
    minutes: float


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """Calls with one decision that started in one time bucket."""

    bucket: float  # its start, in seconds
    decision: str
    calls: int


class CdrSink(Protocol):
    """A place call records are kept and read back from."""

    name: str

    async def open(self, read_only: bool = False) -> None:
        """Connect; create the table and indexes when missing, unless ``read_only``."""
        ...

    async def write(self, records: Sequence[CallRecord]) -> None:
        """Store records (those already stored, by id, are left alone), all or none.

        Raises CdrUnavailableError when the database is down, CdrRefusedError when it
        refuses the records' contents."""
        ...

    async def records(self, since: float | None = None, until: float | None = None,
                      limit: int | None = None) -> list[CallRecord]:
        """Records that started in [since, until), oldest first."""
        ...

    async def summary(self, group: str, since: float | None = None,
                      until: float | None = None, limit: int | None = None) -> list[SummaryRow]:
        """Calls and minutes by ``group`` (a key of GROUPS), most minutes first."""
        ...

    async def count(self, since: float | None = None, until: float | None = None) -> int:
        """How many records started in [since, until)."""
        ...

    async def traffic(self, since: float, until: float | None,
                      bucket: float = 900.0) -> list[TrafficRow]:
        """Calls and minutes by account, jurisdiction, country and ``bucket`` seconds of
        start time, for records that started in [since, until)."""
        ...

    async def timeline(self, since: float, until: float | None = None,
                       bucket: float = 60.0) -> list[TimelineRow]:
        """Calls by ``bucket`` seconds of start time and decision, oldest first."""
        ...

    async def first_seen(self) -> dict[str, float]:
        """When each account's first record started."""
        ...

    async def sources(self) -> set[str]:
        """Every source address the records name."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...
