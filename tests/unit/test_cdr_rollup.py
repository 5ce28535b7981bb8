"""The hourly and daily rollups: a summary read from them equals the GROUP BY over the
records themselves, for any records and any time range."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.records import CallRecord, rollup, sql
from sipguard.records.sink import GROUPS
from sipguard.records.sqlite import SqliteSink

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole hour
DAY = 86400.0


def _record(number: int, started: float, **changes: object) -> CallRecord:
    base = CallRecord(call_id=f"roll-{number}@127.0.0.1", started_at=started,
                      account=f"acct-{number % 3}", source=f"127.0.0.{number % 4 + 1}",
                      dialled="12125550100", decision="reject" if number % 5 == 0 else "forward",
                      id=f"{number:032x}", extension=str(200 + number % 2),
                      e164="+12125550100", region=("US", "GB", "CA")[number % 3],
                      jurisdiction=("interstate", "international")[number % 2],
                      state=("NY", None)[number % 2], rule=("allow-us", "irsf")[number % 2],
                      answered_at=None if number % 5 == 0 else started + 1,
                      duration=0.0 if number % 5 == 0 else float(number % 7) * 30,
                      cost=round((number % 4) * 0.01, 2))
    return base.replace(**changes)


def _raw(path: Path, group: str, since: float | None, until: float | None
         ) -> list[tuple[object, ...]]:
    query, parameters = sql.summary(group, since, until, None, lambda _: "?")
    with sqlite3.connect(path) as db:
        return [_rounded(row) for row in db.execute(query, parameters)]


def _rounded(row: tuple[object, ...]) -> tuple[object, ...]:
    key, calls, answered, minutes, cost, blocked = row
    return (key, calls, answered or 0, round(float(str(minutes)), 6),
            round(float(str(cost)), 6), blocked or 0)


async def _written(path: Path, batches: list[list[CallRecord]]) -> None:
    sink = SqliteSink(path)
    await sink.open()
    for batch in batches:
        await sink.write(batch)
    await sink.close()


async def _summary(path: Path, group: str, since: float | None, until: float | None,
                   read_only: bool = True) -> list[tuple[object, ...]]:
    sink = SqliteSink(path)
    await sink.open(read_only=read_only)
    try:
        rows = await sink.summary(group, since, until)
    finally:
        await sink.close()
    return [_rounded((row.key, row.calls, row.answered, row.minutes, row.cost, row.blocked))
            for row in rows]


offsets = st.floats(min_value=-3 * DAY, max_value=3 * DAY, allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(starts=st.lists(offsets, min_size=0, max_size=40),
       since=st.one_of(st.none(), offsets), until=st.one_of(st.none(), offsets),
       group=st.sampled_from(sorted(GROUPS)), split_at=st.integers(min_value=0, max_value=40))
def test_rollup_summary_equals_the_records_group_by(tmp_path_factory: pytest.TempPathFactory,
                                                    starts: list[float], since: float | None,
                                                    until: float | None, group: str,
                                                    split_at: int):
    """For any records (written in two batches, one record twice) and any range, the
    summary from the rollups is the GROUP BY over the records."""
    path = tmp_path_factory.mktemp("rollup") / "cdr.sqlite"
    records = [_record(number, START + offset) for number, offset in enumerate(starts)]
    batches = [records[:split_at], records[split_at:] + records[:1]]
    asyncio.run(_written(path, batches))
    low = None if since is None else START + since
    high = None if until is None else START + until
    assert asyncio.run(_summary(path, group, low, high)) == _raw(path, group, low, high)


def test_a_record_written_twice_is_counted_once(tmp_path: Path):
    """The rollup counts only the rows an insert added (a batch sent again after a crash
    adds nothing)."""
    path = tmp_path / "cdr.sqlite"
    records = [_record(number, START + number * 600) for number in range(10)]
    asyncio.run(_written(path, [records, records, records[3:5]]))
    rows = asyncio.run(_summary(path, "account", START - DAY, START + DAY))
    assert sum(int(str(row[1])) for row in rows) == 10
    with sqlite3.connect(path) as db:
        hours = db.execute(f"SELECT SUM(calls) FROM {rollup.TABLE} WHERE grp = 'account' "
                           "AND size = 3600").fetchone()[0]
        days = db.execute(f"SELECT SUM(calls) FROM {rollup.TABLE} WHERE grp = 'account' "
                          "AND size = 86400").fetchone()[0]
        mark = db.execute(rollup.READ_MARK).fetchone()[0]
    assert (hours, days, mark) == (10, 10, 10)


def test_a_database_without_rollups_is_caught_up_when_opened_for_writing(tmp_path: Path):
    """Records an older sipguard wrote (no rollup table) are summed up on the first open
    for writing; a read-only open of such a file reads the records themselves."""
    path = tmp_path / "cdr.sqlite"
    records = [_record(number, START + number * 3000) for number in range(60)]
    asyncio.run(_written(path, [records]))
    with sqlite3.connect(path) as db:
        db.execute(f"DROP TABLE {rollup.TABLE}")
        db.execute(f"DROP TABLE {rollup.MARK}")
    expected = _raw(path, "country", START + 1000, START + 2 * DAY)
    assert asyncio.run(_summary(path, "country", START + 1000, START + 2 * DAY)) == expected
    with sqlite3.connect(path) as db:
        assert db.execute(rollup.EXISTS).fetchone() is None
    asyncio.run(_written(path, []))
    with sqlite3.connect(path) as db:
        assert db.execute(rollup.READ_MARK).fetchone()[0] == 60
    assert asyncio.run(_summary(path, "country", START + 1000, START + 2 * DAY)) == expected


@pytest.mark.parametrize(("since", "until", "edges", "hours", "days"), [
    # less than an hour: all records
    (START + 10, START + 100, ((START + 10, START + 100),), (), None),
    # whole hours only
    (START, START + 7200, (), ((START, START + 7200),), None),
    # ragged ends around whole hours inside one day
    (START + 10, START + 7300, ((START + 10, START + 3600), (START + 7200, START + 7300)),
     ((START + 3600, START + 7200),), None),
])
def test_split(since: float, until: float, edges: tuple[tuple[float, float], ...],
               hours: tuple[tuple[float, float], ...], days: tuple[int, int] | None):
    span = rollup.split(since, until, now=START + 10 * DAY)
    assert span.edges == edges
    assert span.hours == tuple((int(start), int(stop)) for start, stop in hours)
    assert span.days == days


def test_split_of_a_month_reads_days_and_the_hours_at_each_end():
    """30 days back from a time inside an hour: two edges, hours up to the first and from
    the last midnight, the days between, and the open end read from the records."""
    now = START + 5 * DAY + 3 * 3600 + 120  # 11:02 UTC
    span = rollup.split(now - 30 * DAY, None, now)
    first_hour = START + 5 * DAY - 30 * DAY + 4 * 3600
    assert span.edges == ((now - 30 * DAY, first_hour), (now - 120, None))
    first_day = START + 5 * DAY - 30 * DAY + 16 * 3600  # the next 00:00 UTC
    last_day = START + 5 * DAY - 8 * 3600
    assert span.days == (int(first_day), int(last_day))
    assert span.hours == ((int(first_hour), int(first_day)), (int(last_day), int(now - 120)))
