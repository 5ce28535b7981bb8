"""Where call records are kept: the SQLite sink, the spool, and the recorder between them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.records import CallRecord, CdrUnavailableError, Recorder, Spool, SummaryRow
from sipguard.records.sink import GROUPS, CdrRefusedError
from sipguard.records.spool import STALE_TEMPORARY
from sipguard.records.sqlite import SqliteSink

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
FAST = {"batch_seconds": 0.01, "retry_max": 0.02}
T = TypeVar("T")


def _record(number: int, **changes: Any) -> CallRecord:
    base = CallRecord(call_id=f"call-{number}@127.0.0.1", started_at=START + number,
                      account="pbx", source="127.0.0.1", dialled="12125550100",
                      decision="forward", id=f"{number:032x}", extension="201",
                      e164="+12125550100", region="US", rules=("allow-us",),
                      trace=("allow-us: region US matches",))
    return base.replace(**changes)


def _run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(20):
            return await main()

    return asyncio.run(bounded())


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


def _blocked_path(tmp_path: Path) -> Path:
    """A database path whose parent is a regular file: it can never be created."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file\n")
    return blocker / "cdr.sqlite"


def _age(path: Path, seconds: float) -> Path:
    """Make a file look ``seconds`` old."""
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))
    return path


def _worker_threads() -> int:
    return sum("_connection_worker_thread" in thread.name for thread in threading.enumerate())


# -- SqliteSink ------------------------------------------------------------------------


def test_open_creates_table_and_indexes_in_wal_mode(tmp_path: Path):
    """open creates missing directories, the cdr table and its indexes, in WAL journal mode."""
    path = tmp_path / "var" / "deeper" / "cdr.sqlite"

    async def main() -> int:
        sink = SqliteSink(path)
        await sink.open()
        try:
            return await sink.count()
        finally:
            await sink.close()

    assert _run(main) == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"cdr", "cdr_started", "cdr_account_started"} <= names
    # Call records are private: the file 0600 (its -wal and -shm too), the folders 0700.
    for private in path.parent.iterdir():
        assert private.stat().st_mode & 0o777 == 0o600, private
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_write_is_idempotent_by_id(tmp_path: Path):
    """A record written twice (in one batch or two) is kept once, as first written."""

    async def main() -> tuple[int, list[CallRecord]]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            await sink.write([_record(1), _record(2), _record(1)])
            await sink.write([_record(2, decision="reject"), _record(3)])
            await sink.write([])
            return await sink.count(), await sink.records()
        finally:
            await sink.close()

    count, records = _run(main)
    assert count == 3
    assert records == [_record(1), _record(2), _record(3)]


def test_records_survive_reopening(tmp_path: Path):
    """Records written before close are read back by a new sink on the same file."""
    path = tmp_path / "cdr.sqlite"

    async def main() -> list[CallRecord]:
        first = SqliteSink(path)
        await first.open()
        await first.write([_record(1), _record(2)])
        await first.close()
        second = SqliteSink(path)
        await second.open()
        try:
            return await second.records()
        finally:
            await second.close()

    assert _run(main) == [_record(1), _record(2)]


@pytest.mark.parametrize(
    ("since", "until", "limit", "expected"),
    [
        (None, None, None, [0, 1, 2, 3, 4, 5]),
        (START + 2, None, None, [2, 3, 4, 5]),  # since is inclusive
        (None, START + 2, None, [0, 1]),  # until is exclusive
        (START + 1, START + 4, None, [1, 2, 3]),
        (None, None, 2, [0, 1]),  # the oldest first
        (START + 3, None, 1, [3]),
        (START + 10, None, None, []),
        (START + 3, START + 3, None, []),
    ],
)
def test_records_by_time_range_oldest_first(tmp_path: Path, since: float | None,
                                            until: float | None, limit: int | None,
                                            expected: list[int]):
    """records(since, until, limit) gives the records started in [since, until), oldest first."""

    async def main() -> list[CallRecord]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            await sink.write([_record(number) for number in (4, 1, 5, 0, 3, 2)])
            return await sink.records(since, until, limit)
        finally:
            await sink.close()

    assert [record.started_at - START for record in _run(main)] == expected


