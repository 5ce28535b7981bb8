"""Processes and logs for the end-to-end tests: SIPp runs, the sipguard process, a silent trunk.

The pytest fixtures that start these live in conftest.py; this module holds no fixtures
so tests can import its types.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "sip_fixtures"
SIPP = os.environ.get("SIPP") or shutil.which("sipp")

SIPGUARD_START_TIMEOUT = 20.0  # seconds for the service.started line
PROCESS_STOP_TIMEOUT = 10.0  # seconds a process gets after SIGTERM before SIGKILL
# The policy every e2e test runs with (US and CA allowed, premium denied).
TEST_POLICY = Path(__file__).resolve().parents[1] / "policies" / "basic.yaml"

Event = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def family_of(host: str) -> socket.AddressFamily:
    """The address family of a literal loopback address."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that was free a moment ago on ``host`` (the kernel's choice for port 0)."""
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP a moment ago on ``host`` (SIPp's TCP mode, and a
    sipguard listening on both, want one)."""
    for _ in range(50):
        port = free_udp_port(host)
        with socket.socket(family_of(host), socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free for UDP and TCP on {host}")


def free_media_ports(host: str = "127.0.0.1", count: int = 4) -> int:
    """The first of ``count`` consecutive UDP ports that were all free a moment ago
    (SIPp binds audio and video RTP and RTCP from its -mp port up)."""
    for _ in range(50):
        first = free_udp_port(host)
        if first + count > 65535:
            continue
        probes: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                probe = socket.socket(family_of(host), socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((host, port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return first
    raise RuntimeError(f"no {count} consecutive free UDP ports on {host}")


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals in brackets, as SIP URIs and SIPp want them."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_until_bound(host: str, port: int, process: subprocess.Popen[Any], timeout: float,
                     kind: socket.SocketKind = socket.SOCK_DGRAM) -> None:
    """Return once something has bound ``host:port`` (UDP, or TCP with ``kind``); fail if
    ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process {process.args!r} exited with {process.returncode}")
        with socket.socket(family_of(host), kind) as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return
                raise
        time.sleep(0.05)
    name = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    raise AssertionError(f"nothing bound {name} {host_port(host, port)} within {timeout} s")


def stop_process(process: subprocess.Popen[Any], timeout: float = PROCESS_STOP_TIMEOUT) -> bool:
    """SIGTERM ``process`` (by its PID), SIGKILL it after ``timeout``; True if it stopped itself."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
        return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for assertion messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path.name}: no such file)"
    return "\n".join(text.splitlines()[-lines:])


def sipp_common_args(host: str) -> list[str]:
    """SIPp options every run here uses: loopback only, no fixed ports, no stdin."""
    return [
        "-i", host,
        "-ci", "127.0.0.1",
        "-cp", str(free_udp_port()),  # control socket, 8888 by default
        "-mp", str(free_media_ports(host)),  # media ports, 6000 by default
        "-nostdin",
    ]  # fmt: skip


# RFC 3261 §7.3.3 compact header names, so a peer that sends them is read right.
COMPACT_HEADERS = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
}  # fmt: skip
# SIPp starts each entry with dashes and a timestamp, but writes its notes about messages it
# drops on purpose (-lost) without a newline, so the dashes can follow a note on one line.
SIPP_LOG_SEPARATOR = re.compile(r"-{10,}\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$")
SIPP_LOST_NOTE = re.compile(r"message (?:voluntary )?lost")
SIPP_DROPPED_ON_RECEIPT = re.compile(r"message lost \(recv\)")


@dataclass(frozen=True)
class SippMessage:
    """One message from a SIPp ``-trace_msg`` log."""

    direction: str  # "received" or "sent"
    timestamp: float  # seconds; only differences between messages mean anything
    text: str
    dropped: bool = False  # received, then thrown away by SIPp's -lost

    @property
    def start_line(self) -> str:
        """e.g. "INVITE sip:12125551234@127.0.0.1:5080 SIP/2.0" or "SIP/2.0 200 OK"."""
        return self.text.split("\n", 1)[0].strip()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (long or compact form), stripped."""
        wanted = name.lower()
        for line in self.text.split("\n")[1:]:
            if not line.strip():
                break  # end of the header block
            field_name, colon, value = line.partition(":")
            key = field_name.strip().lower()
            if colon and COMPACT_HEADERS.get(key, key) == wanted:
                return value.strip()
        return None


