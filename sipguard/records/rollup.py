"""Hourly and daily totals of the call records, so that a report or a dashboard widget
over a month reads a few thousand rows instead of every record (SQLite).

``cdr_rollup`` holds, for each grouping of GROUPS, each bucket (an hour or a UTC day,
by its start in seconds) and each key: calls, answered calls, seconds, cost and
blocked calls. It is kept in the same transaction as the records it counts: after a
batch is inserted, the rows whose rowid is above the watermark (``cdr_rollup_mark``)
are the new ones, since a record already stored is ignored and gets no rowid; they are
added to their buckets and the watermark moves to the largest rowid. A database made
by an older sipguard is caught up the same way when it is opened for writing.

A summary over [since, until) adds three parts: the records themselves for the ragged
edges (less than an hour at each end), hourly totals for the whole hours, and daily
totals for the whole days. The answer is the same as a GROUP BY over the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sipguard.records.sink import GROUPS

TABLE = "cdr_rollup"
MARK = "cdr_rollup_mark"
HOUR = 3600
DAY = 86400
SIZES = (HOUR, DAY)

SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (grp TEXT NOT NULL, size INTEGER NOT NULL, "
    "bucket INTEGER NOT NULL, key TEXT NOT NULL, calls INTEGER NOT NULL, "
    "answered INTEGER NOT NULL, seconds REAL NOT NULL, cost REAL NOT NULL, "
    "blocked INTEGER NOT NULL, PRIMARY KEY (grp, size, bucket, key))",
    f"CREATE TABLE IF NOT EXISTS {MARK} (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
READ_MARK = f"SELECT value FROM {MARK} WHERE name = 'rowid'"
WRITE_MARK = (f"INSERT INTO {MARK} (name, value) VALUES ('rowid', ?) "
              "ON CONFLICT (name) DO UPDATE SET value = excluded.value")
LAST_ROWID = "SELECT COALESCE(MAX(rowid), 0) FROM cdr"
EXISTS = f"SELECT name FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}'"

_TOTALS = ("COUNT(*) AS calls, "
           "SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered, "
           "COALESCE(SUM(duration), 0) AS seconds, COALESCE(SUM(cost), 0) AS cost, "
           "SUM(CASE WHEN decision = 'reject' THEN 1 ELSE 0 END) AS blocked")


def add_new_rows() -> list[str]:
    """Statements that add the records with rowid in (?, ?] to their buckets, one per
    grouping and bucket size (each takes the two rowids as parameters)."""
    statements = []
    for group, expression in GROUPS.items():  # fixed expressions, never user text
        for size in SIZES:
            statements.append(
                f"INSERT INTO {TABLE} (grp, size, bucket, key, calls, answered, seconds, "
                f"cost, blocked) SELECT '{group}', {size}, "
                f"CAST(started_at / {size} AS INTEGER) * {size}, {expression}, {_TOTALS} "
                "FROM cdr WHERE rowid > ? AND rowid <= ? GROUP BY 3, 4 "
                "ON CONFLICT (grp, size, bucket, key) DO UPDATE SET "
                "calls = calls + excluded.calls, answered = answered + excluded.answered, "
                "seconds = seconds + excluded.seconds, cost = cost + excluded.cost, "
                "blocked = blocked + excluded.blocked")
    return statements


@dataclass(frozen=True, slots=True)
class Span:
    """A time range split into what each source answers: raw records for ``edges``,
    hourly totals for ``hours`` and daily totals for ``days`` (each [start, end);
    ``None`` as an end means open)."""

    edges: tuple[tuple[float | None, float | None], ...]
    hours: tuple[tuple[int, int], ...]
    days: tuple[int, int] | None


def split(since: float | None, until: float | None, now: float) -> Span:
    """How [since, until) is answered. ``until`` of None reads to the end: the hour
    ``now`` falls in, and anything later, come from the records themselves."""
    end = until if until is not None else now
    first_hour = 0 if since is None else math.ceil(since / HOUR) * HOUR
    last_hour = math.floor(end / HOUR) * HOUR
    if first_hour >= last_hour:
        return Span(edges=((since, until),), hours=(), days=None)
    edges: list[tuple[float | None, float | None]] = []
    if since is not None and since < first_hour:
        edges.append((since, float(first_hour)))
    if until is None or last_hour < until:
        edges.append((float(last_hour), until))
    first_day = math.ceil(first_hour / DAY) * DAY
    last_day = math.floor(last_hour / DAY) * DAY
    if first_day >= last_day:
        return Span(edges=tuple(edges), hours=((first_hour, last_hour),), days=None)
    hours = tuple((start, stop) for start, stop in ((first_hour, first_day),
                                                     (last_day, last_hour)) if start < stop)
    return Span(edges=tuple(edges), hours=hours, days=(first_day, last_day))


def summary(group: str, since: float | None, until: float | None, limit: int | None,
            now: float) -> tuple[str, list[float]]:
    """The query (SQLite placeholders) for calls, answered calls, minutes, cost and
    blocked calls by ``group`` over [since, until), most minutes first."""
    expression = GROUPS[group]  # a KeyError for an unknown group, never SQL from text
    span = split(since, until, now)
    parts: list[str] = []
    parameters: list[float] = []
    for start, stop in span.edges:
        clauses = []
        if start is not None:
            clauses.append("started_at >= ?")
            parameters.append(start)
        if stop is not None:
            clauses.append("started_at < ?")
            parameters.append(stop)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        parts.append(f"SELECT {expression} AS key, {_TOTALS} FROM cdr{where} GROUP BY 1")
    ranges = [(HOUR, start, stop) for start, stop in span.hours]
    if span.days is not None:
        ranges.append((DAY, *span.days))
    for size, start, stop in ranges:
        parts.append("SELECT key, calls, answered, seconds, cost, blocked "
                     f"FROM {TABLE} WHERE grp = '{group}' AND size = {size} "
                     "AND bucket >= ? AND bucket < ?")
        parameters.extend((float(start), float(stop)))
    query = ("SELECT key, SUM(calls), SUM(answered), SUM(seconds) / 60.0, SUM(cost), "
             "SUM(blocked) FROM ("
             + " UNION ALL ".join(f"SELECT * FROM ({part})" for part in parts)
             + ") GROUP BY key ORDER BY 4 DESC, 2 DESC, 1")
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return query, parameters