def test_records_that_start_together_are_ordered_by_id(tmp_path: Path):
    """Records with one start time come back in id order, whatever order they were written in."""

    async def main() -> list[str]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            await sink.write([_record(number, started_at=START) for number in (9, 3, 7)])
            return [record.id for record in await sink.records()]
        finally:
            await sink.close()

    assert _run(main) == [f"{number:032x}" for number in (3, 7, 9)]


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.builds(
    _record, st.integers(0, 10_000),
    caller=st.none() | TEXT, dialled=TEXT, extension=st.none() | TEXT,
    answered_at=st.none() | st.floats(0, 4e9), duration=st.floats(0, 1e5),
    cost=st.floats(0, 1e4), status=st.none() | st.integers(100, 699),
    risk_score=st.none() | st.integers(0, 100),
    rules=st.lists(TEXT, max_size=3).map(tuple), trace=st.lists(TEXT, max_size=3).map(tuple),
), max_size=8, unique_by=lambda record: record.id))
def test_sqlite_round_trip(tmp_path: Path, records: list[CallRecord]):
    """Every record written comes back equal, in start order."""
    path = tmp_path / f"{uuid.uuid4().hex}.sqlite"

    async def main() -> list[CallRecord]:
        sink = SqliteSink(path)
        await sink.open()
        try:
            await sink.write(records)
            return await sink.records()
        finally:
            await sink.close()

    assert _run(main) == sorted(records, key=lambda record: (record.started_at, record.id))


SUMMARY_RECORDS = [
    _record(1, region="GB", extension="201", answered_at=START + 3, duration=120.0, cost=0.5),
    _record(2, region="GB", extension="202", answered_at=START + 4, duration=60.0, cost=0.25),
    _record(3, region="US", extension="201", answered_at=START + 5, duration=180.0, cost=0.0,
            state="NY", jurisdiction="intrastate"),
    _record(4, region="CU", extension="201", decision="reject", jurisdiction="international"),
    _record(5, region=None, extension=None, decision="reject", e164=None),
    _record(6, region="CU", extension="202", decision="reject", jurisdiction="international",
            account="other"),
]


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("country", [SummaryRow("GB", 2, 2, 3.0, 0.75, 0), SummaryRow("US", 1, 1, 3.0, 0.0, 0),
                     SummaryRow("CU", 2, 0, 0.0, 0.0, 2), SummaryRow("?", 1, 0, 0.0, 0.0, 1)]),
        ("extension", [SummaryRow("pbx/201", 3, 2, 5.0, 0.5, 1),
                       SummaryRow("pbx/202", 1, 1, 1.0, 0.25, 0),
                       SummaryRow("other/202", 1, 0, 0.0, 0.0, 1),
                       SummaryRow("pbx/-", 1, 0, 0.0, 0.0, 1)]),
        ("decision", [SummaryRow("forward", 3, 3, 6.0, 0.75, 0),
                      SummaryRow("reject", 3, 0, 0.0, 0.0, 3)]),
        ("state", [SummaryRow("-", 5, 2, 3.0, 0.75, 3), SummaryRow("NY", 1, 1, 3.0, 0.0, 0)]),
        ("jurisdiction", [SummaryRow("unknown", 3, 2, 3.0, 0.75, 1),
                          SummaryRow("intrastate", 1, 1, 3.0, 0.0, 0),
                          SummaryRow("international", 2, 0, 0.0, 0.0, 2)]),
        ("account", [SummaryRow("pbx", 5, 3, 6.0, 0.75, 2), SummaryRow("other", 1, 0, 0.0, 0.0, 1)]),
        ("source", [SummaryRow("127.0.0.1", 6, 3, 6.0, 0.75, 3)]),
    ],
)
def test_summary_by_each_group(tmp_path: Path, group: str, expected: list[SummaryRow]):
    """summary counts calls, answered calls, minutes, cost and blocked calls, most minutes first."""
    assert group in GROUPS

    async def main() -> list[SummaryRow]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            await sink.write(SUMMARY_RECORDS)
            return await sink.summary(group)
        finally:
            await sink.close()

    assert _run(main) == expected