def read_sipp_messages(path: Path) -> list[SippMessage]:
    """The messages SIPp logged as sent or received, in order (a missing log is empty).

    A message SIPp chose not to send (-lost) is not logged at all; one it received and
    then dropped is returned with ``dropped`` set.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    messages: list[SippMessage] = []
    block: list[str] = []
    stamp = 0.0

    def flush() -> None:
        body = list(block)
        # "lost (recv)" follows the message it drops; "voluntary lost (while sending)"
        # stands for a message that was never logged, so it marks nothing.
        dropped = any(SIPP_DROPPED_ON_RECEIPT.search(line) for line in body)
        body = [line for line in body if not SIPP_LOST_NOTE.search(line)]
        while body and not body[0].strip():
            body.pop(0)
        if not body:
            return
        heading, rest = body[0], body[1:]
        if " message received " in heading:
            direction = "received"
        elif " message sent " in heading:
            direction = "sent"
        else:
            return
        while rest and not rest[0].strip():
            rest.pop(0)
        if rest:
            messages.append(SippMessage(direction, stamp, "\n".join(rest), dropped))

    for line in lines:
        match = SIPP_LOG_SEPARATOR.search(line)
        if match:
            note = line[: match.start()].strip()
            if note:
                block.append(note)  # belongs to the entry before the dashes
            flush()
            block = []
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        else:
            block.append(line)
    flush()
    return messages


# --------------------------------------------------------------------------- SIPp


@dataclass
class SippUas:
    """A SIPp UAS scenario running in the background: the carrier trunk."""

    scenario: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    message_log: Path
    error_log: Path
    screen_log: Path

    @property
    def uri(self) -> str:
        """The trunk URI to put in sipguard's configuration."""
        return f"sip:{host_port(self.host, self.port)}"

    def stop(self) -> None:
        """Stop SIPp (its message log is complete afterwards)."""
        stop_process(self.process)

    def messages(self, direction: str, start: str = "") -> list[SippMessage]:
        """Messages SIPp received or sent so far whose start line begins with ``start``."""
        return [
            message
            for message in read_sipp_messages(self.message_log)
            if message.direction == direction
            and not message.dropped
            and message.start_line.startswith(start)
        ]

    def received(self, start: str) -> int:
        """How many received messages (retransmissions included) begin with ``start``."""
        return len(self.messages("received", start))

    def wait_for_received(self, start: str, count: int, timeout: float = 5.0) -> int:
        """Wait until ``count`` received messages begin with ``start``; return how many did.

        sipguard may answer the PBX before the trunk has the request (it answers a BYE
        locally), so "the UAC finished" does not mean the trunk has seen everything yet.
        """
        deadline = time.monotonic() + timeout
        seen = self.received(start)
        while seen < count and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.05)
            seen = self.received(start)
        return seen

    def describe(self) -> str:
        """Received start lines and errors, for assertion messages."""
        lines = [message.start_line for message in self.messages("received")]
        return f"UAS {self.scenario} received: {lines[:40]}\nUAS errors:\n{tail(self.error_log)}"


