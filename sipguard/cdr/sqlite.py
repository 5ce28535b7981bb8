"""Call records in SQLite (the default: a file under var/, WAL mode), through aiosqlite."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from sipguard.cdr import sql
from sipguard.cdr.record import FIELDS, CallRecord
from sipguard.cdr.sink import CdrUnavailableError, SummaryRow


def _question_mark(_: int) -> str:
    return "?"


class SqliteSink:
    """A CdrSink on one SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path)
            # WAL: readers (exports, reports) never block the writer; NORMAL is durable
            # across a process crash, which is what the spool is there for.
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            for statement in sql.schema("REAL"):
                await db.execute(statement)
            await db.commit()
        except (OSError, sqlite3.Error) as error:
            raise CdrUnavailableError(f"{self.path}: {error}") from error
        self._db = db

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise CdrUnavailableError(f"{self.path}: not open")
        return self._db

    async def write(self, records: Sequence[CallRecord]) -> None:
        if not records:
            return
        db = self._connection()
        statement = sql.insert(_question_mark, "OR IGNORE")
        rows = [record.as_values() for record in records]
        try:
            await db.executemany(statement, rows)
            await db.commit()
        except sqlite3.Error as error:
            raise CdrUnavailableError(f"{self.path}: {error}") from error

    async def records(self, since: float | None = None, until: float | None = None,
                      limit: int | None = None) -> list[CallRecord]:
        query, parameters = sql.select(since, until, limit, _question_mark)
        rows = await self._fetch(query, parameters)
        return [CallRecord.from_row(dict(zip(FIELDS, row, strict=True))) for row in rows]

    async def summary(self, group: str, since: float | None = None,
                      until: float | None = None, limit: int | None = None) -> list[SummaryRow]:
        query, parameters = sql.summary(group, since, until, limit, _question_mark)
        return [SummaryRow(str(key), int(calls), int(answered or 0), float(minutes),
                           float(cost), int(blocked or 0))
                for key, calls, answered, minutes, cost, blocked
                in await self._fetch(query, parameters)]

    async def count(self) -> int:
        rows = await self._fetch(f"SELECT COUNT(*) FROM {sql.TABLE}", [])
        return int(rows[0][0])

    async def _fetch(self, query: str, parameters: list[Any]) -> list[Any]:
        db = self._connection()
        try:
            async with db.execute(query, parameters) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            raise CdrUnavailableError(f"{self.path}: {error}") from error

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