def test_summary_range_and_limit(tmp_path: Path):
    """summary counts only the records in [since, until) and returns at most ``limit`` rows."""

    async def main() -> tuple[list[SummaryRow], list[SummaryRow], list[SummaryRow]]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            await sink.write(SUMMARY_RECORDS)
            return (await sink.summary("country", since=START + 2, until=START + 5),
                    await sink.summary("country", limit=1),
                    await sink.summary("country", since=START + 100))
        finally:
            await sink.close()

    ranged, limited, empty = _run(main)
    assert ranged == [SummaryRow("US", 1, 1, 3.0, 0.0, 0), SummaryRow("GB", 1, 1, 1.0, 0.25, 0),
                      SummaryRow("CU", 1, 0, 0.0, 0.0, 1)]
    assert limited == [SummaryRow("GB", 2, 2, 3.0, 0.75, 0)]
    assert empty == []


def test_open_fails_when_the_parent_is_a_regular_file(tmp_path: Path):
    """A path under a regular file raises CdrUnavailableError naming the path."""
    path = _blocked_path(tmp_path)

    async def main() -> str:
        sink = SqliteSink(path)
        with pytest.raises(CdrUnavailableError) as caught:
            await sink.open()
        await sink.close()
        return str(caught.value)

    assert str(path) in _run(main)


def test_a_sink_not_open_refuses_reads_and_writes(tmp_path: Path):
    """Before open (or after close) reads and writes raise CdrUnavailableError; an empty write is a no-op."""

    async def main() -> None:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.write([])
        for call in (lambda: sink.write([_record(1)]), sink.records, sink.count,
                     lambda: sink.summary("country")):
            with pytest.raises(CdrUnavailableError, match="not open"):
                await call()
        await sink.open()
        await sink.close()
        with pytest.raises(CdrUnavailableError, match="not open"):
            await sink.count()

    _run(main)


def test_a_database_error_is_reported_as_unavailable(tmp_path: Path):
    """A SQLite error on write or read (here: the table is gone) raises CdrUnavailableError."""
    path = tmp_path / "cdr.sqlite"

    async def main() -> None:
        sink = SqliteSink(path)
        await sink.open()
        try:
            with contextlib.closing(sqlite3.connect(path)) as other:
                other.execute("DROP TABLE cdr")
                other.commit()
            with pytest.raises(CdrUnavailableError):
                await sink.write([_record(1)])
            with pytest.raises(CdrUnavailableError):
                await sink.records()
        finally:
            await sink.close()

    _run(main)


def test_a_file_that_is_not_a_database_fails_open_without_leaking_its_connection(tmp_path: Path):
    """A failed open raises CdrUnavailableError and leaves no aiosqlite worker thread behind."""
    path = tmp_path / "cdr.sqlite"
    path.write_bytes(b"this is not an SQLite database\n" * 64)

    async def main() -> tuple[str, int]:
        before = _worker_threads()
        sink = SqliteSink(path)
        kept: list[BaseException] = []  # what a caller that logs or re-raises the error holds
        try:
            await sink.open()
        except CdrUnavailableError as error:
            kept.append(error)
        await asyncio.sleep(0.05)
        leaked = _worker_threads() - before
        message = str(kept[0]) if kept else "open succeeded"
        kept.clear()
        gc.collect()  # a leaked connection's __del__ stops its thread, so the run can exit
        await asyncio.sleep(0.05)
        return message, leaked

    message, leaked = _run(main)
    assert "file is not a database" in message
    assert leaked == 0, "SqliteSink.open left its aiosqlite connection (and thread) open"


def test_count_by_time_range(tmp_path: Path):
    """count(since, until) counts the records started in [since, until)."""

    async def main() -> list[int]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            await sink.write([_record(number) for number in range(6)])
            return [await sink.count(), await sink.count(START + 2), await sink.count(None, START + 2),
                    await sink.count(START + 1, START + 4), await sink.count(START + 9)]
        finally:
            await sink.close()

    assert _run(main) == [6, 4, 2, 3, 0]