@dataclass
class SippResult:
    """The outcome of a SIPp UAC run."""

    scenario: str
    args: list[str]
    returncode: int
    elapsed: float
    stats: dict[str, str]
    error_log: Path
    message_log: Path
    screen_log: Path

    def stat(self, name: str) -> int:
        """An integer counter from the final statistics row, e.g. ``SuccessfulCall(C)``."""
        return int(self.stats.get(name, "-1"))

    @property
    def successful(self) -> int:
        return self.stat("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.stat("FailedCall(C)")

    def messages(self, direction: str, start: str = "") -> list[SippMessage]:
        """Messages the UAC received (and kept, see -lost) or sent, by start line prefix."""
        return [
            message
            for message in read_sipp_messages(self.message_log)
            if message.direction == direction
            and not message.dropped
            and message.start_line.startswith(start)
        ]

    def describe(self) -> str:
        """What went wrong, for assertion messages."""
        counters = {
            key: value
            for key, value in self.stats.items()
            if key.endswith("(C)") and value not in ("0", "")
        }
        return (
            f"sipp {self.scenario} exited {self.returncode} after {self.elapsed:.1f} s\n"
            f"command: {shlex.join(self.args)}\n"
            f"counters: {counters}\n"
            f"received: {[m.start_line for m in self.messages('received')][:40]}\n"
            f"errors:\n{tail(self.error_log)}\n"
            f"screen:\n{tail(self.screen_log, 40)}"
        )


def read_sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp ``-trace_stat`` CSV file, by column name."""
    try:
        with path.open(newline="", errors="replace") as stats_file:
            rows = list(csv.reader(stats_file, delimiter=";"))
    except FileNotFoundError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


# --------------------------------------------------------------------------- sipguard


class Sipguard:
    """A sipguard process and the JSON log lines it has written to stdout so far."""

    def __init__(self, command: Sequence[str], config_path: Path, stderr_path: Path) -> None:
        self.config_path = config_path
        self.stderr_path = stderr_path
        # A copy of stdout beside the configuration, to read after a failed test.
        self.stdout_path = config_path.parent / "stdout.jsonl"
        self.log: list[Event] = []
        self._changed = threading.Condition()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with stderr_path.open("wb") as stderr_file:
            self.process = subprocess.Popen(
                [*command, "run", "--config", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                env=env,
                cwd=config_path.parent,
            )
        self._reader = threading.Thread(
            target=self._read_stdout, name="sipguard-stdout", daemon=True
        )
        self._reader.start()

    def _read_stdout(self) -> None:
        # Ends at EOF, that is when the process exits (the fixture always stops it).
        assert self.process.stdout is not None
        with self.stdout_path.open("wb") as copy:
            for raw in self.process.stdout:
                copy.write(raw)
                copy.flush()
                self._parse(raw)

    def _parse(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            event = {"event": "<not json>", "line": line}
        with self._changed:
            self.log.append(event)
            self._changed.notify_all()

    # -- reading the log

    def events(self, name: str, where: Callable[[Event], bool] | None = None) -> list[Event]:
        """The events called ``name`` logged so far (and matching ``where``)."""
        with self._changed:
            return [e for e in self.log if e.get("event") == name and (where is None or where(e))]

    def wait_for(
        self,
        name: str,
        timeout: float = 10.0,
        where: Callable[[Event], bool] | None = None,
        count: int = 1,
    ) -> list[Event]:
        """Wait until ``count`` events called ``name`` (matching ``where``) are logged."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [
                    e for e in self.log if e.get("event") == name and (where is None or where(e))
                ]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                exited = self.process.poll() is not None and not self._reader.is_alive()
                if remaining <= 0 or exited:
                    break
                self._changed.wait(timeout=min(remaining, 0.2))
        raise AssertionError(
            f"sipguard logged {len(found)} {name!r} events, wanted {count}, within {timeout} s\n"
            + self.describe()
        )

    def describe(self, lines: int = 40) -> str:
        """The last log lines and stderr, for assertion messages."""
        with self._changed:
            recent = [json.dumps(e, sort_keys=True) for e in self.log[-lines:]]
        return (
            f"sipguard exit code: {self.process.poll()}\n"
            "sipguard stdout (last lines):\n" + "\n".join(recent) + "\n"
            f"sipguard stderr:\n{tail(self.stderr_path, lines)}"
        )

    # -- where it listens

    def address(self, family: str = "udp") -> tuple[str, int]:
        """(host, port) of the first ``family`` listen address in ``service.started``."""
        (started,) = self.wait_for("service.started", timeout=SIPGUARD_START_TIMEOUT)[:1]
        for listen in started.get("listen", []):
            scheme, _, rest = str(listen).partition(":")
            if scheme != family:
                continue
            host, _, port = rest.rpartition(":")
            return host.strip("[]"), int(port)
        raise AssertionError(f"no {family} address in service.started: {started}")

    def target(self, family: str = "udp") -> str:
        """``host:port`` to give SIPp as its remote address."""
        return host_port(*self.address(family))

    # -- signals

    def stats(self, timeout: float = 5.0) -> Event:
        """Send SIGUSR1 and return the ``service.stats`` event it produces."""
        before = len(self.events("service.stats"))
        self.process.send_signal(signal.SIGUSR1)
        return self.wait_for("service.stats", timeout=timeout, count=before + 1)[-1]

    def stop(self, timeout: float = PROCESS_STOP_TIMEOUT) -> bool:
        """SIGTERM the service; True if it exited by itself within ``timeout``."""
        stopped = stop_process(self.process, timeout=timeout)
        self._reader.join(timeout=5)
        return stopped


