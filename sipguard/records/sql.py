"""The SQL both CDR databases share (SQLite and PostgreSQL differ in types and
placeholders only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipguard.records.record import FIELDS
from sipguard.records.sink import GROUPS, TrafficRow

TABLE = "cdr"
INTEGER_COLUMNS = frozenset({"risk_score", "status", "trunk_status"})
REAL_COLUMNS = frozenset({"started_at", "answered_at", "ended_at", "duration", "cost"})

Placeholder = Callable[[int], str]  # position (1-based) -> "?" or "$1"


def column(name: str, real_type: str) -> str:
    """One column's definition."""
    if name == "id":
        return "id TEXT PRIMARY KEY"
    if name in INTEGER_COLUMNS:
        return f"{name} INTEGER"
    if name in REAL_COLUMNS:
        return f"{name} {real_type}" + (" NOT NULL" if name == "started_at" else "")
    return f"{name} TEXT"


def added_columns(existing: set[str], real_type: str) -> list[str]:
    """ALTER statements for the columns a table made by an older sipguard lacks."""
    return [f"ALTER TABLE {TABLE} ADD COLUMN {column(name, real_type)}"
            for name in FIELDS if name not in existing]


def schema(real_type: str) -> list[str]:
    """CREATE statements: the table, and the indexes reports and exports need."""
    columns = [column(name, real_type) for name in FIELDS]
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({', '.join(columns)})",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_started ON {TABLE} (started_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_account_started ON {TABLE} (account, started_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_source ON {TABLE} (source)",
    ]


def insert(placeholder: Placeholder, conflict: str) -> str:
    """INSERT of one record, ignoring one already there (``conflict`` is the dialect's
    "OR IGNORE" prefix or "ON CONFLICT DO NOTHING" suffix)."""
    names = ", ".join(FIELDS)
    values = ", ".join(placeholder(position) for position in range(1, len(FIELDS) + 1))
    if conflict.startswith("OR "):
        return f"INSERT {conflict} INTO {TABLE} ({names}) VALUES ({values})"
    return f"INSERT INTO {TABLE} ({names}) VALUES ({values}) {conflict}"


def where(since: float | None, until: float | None,
          placeholder: Placeholder) -> tuple[str, list[float]]:
    """A WHERE clause on started_at, and its parameters."""
    clauses: list[str] = []
    parameters: list[float] = []
    if since is not None:
        parameters.append(since)
        clauses.append(f"started_at >= {placeholder(len(parameters))}")
    if until is not None:
        parameters.append(until)
        clauses.append(f"started_at < {placeholder(len(parameters))}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", parameters


def select(since: float | None, until: float | None, limit: int | None,
           placeholder: Placeholder) -> tuple[str, list[float]]:
    """Records in a time range, oldest first."""
    clause, parameters = where(since, until, placeholder)
    query = f"SELECT {', '.join(FIELDS)} FROM {TABLE}{clause} ORDER BY started_at, id"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return query, parameters


def summary(group: str, since: float | None, until: float | None, limit: int | None,
            placeholder: Placeholder) -> tuple[str, list[float]]:
    """Calls, answered calls, minutes, cost and blocked calls by one grouping."""
    expression = GROUPS[group]  # a fixed expression, never user text
    clause, parameters = where(since, until, placeholder)
    query = (f"SELECT {expression} AS key, COUNT(*), "
             "SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END), "
             "COALESCE(SUM(duration), 0) / 60.0, COALESCE(SUM(cost), 0), "
             "SUM(CASE WHEN decision = 'reject' THEN 1 ELSE 0 END) "
             f"FROM {TABLE}{clause} GROUP BY 1 ORDER BY 4 DESC, 2 DESC, 1")
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return query, parameters


def traffic(floor: Callable[[str], str], bucket: float, since: float, until: float | None,
            placeholder: Placeholder) -> tuple[str, list[float]]:
    """Calls and minutes by account, jurisdiction, country and time bucket (``floor``
    is the dialect's whole-number floor of an expression)."""
    clause, parameters = where(since, until, placeholder)
    size = float(bucket)
    query = (f"SELECT account, COALESCE(jurisdiction, 'unknown'), COALESCE(region, ''), "
             f"{floor(f'started_at / {size!r}')} AS bucket, COUNT(*), "
             f"COALESCE(SUM(duration), 0) / 60.0 FROM {TABLE}{clause} GROUP BY 1, 2, 3, 4")
    return query, parameters


def traffic_rows(rows: list[Any]) -> list[TrafficRow]:
    """TrafficRow objects from the rows of :func:`traffic`."""
    return [TrafficRow(str(account), str(where), str(region), int(bucket), int(calls),
                       float(minutes))
            for account, where, region, bucket, calls, minutes in rows]


def timeline(floor: Callable[[str], str], bucket: float, since: float, until: float | None,
             placeholder: Placeholder) -> tuple[str, list[float]]:
    """Calls by time bucket (its start, in seconds) and decision."""
    clause, parameters = where(since, until, placeholder)
    size = float(bucket)
    query = (f"SELECT {floor(f'started_at / {size!r}')} * {size!r} AS bucket, "
             f"COALESCE(decision, '?'), COUNT(*) FROM {TABLE}{clause} GROUP BY 1, 2 "
             "ORDER BY 1, 2")
    return query, parameters


FIRST_SEEN = f"SELECT account, MIN(started_at) FROM {TABLE} GROUP BY account"
SOURCES = f"SELECT DISTINCT source FROM {TABLE} WHERE source IS NOT NULL"