def test_read_only_open_reads_and_never_creates(tmp_path: Path):
    """open(read_only=True) reads an existing database, refuses writes, and creates no missing file."""
    path = tmp_path / "cdr.sqlite"
    missing = tmp_path / "var" / "missing.sqlite"

    async def main() -> tuple[list[CallRecord], int]:
        writer = SqliteSink(path)
        await writer.open()
        await writer.write([_record(1), _record(2)])
        await writer.close()
        with pytest.raises(CdrUnavailableError):
            await SqliteSink(missing).open(read_only=True)
        reader = SqliteSink(path)
        await reader.open(read_only=True)
        try:
            with pytest.raises((CdrUnavailableError, CdrRefusedError)):
                await reader.write([_record(3)])
            return await reader.records(), await reader.count()
        finally:
            await reader.close()

    assert _run(main) == ([_record(1), _record(2)], 2)
    assert not missing.exists() and not missing.parent.exists()


def test_open_adds_the_columns_an_older_table_lacks(tmp_path: Path):
    """A table made by an older sipguard (no trunk_status column) gets it at open; its rows read back."""
    path = tmp_path / "cdr.sqlite"
    older = [name for name in _record(0).as_row() if name != "trunk_status"]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"CREATE TABLE cdr ({', '.join(older)}, PRIMARY KEY (id))")
        row = _record(1).as_row()
        db.execute(f"INSERT INTO cdr ({', '.join(older)}) VALUES ({', '.join('?' * len(older))})",
                   [row[name] for name in older])
        db.commit()

    async def main() -> list[CallRecord]:
        sink = SqliteSink(path)
        await sink.open()
        try:
            await sink.write([_record(2, trunk_status=503)])
            return await sink.records()
        finally:
            await sink.close()

    assert _run(main) == [_record(1), _record(2, trunk_status=503)]
    with contextlib.closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(cdr)")]
    assert "trunk_status" in columns


@pytest.mark.parametrize(
    "bad",
    [
        {"status": [500]},  # a value SQLite cannot bind
        {"risk_score": 2**63},  # an integer beyond SQLite's 64 bits
    ],
    ids=["unbindable", "overflowing"],
)
def test_a_refused_batch_is_refused_whole(tmp_path: Path, bad: dict[str, Any]):
    """A batch with a record the database cannot take raises CdrRefusedError and stores none of it,
    then or with a later write."""

    async def main() -> tuple[str, list[str]]:
        sink = SqliteSink(tmp_path / "cdr.sqlite")
        await sink.open()
        try:
            try:
                await sink.write([_record(1), _record(2, **bad), _record(3)])
                outcome = "stored"
            except CdrRefusedError:
                outcome = "refused"
            except Exception as error:  # anything else breaks the CdrSink contract
                outcome = type(error).__name__
            await sink.write([_record(4)])
            return outcome, [record.id for record in await sink.records()]
        finally:
            await sink.close()

    assert _run(main) == ("refused", [_record(4).id])


# -- Spool ------------------------------------------------------------------------------


def test_prepare_creates_a_private_directory_and_removes_unacknowledged_files(tmp_path: Path):
    """prepare makes the directory (0700) and deletes stale *.jsonl.tmp leftovers, keeping batches
    and a temporary file young enough to be another process's write in progress."""
    directory = tmp_path / "spool" / "cdr"
    Spool(directory).prepare()
    assert directory.is_dir() and stat.S_IMODE(directory.stat().st_mode) == 0o700
    (directory / "00000000000000000001-1-00000000.jsonl").write_text("")
    stale = directory / "00000000000000000002-1-00000000.jsonl.tmp"
    stale.write_text("{")
    _age(stale, STALE_TEMPORARY + 60)
    (directory / "00000000000000000003-2-00000000.jsonl.tmp").write_text("{")  # being written
    (directory / "notes.txt").write_text("kept")
    Spool(directory).prepare()
    assert sorted(path.name for path in directory.iterdir()) == [
        "00000000000000000001-1-00000000.jsonl", "00000000000000000003-2-00000000.jsonl.tmp",
        "notes.txt"]


