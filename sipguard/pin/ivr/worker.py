"""An IVR worker process: one PjsuaIvr behind JSON lines on stdin and stdout.

Run as ``python -m sipguard.pin.ivr.worker`` (by sipguard.pin.ivr.pool.IvrPool). pjsua2
allows one library per process and the wheel is built with PJSUA_MAX_CALLS = 4,
so the service scales the IVR out with these processes (which also keeps a pjsua2
crash away from the SIP service).

Protocol (one JSON object per line, UTF-8, every line flushed)
--------------------------------------------------------------
stdin, first line: the IvrConfig fields (``prompts`` as ``{name: path}``;
fields left out keep their defaults), plus an optional ``"log_level"``
(``"debug"``, ``"info"``, ``"warning"``, ``"error"``; default ``"info"``).

stdout:

- ``{"ready": true, "host": h, "port": p, "token": t, "capacity": n}`` once the
  IVR listens (or ``{"error": "..."}``, then exit status 1, if it cannot start);
- ``{"result": {"call_id": .., "outcome": .., "digits": ..}}`` for each IvrResult;
- ``{"sessions": n}`` whenever the number of calls held changes (checked with
  each result and every 0.5 s).

stdin, after the first line:

- ``{"instruct": {"call_id": .., "action": "accept" | "retry" | "refuse"}}``;
- ``{"stop": true}``; end of file means the same (the parent died);
- ``{"crash_for_test": true}``: make the pjsua2 loop raise, to test the recovery;
  accepted only when the environment has ``SIPGUARD_IVR_TEST_HOOKS=1`` (else
  logged and ignored).

On stop the worker hangs up its calls, shuts pjsua2 down and exits 0 (SIGTERM
does the same; SIGINT is ignored: the parent decides when its workers stop).
If the pjsua2 thread ends on its own (an unexpected exception, logged with its
traceback), the worker exits 1, so that the pool starts a new one.

The digits travel over this pipe only. Logging (structlog, never the digits; one
line per event in the service's format, with this worker's pid) goes to stderr, which
the pool connects to the service's own log stream.
Whatever the C library might print on file descriptor 1 goes to stderr too: the
protocol uses a private duplicate of the original stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from typing import IO, Any, get_args

from sipguard import logs
from sipguard.pin.ivr.port import IvrAction, IvrConfig, IvrResult, parse_config

log = logs.module_logger()

SESSIONS_POLL = 0.5  # seconds between two looks at active_sessions
ACTIONS: frozenset[str] = frozenset(get_args(IvrAction))
TEST_HOOKS_ENV = "SIPGUARD_IVR_TEST_HOOKS"
class _Output:
    """JSON lines to the parent, each flushed (written from the event loop's thread)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.broken = False

    def send(self, message: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            self.stream.write(json.dumps(message) + "\n")
            self.stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.broken = True  # the parent is gone; EOF on stdin will stop us


class Worker:
    """The worker's asyncio side: the IVR, the commands, the reports."""

    def __init__(self, config: IvrConfig, output: _Output, commands: IO[str]) -> None:
        self.config = config
        self.output = output
        self.commands = commands
        self.sessions = 0
        self.ivr: Any = None  # PjsuaIvr, imported when run (pjsua2 loads then)
        self.failed = False  # the pjsua2 thread ended without being asked to
        self.test_hooks = os.environ.get(TEST_HOOKS_ENV) == "1"

    async def run(self) -> int:
        from sipguard.pin.ivr.pjsua import PjsuaIvr  # noqa: PLC0415 - pjsua2 loads here

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        ivr = PjsuaIvr(self.config)

        def on_failure() -> None:
            self.failed = True
            stop.set()

        ivr.on_failure = on_failure
        try:
            await ivr.start(self.on_result)
        except Exception as error:
            log.error("ivr.worker_start_failed", error=str(error))
            self.output.send({"error": str(error)})
            return 1
        self.ivr = ivr
        host, port = ivr.address
        self.output.send({"ready": True, "host": host, "port": port, "token": ivr.token,
                          "capacity": ivr.capacity})
        log.info("ivr.worker_ready", pid=os.getpid(), port=port, capacity=ivr.capacity)
        self.start_reader(loop, stop)
        poller = asyncio.create_task(self.poll_sessions())
        try:
            await stop.wait()
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await ivr.stop()
            self.report_sessions()
            self.failed = self.failed or ivr.failed
            if self.failed:
                log.error("ivr.worker_failed", pid=os.getpid(), reason="ivr_thread_ended")
            else:
                log.info("ivr.worker_stopped", pid=os.getpid())
        return 1 if self.failed else 0

    def start_reader(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """Read the commands in a daemon thread (works for any kind of stdin)."""

        def read() -> None:
            try:
                for line in self.commands:
                    if line.strip():
                        loop.call_soon_threadsafe(self.command, line, stop)
            except (OSError, ValueError) as error:
                log.warning("ivr.worker_stdin_failed", error=str(error))
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)  # EOF: the parent is gone or done

        threading.Thread(target=read, name="sipguard-ivr-stdin", daemon=True).start()

    def command(self, line: str, stop: asyncio.Event) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            log.warning("ivr.worker_bad_command", reason="not_json")
            return
        if not isinstance(message, dict):
            log.warning("ivr.worker_bad_command", reason="not_object")
        elif message.get("stop"):
            stop.set()
        elif isinstance(message.get("instruct"), dict):
            call_id = message["instruct"].get("call_id")
            action = message["instruct"].get("action")
            if isinstance(call_id, str) and action in ACTIONS and self.ivr is not None:
                self.ivr.instruct(call_id, action)
            else:
                log.warning("ivr.worker_bad_command", reason="bad_instruct")
        elif message.get("crash_for_test"):
            if self.test_hooks and self.ivr is not None:
                log.warning("ivr.worker_crash_for_test")
                self.ivr.crash_for_test()
            else:
                log.warning("ivr.worker_bad_command", reason="test_hooks_disabled")
        else:
            log.warning("ivr.worker_bad_command", reason="unknown")

    def on_result(self, result: IvrResult) -> None:
        self.output.send({"result": {"call_id": result.call_id, "outcome": result.outcome,
                                     "digits": result.digits}})
        self.report_sessions()

    def report_sessions(self) -> None:
        sessions = self.ivr.active_sessions if self.ivr is not None else 0
        if sessions != self.sessions:
            self.sessions = sessions
            self.output.send({"sessions": sessions})

    async def poll_sessions(self) -> None:
        while True:
            await asyncio.sleep(SESSIONS_POLL)
            self.report_sessions()


def _private_stdout() -> IO[str]:
    """A duplicate of fd 1 for the protocol; fd 1 itself then points at stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    return protocol


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    output = _Output(_private_stdout())
    # The service hands this process its own log stream as stderr: every line is one
    # event in the service's format, with this worker's pid.
    logs.configure("info", "auto", sys.stderr, process="ivr-worker", pid=os.getpid())
    commands = sys.stdin
    line = commands.readline()
    try:
        if not line:
            raise ValueError("no configuration line on stdin")
        config, level, output_format = parse_config(line)
    except ValueError as error:
        log.error("ivr.worker_bad_config", error=str(error))
        output.send({"error": str(error)})
        return 1
    logs.configure(level, output_format, sys.stderr, process="ivr-worker", pid=os.getpid())
    return asyncio.run(Worker(config, output, commands).run())


if __name__ == "__main__":
    sys.exit(main())
