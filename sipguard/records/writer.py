"""The records' writer process: the spool drained into the database outside the service.

The spool is already the durable hand-over between taking a record and storing it (a
batch is acknowledged once it is fsynced there), so the database writes need not run in
the service's process. Run there, on a thread, they cost the event loop more than their
own CPU (the writer thread and the loop take turns at the interpreter), and recording
lowered the call capacity by 12–15% (bench/bench_cdr_cost.py). In a process of their
own they run on another core.

The service starts ``python -m sipguard.service.records_writer --config FILE --status-fd N`` (its
stdout and stderr are the service's, so its log lines are in the service's log):

- a line on the writer's stdin says "a batch was spooled" (it also looks every second);
- the writer reports its counts as one JSON line on the status pipe whenever they
  change (stored, refused, errors, batches waiting, whether the database is up), and
  the service shows them as its own (stats, metrics, the dashboard);
- the end of its stdin (the service stopping, or dying, even by SIGKILL) makes it store
  what it can within ``STOP_SECONDS`` and exit; whatever it could not store stays in
  the spool for the next start. SIGTERM does the same; SIGINT is ignored (a Ctrl-C
  reaches the whole process group, and the service closes the writer's stdin itself).

Two writers draining one spool (an old one finishing while a new service starts) are
harmless: a batch the other took first is skipped, and the database ignores a record it
already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from sipguard.records.recorder import Recorder

# The writer's entry point (it reads the configuration, so it lives with the service).
MODULE = "sipguard.service.records_writer"
STOP_SECONDS = 10.0  # what the writer has, once told to stop, to store what is left
STATUS_SECONDS = 0.2  # how often the counts are compared with the last ones sent
WAKE_SECONDS = 1.0  # the spool is looked at this often even with no word from the service
REPORTED = ("stored", "refused", "errors", "spooled_batches", "database_up",
            "unreadable_lines")


class WriterProcess:
    """The service's side: starts the writer, tells it of new batches, reads its counts,
    stops it."""

    def __init__(self, config: Path, log: Any) -> None:
        self.config = config
        self.log = log
        self.status: dict[str, Any] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._supervising: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader = await self._spawn()
        self._supervising = asyncio.create_task(self._supervise(reader))

    async def _spawn(self) -> asyncio.StreamReader:
        read_end, write_end = os.pipe()
        # Never one of 0-2 (a service started with its stdout closed would hand its
        # writer a status pipe that is also the writer's stdout, where it logs).
        high = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(write_end)
        write_end = high
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", MODULE, "--config", str(self.config),
                "--status-fd", str(write_end), stdin=asyncio.subprocess.PIPE,
                pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(read_end, "rb"))
        self.log.info("cdr.writer_started", pid=self.process.pid)
        return reader

    async def _supervise(self, reader: asyncio.StreamReader) -> None:
        """Read its counts; a writer that dies while the service runs is started again
        (after a pause that doubles up to a minute): records wait in the spool meanwhile."""
        pause = 1.0
        while True:
            while line := await reader.readline():
                with contextlib.suppress(orjson.JSONDecodeError):
                    status = orjson.loads(line)
                    if isinstance(status, dict) and set(REPORTED) <= set(status):
                        self.status = status
            process = self.process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            self.log.error("cdr.writer_exited", pid=process.pid, code=code,
                           restart_in=pause,
                           consequence="records wait in the spool until it is back")
            await asyncio.sleep(pause)
            if self._stopping:
                return
            pause = min(pause * 2, 60.0)
            try:
                reader = await self._spawn()
            except OSError as error:
                self.log.error("cdr.writer_failed", error=str(error))
                reader = asyncio.StreamReader()
                reader.feed_eof()
                continue
            self.restarts += 1

    def notify(self) -> None:
        """A batch was spooled."""
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            process.stdin.write(b"\n")

    async def stop(self, timeout: float = STOP_SECONDS + 2.0) -> None:
        """Tell it to store what is left and exit; kill it if it takes longer."""
        self._stopping = True
        process = self.process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            self.log.error("cdr.writer_killed", pid=process.pid, after_seconds=timeout)
        if self._supervising is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2.0):
                    await self._supervising
            self._supervising.cancel()


async def serve(recorder: Recorder, status_fd: int) -> None:
    """Store batches as they come, report the counts, until stdin ends or SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    # Ctrl-C in a terminal reaches the whole process group: the service stops on it and
    # then closes this one's stdin, after spooling its last records, which are stored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def listen() -> None:
        while await reader.readline():
            recorder.wake()
        stopping.set()  # the service stopped, or died

    async def tick() -> None:
        while True:
            await asyncio.sleep(WAKE_SECONDS)
            recorder.wake()

    last: dict[str, Any] = {}

    def report() -> None:
        nonlocal last
        stats = recorder.stats()
        now = {key: stats[key] for key in REPORTED}
        if now != last:
            with contextlib.suppress(OSError):
                os.write(status_fd, orjson.dumps(now) + b"\n")
            last = now

    async def reporting() -> None:
        while True:
            report()
            await asyncio.sleep(STATUS_SECONDS)

    await recorder.start()
    tasks = [asyncio.create_task(work()) for work in (listen, tick, reporting)]
    await stopping.wait()
    for task in tasks:
        task.cancel()
    await recorder.stop(STOP_SECONDS)
    report()