def test_refused_batches_are_kept_but_never_pending(tmp_path: Path):
    """A batch appended as refused, or set aside, stays readable beside the spool and is not pending."""
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    refused = spool.append([_record(1)], refused=True)
    assert refused.name.endswith(".jsonl.refused")
    batch = spool.append([_record(2)])
    assert spool.pending() == [batch]
    aside = spool.set_aside(batch)
    assert aside.name == batch.name + ".refused" and not batch.exists()
    assert spool.pending() == []
    assert spool.read(refused) == [_record(1)] and spool.read(aside) == [_record(2)]


def test_append_writes_one_private_file_per_batch(tmp_path: Path):
    """append writes a 0600 file of JSON lines (one per record), leaves no .tmp, and reads back."""
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    batch = [_record(1), _record(2, dialled="9\udcff011")]  # undecodable wire bytes survive
    path = spool.append(batch)
    assert path.parent == spool.directory and path.name.endswith(".jsonl")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [item.name for item in spool.directory.iterdir()] == [path.name]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["id"] == _record(1).id
    assert spool.read(path) == batch and spool.unreadable_lines == 0


def test_pending_lists_batches_oldest_first(tmp_path: Path):
    """pending gives the batch files in the order they were written; a missing directory has none."""
    assert Spool(tmp_path / "missing").pending() == []
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    written = [spool.append([_record(number)]) for number in range(5)]
    older = spool.directory / f"{1:020d}-{os.getpid() + 1}-{0:08d}.jsonl"  # another process
    older.write_text(json.dumps(_record(9).as_row()) + "\n")
    (spool.directory / f"{2:020d}-1-00000000.jsonl.tmp").write_text("")
    assert spool.pending() == [older, *written]
    assert [spool.read(path)[0].id for path in spool.pending()] == [
        _record(number).id for number in (9, 0, 1, 2, 3, 4)]


def test_read_skips_and_counts_unreadable_lines(tmp_path: Path):
    """read keeps the good lines of a batch and counts the torn or foreign ones (a blank
    line is neither)."""
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    path = spool.directory / f"{1:020d}-1-00000000.jsonl"
    good = [json.dumps(_record(number).as_row()) for number in (1, 2)]
    path.write_bytes("\n".join([
        good[0],
        '{"id": "torn", "call_id": "x", "star',  # a write cut short
        "null",
        "[1, 2]",
        '{"id": "no-required-fields"}',
        '"just a string"',
        good[1],
        "",
    ]).encode() + b"\n\xff\xfe\n" + good[0][:20].encode())
    assert spool.read(path) == [_record(1), _record(2)]
    assert spool.unreadable_lines == 7
    spool.read(path)
    assert spool.unreadable_lines == 14  # counts add up across reads


def test_remove_deletes_a_batch_once(tmp_path: Path):
    """remove deletes a stored batch; removing it again is harmless."""
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    first, second = spool.append([_record(1)]), spool.append([_record(2)])
    spool.remove(first)
    spool.remove(first)
    assert spool.pending() == [second]


# -- Recorder ---------------------------------------------------------------------------


class SwitchableSink:
    """A real SqliteSink that refuses to open or write while ``down`` is set."""

    name = "switchable"

    def __init__(self, inner: SqliteSink, down: bool) -> None:
        self.inner = inner
        self.down = down
        self.attempts = 0

    def _check(self) -> None:
        self.attempts += 1
        if self.down:
            raise CdrUnavailableError("connection refused (test)")

    async def open(self) -> None:
        self._check()
        await self.inner.open()

    async def write(self, records: Sequence[CallRecord]) -> None:
        self._check()
        await self.inner.write(records)

    async def records(self, since: float | None = None, until: float | None = None,
                      limit: int | None = None) -> list[CallRecord]:
        return await self.inner.records(since, until, limit)

    async def summary(self, group: str, since: float | None = None,
                      until: float | None = None, limit: int | None = None) -> list[SummaryRow]:
        return await self.inner.summary(group, since, until, limit)

    async def count(self) -> int:
        return await self.inner.count()

    async def close(self) -> None:
        await self.inner.close()


def _events(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs if entry["event"].startswith("cdr.")]


