"""Drive a pjsua2 test user agent (tests/agents/pjsua_agent.py) in a subprocess.

Usage::

    with Agent(answer=False) as agent:          # a UAC; agent.sip_port is its SIP port
        agent.call("sip:pin@127.0.0.1:5070", headers={"X-Foo": "bar"})
        agent.wait_for("state", 5, state="CONFIRMED")
        agent.send_dtmf("123456#", method="rfc4733")
        stats = agent.stats()                     # {"rx_packets": .., "tx_packets": .., ...}
        agent.hangup()
        agent.wait_for("disconnected", 5)

Constructor options: ``host`` (SIP and RTP bound there, on free ports), ``answer``
(UAS mode: auto-answer incoming calls), ``ring_seconds`` (send 180 first and
answer that much later), ``early_media`` (send 183 with SDP before the 200),
``tls`` ((certificate chain, key, CA) PEM paths: listen on TLS too, on
``agent.tls_port``, and check TLS servers against the CA).

Commands (methods): ``call(uri, headers)``, ``send_dtmf(digits, method)`` with
method ``"rfc4733"`` (RTP telephone-events), ``"info"`` (SIP INFO
application/dtmf-relay) or ``"info-dtmf"`` (one SIP INFO application/dtmf per
digit), ``hangup()``, ``stats()``, ``record(path)`` (write the audio received in the
current call to a WAV file, complete once the call ended: event ``recorded``), ``quit()`` (also done by ``stop()``).

Events (dicts with an ``"event"`` key), read with ``wait_for(event, timeout, **match)``:

- ``ready`` ``{sip_port, tls_port}``: at start (consumed by the constructor)
- ``calling`` ``{call_id}``: an outgoing INVITE was sent
- ``incoming`` ``{call_id}``: an INVITE arrived (UAS mode)
- ``state`` ``{state, status}``: CALLING, EARLY, CONNECTING, CONFIRMED, DISCONNECTED
- ``media`` ``{remote_rtp}``: media became active or changed ("ip:port" the agent sends RTP to)
- ``reinvite``: an SDP offer arrived in an established call
- ``response`` ``{method, status}``: the final response to a request other than
  INVITE the agent sent in the call (INFO, BYE)
- ``dtmf`` ``{digit}``: a DTMF digit was received
- ``disconnected`` ``{status, reason}``: the call ended (last SIP status and reason)
- ``stats`` ``{rx_packets, tx_packets, remote_rtp, local_rtp}``: reply to ``stats()``
- ``error`` ``{message}``: a command failed
- ``recorded`` ``{path, complete}``: the call ended and the WAV of ``record(path)``
  is complete (``complete`` false if it was still unreadable after 3 s)
- ``stopped``: the agent shut pjsua2 down

Every event is also kept in ``events`` (in order), so a test can look back;
``clear()`` drops the events no wait_for has returned yet.
The process is stopped by its PID (SIGTERM, then SIGKILL after a bounded wait).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

AGENT_SCRIPT = Path(__file__).with_name("pjsua_agent.py")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

Event = dict[str, Any]


class AgentError(AssertionError):
    """An expected event did not come (or the agent died)."""


class Agent:
    """A pjsua2 user agent in a subprocess, driven by JSON lines."""

    def __init__(self, *, host: str = "127.0.0.1", answer: bool = False,
                 ring_seconds: float = 0.0, early_media: bool = False,
                 tls: tuple[str, str, str] | None = None) -> None:
        command = [sys.executable, str(AGENT_SCRIPT), "--host", host]
        if tls is not None:  # (certificate chain, key, CA): listen on TLS too
            command += ["--tls-cert", tls[0], "--tls-key", tls[1], "--tls-ca", tls[2]]
        if answer:
            command.append("--answer")
        if ring_seconds > 0:
            command += ["--ring-seconds", str(ring_seconds)]
        if early_media:
            command.append("--early-media")
        self.host = host
        self.events: list[Event] = []
        self._pending: list[Event] = []
        self._closed = False
        self._cond = threading.Condition()
        self._stderr: list[str] = []
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            ready = self.wait_for("ready", START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        self.sip_port: int = int(ready["sip_port"])
        self.tls_port: int = int(ready.get("tls_port") or 0)

    @property
    def uri(self) -> str:
        """A SIP URI reaching this agent."""
        return f"sip:agent@{self.host}:{self.sip_port}"

    # --------------------------------------------------------------- commands

    def send(self, cmd: str, **fields: Any) -> None:
        """Send one raw command."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise AgentError(f"agent is gone: {error}; stderr: {self.stderr()}") from error

    def call(self, uri: str, headers: dict[str, str] | None = None) -> None:
        self.send("call", uri=uri, headers=headers or {})

    def send_dtmf(self, digits: str, method: str = "rfc4733") -> None:
        self.send("dtmf", digits=digits, method=method)

    def hangup(self) -> None:
        self.send("hangup")

    def stats(self, timeout: float = 5.0) -> Event:
        self.send("stats")
        return self.wait_for("stats", timeout)

    def record(self, path: str) -> None:
        self.send("record", path=path)

    def quit(self) -> None:
        self.send("quit")

    # ----------------------------------------------------------------- events

    def wait_for(self, event: str, timeout: float, **match: Any) -> Event:
        """The oldest event named ``event`` whose fields equal ``match`` that no earlier
        wait_for returned (events that do not match stay available to later waits, so
        the order of waits need not be the order of events). AgentError after
        ``timeout`` seconds, or at once if the agent exited."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, item in enumerate(self._pending):
                    if item.get("event") == event and all(
                            item.get(k) == v for k, v in match.items()):
                        del self._pending[index]
                        return item
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "agent exited" if self._closed else f"not within {timeout} s"
                    raise AgentError(f"no {event} {match}: {why}; events: {self.events[-12:]}; "
                                     f"stderr: {self.stderr()}")
                self._cond.wait(left)

    def clear(self) -> None:
        """Forget the events no wait_for returned yet (they stay in ``events``)."""
        with self._cond:
            self._pending.clear()

    def stderr(self) -> str:
        return "".join(self._stderr)[-2000:]

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                self._stderr.append(line)
                continue
            with self._cond:
                self.events.append(item)
                self._pending.append(item)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    # ---------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask the agent to quit, then end the process by its PID (bounded waits)."""
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=STOP_TIMEOUT)
            except (AgentError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
