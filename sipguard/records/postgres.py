"""Call records in PostgreSQL (for several nodes), through an asyncpg pool."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from sipguard.records import sql
from sipguard.records.record import CallRecord
from sipguard.records.sink import (
    CdrRefusedError,
    CdrUnavailableError,
    SummaryRow,
    TimelineRow,
    TrafficRow,
)

# What asyncpg raises when the server is down, restarting or refuses us.
_FAILURES = (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
             asyncpg.InterfaceError)
# What it raises about the records themselves (bad text, a value out of range).
_REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError,
             OverflowError)


def _dollar(position: int) -> str:
    return f"${position}"


class PostgresSink:
    """A CdrSink on one PostgreSQL database (``dsn``: postgresql://user@host:port/db)."""

    name = "postgresql"

    def __init__(self, dsn: str, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self, read_only: bool = False) -> None:
        pool: asyncpg.Pool | None = None
        try:
            pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4,
                                             timeout=self.timeout,
                                             command_timeout=self.timeout)
            if not read_only:
                async with pool.acquire() as connection:
                    for statement in sql.schema("DOUBLE PRECISION"):
                        await connection.execute(statement)
                    existing = {str(row[0]) for row in await connection.fetch(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = $1", sql.TABLE)}
                    for statement in sql.added_columns(existing, "DOUBLE PRECISION"):
                        await connection.execute(statement)
        except _FAILURES as error:
            if pool is not None:
                pool.terminate()
            raise CdrUnavailableError(f"postgresql: {error}") from error
        self._pool = pool

    def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            raise CdrUnavailableError("postgresql: not connected")
        return self._pool

    async def write(self, records: Sequence[CallRecord]) -> None:
        if not records:
            return
        statement = sql.insert(_dollar, "ON CONFLICT (id) DO NOTHING")
        rows = await asyncio.to_thread(lambda: [record.as_values() for record in records])
        try:
            async with self._connected().acquire() as connection, connection.transaction():
                await connection.executemany(statement, rows)
        except _REFUSALS as error:
            raise CdrRefusedError(f"postgresql: {error!r}") from error
        except _FAILURES as error:
            raise CdrUnavailableError(f"postgresql: {error}") from error

    async def records(self, since: float | None = None, until: float | None = None,
                      limit: int | None = None) -> list[CallRecord]:
        query, parameters = sql.select(since, until, limit, _dollar)
        return [CallRecord.from_row(dict(row)) for row in await self._fetch(query, parameters)]

    async def summary(self, group: str, since: float | None = None,
                      until: float | None = None, limit: int | None = None) -> list[SummaryRow]:
        query, parameters = sql.summary(group, since, until, limit, _dollar)
        return [SummaryRow(str(row[0]), int(row[1]), int(row[2] or 0), float(row[3]),
                           float(row[4]), int(row[5] or 0))
                for row in await self._fetch(query, parameters)]

    async def count(self, since: float | None = None, until: float | None = None) -> int:
        clause, parameters = sql.where(since, until, _dollar)
        rows = await self._fetch(f"SELECT COUNT(*) FROM {sql.TABLE}{clause}", parameters)
        return int(rows[0][0])

    async def _fetch(self, query: str, parameters: list[Any]) -> list[Any]:
        try:
            async with self._connected().acquire() as connection:
                return list(await connection.fetch(query, *parameters))
        except _FAILURES as error:
            raise CdrUnavailableError(f"postgresql: {error}") from error

    async def traffic(self, since: float, until: float | None,
                      bucket: float = 900.0) -> list[TrafficRow]:
        query, parameters = sql.traffic(_floor, bucket, since, until, _dollar)
        return sql.traffic_rows(await self._fetch(query, parameters))

    async def timeline(self, since: float, until: float | None = None,
                       bucket: float = 60.0) -> list[TimelineRow]:
        query, parameters = sql.timeline(_floor, bucket, since, until, _dollar)
        return [TimelineRow(float(start), str(decision), int(calls))
                for start, decision, calls in await self._fetch(query, parameters)]

    async def first_seen(self) -> dict[str, float]:
        return {str(account): float(first) for account, first in await self._fetch(
            sql.FIRST_SEEN, [])}

    async def sources(self) -> set[str]:
        return {str(row[0]) for row in await self._fetch(sql.SOURCES, [])}

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=self.timeout)
            except (TimeoutError, *_FAILURES):
                pool.terminate()


def _floor(expression: str) -> str:
    """The whole-number floor of a non-negative expression."""
    return f"FLOOR({expression})::bigint"