def test_recorded_calls_reach_the_database(tmp_path: Path):
    """Records handed to record() are spooled, then stored, and the spool is emptied."""
    sink = SqliteSink(tmp_path / "cdr.sqlite")
    spool = Spool(tmp_path / "spool")

    async def main() -> tuple[dict[str, Any], list[CallRecord], list[str]]:
        with structlog.testing.capture_logs() as logs:
            recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
            await recorder.start()
            try:
                for number in range(3):
                    recorder.record(_record(number))
                await _until(lambda: recorder.stored == 3)
                stats = recorder.stats()
                stored = await sink.records()
            finally:
                await recorder.stop()
        return stats, stored, _events(logs)

    stats, stored, events = _run(main)
    assert stored == [_record(number) for number in range(3)]
    assert stats == {"recorded": 3, "acknowledged": 3, "stored": 3, "queued": 0,
                     "spooled_batches": 0, "refused": 0, "dropped": 0, "errors": 0,
                     "unreadable_lines": 0, "database_up": True, "sink": "sqlite"}
    assert events == []
    assert spool.pending() == []


def test_record_never_waits(tmp_path: Path):
    """record() only queues (no await, no disk): a thousand records queue before the recorder starts."""
    sink = SqliteSink(tmp_path / "cdr.sqlite")
    spool = Spool(tmp_path / "spool")

    async def main() -> tuple[int, int]:
        recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
        for number in range(1000):
            recorder.record(_record(number))
        queued = recorder.stats()["queued"]
        assert not spool.directory.exists()
        await recorder.start()
        try:
            await _until(lambda: recorder.stored == 1000)
            return queued, await sink.count()
        finally:
            await recorder.stop()

    assert _run(main) == (1000, 1000)