def sipguard_command() -> list[str]:
    """How to run sipguard: ``$SIPGUARD_E2E_COMMAND`` or this interpreter's ``-m sipguard``."""
    override = os.environ.get("SIPGUARD_E2E_COMMAND")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "sipguard"]


def sipguard_config(
    trunk_uri: str,
    *,
    listen: Sequence[str] = ("udp:127.0.0.1:0",),
    peers: Sequence[str] = ("127.0.0.1/32",),
    sip: dict[str, float] | None = None,
    drain_grace: float = 2.0,
    store: dict[str, Any] | None = None,
    pin: dict[str, Any] | None = None,
    ivr: dict[str, Any] | None = None,
    edge: dict[str, Any] | None = None,
    peer_auth: dict[str, str] | None = None,
    trunk_auth: dict[str, str] | None = None,
    sections: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A sipguard configuration for one test (the policy file sits beside it)."""
    config: dict[str, Any] = {
        "listen": list(listen),
        "peers": [{"name": "asterisk-1", "addresses": list(peers)}],
        "trunks": [{"name": "carrier", "uri": trunk_uri}],
        "policy": "policy.yaml",
        # Each instance its own control socket, beside its configuration.
        "service": {"drain_grace": drain_grace, "control_socket": "control.sock"},
        "logging": {"level": "info", "format": "json"},
        # The PIN IVR's worker processes start only for the tests that use them.
        "ivr": {"enabled": False},
    }
    if sip:
        config["sip"] = dict(sip)
    if store:
        config["store"] = dict(store)
    if pin:
        config["pin"] = dict(pin)
    if ivr:
        config["ivr"] = {"enabled": True, **ivr}
    if edge:
        config["edge"] = dict(edge)
    if peer_auth:
        config["peers"][0]["auth"] = dict(peer_auth)
    if trunk_auth:
        config["trunks"][0]["auth"] = dict(trunk_auth)
    config.update(sections or {})  # whole sections more (transport, tls, ...)
    return config


# --------------------------------------------------------------------------- SIPp UAC


class SippRun:
    """A SIPp UAC run in progress; ``finish`` waits for it and returns the result."""

    def __init__(self, scenario: str, args: list[str], files: dict[str, Path], timeout: float):
        self.scenario = scenario
        self.args = args
        self.files = files
        self.timeout = timeout
        self.began = time.monotonic()
        with files["screen"].open("wb") as screen:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=screen, stderr=subprocess.STDOUT
            )

    def finish(self) -> SippResult:
        """Wait for SIPp to exit (its own -timeout ends it; a guard kills it 15 s later)."""
        try:
            returncode = self.process.wait(timeout=self.timeout + 15)
        except subprocess.TimeoutExpired:
            stop_process(self.process, timeout=5)
            returncode = -1
        return SippResult(
            scenario=self.scenario,
            args=self.args,
            returncode=returncode,
            elapsed=time.monotonic() - self.began,
            stats=read_sipp_stats(self.files["stats"]),
            error_log=self.files["errors"],
            message_log=self.files["messages"],
            screen_log=self.files["screen"],
        )


# --------------------------------------------------------------------------- silent trunk


@dataclass
class BlackHole:
    """A UDP socket that reads and counts everything sent to it, and answers nothing."""

    host: str
    sock: socket.socket
    datagrams: list[bytes] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def uri(self) -> str:
        return f"sip:{host_port(self.host, self.port)}"

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append(data)

    def requests(self, method: str) -> int:
        """How many datagrams were ``method`` requests."""
        prefix = method.encode() + b" "
        return sum(1 for data in self.datagrams if data.startswith(prefix))


# --------------------------------------------------------------------------- raw SIP over UDP


def raw_invite(target: tuple[str, int], local: tuple[str, int], number: str, **headers: str) -> str:
    """A minimal INVITE from ``local`` to ``target``; ``headers`` override the defaults."""
    branch = f"z9hG4bK-raw-{time.monotonic_ns()}"
    fields = {
        "Via": f"SIP/2.0/UDP {host_port(*local)};branch={branch}",
        "Max-Forwards": "70",
        "From": f"<sip:2001@{host_port(*local)}>;tag=raw{time.monotonic_ns()}",
        "To": f"<sip:{number}@{host_port(*target)}>",
        "Call-ID": f"raw-{time.monotonic_ns()}@e2e.invalid",
        "CSeq": "1 INVITE",
        "Contact": f"<sip:2001@{host_port(*local)}>",
        "Content-Length": "0",
    }
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = [f"INVITE sip:{number}@{host_port(*target)} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def ack_for(invite: str, response: str) -> str:
    """The ACK for a non-2xx final response: the INVITE's Via, the response's To (RFC 3261 §17.1.1.3)."""
    request_line, *header_lines = invite.split("\r\n\r\n", 1)[0].split("\r\n")
    response_headers = response.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    to = next((line for line in response_headers if line.lower().startswith(("to:", "t:"))), "")
    lines = [request_line.replace("INVITE ", "ACK ", 1)]
    for line in header_lines:
        name = line.split(":", 1)[0].strip().lower()
        if name in ("to", "t"):
            lines.append(to or line)
        elif name == "cseq":
            lines.append("CSeq: " + line.split(":", 1)[1].split()[0] + " ACK")
        elif name in ("via", "v", "max-forwards", "from", "f", "call-id", "i"):
            lines.append(line)
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def udp_invite_transaction(
    target: tuple[str, int], number: str, timeout: float = 5.0, **headers: str
) -> list[str]:
    """Send one INVITE over UDP like a PBX (Timer A retransmissions at T1 = 0.5 s), ACK the
    final response if it is not a 2xx, and return every response received (whole texts)."""
    host = target[0]
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = sock.getsockname()[:2]
        invite = raw_invite(target, local, number, **headers)
        responses: list[str] = []
        deadline = time.monotonic() + timeout
        interval = 0.5
        sock.sendto(invite.encode(), target)
        next_send = time.monotonic() + interval
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, min(next_send, deadline) - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if not responses:  # retransmit only until something answers
                    sock.sendto(invite.encode(), target)
                    interval = min(interval * 2, 4.0)
                next_send = time.monotonic() + interval
                continue
            text = data.decode(errors="replace")
            if not text.startswith("SIP/2.0 "):
                continue  # not a response to us
            responses.append(text)
            status = int(text.split(None, 2)[1])
            if status >= 200:
                if status >= 300:
                    sock.sendto(ack_for(invite, text).encode(), target)
                break
        return responses


def load_agent_client() -> Any:
    """tests/agents/client.py (the pjsua2 test agent's driver), loaded by its path: a
    ``tests`` package from site-packages (sippy ships one) may shadow ours."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "agents" / "client.py"
    spec = importlib.util.spec_from_file_location("pjsua_agent_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pjsua_agent_client"] = module
    spec.loader.exec_module(module)
    return module
