"""The recorder: call records from the service to the spool, then to the database.

:meth:`Recorder.record` only appends to a list, so call handling never waits
for a disk or a database. A background task takes what has collected every
``batch_seconds``, writes it to the spool (fsynced, off the event loop:
from then on the batch is *acknowledged* and survives a crash), then writes
the spool's batches to the database, oldest first, removing each once the
database has it. While the database cannot be reached the batches stay in
the spool and are tried again with a growing pause (up to ``retry_max``);
the outage and the recovery are each logged once (``cdr.unavailable``,
``cdr.recovered``). At start, batches a crash left behind are written first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sipguard.cdr.record import CallRecord
from sipguard.cdr.sink import CdrSink, CdrUnavailableError
from sipguard.cdr.spool import Spool

MAX_QUEUED = 200_000  # records waiting for the spool; past that the oldest are dropped


class Recorder:
    """Takes records without blocking; keeps every acknowledged one until it is stored."""

    def __init__(self, sink: CdrSink, spool: Spool, log: Any, batch_seconds: float = 0.05,
                 retry_max: float = 30.0) -> None:
        self.sink = sink
        self.spool = spool
        self.log = log
        self.batch_seconds = batch_seconds
        self.retry_max = retry_max
        self._queue: list[CallRecord] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._open = False
        self._down_since: float | None = None
        self.recorded = 0  # handed to record()
        self.acknowledged = 0  # in the spool, fsynced
        self.stored = 0  # committed by the database
        self.dropped = 0  # lost before the spool (queue full, or the spool failed)
        self.errors = 0  # failed database writes

    # -- the service's side ---------------------------------------------------------

    def record(self, record: CallRecord) -> None:
        """Take one record (never blocks, never raises)."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.pop(0)
            self.dropped += 1
        self._queue.append(record)
        self.recorded += 1
        self._wakeup.set()

    def stats(self) -> dict[str, Any]:
        """Counts for the stats line and the metrics."""
        return {"recorded": self.recorded, "acknowledged": self.acknowledged,
                "stored": self.stored, "queued": len(self._queue),
                "spooled_batches": len(self.spool.pending()), "dropped": self.dropped,
                "errors": self.errors, "database_up": self._down_since is None,
                "sink": self.sink.name}

    async def start(self) -> None:
        """Prepare the spool and start the background task (the database may be down)."""
        self.spool.prepare()
        await self._try_open()
        self._wakeup.set()  # batches a crash left in the spool go first
        self._task = asyncio.create_task(self._run())

    async def stop(self, timeout: float = 5.0) -> None:
        """Spool what is queued, give the database a last chance, close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._spool_queued()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._store_spooled()
        if self._open:
            with contextlib.suppress(Exception):
                await self.sink.close()

    # -- background ----------------------------------------------------------------

    async def _run(self) -> None:
        pause = 1.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause if self._down_since is not None else None):
                    await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self.batch_seconds)  # let a batch collect
            try:
                await self._spool_queued()
                stored = await self._store_spooled()
            except Exception:  # a bug must not stop recording: what is spooled stays
                self.log.exception("cdr.recorder_failed")
                stored = False
            pause = 1.0 if stored else min(pause * 2, self.retry_max)

    async def _spool_queued(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.spool.append, batch)
        except OSError as error:
            # The disk refused: nothing else can keep them, so they are counted as lost.
            self.dropped += len(batch)
            self.log.error("cdr.spool_failed", error=str(error), records=len(batch),
                           directory=str(self.spool.directory))
            return
        self.acknowledged += len(batch)

    async def _store_spooled(self) -> bool:
        """Write the spool's batches to the database; False if it is (still) down."""
        if not self._open and not await self._try_open():
            return False
        for path in self.spool.pending():
            try:
                records = await asyncio.to_thread(self.spool.read, path)
                await self.sink.write(records)
            except CdrUnavailableError as error:
                self.errors += 1
                self._went_down(str(error))
                self._open = False  # connect afresh next time (a restarted server)
                with contextlib.suppress(Exception):
                    await self.sink.close()
                return False
            except FileNotFoundError:
                continue  # another process sharing this spool wrote it first
            except Exception as error:  # the database refuses this batch itself: set aside
                self.errors += 1
                kept = self.spool.set_aside(path)
                self.log.error("cdr.batch_refused", path=str(kept), error=repr(error),
                               consequence="the batch is kept beside the spool, not retried")
                continue
            except OSError as error:  # the batch file cannot be read
                self.log.error("cdr.spool_unreadable", path=str(path), error=str(error))
                continue
            self.spool.remove(path)
            self.stored += len(records)
        self._came_back()
        return True

    async def _try_open(self) -> bool:
        try:
            await self.sink.open()
        except CdrUnavailableError as error:
            self._went_down(str(error))
            return False
        self._open = True
        return True

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