def test_a_full_queue_drops_the_oldest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Past MAX_QUEUED waiting records, the oldest are dropped and counted."""
    monkeypatch.setattr("sipguard.records.recorder.MAX_QUEUED", 3)
    sink = SqliteSink(tmp_path / "cdr.sqlite")

    async def main() -> tuple[dict[str, Any], list[str]]:
        recorder = Recorder(sink, Spool(tmp_path / "spool"), structlog.get_logger(), **FAST)
        for number in range(5):
            recorder.record(_record(number))
        await recorder.start()
        try:
            await _until(lambda: recorder.stored == 3)
            return recorder.stats(), [record.id for record in await sink.records()]
        finally:
            await recorder.stop()

    stats, ids = _run(main)
    assert (stats["recorded"], stats["dropped"], stats["stored"]) == (5, 2, 3)
    assert ids == [_record(number).id for number in (2, 3, 4)]


def test_while_the_database_is_down_batches_stay_in_the_spool(tmp_path: Path):
    """A sink that cannot open leaves every acknowledged batch in the spool; cdr.unavailable is logged once."""
    sink = SqliteSink(_blocked_path(tmp_path))
    spool = Spool(tmp_path / "spool")

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with structlog.testing.capture_logs() as logs:
            recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
            await recorder.start()
            try:
                recorder.record(_record(1))
                await _until(lambda: recorder.acknowledged == 1)
                recorder.record(_record(2))
                await _until(lambda: recorder.acknowledged == 2)
                await asyncio.sleep(0.1)  # the storer keeps its pause: nothing is stored
                stats = recorder.stats()
            finally:
                await recorder.stop(timeout=0.5)
        return stats, logs

    stats, logs = _run(main)
    assert stats["stored"] == 0 and stats["database_up"] is False
    assert stats["acknowledged"] == 2 and stats["spooled_batches"] == 2
    assert _events(logs) == ["cdr.unavailable"]
    unavailable = next(entry for entry in logs if entry["event"] == "cdr.unavailable")
    assert unavailable["log_level"] == "error" and unavailable["sink"] == "sqlite"
    assert str(_blocked_path(tmp_path)) in unavailable["error"]
    kept = [record for path in spool.pending() for record in spool.read(path)]
    assert kept == [_record(1), _record(2)]  # still there after stop


def test_the_recorder_recovers_when_the_database_comes_back(tmp_path: Path):
    """Batches spooled during an outage are stored once the sink is back; unavailable and recovered are each logged once."""
    sink = SwitchableSink(SqliteSink(tmp_path / "cdr.sqlite"), down=True)
    spool = Spool(tmp_path / "spool")

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[CallRecord],
                              list[dict[str, Any]]]:
        with structlog.testing.capture_logs() as logs:
            recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
            await recorder.start()
            try:
                for number in range(3):
                    recorder.record(_record(number))
                    await _until(lambda expected=number + 1: recorder.acknowledged == expected)
                attempts = sink.attempts
                await _until(lambda: sink.attempts >= attempts + 3)  # it keeps trying
                during = recorder.stats()
                sink.down = False
                await _until(lambda: recorder.stored == 3)
                recorder.record(_record(3))  # and keeps going afterwards
                await _until(lambda: recorder.stored == 4)
                after = recorder.stats()
                stored = await sink.records()
            finally:
                await recorder.stop()
        return during, after, stored, logs

    during, after, stored, logs = _run(main)
    assert during["stored"] == 0 and during["database_up"] is False
    assert during["spooled_batches"] == 3
    assert after["database_up"] is True and after["spooled_batches"] == 0
    assert after["acknowledged"] == after["stored"] == 4 and after["dropped"] == 0
    assert stored == [_record(number) for number in range(4)]
    assert _events(logs) == ["cdr.unavailable", "cdr.recovered"]
    recovered = logs[[entry["event"] for entry in logs].index("cdr.recovered")]
    assert recovered["log_level"] == "warning" and recovered["sink"] == "switchable"
    assert recovered["seconds_down"] >= 0


def test_a_write_failure_after_open_counts_an_error_and_retries(tmp_path: Path):
    """A sink that opens but then refuses a write keeps the batch, counts the error, and stores it later."""
    sink = SwitchableSink(SqliteSink(tmp_path / "cdr.sqlite"), down=False)
    spool = Spool(tmp_path / "spool")

    async def main() -> tuple[dict[str, Any], int, list[str]]:
        with structlog.testing.capture_logs() as logs:
            recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
            await recorder.start()
            try:
                sink.down = True
                recorder.record(_record(1))
                await _until(lambda: recorder.errors >= 1)
                errors = recorder.errors
                sink.down = False
                await _until(lambda: recorder.stored == 1)
                return recorder.stats(), errors, _events(logs)
            finally:
                await recorder.stop()

    stats, errors, events = _run(main)
    assert errors >= 1 and stats["spooled_batches"] == 0 and stats["stored"] == 1
    assert events == ["cdr.unavailable", "cdr.recovered"]


def test_batches_left_by_a_crash_are_stored_at_start(tmp_path: Path):
    """At start the spool's leftover batches go to the database; unacknowledged .tmp files are dropped."""
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    spool.append([_record(1), _record(2)])
    spool.append([_record(2), _record(3)])  # written again after a crash before cleanup
    leftover = spool.directory / f"{1:020d}-1-00000000.jsonl.tmp"
    leftover.write_text(json.dumps(_record(9).as_row()))
    _age(leftover, STALE_TEMPORARY + 60)
    sink = SqliteSink(tmp_path / "cdr.sqlite")

    async def main() -> list[str]:
        recorder = Recorder(sink, Spool(spool.directory), structlog.get_logger(), **FAST)
        await recorder.start()
        try:
            await _until(lambda: recorder.stored == 4)
            return [record.id for record in await sink.records()]
        finally:
            await recorder.stop()

    assert _run(main) == [_record(number).id for number in (1, 2, 3)]
    assert list(spool.directory.iterdir()) == []


def test_stop_spools_what_is_queued_and_stores_it(tmp_path: Path):
    """stop() spools records still queued and gives the database a last chance before closing."""
    sink = SqliteSink(tmp_path / "cdr.sqlite")
    spool = Spool(tmp_path / "spool")

    async def main() -> dict[str, Any]:
        # A long batch time: nothing is written before stop() unless stop writes it.
        recorder = Recorder(sink, spool, structlog.get_logger(), batch_seconds=60.0)
        await recorder.start()
        for number in range(3):
            recorder.record(_record(number))
        await asyncio.sleep(0)
        await recorder.stop()
        return recorder.stats()

    stats = _run(main)
    assert (stats["acknowledged"], stats["stored"], stats["spooled_batches"]) == (3, 3, 0)
    check = SqliteSink(tmp_path / "cdr.sqlite")

    async def read() -> int:
        await check.open()
        try:
            return await check.count()
        finally:
            await check.close()

    assert _run(read) == 3


