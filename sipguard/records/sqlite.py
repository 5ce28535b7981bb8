"""Call records in SQLite (the default: a file under var/, WAL mode), through aiosqlite."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from sipguard.records import rollup, sql
from sipguard.records.record import FIELDS, CallRecord
from sipguard.records.sink import (
    CdrRefusedError,
    CdrUnavailableError,
    SummaryRow,
    TimelineRow,
    TrafficRow,
)

# What SQLite raises about the records themselves, rather than about the database.
_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
             sqlite3.InterfaceError, ValueError, OverflowError)


def _question_mark(_: int) -> str:
    return "?"


class SqliteSink:
    """A CdrSink on one SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._rolled = False  # the database has rollups (summaries read them)

    async def open(self, read_only: bool = False) -> None:
        db: aiosqlite.Connection | None = None
        try:
            if read_only:  # exports and reports: no file, schema or WAL mode is made
                if not self.path.is_file():
                    raise CdrUnavailableError(f"{self.path}: no call records yet")
                db = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
                await db.execute("PRAGMA busy_timeout=5000")
                async with db.execute(rollup.EXISTS) as cursor:
                    self._rolled = await cursor.fetchone() is not None
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # Call records are private: create the file 0600 (SQLite gives its -wal
                # and -shm files the database file's mode).
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.fchmod(descriptor, 0o600)  # a file made before this rule, too
                finally:
                    os.close(descriptor)
                db = await aiosqlite.connect(self.path)
                # WAL: readers (exports, reports) never block the writer. FULL: a commit
                # is on disk when it returns, since the spool's batch goes right after.
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=FULL")
                await db.execute("PRAGMA busy_timeout=5000")
                for statement in sql.schema("REAL"):
                    await db.execute(statement)
                async with db.execute(f"PRAGMA table_info({sql.TABLE})") as cursor:
                    existing = {str(row[1]) for row in await cursor.fetchall()}
                for statement in sql.added_columns(existing, "REAL"):
                    await db.execute(statement)
                for statement in rollup.SCHEMA:
                    await db.execute(statement)
                await _roll_up(db)  # records an older sipguard wrote
                await db.commit()
                self._rolled = True
        except (OSError, sqlite3.Error) as error:
            if db is not None:
                await db.close()
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
        rows = await asyncio.to_thread(lambda: [record.as_values() for record in records])
        try:
            await db.executemany(statement, rows)
            await _roll_up(db)
            await db.commit()
        except _REFUSALS as error:
            await self._rollback(db)
            raise CdrRefusedError(f"{self.path}: {error!r}") from error
        except sqlite3.Error as error:
            await self._rollback(db)
            raise CdrUnavailableError(f"{self.path}: {error}") from error

    @staticmethod
    async def _rollback(db: aiosqlite.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            await db.rollback()

    async def records(self, since: float | None = None, until: float | None = None,
                      limit: int | None = None) -> list[CallRecord]:
        query, parameters = sql.select(since, until, limit, _question_mark)
        rows = await self._fetch(query, parameters)
        return [CallRecord.from_row(dict(zip(FIELDS, row, strict=True))) for row in rows]

    async def summary(self, group: str, since: float | None = None,
                      until: float | None = None, limit: int | None = None) -> list[SummaryRow]:
        if self._rolled:
            query, parameters = rollup.summary(group, since, until, limit, time.time())
        else:
            query, parameters = sql.summary(group, since, until, limit, _question_mark)
        return [SummaryRow(str(key), int(calls), int(answered or 0), float(minutes),
                           float(cost), int(blocked or 0))
                for key, calls, answered, minutes, cost, blocked
                in await self._fetch(query, parameters)]

    async def count(self, since: float | None = None, until: float | None = None) -> int:
        clause, parameters = sql.where(since, until, _question_mark)
        rows = await self._fetch(f"SELECT COUNT(*) FROM {sql.TABLE}{clause}", parameters)
        return int(rows[0][0])

    async def _fetch(self, query: str, parameters: list[Any]) -> list[Any]:
        db = self._connection()
        try:
            async with db.execute(query, parameters) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            raise CdrUnavailableError(f"{self.path}: {error}") from error

    async def traffic(self, since: float, until: float | None,
                      bucket: float = 900.0) -> list[TrafficRow]:
        query, parameters = sql.traffic(_floor, bucket, since, until, _question_mark)
        return sql.traffic_rows(await self._fetch(query, parameters))

    async def timeline(self, since: float, until: float | None = None,
                       bucket: float = 60.0) -> list[TimelineRow]:
        query, parameters = sql.timeline(_floor, bucket, since, until, _question_mark)
        return [TimelineRow(float(start), str(decision), int(calls))
                for start, decision, calls in await self._fetch(query, parameters)]

    async def first_seen(self) -> dict[str, float]:
        return {str(account): float(first) for account, first in await self._fetch(
            sql.FIRST_SEEN, [])}

    async def sources(self) -> set[str]:
        return {str(row[0]) for row in await self._fetch(sql.SOURCES, [])}

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()


async def _roll_up(db: aiosqlite.Connection) -> None:
    """Add the records above the rollup's watermark to the rollups, in the transaction
    that wrote them."""
    async with db.execute(rollup.READ_MARK) as cursor:
        row = await cursor.fetchone()
    before = int(row[0]) if row is not None else 0
    async with db.execute(rollup.LAST_ROWID) as cursor:
        row = await cursor.fetchone()
    after = int(row[0]) if row is not None else 0
    if after <= before:
        return
    for statement in rollup.add_new_rows():
        await db.execute(statement, (before, after))
    await db.execute(rollup.WRITE_MARK, (after,))


def _floor(expression: str) -> str:
    """The whole-number floor of a non-negative expression."""
    return f"CAST({expression} AS INTEGER)"
