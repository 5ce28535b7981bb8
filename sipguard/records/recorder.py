"""The recorder: call records from the service to the spool, then to the database.

:meth:`Recorder.record` only appends to a queue, so call handling never waits for a
disk or a database. Two background tasks do the rest:

- the *spooler* takes what has collected every ``batch_seconds`` and writes it to the
  spool in batches of at most ``MAX_BATCH`` (fsynced, off the event loop): from then
  on a batch is *acknowledged* and survives a crash. A disk that refuses keeps the
  records queued and tries again a second later;
- the *storer* writes the spool's batches to the database, oldest first, and removes
  each once the database has committed it. The batches this process spooled are
  written from memory (up to ``MAX_KEPT`` records); only the others (left by a crash,
  or past that bound while the database is down) are read back from their files.
  While the database cannot be reached the batches stay in the spool and it tries
  again after a growing pause (up to
  ``retry_max``); the outage and the recovery are each logged once
  (``cdr.unavailable``, ``cdr.recovered``). A batch the database refuses for its
  contents is written again record by record, and the records it still refuses are
  kept beside the spool (``*.refused``) and logged (``cdr.records_refused``), so that
  one bad record holds up no other.

Spooling never waits for the database. At start, batches a crash left behind are
written first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from pathlib import Path
from typing import Any, Protocol

from sipguard.records.record import CallRecord
from sipguard.records.sink import CdrSink, CdrUnavailableError
from sipguard.records.spool import Spool

MAX_QUEUED = 200_000  # records waiting for the spool; past that the oldest are dropped
MAX_BATCH = 1000  # records in one spool file (and one database transaction)
MAX_KEPT = 50_000  # spooled records also kept in memory, so the storer need not read them back
SPOOL_RETRY = 1.0  # seconds before a refusing disk is tried again


class Writer(Protocol):
    """A process that stores the spooled batches (sipguard.records.writer.WriterProcess)."""

    status: dict[str, Any]

    async def start(self) -> None: ...
    def notify(self) -> None: ...
    async def stop(self) -> None: ...


class Recorder:
    """Takes records without blocking; keeps every acknowledged one until it is stored."""

    def __init__(self, sink: CdrSink, spool: Spool, log: Any, batch_seconds: float = 0.05,
                 retry_max: float = 30.0, writer: Writer | None = None) -> None:
        self.sink = sink
        self.writer = writer  # None: this process stores the batches itself
        self.spool = spool
        self.log = log
        self.batch_seconds = batch_seconds
        self.retry_max = retry_max
        self._queue: collections.deque[CallRecord] = collections.deque()
        self._wakeup = asyncio.Event()  # records are queued
        self._spooled = asyncio.Event()  # batches are in the spool
        self._tasks: list[asyncio.Task[None]] = []
        # Batches spooled by this process, by file: written from memory, not read back.
        self._kept: dict[Path, list[CallRecord]] = {}
        self._kept_records = 0
        self._open = False
        self._down_since: float | None = None
        self._spool_failing = False
        self.pending_batches = 0  # in the spool, not yet in the database
        self.recorded = 0  # handed to record()
        self.acknowledged = 0  # in the spool, fsynced
        self.stored = 0  # committed by the database
        self.refused = 0  # refused by the database, kept beside the spool
        self.dropped = 0  # lost before the spool (the queue was full)
        self.errors = 0  # failed database writes

    # -- the service's side ---------------------------------------------------------

    def record(self, record: CallRecord) -> None:
        """Take one record (never blocks, never raises)."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(record)
        self.recorded += 1
        self._wakeup.set()

    def stats(self) -> dict[str, Any]:
        """Counts for the stats line and the metrics (no disk access; with a writer
        process, the storing counts are the ones it last reported)."""
        stats = {"recorded": self.recorded, "acknowledged": self.acknowledged,
                 "stored": self.stored, "queued": len(self._queue),
                 "spooled_batches": self.pending_batches, "refused": self.refused,
                 "dropped": self.dropped, "errors": self.errors,
                 "unreadable_lines": self.spool.unreadable_lines,
                 "database_up": self._down_since is None, "sink": self.sink.name}
        if self.writer is not None:
            stats.update(self.writer.status)
            stats["writer"] = "process"
        return stats

    def wake(self) -> None:
        """Look at the spool now (a writer process is told a batch was spooled)."""
        self._spooled.set()

    async def start(self) -> None:
        """Prepare the spool and start the background tasks (the database may be down)."""
        self.spool.prepare()
        self.pending_batches = len(self.spool.pending())
        if self.writer is not None:  # it stores, batches a crash left behind first
            await self.writer.start()
            self._tasks = [asyncio.create_task(self._spooler())]
            return
        await self._try_open()
        self._spooled.set()  # batches a crash left in the spool go first
        self._tasks = [asyncio.create_task(self._spooler()),
                       asyncio.create_task(self._storer())]

    async def stop(self, timeout: float = 5.0) -> None:
        """Spool what is queued, give the database a last chance, close."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._spool_queued()
        if self.writer is not None:
            await self.writer.stop()  # it stores what it can, then exits
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._store_spooled()
        if self._open:
            with contextlib.suppress(Exception):
                await self.sink.close()

    # -- spooling --------------------------------------------------------------------

    async def _spooler(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self.batch_seconds)  # let a batch collect
            try:
                await self._spool_queued()
            except Exception:  # a bug must not stop recording: the queue stays
                self.log.exception("cdr.recorder_failed", during="spool")

    async def _spool_queued(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            try:
                path = await asyncio.to_thread(self.spool.append, batch)
            except OSError as error:  # a full or failing disk: keep them, try again soon
                self._queue.extendleft(reversed(batch))
                if not self._spool_failing:
                    self._spool_failing = True
                    self.log.error("cdr.spool_failed", error=str(error),
                                   directory=str(self.spool.directory),
                                   consequence="records wait in memory until it works")
                asyncio.get_running_loop().call_later(SPOOL_RETRY, self._wakeup.set)
                return
            if self._spool_failing:
                self._spool_failing = False
                self.log.warning("cdr.spool_recovered", directory=str(self.spool.directory))
            self.acknowledged += len(batch)
            self.pending_batches += 1
            if self.writer is not None:  # the writer process stores it
                self.writer.notify()
                continue
            if self._kept_records + len(batch) <= MAX_KEPT:  # else read back from the file
                self._kept[path] = batch
                self._kept_records += len(batch)
            self._spooled.set()

    # -- storing ---------------------------------------------------------------------

    async def _storer(self) -> None:
        pause = min(1.0, self.retry_max)
        while True:
            if self._down_since is not None:
                await asyncio.sleep(pause)  # down: try again later, whatever arrives
            else:
                await self._spooled.wait()
            self._spooled.clear()
            try:
                stored = await self._store_spooled()
            except Exception:  # a bug must not stop recording: the spool keeps the batches
                self.log.exception("cdr.recorder_failed", during="store")
                stored = False
            pause = min(1.0, self.retry_max) if stored else min(pause * 2, self.retry_max)

    async def _store_spooled(self) -> bool:
        """Write the spool's batches to the database; False if it is (still) down."""
        pending = self.spool.pending()
        # What waits is what the spool holds (another process may have spooled it: the
        # service, when this is its writer process).
        self.pending_batches = len(pending)
        if not self._open and not await self._try_open():
            return False
        for path in pending:
            try:
                kept = self._kept.get(path)
                records = (kept if kept is not None
                           else await asyncio.to_thread(self.spool.read, path))
            except FileNotFoundError:
                continue  # another process sharing this spool wrote it first
            except OSError as error:  # unreadable: set aside, do not try it for ever
                self.log.error("cdr.spool_unreadable", path=str(path), error=str(error))
                with contextlib.suppress(OSError):
                    self.spool.set_aside(path)
                self._batch_done(path)
                continue
            try:
                await self.sink.write(records)
            except CdrUnavailableError as error:
                await self._lost_database(str(error))
                return False
            except Exception:  # refused for its contents: find the records at fault
                if not await self._store_one_by_one(path, records):
                    return False
                continue
            self.spool.remove(path)
            self.stored += len(records)
            self._batch_done(path)
        for path in [path for path in self._kept if not path.exists()]:
            self._batch_done(path, counted=False)  # another process sharing the spool stored it
        self._came_back()
        return True

    async def _store_one_by_one(self, path: Path, records: list[CallRecord]) -> bool:
        """Store a refused batch record by record; keep the refused ones beside the spool."""
        refused: list[tuple[CallRecord, str]] = []
        for record in records:
            try:
                await self.sink.write([record])
            except CdrUnavailableError as error:
                await self._lost_database(str(error))
                return False
            except Exception as error:
                refused.append((record, repr(error)))
                continue
            self.stored += 1
        if refused:
            kept = await asyncio.to_thread(self.spool.append,
                                           [record for record, _ in refused], True)
            self.refused += len(refused)
            self.errors += len(refused)
            self.log.error("cdr.records_refused", records=len(refused), path=str(kept),
                           error=refused[0][1],
                           consequence="kept beside the spool, not written again")
        self.spool.remove(path)
        self._batch_done(path)
        return True

    def _batch_done(self, path: Path, counted: bool = True) -> None:
        if counted:
            self.pending_batches = max(0, self.pending_batches - 1)
        kept = self._kept.pop(path, None)
        if kept is not None:
            self._kept_records -= len(kept)

    async def _try_open(self) -> bool:
        try:
            await self.sink.open()
        except CdrUnavailableError as error:
            self._went_down(str(error))
            return False
        self._open = True
        return True

    async def _lost_database(self, error: str) -> None:
        self.errors += 1
        self._went_down(error)
        self._open = False  # connect afresh next time (a restarted server)
        with contextlib.suppress(Exception):
            await self.sink.close()

    def _went_down(self, error: str) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            self.log.error("cdr.unavailable", sink=self.sink.name, error=error,
                           consequence="records are kept in the spool until it is back")

    def _came_back(self) -> None:
        if self._down_since is not None:
            down = asyncio.get_running_loop().time() - self._down_since
            self._down_since = None
            self.log.warning("cdr.recovered", sink=self.sink.name, seconds_down=round(down, 1))