def test_records_spooled_while_down_are_stored_by_the_next_run(tmp_path: Path):
    """stop() with the database down keeps the records in the spool; the next start stores them."""
    spool_directory = tmp_path / "spool"

    async def first_run() -> dict[str, Any]:
        with structlog.testing.capture_logs():
            recorder = Recorder(SqliteSink(_blocked_path(tmp_path)), Spool(spool_directory),
                                structlog.get_logger(), **FAST)
            await recorder.start()
            recorder.record(_record(1))
            recorder.record(_record(2))
            await recorder.stop(timeout=0.5)
        return recorder.stats()

    stats = _run(first_run)
    assert (stats["acknowledged"], stats["stored"], stats["spooled_batches"]) == (2, 0, 1)
    sink = SqliteSink(tmp_path / "cdr.sqlite")

    async def second_run() -> list[CallRecord]:
        recorder = Recorder(sink, Spool(spool_directory), structlog.get_logger(), **FAST)
        await recorder.start()
        try:
            await _until(lambda: recorder.stored == 2)
            return await sink.records()
        finally:
            await recorder.stop()

    assert _run(second_run) == [_record(1), _record(2)]
    assert Spool(spool_directory).pending() == []


def test_a_record_with_undecodable_wire_bytes_does_not_stop_the_recorder(tmp_path: Path):
    """A record whose dialled number kept raw bytes (SIP text is decoded with surrogateescape) is stored, and so are the records after it."""
    sink = SqliteSink(tmp_path / "cdr.sqlite")
    spool = Spool(tmp_path / "spool")
    odd = _record(1, dialled="9\udcff011", caller="2\udcfe01")  # INVITE sip:9\xff011@...

    async def main() -> tuple[dict[str, Any], int]:
        with structlog.testing.capture_logs():
            recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
            await recorder.start()
            try:
                recorder.record(odd)
                await _until(lambda: recorder.acknowledged == 1)
                recorder.record(_record(2))
                with contextlib.suppress(TimeoutError):
                    await _until(lambda: recorder.stored == 2, seconds=1.0)
                return recorder.stats(), await sink.count()
            finally:
                with contextlib.suppress(Exception):
                    await recorder.stop(timeout=0.5)
                await sink.close()  # stop() may not get that far

    stats, count = _run(main)
    assert (stats["stored"], count, stats["spooled_batches"]) == (2, 2, 0), stats


def test_a_refused_record_is_set_aside_and_the_rest_of_its_batch_stored(tmp_path: Path):
    """A record the database refuses goes to a .refused file beside the spool (logged once per batch);
    the records around it and after it are stored, and the database is not counted as down."""
    sink = SqliteSink(tmp_path / "cdr.sqlite")
    spool = Spool(tmp_path / "spool")
    bad = _record(2, status=[500])  # fine as JSON, refused by SQLite

    async def main() -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
        with structlog.testing.capture_logs() as logs:
            recorder = Recorder(sink, spool, structlog.get_logger(), **FAST)
            await recorder.start()
            try:
                for record in (_record(1), bad, _record(3)):
                    recorder.record(record)
                await _until(lambda: recorder.refused == 1 and recorder.stored == 2)
                recorder.record(_record(4))
                await _until(lambda: recorder.stored == 3)
                return (recorder.stats(), [record.id for record in await sink.records()], logs)
            finally:
                await recorder.stop()

    stats, ids, logs = _run(main)
    assert ids == [_record(number).id for number in (1, 3, 4)]
    assert (stats["refused"], stats["spooled_batches"], stats["database_up"]) == (1, 0, True)
    assert _events(logs) == ["cdr.records_refused"]
    refused = next(entry for entry in logs if entry["event"] == "cdr.records_refused")
    assert refused["records"] == 1 and refused["log_level"] == "error"
    kept = Path(refused["path"])
    assert kept.name.endswith(".jsonl.refused") and kept.parent == spool.directory
    assert [record.id for record in spool.read(kept)] == [bad.id]
    assert spool.pending() == []
