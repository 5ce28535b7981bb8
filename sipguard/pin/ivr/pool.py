"""IvrPool: PIN IVRs in worker processes (sipguard.pin.ivr.worker), one pjsua2 each.

The pjsua2 wheel is built with PJSUA_MAX_CALLS = 4 and pjsua2 allows one library
per process, so one PjsuaIvr holds at most 4 PIN challenges at once. The pool
starts ``workers`` processes, each an IVR on its own loopback SIP port with its
own token, and speaks JSON lines with them (see the worker's module docstring).
``config.max_sessions`` applies to each worker (capped there by PJSUA_MAX_CALLS);
``capacity`` is the sum.

The service sends each challenge to one of ``links`` (address, token, capacity),
for instance the one with the most room. Results come back through ``on_result``
on the event loop's thread. ``instruct`` goes to the worker that reported a
result for that Call-ID (the pool remembers the last few thousand), else to
every worker (a worker ignores, and logs, a Call-ID it does not hold).

A worker that exits unexpectedly is logged and started again after a back-off
(1 s, growing to 10 s); after 5 failures within a minute the pool gives that
worker up. ``on_links_changed`` is called when a worker dies (its link leaves
``links``) and when it is back (with a new port and token). The calls a dead
worker held get no result: the controller's own timers end those challenges.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sipguard.logs import get_logger
from sipguard.pin.ivr.port import IvrAction, IvrConfig, IvrResult, config_line

START_TIMEOUT = 15.0  # seconds for every worker to say it is ready
STOP_TIMEOUT = 5.0  # seconds for the workers to exit after "stop"
KILL_TIMEOUT = 2.0  # seconds after SIGTERM before SIGKILL
RTP_PORTS_PER_WORKER = 200  # worker i gets rtp_port + i * this, when rtp_port is set
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0)  # back-off before each restart in a row
RESTART_WINDOW = 60.0  # seconds
RESTARTS_IN_WINDOW = 5  # failures within the window before giving a worker up
REMEMBERED_CALLS = 4096  # Call-ID -> worker entries kept for instruct
WORKER_MODULE = "sipguard.pin.ivr.worker"

Link = tuple[tuple[str, int], str, int]  # (address, token, capacity)

_OUTCOMES = frozenset({"entered", "timeout", "hangup"})


@dataclass(eq=False)
class _Worker:
    index: int
    config: IvrConfig
    process: asyncio.subprocess.Process | None = None
    link: Link | None = None  # set while the worker is ready and running
    sessions: int = 0
    reader: asyncio.Task[None] | None = None
    failures: collections.deque[float] = field(default_factory=collections.deque)
    given_up: bool = False


class IvrPool:
    """PIN IVRs in ``workers`` subprocesses (see the module docstring); the IvrPort
    methods, plus ``links``, ``capacity`` and ``on_links_changed``."""

    def __init__(self, config: IvrConfig, workers: int, *, log_level: str = "info",
                 log_format: str = "auto", log_stream: Any = None) -> None:
        """``log_stream``: where the workers' log lines go (the service's own log stream,
        a file object with a descriptor; None leaves them this process's stderr)."""
        if workers < 1:
            raise ValueError("an IvrPool needs at least one worker")
        self._config = config
        self._log_level, self._log_format, self._log_stream = log_level, log_format, log_stream
        self._workers = [_Worker(index, self._worker_config(index)) for index in range(workers)]
        self._calls: collections.OrderedDict[str, _Worker] = collections.OrderedDict()
        self._on_result: Callable[[IvrResult], None] | None = None
        self._restarts: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        self._log = get_logger(component="ivr_pool")
        self.on_links_changed: Callable[[], None] | None = None

    def _worker_config(self, index: int) -> IvrConfig:
        rtp_port = self._config.rtp_port
        if rtp_port:
            rtp_port += index * RTP_PORTS_PER_WORKER
        return replace(self._config, sip_port=0, rtp_port=rtp_port)

    # ------------------------------------------------------------ what the service reads

    @property
    def links(self) -> list[Link]:
        """(address, token, capacity) of each running worker, by worker number
        (a worker that is down, or being restarted, is left out)."""
        return [w.link for w in self._workers if w.link is not None]

    @property
    def pids(self) -> list[int]:
        """The PIDs of the running workers, in the order of ``links``."""
        return [w.process.pid for w in self._workers
                if w.link is not None and w.process is not None]

    @property
    def address(self) -> tuple[str, int]:
        """The first running worker's address (IvrPort compatibility)."""
        links = self.links
        return links[0][0] if links else (self._config.sip_host, 0)

    @property
    def token(self) -> str:
        """The first running worker's token (IvrPort compatibility)."""
        links = self.links
        return links[0][1] if links else ""

    @property
    def active_sessions(self) -> int:
        """Calls held now: the sum of what the running workers last reported."""
        return sum(w.sessions for w in self._workers if w.link is not None)

    @property
    def capacity(self) -> int:
        """Calls the running workers can hold at once."""
        return sum(w.link[2] for w in self._workers if w.link is not None)

    # ------------------------------------------------------------ lifecycle

    async def start(self, on_result: Callable[[IvrResult], None]) -> None:
        """Start every worker; RuntimeError (with the worker's reason) if one fails,
        after the others were stopped."""
        if self._started:
            raise RuntimeError("the IVR pool is already started")
        self._started = True
        self._stopping = False
        self._on_result = on_result
        outcomes = await asyncio.gather(*(self._spawn(w) for w in self._workers),
                                        return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            await self.stop()
            self._started = False
            first = errors[0]
            if isinstance(first, RuntimeError):
                raise first
            raise RuntimeError(f"an IVR worker could not start: {first!r}") from first
        self._log.info("ivr_pool.started", workers=len(self._workers), capacity=self.capacity,
                       ports=[link[0][1] for link in self.links])

    async def stop(self) -> None:
        """Ask every worker to stop, wait (bounded), then end what is left by its PID."""
        self._stopping = True
        for task in list(self._restarts):
            task.cancel()
        for task in list(self._restarts):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker in self._workers:
            self._send(worker, {"stop": True})
            if worker.process is not None and worker.process.stdin is not None:
                worker.process.stdin.close()  # EOF: stop, whatever the worker was doing
        await asyncio.gather(*(self._end(w) for w in self._workers))
        self._calls.clear()
        self._started = False

    async def _end(self, worker: _Worker) -> None:
        process = worker.process
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                self._log.warning("ivr_pool.worker_stop_timeout", worker=worker.index,
                                  pid=process.pid)
                await self._kill(process)
        if worker.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(worker.reader, KILL_TIMEOUT)
        worker.process = worker.reader = worker.link = None
        worker.sessions = 0

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM, then SIGKILL: only this pool's own child, by its PID."""
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), KILL_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), KILL_TIMEOUT)

    async def _spawn(self, worker: _Worker) -> None:
        """Start one worker process and wait for its ready line (bounded)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER_MODULE,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self._log_stream)
        worker.process = process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(config_line(worker.config, self._log_level,
                                            self._log_format).encode())
            ready = await asyncio.wait_for(self._ready(process.stdout), START_TIMEOUT)
        except BaseException as error:
            await self._kill(process)
            worker.process = None
            if isinstance(error, TimeoutError):
                raise RuntimeError(f"IVR worker {worker.index} was not ready within "
                                   f"{START_TIMEOUT} s") from None
            if isinstance(error, (ConnectionError, OSError)):
                raise RuntimeError(f"IVR worker {worker.index} failed: {error}") from None
            if isinstance(error, RuntimeError):
                raise self._failed(worker.index, error) from None
            raise
        worker.link = ((str(ready["host"]), int(ready["port"])), str(ready["token"]),
                       int(ready["capacity"]))
        worker.sessions = 0
        worker.reader = asyncio.create_task(self._read(worker, process),
                                            name=f"ivr-worker-{worker.index}")
        self._log.info("ivr_pool.worker_ready", worker=worker.index, pid=process.pid,
                       port=worker.link[0][1], capacity=worker.link[2])

    @staticmethod
    async def _ready(stdout: asyncio.StreamReader) -> dict[str, Any]:
        while True:
            line = await stdout.readline()
            if not line:
                raise RuntimeError("the IVR worker exited before it was ready")
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(message, dict):
                continue
            if "error" in message:
                raise RuntimeError(str(message["error"]))
            if message.get("ready"):
                return message

    @staticmethod
    def _failed(index: int, error: RuntimeError) -> RuntimeError:
        return RuntimeError(f"IVR worker {index}: {error}")

    # ------------------------------------------------------------ running workers

    async def _read(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except (ValueError, ConnectionError) as error:  # a line beyond the limit
                self._log.warning("ivr_pool.worker_bad_output", worker=worker.index,
                                  error=str(error))
                continue
            if not line:
                break
            self._handle(worker, line)
        returncode = await process.wait()
        if self._stopping or worker.process is not process:
            return
        worker.link = None
        worker.sessions = 0
        worker.process = None
        self._forget(worker)
        self._log.error("ivr_pool.worker_exited", worker=worker.index, pid=process.pid,
                        returncode=returncode)
        self._links_changed()
        task = asyncio.create_task(self._restart(worker), name=f"ivr-restart-{worker.index}")
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def _handle(self, worker: _Worker, line: bytes) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            self._log.warning("ivr_pool.worker_bad_output", worker=worker.index)
            return
        if not isinstance(message, dict):
            return
        if "sessions" in message:
            with contextlib.suppress(TypeError, ValueError):
                worker.sessions = int(message["sessions"])
        result = message.get("result")
        if isinstance(result, dict) and result.get("outcome") in _OUTCOMES:
            call_id = str(result.get("call_id", ""))
            self._remember(call_id, worker)
            if self._on_result is not None:
                try:
                    self._on_result(IvrResult(call_id=call_id, outcome=result["outcome"],
                                              digits=str(result.get("digits", ""))))
                except Exception:
                    self._log.exception("ivr_pool.on_result_failed", worker=worker.index)

    async def _restart(self, worker: _Worker) -> None:
        while not self._stopping:
            now = time.monotonic()
            worker.failures.append(now)
            while worker.failures and worker.failures[0] < now - RESTART_WINDOW:
                worker.failures.popleft()
            if len(worker.failures) >= RESTARTS_IN_WINDOW:
                worker.given_up = True
                self._log.error("ivr_pool.worker_given_up", worker=worker.index,
                                failures=len(worker.failures), window=RESTART_WINDOW)
                return
            delay = RESTART_DELAYS[min(len(worker.failures), len(RESTART_DELAYS)) - 1]
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(worker)
            except RuntimeError as error:
                self._log.error("ivr_pool.worker_restart_failed", worker=worker.index,
                                error=str(error))
                continue
            self._log.info("ivr_pool.worker_restarted", worker=worker.index)
            self._links_changed()
            return

    def _links_changed(self) -> None:
        callback = self.on_links_changed
        if callback is not None:
            try:
                callback()
            except Exception:
                self._log.exception("ivr_pool.links_callback_failed")

    # ------------------------------------------------------------ instruct

    def instruct(self, call_id: str, action: IvrAction) -> None:
        worker = self._calls.get(call_id)
        message = {"instruct": {"call_id": call_id, "action": action}}
        if worker is None:
            for each in self._workers:
                self._send(each, message)
            return
        self._send(worker, message)
        if action != "retry":  # refuse / accept: the worker reports nothing more for it
            del self._calls[call_id]

    def _remember(self, call_id: str, worker: _Worker) -> None:
        self._calls[call_id] = worker
        self._calls.move_to_end(call_id)
        while len(self._calls) > REMEMBERED_CALLS:
            self._calls.popitem(last=False)

    def _forget(self, worker: _Worker) -> None:
        for call_id in [c for c, w in self._calls.items() if w is worker]:
            del self._calls[call_id]

    def _send(self, worker: _Worker, message: dict[str, Any]) -> None:
        process = worker.process
        if process is None or process.stdin is None or process.returncode is not None:
            return
        if process.stdin.is_closing():
            return
        try:
            process.stdin.write((json.dumps(message) + "\n").encode())
        except (ConnectionError, OSError) as error:
            self._log.warning("ivr_pool.worker_write_failed", worker=worker.index,
                              error=str(error))
