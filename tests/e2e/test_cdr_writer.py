"""The records' writer process (sipguard.records.writer) on its own: started as the service
starts it, it stores the batches spooled beside it, reports its counts on the status
pipe, keeps the batches while the database cannot be written, and stores what is left
when its stdin ends (the service stopping or dying)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sipguard.logs import silent_logger
from sipguard.records.record import CallRecord
from sipguard.records.spool import Spool
from sipguard.records.writer import WriterProcess
from tests.unit.test_settings import MINIMAL  # the four required keys

pytestmark = pytest.mark.e2e

T = TypeVar("T")
CONFIG = MINIMAL.replace("{", "{{").replace("}", "}}") + (
    "logging: {{level: warning, format: json}}\n"
    "cdr: {{path: {database}, spool: spool, batch_seconds: 0.1}}\n")
POLICY = "accounts: [{name: asterisk-1, home_region: US}]\n"


def _records(count: int, start: int = 0) -> list[CallRecord]:
    return [CallRecord(call_id=f"writer-{number}@127.0.0.1", started_at=time.time(),
                       account="asterisk-1", source="127.0.0.1", dialled="14165550123",
                       decision="forward") for number in range(start, start + count)]


def _config(tmp_path: Path, database: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    config = tmp_path / "sipguard.yaml"
    config.write_text(CONFIG.format(database=database))
    return config


def _run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(60):
            return await main()

    return asyncio.run(bounded())


async def _until(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        await asyncio.sleep(0.05)


def _stored(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return sorted(row[0] for row in connection.execute("SELECT call_id FROM cdr"))


def test_the_writer_stores_spooled_batches_and_reports_its_counts(tmp_path: Path) -> None:
    """Batches spooled beside it are stored (told by a line on its stdin), its counts
    come back on the status pipe, and the end of its stdin lets it exit with code 0."""
    database = tmp_path / "cdr.sqlite"
    spool = Spool(tmp_path / "spool")
    spool.prepare()

    async def main() -> dict[str, Any]:
        writer = WriterProcess(_config(tmp_path, database), silent_logger())
        await writer.start()
        spool.append(_records(3))
        writer.notify()
        await _until(lambda: writer.status.get("stored") == 3, "3 records stored")
        spool.append(_records(2, start=3))
        writer.notify()
        await _until(lambda: writer.status.get("stored") == 5, "5 records stored")
        status = dict(writer.status)
        await writer.stop()
        assert writer.process is not None and writer.process.returncode == 0
        return status

    status = _run(main)
    assert status["database_up"] is True and status["spooled_batches"] == 0
    assert _stored(database) == sorted(f"writer-{number}@127.0.0.1" for number in range(5))
    assert spool.pending() == []


def test_batches_wait_while_the_database_cannot_be_written_and_stay_for_the_next_start(
        tmp_path: Path) -> None:
    """A database it cannot create: the writer says so, keeps the batch in the spool,
    and exits when told; the next writer, with a database, stores it."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("no database under a file\n")
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    spool.append(_records(4))

    async def down() -> dict[str, Any]:
        writer = WriterProcess(_config(tmp_path, blocker / "cdr.sqlite"), silent_logger())
        await writer.start()
        await _until(lambda: writer.status.get("database_up") is False, "database down")
        status = dict(writer.status)
        await writer.stop()
        return status

    status = _run(down)
    assert status["stored"] == 0 and status["spooled_batches"] == 1
    assert len(spool.pending()) == 1

    database = tmp_path / "cdr.sqlite"

    async def up() -> None:
        writer = WriterProcess(_config(tmp_path, database), silent_logger())
        await writer.start()
        await _until(lambda: writer.status.get("stored") == 4, "the left batch stored")
        await writer.stop()

    _run(up)
    assert len(_stored(database)) == 4 and spool.pending() == []


def test_a_writer_that_dies_is_started_again_and_stores_what_waited(tmp_path: Path) -> None:
    """SIGKILL the writer: the service's side starts another after a pause, and the
    batch spooled meanwhile is stored."""
    database = tmp_path / "cdr.sqlite"
    spool = Spool(tmp_path / "spool")
    spool.prepare()

    async def main() -> int:
        writer = WriterProcess(_config(tmp_path, database), silent_logger())
        await writer.start()
        first = writer.process
        assert first is not None
        await _until(lambda: "stored" in writer.status, "a first report")
        first.kill()
        await first.wait()
        spool.append(_records(2))
        writer.notify()  # to a dead writer: harmless
        await _until(lambda: writer.restarts == 1 and writer.status.get("stored") == 2,
                     "a new writer storing the batch")
        assert writer.process is not None and writer.process.pid != first.pid
        await writer.stop()
        return writer.restarts

    assert _run(main) == 1
    assert len(_stored(database)) == 2
