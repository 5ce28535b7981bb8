#!/usr/bin/env python3
"""Call-rate benchmark: SIPp UAC -> (nothing | sipguard | Sippy's simple B2BUA) -> SIPp UAS.

For each target a ladder of rising call rates is run with SIPp (short calls: answer, then an
immediate BYE). A step passes when every call succeeded on both SIPp sides (no failed call, no
unexpected or out-of-call message, no timeout) and SIPp kept up with the target rate. A target's
ladder stops at its first failing step.

For the B2BUA targets it also measures, on a fresh process: INVITE->100 Trying and INVITE->200 OK
percentiles at a fixed rate (from the microsecond timestamps of SIPp's -trace_msg log), and on
another fresh process the memory per live call (N calls held open at once).

    python bench/bench_calls.py [--quick] [--rates 100,200,400] [--calls-per-step N]

Loopback only (127.0.0.1); every process it starts is stopped by its PID; every step is bounded
in calls and in time. Results: a table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SCENARIOS = BENCH_DIR / "scenarios"
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
DIALLED = "12125551234"  # a valid US number the test policy forwards
BENCH_POLICY = Path(__file__).resolve().parents[1] / "tests" / "policies" / "basic.yaml"

FULL_RATES = (100, 200, 400, 600, 800, 1000, 1200, 1500, 2000)
QUICK_RATES = (100, 200, 400)

# Counters of SIPp's -trace_stat file that make a step fail when they are not zero.
FAIL_COUNTERS = (
    "FailedCall(C)",
    "FailedUnexpectedMessage(C)",
    "FailedTimeoutOnRecv(C)",
    "FailedTimeoutOnSend(C)",
    "FailedMaxUDPRetrans(C)",
    "FailedCannotSendMessage(C)",
    "FailedCallRejected(C)",
    "OutOfCallMsgs(C)",
    "FatalErrors(C)",
)
# Counters reported but not failing a step on their own.
INFO_COUNTERS = ("Retransmissions(C)", "DeadCallMsgs(C)", "Warnings(C)")

# A step also fails when SIPp placed the calls slower than this share of the rate asked for
# (it throttles at the -l open-call limit when the target falls behind).
MIN_RATE_SHARE = 0.95

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- small helpers


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 right now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to this UDP port (read from /proc/net/udp)."""
    wanted = f":{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].endswith(wanted) for line in lines if len(line.split()) > 1)


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def proc_status_kib(pid: int, key: str) -> int | None:
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def udp_receive_errors() -> int | None:
    """Datagrams the kernel dropped for full receive buffers, machine-wide (/proc/net/snmp)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                 if line.startswith("Udp:")]
    except OSError:
        return None
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return None
    return int(lines[1][lines[0].index("RcvbufErrors")])


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> int | None:
    """SIGTERM this one process (by its PID), then SIGKILL it if it outlives the grace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
    return proc.returncode


def read_stat_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a SIPp -trace_stat file, as {column: value}; the last is the final count."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle, delimiter=";"))
    except OSError:
        return []
    if len(rows) < 2:
        return []
    return [dict(zip(rows[0], row, strict=False)) for row in rows[1:]]


def stat_time(row: dict[str, str]) -> float | None:
    """CurrentTime of a -trace_stat row ("date<TAB>time<TAB>epoch.micro") in epoch seconds."""
    try:
        return float(row.get("CurrentTime", "").split()[-1])
    except (ValueError, IndexError):
        return None


def counter(stats: dict[str, str], name: str) -> int:
    try:
        return int(stats.get(name, "0") or 0)
    except ValueError:
        return 0


def sipp_version() -> str:
    sipp = shutil.which("sipp")
    if not sipp:
        return "not installed"
    out = subprocess.run([sipp, "-v"], capture_output=True, text=True, timeout=10, check=False)
    for line in (out.stdout + out.stderr).splitlines():
        if "SIPp v" in line:
            return line.strip()
    return "unknown"


# --------------------------------------------------------------------------- SIPp runs


@dataclass
class StepResult:
    target: str
    phase: str
    rate: int
    calls: int
    hold_ms: int
    passed: bool
    reasons: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    achieved_rate: float = 0.0
    uac: dict[str, int] = field(default_factory=dict)
    uas: dict[str, int] = field(default_factory=dict)
    b2bua_cpu_us_per_call: float | None = None
    b2bua_cpu_share: float | None = None
    b2bua_rss_kib_after: int | None = None
    b2bua_hwm_kib_after: int | None = None
    b2bua_stats_after: dict[str, Any] | None = None
    udp_rcvbuf_errors: int | None = None
    latency_ms: dict[str, Any] | None = None


def sipp_command(*args: str) -> list[str]:
    sipp = shutil.which("sipp") or "sipp"
    return [sipp, *args]


def run_step(
    *,
    target: str,
    phase: str,
    target_port: int,
    uas_port: int,
    rate: int,
    calls: int,
    workdir: Path,
    hold_ms: int = 0,
    trace_msg: bool = False,
    b2bua_pid: int | None = None,
    on_tick: Any = None,
    b2bua_stats: Any = None,
) -> StepResult:
    """One SIPp run: a UAS for exactly `calls` calls, and a UAC placing them at `rate`/s."""
    step_dir = workdir / f"{target}-r{rate}-n{calls}-d{hold_ms}-{time.monotonic_ns()}"
    step_dir.mkdir(parents=True)
    launch_s = calls / rate
    bound_s = launch_s + hold_ms / 1000 + 15  # the whole step, at most
    recv_timeout_ms = 5000
    uas_recv_timeout_ms = max(10_000, hold_ms + 10_000)
    result = StepResult(target=target, phase=phase, rate=rate, calls=calls, hold_ms=hold_ms,
                        passed=False)

    uas_log = (step_dir / "uas.out").open("wb")
    uas = subprocess.Popen(
        sipp_command(
            "-sf", str(SCENARIOS / "uas.xml"),
            "-i", HOST, "-p", str(uas_port),
            "-m", str(calls),
            "-nostdin",
            "-recv_timeout", str(uas_recv_timeout_ms),
            "-timeout", f"{math.ceil(bound_s + 5)}s",
            "-trace_stat", "-stf", str(step_dir / "uas_stat.csv"),
            "-trace_err", "-error_file", str(step_dir / "uas_err.log"),
        ),
        stdin=subprocess.DEVNULL, stdout=uas_log, stderr=subprocess.STDOUT, cwd=step_dir,
    )
    uac_log = (step_dir / "uac.out").open("wb")
    uac: subprocess.Popen[bytes] | None = None
    try:
        if not wait_for(lambda: udp_port_bound(uas_port) or uas.poll() is not None, 5):
            result.reasons.append("UAS did not bind its port")
            return result
        if uas.poll() is not None:
            result.reasons.append(f"UAS exited at start (code {uas.returncode})")
            return result
        uac_args = [
            "-sf", str(SCENARIOS / "uac.xml"),
            "-s", DIALLED,
            "-i", HOST, "-p", str(free_udp_port()),
            f"{HOST}:{target_port}",
            "-r", str(rate), "-m", str(calls),
            "-l", str(max(calls + 10, 50) if hold_ms else max(2 * rate, 50)),
            "-d", str(hold_ms),
            "-nostdin",
            "-recv_timeout", str(recv_timeout_ms),
            "-timeout", f"{math.ceil(bound_s)}s",
            "-trace_stat", "-stf", str(step_dir / "uac_stat.csv"),
            "-trace_err", "-error_file", str(step_dir / "uac_err.log"),
        ]
        if trace_msg:
            uac_args += ["-trace_msg", "-message_file", str(step_dir / "uac_msg.log")]
        cpu_before = proc_cpu_seconds(b2bua_pid) if b2bua_pid else None
        rcvbuf_before = udp_receive_errors()
        started = time.monotonic()
        uac = subprocess.Popen(
            sipp_command(*uac_args),
            stdin=subprocess.DEVNULL, stdout=uac_log, stderr=subprocess.STDOUT, cwd=step_dir,
        )
        while uac.poll() is None and time.monotonic() - started < bound_s + 5:
            if on_tick is not None:
                on_tick(time.monotonic() - started)
            time.sleep(0.1)
        wall = time.monotonic() - started
        if uac.poll() is None:
            result.reasons.append(f"UAC still running after {bound_s + 5:.0f} s: stopped")
            stop_process(uac, 3)
        cpu_after = proc_cpu_seconds(b2bua_pid) if b2bua_pid else None
        # The UAS ends when its last call has ended (plus its 0.5 s timewait).
        try:
            uas.wait(8)
        except subprocess.TimeoutExpired:
            result.reasons.append("UAS did not see every call end: stopped")
            stop_process(uas, 3)
    finally:
        for proc in (uac, uas):
            if proc is not None and proc.poll() is None:
                stop_process(proc, 3)
        uas_log.close()
        uac_log.close()

    result.wall_s = round(wall, 3)
    uac_rows = read_stat_csv(step_dir / "uac_stat.csv")
    uac_stats = uac_rows[-1] if uac_rows else {}
    uas_rows = read_stat_csv(step_dir / "uas_stat.csv")
    uas_stats = uas_rows[-1] if uas_rows else {}
    for side, stats, proc in (("UAC", uac_stats, uac), ("UAS", uas_stats, uas)):
        summary = {name.removesuffix("(C)"): counter(stats, name)
                   for name in ("SuccessfulCall(C)", *FAIL_COUNTERS, *INFO_COUNTERS)}
        if side == "UAC":
            summary["OutgoingCall"] = counter(stats, "OutgoingCall(C)")
            result.uac = summary
        else:
            summary["IncomingCall"] = counter(stats, "IncomingCall(C)")
            result.uas = summary
        if not stats:
            result.reasons.append(f"{side}: no statistics file")
            continue
        if summary["SuccessfulCall"] != calls:
            result.reasons.append(f"{side}: {summary['SuccessfulCall']}/{calls} calls succeeded")
        for name in FAIL_COUNTERS:
            if counter(stats, name):
                result.reasons.append(f"{side}: {name.removesuffix('(C)')}={counter(stats, name)}")
        if proc is not None and proc.returncode not in (0, None) and not result.reasons:
            result.reasons.append(f"{side}: SIPp exit code {proc.returncode}")
    # SIPp throttles at -l open calls; make sure the rate asked for was the rate delivered.
    # SIPp writes a statistics row when it starts and one when it ends: time between them,
    # less the hold, is how long placing the calls took (SIPp's own start-up left out).
    span = wall
    if len(uac_rows) >= 2:
        first, last = stat_time(uac_rows[0]), stat_time(uac_rows[-1])
        if first is not None and last is not None and last > first:
            span = last - first
    launch_wall = max(span - hold_ms / 1000, 1e-3)
    result.achieved_rate = round(calls / launch_wall, 1)
    if result.achieved_rate < MIN_RATE_SHARE * rate:
        result.reasons.append(
            f"placed {result.achieved_rate}/s, below {MIN_RATE_SHARE:.0%} of {rate}/s")
    rcvbuf_after = udp_receive_errors()
    if rcvbuf_before is not None and rcvbuf_after is not None:
        result.udp_rcvbuf_errors = rcvbuf_after - rcvbuf_before
    if b2bua_stats is not None:
        result.b2bua_stats_after = b2bua_stats()
    if b2bua_pid:
        result.b2bua_rss_kib_after = proc_status_kib(b2bua_pid, "VmRSS")
        result.b2bua_hwm_kib_after = proc_status_kib(b2bua_pid, "VmHWM")
    if cpu_before is not None and cpu_after is not None:
        result.b2bua_cpu_us_per_call = round((cpu_after - cpu_before) / calls * 1e6, 1)
        result.b2bua_cpu_share = round((cpu_after - cpu_before) / wall, 3)
    if trace_msg:
        result.latency_ms = latency_from_messages(step_dir / "uac_msg.log")
    result.passed = not result.reasons
    return result


def parse_messages(path: Path) -> Iterator[tuple[float, str, str, str, str]]:
    """(time, 'sent'|'received', first line, Call-ID, CSeq method) for each logged message."""
    stamp: float | None = None
    direction = ""
    first = call_id = method = ""
    state = "idle"

    def flush() -> tuple[float, str, str, str, str] | None:
        if stamp is not None and first and call_id:
            return (stamp, direction, first, call_id, method)
        return None

    with path.open(errors="replace") as handle:
        for raw in handle:
            line = raw.rstrip("\r\n")
            if line.startswith("-" * 47):
                done = flush()
                if done:
                    yield done
                stamp, first, call_id, method = None, "", "", ""
                text = line.lstrip("-").strip()
                if text:
                    try:
                        stamp = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()
                    except ValueError:
                        stamp = None
                state = "header"
                continue
            if state == "header":
                if "message sent" in line:
                    direction, state = "sent", "start"
                elif "message received" in line:
                    direction, state = "received", "start"
                else:  # "Unexpected UDP message received:" and other notes: no timestamp
                    stamp, state = None, "idle"
                continue
            if state == "start":
                if line.strip():
                    first, state = line.strip(), "headers"
                continue
            if state == "headers":
                lower = line.lower()
                if lower.startswith(("call-id:", "i:")):
                    call_id = line.split(":", 1)[1].strip()
                elif lower.startswith("cseq:"):
                    parts = line.split(":", 1)[1].split()
                    method = parts[1] if len(parts) > 1 else ""
                elif not line.strip():
                    state = "body"
        done = flush()
        if done:
            yield done


def latency_from_messages(path: Path) -> dict[str, Any]:
    """Per-call INVITE->100 and INVITE->200 times (ms) from a UAC -trace_msg log."""
    invite_at: dict[str, float] = {}
    trying: dict[str, float] = {}
    answer: dict[str, float] = {}
    if not path.exists():
        return {"error": "no message log"}
    for stamp, direction, first, call_id, method in parse_messages(path):
        if direction == "sent" and first.startswith("INVITE ") and call_id not in invite_at:
            invite_at[call_id] = stamp
        elif direction == "received" and method == "INVITE" and call_id in invite_at:
            if first.startswith("SIP/2.0 100 ") and call_id not in trying:
                trying[call_id] = (stamp - invite_at[call_id]) * 1000
            elif first.startswith("SIP/2.0 200 ") and call_id not in answer:
                answer[call_id] = (stamp - invite_at[call_id]) * 1000
    out: dict[str, Any] = {"calls": len(invite_at)}
    for name, values in (("trying", list(trying.values())), ("answer", list(answer.values()))):
        out[name] = {
            "samples": len(values),
            "p50": _round(percentile(values, 50)),
            "p90": _round(percentile(values, 90)),
            "p99": _round(percentile(values, 99)),
            "max": _round(max(values) if values else None),
        }
    return out


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- targets


class Target:
    """Something SIPp calls through. `start()` returns the port the UAC dials."""

    name = "?"
    is_b2bua = True

    def __init__(self, workdir: Path, uas_port: int) -> None:
        self.workdir = workdir
        self.uas_port = uas_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.instances = 0

    def available(self) -> str | None:
        """None when the target can run here, else why not."""
        return None

    def start(self) -> int:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def rss_kib(self) -> int | None:
        return proc_status_kib(self.pid, "VmRSS") if self.pid else None

    def hwm_kib(self) -> int | None:
        return proc_status_kib(self.pid, "VmHWM") if self.pid else None

    def stats(self) -> dict[str, Any] | None:
        return None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc, 40)
        self.proc = None
        return code


class Direct(Target):
    name = "direct"
    is_b2bua = False

    def start(self) -> int:
        return self.uas_port


class Sippy(Target):
    name = "sippy"

    def available(self) -> str | None:
        try:
            self.info["version"] = importlib.metadata.version("sippy")
        except importlib.metadata.PackageNotFoundError:
            return "Python package 'sippy' is not installed (pip install -e '.[bench]')"
        return None

    def start(self) -> int:
        self.instances += 1
        port = free_udp_port()
        log = self.workdir / f"sippy-{self.instances}.log"
        env = dict(os.environ, SIPLOG_LVL="ERR", SIPLOG_BEND="stderr")
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sippy.b2bua_simple", "-f",
                 "-l", HOST, "-p", str(port), "-n", f"{HOST}:{self.uas_port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.workdir, env=env,
            )
        proc = self.proc
        if not wait_for(lambda: udp_port_bound(port) or proc.poll() is not None, 20):
            raise RuntimeError(f"Sippy did not bind {HOST}:{port}; see {log}")
        if proc.poll() is not None:
            raise RuntimeError(f"Sippy exited with code {proc.returncode}; see {log}")
        time.sleep(0.3)
        return port


class Sipguard(Target):
    name = "sipguard"

    def available(self) -> str | None:
        probe = subprocess.run(
            [sys.executable, "-m", "sipguard", "run", "--help"],
            capture_output=True, cwd=REPO_DIR, timeout=30, check=False,
        )
        if probe.returncode != 0:
            return f"'python -m sipguard run --help' failed: {probe.stderr.decode()[-300:]}"
        return None

    def start(self) -> int:
        self.instances += 1
        conf_dir = self.workdir / f"{self.name}-{self.instances}"
        conf_dir.mkdir()
        (conf_dir / "policy.yaml").write_text(self.policy_text())
        (conf_dir / "sipguard.yaml").write_text(
            f'listen: ["udp:{HOST}:0"]\n'
            f'peers: [{{name: pbx, addresses: ["{HOST}/32"]}}]\n'
            f'trunks: [{{name: carrier, uri: "sip:{HOST}:{self.uas_port}"}}]\n'
            "policy: policy.yaml\n"
            "logging: {level: warning, format: json}\n"
            # calls left over by an overloaded step need not hold the stop up for 30 s
            "service: {drain_grace: 2.0}\n"
            + self.store_config()
        )
        self.log_path = conf_dir / "sipguard.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sipguard", "run",
                 "--config", str(conf_dir / "sipguard.yaml")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=REPO_DIR,
            )
        proc = self.proc
        started: dict[str, Any] = {}

        def look() -> bool:
            for event in self.events():
                if event.get("event") == "service.started":
                    started.update(event)
                    return True
            return proc.poll() is not None

        if not wait_for(look, 30, 0.1) or not started:
            tail = self.log_path.read_text(errors="replace")[-800:]
            raise RuntimeError(f"sipguard did not log service.started: {tail}")
        self.info["event_loop"] = started.get("event_loop", "not reported")
        listen = started["listen"][0]  # "udp:127.0.0.1:41234"
        return int(listen.rsplit(":", 1)[1])

    def policy_text(self) -> str:
        return BENCH_POLICY.read_text()

    def store_config(self) -> str:
        return ""

    def events(self) -> list[dict[str, Any]]:
        events = []
        try:
            text = self.log_path.read_text(errors="replace") if hasattr(self, "log_path") else ""
        except OSError:
            return []
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events

    def stats(self) -> dict[str, Any] | None:
        """Ask for a service.stats line (SIGUSR1) and return it."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        seen = sum(1 for e in self.events() if e.get("event") == "service.stats")
        self.proc.send_signal(signal.SIGUSR1)
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found[:] = [e for e in self.events() if e.get("event") == "service.stats"]
            return len(found) > seen

        if wait_for(look, 2):
            return {k: v for k, v in found[-1].items()
                    if k not in ("event", "timestamp", "level")}
        return None

    def stop(self) -> int | None:
        code = super().stop()
        problems = [e for e in self.events()
                    if str(e.get("level", "")).lower() in ("error", "critical", "exception")]
        if problems:
            self.info.setdefault("errors_logged", 0)
            self.info["errors_logged"] += len(problems)
            self.info["first_error"] = problems[0]
        return code


# Limits that every call touches (extension, account and system windows, and a lease)
# but that never refuse one: the cost of counting, not of refusing.
BENCH_LIMITS = """
limits:
  rate:
    - {id: bench-extension, per: extension, class: any, max: 100000000, window: 10s, action: deny}
    - {id: bench-account, per: account, class: any, max: 100000000, window: 10s, action: deny}
    - {id: bench-system, per: system, class: any, max: 100000000, window: 10s, action: deny}
  concurrency:
    - {id: bench-live, per: account, class: any, max: 100000000, action: deny}
"""


class SipguardNoCdr(Sipguard):
    """sipguard with call records and the alerts built on them switched off: what
    recording (and watching the records) costs is the difference."""

    name = "sipguard-nocdr"

    def store_config(self) -> str:
        return "cdr: {enabled: false}\nalerts: {enabled: false}\n"


class SipguardLimits(Sipguard):
    """sipguard with limits counted in its in-memory store."""

    name = "sipguard-limits"

    def policy_text(self) -> str:
        return BENCH_POLICY.read_text() + BENCH_LIMITS


class SipguardRedis(SipguardLimits):
    """sipguard with the same limits counted in a redis-server on loopback."""

    name = "sipguard-redis"

    def __init__(self, workdir: Path, uas_port: int) -> None:
        super().__init__(workdir, uas_port)
        self.redis: subprocess.Popen[Any] | None = None
        self.redis_port = 0

    def available(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (apt-get install redis-server)"
        return super().available()

    def store_config(self) -> str:
        if self.redis is None or self.redis.poll() is not None:
            self.redis_port = free_tcp_port()
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(self.redis_port), "--bind", HOST, "--save", "",
                 "--appendonly", "no", "--logfile", str(self.workdir / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not wait_for(lambda: tcp_port_open(self.redis_port), 10, 0.05):
                raise RuntimeError("redis-server did not start")
        return (f'store: {{backend: redis, url: "redis://{HOST}:{self.redis_port}/0", '
                "timeout: 0.5}\n")

    def stop(self) -> int | None:
        code = super().stop()
        if self.redis is not None:
            stop_process(self.redis)
            self.redis = None
        return code


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def tcp_port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((HOST, port)) == 0


# --------------------------------------------------------------------------- the benchmark


def print_step(step: StepResult) -> None:
    verdict = "ok  " if step.passed else "FAIL"
    cpu = (f"  cpu {step.b2bua_cpu_us_per_call:7.1f} us/call ({step.b2bua_cpu_share:.0%})"
           if step.b2bua_cpu_us_per_call is not None else "")
    retrans = step.uac.get("Retransmissions", 0) + step.uas.get("Retransmissions", 0)
    drops = f"  rcvbuf drops {step.udp_rcvbuf_errors}" if step.udp_rcvbuf_errors else ""
    rss = (f"  RSS {step.b2bua_rss_kib_after / 1024:.0f} MiB"
           if step.b2bua_rss_kib_after else "")
    print(f"  {step.phase:7s} {step.rate:5d}/s x{step.calls:6d}  {verdict} "
          f"placed {step.achieved_rate:7.1f}/s  retrans {retrans:4d}{cpu}{rss}{drops}"
          + ("" if step.passed else "  <- " + "; ".join(step.reasons[:4])), flush=True)


def run_target(target: Target, args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"target": target.name}
    why_not = target.available()
    if why_not:
        print(f"\n== {target.name}: skipped: {why_not}", flush=True)
        out["skipped"] = why_not
        return out
    print(f"\n== {target.name}", flush=True)
    began = time.monotonic()
    deadline = began + plan["target_budget_s"]

    # 1. Latency at a fixed rate, then the rate ladder, on one process.
    port = target.start()
    try:
        warm = run_step(target=target.name, phase="warmup", target_port=port,
                        uas_port=target.uas_port, rate=50, calls=plan["warmup_calls"],
                        workdir=target.workdir, b2bua_pid=target.pid)
        if not warm.passed:
            print_step(warm)
            out["warmup_failed"] = asdict(warm)
        lat = run_step(target=target.name, phase="latency", target_port=port,
                       uas_port=target.uas_port,
                       rate=plan["latency_rate"], calls=plan["latency_calls"],
                       workdir=target.workdir, trace_msg=True, b2bua_pid=target.pid)
        print_step(lat)
        out["latency"] = asdict(lat)
        steps = []
        for rate in plan["rates"]:
            if time.monotonic() > deadline:
                out["ladder_cut"] = "time budget for this target used up"
                print(f"  {target.name}: time budget used up, ladder cut at {rate}/s")
                break
            calls = plan["calls_per_step"] or max(int(rate * plan["step_seconds"]), 100)
            step = run_step(target=target.name, phase="ladder", target_port=port,
                            uas_port=target.uas_port, rate=rate, calls=calls,
                            workdir=target.workdir,
                            b2bua_pid=target.pid, b2bua_stats=target.stats)
            print_step(step)
            steps.append(step)
            if not step.passed:
                break
            time.sleep(plan["pause_between_steps_s"])
        out["steps"] = [asdict(s) for s in steps]
        passed = [s.rate for s in steps if s.passed]
        out["max_rate"] = max(passed) if passed else 0
        out["ladder_top_passed"] = bool(steps) and steps[-1].passed and \
            steps[-1].rate == max(plan["rates"])
        out["first_failed_rate"] = next((s.rate for s in steps if not s.passed), None)
        passing_hwm = [s.b2bua_hwm_kib_after for s in steps
                       if s.passed and s.b2bua_hwm_kib_after]
        out["peak_rss_passing_kib"] = max(passing_hwm) if passing_hwm else None
        if target.is_b2bua:
            out["stats_after_ladder"] = target.stats()
            out["peak_rss_ladder_kib"] = target.hwm_kib()
    finally:
        out["exit_code"] = target.stop()

    # 2. Memory per live call, on a fresh process.
    if target.is_b2bua and plan["hold_calls"] and out["max_rate"]:
        out["memory"] = measure_memory(target, args, plan, out["max_rate"])
    out.update({f"info_{k}": v for k, v in target.info.items()})
    peaks = [v for v in (out.get("peak_rss_ladder_kib"), (out.get("memory") or {}).get(
        "peak_rss_kib")) if v]
    out["peak_rss_kib"] = max(peaks) if peaks else None
    out["duration_s"] = round(time.monotonic() - began, 1)
    return out


def measure_memory(target: Target, args: argparse.Namespace, plan: dict[str, Any],
                   max_rate: int) -> dict[str, Any]:
    n = plan["hold_calls"]
    rate = min(plan["hold_rate"], max_rate)
    ramp_s = n / rate
    hold_ms = int((ramp_s + plan["plateau_s"]) * 1000)
    mem: dict[str, Any] = {"calls": n, "rate": rate, "hold_ms": hold_ms}
    port = target.start()
    try:
        warm = run_step(target=target.name, phase="warmup", target_port=port,
                        uas_port=target.uas_port, rate=50, calls=plan["warmup_calls"],
                        workdir=target.workdir)
        mem["warmup_passed"] = warm.passed
        time.sleep(1.0)
        idle = []
        for _ in range(5):
            idle.append(target.rss_kib() or 0)
            time.sleep(0.1)
        mem["rss_idle_kib"] = min(idle)
        samples: list[tuple[float, int]] = []
        stats_at_plateau: dict[str, Any] = {}
        # Every call is up from ramp_s (+ its setup) until hold_ms: sample in between.
        window = (ramp_s + 0.75, ramp_s + plan["plateau_s"] - 0.5)

        def tick(elapsed: float) -> None:
            if window[0] <= elapsed <= window[1]:
                rss = target.rss_kib()
                if rss:
                    samples.append((elapsed, rss))
                if not stats_at_plateau and elapsed >= (window[0] + window[1]) / 2:
                    stats_at_plateau.update(target.stats() or {"stats": "not available"})

        step = run_step(target=target.name, phase="hold", target_port=port,
                        uas_port=target.uas_port, rate=rate, calls=n, hold_ms=hold_ms,
                        workdir=target.workdir,
                        b2bua_pid=target.pid, on_tick=tick)
        print_step(step)
        mem["step_passed"] = step.passed
        mem["step_reasons"] = step.reasons
        mem["stats_at_plateau"] = stats_at_plateau or None
        rss_values = [rss for _, rss in samples]
        if rss_values:
            plateau = sorted(rss_values)[len(rss_values) // 2]
            mem["rss_with_calls_kib"] = plateau
            mem["rss_samples"] = len(rss_values)
            mem["kib_per_call"] = round((plateau - mem["rss_idle_kib"]) / n, 2)
        mem["peak_rss_kib"] = target.hwm_kib()
    finally:
        mem["exit_code"] = target.stop()
    return mem


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "kernel": platform.release(),
        "sipp": sipp_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize(results: dict[str, Any]) -> None:
    m = results["machine"]
    print("\n" + "=" * 78)
    print(f"machine: {m['nproc']} CPU ({m['cpu']}), Python {m['python']}, {m['sipp']}")
    print(f"load average at start: {m['loadavg_at_start']}  (other work on the machine skews "
          "the figures)")
    by = {t["target"]: t for t in results["targets"]}
    sg = by.get("sipguard", {})
    if sg.get("info_event_loop"):
        print(f"sipguard event loop: {sg['info_event_loop']}")
    header = (f"{'target':15s} {'max rate/s':>10s} {'1st fail':>8s} {'100T p50':>9s} "
              f"{'100T p99':>9s} {'200 p50':>8s} {'200 p99':>8s} {'peak RSS':>9s} "
              f"{'KiB/call':>8s}")
    lat_rate = results["plan"]["latency_rate"]
    print(f"\n(latencies in ms at {lat_rate} calls/s, INVITE sent -> response received at "
          "the UAC)")
    print(header)
    print("-" * len(header))
    for name in ("direct", "sippy", "sipguard", "sipguard-nocdr", "sipguard-limits",
                 "sipguard-redis"):
        t = by.get(name)
        if t is None:
            continue
        if "skipped" in t:
            print(f"{name:15s} skipped: {t['skipped']}")
            continue
        lat = ((t.get("latency") or {}).get("latency_ms")) or {}
        tr, an = lat.get("trying", {}), lat.get("answer", {})
        mem = t.get("memory") or {}
        peak = t.get("peak_rss_kib")
        top = "+" if t.get("ladder_top_passed") else ""
        print(f"{name:15s} {str(t.get('max_rate', 0)) + top:>10s} "
              f"{t.get('first_failed_rate') or '-'!s:>8s} "
              f"{_fmt(tr.get('p50')):>9s} {_fmt(tr.get('p99')):>9s} "
              f"{_fmt(an.get('p50')):>8s} {_fmt(an.get('p99')):>8s} "
              f"{(str(round(peak / 1024, 1)) + ' MiB') if peak else '-':>9s} "
              f"{_fmt(mem.get('kib_per_call'), 2):>8s}")
    print("('+' = the top of the ladder passed: the real limit is higher; peak RSS = VmHWM "
          "of the B2BUA over all its runs)")
    for name in ("sippy", "sipguard"):
        t = by.get(name) or {}
        if t.get("peak_rss_kib"):
            parts = [f"{_mib(t.get('peak_rss_passing_kib'))} up to its highest passing step",
                     f"{_mib(t.get('peak_rss_ladder_kib'))} after the whole ladder"]
            if (t.get("memory") or {}).get("peak_rss_kib"):
                parts.append(f"{_mib(t['memory']['peak_rss_kib'])} in the hold run")
            print(f"{name} peak RSS: " + ", ".join(parts))
    for name in ("sippy", "sipguard"):
        mem = (by.get(name) or {}).get("memory")
        if mem and "rss_with_calls_kib" in mem:
            print(f"{name} memory: {mem['calls']} live calls (placed at {mem['rate']}/s): "
                  f"RSS {mem['rss_idle_kib']} KiB idle -> {mem['rss_with_calls_kib']} KiB "
                  f"= {mem['kib_per_call']} KiB/call"
                  + ("" if mem.get("step_passed") else "  (NOT every held call succeeded)")
                  + (f"; service.stats {mem['stats_at_plateau']}"
                     if mem.get("stats_at_plateau") else ""))
    r = results["ratios"]
    for key, other in (("sipguard_over_direct", "direct"), ("sipguard_over_sippy", "sippy")):
        note = ""
        if r[key] is not None:
            tops = [n for n in ("sipguard", other) if (by.get(n) or {}).get("ladder_top_passed")]
            if tops:
                note = f"  (not a true ratio: {' and '.join(tops)} passed the ladder's top)"
        print(f"sipguard/{other} max rate: {_fmt(r[key])}{note}")
    if r.get("redis_over_memory_limits") is not None:
        added = _added_latency(by.get("sipguard-redis"), by.get("sipguard-limits"))
        print(f"limits in Redis / limits in memory, max rate: {_fmt(r['redis_over_memory_limits'])}"
              f"; p99 INVITE->100 Trying added by the Redis round trips: {_fmt(added)} ms")
    if r.get("cdr_over_nocdr") is not None:
        print(f"call records on / off, max rate: {_fmt(r['cdr_over_nocdr'])}")
    print(f"results: {results.get('json_path')}")


def _added_latency(redis_target: dict[str, Any] | None,
                   memory_target: dict[str, Any] | None) -> float | None:
    def p99(target: dict[str, Any] | None) -> float | None:
        lat = ((target or {}).get("latency") or {}).get("latency_ms") or {}
        value = (lat.get("trying") or {}).get("p99")
        return float(value) if value is not None else None

    high, low = p99(redis_target), p99(memory_target)
    return None if high is None or low is None else high - low


def _mib(kib: int | None) -> str:
    return "-" if not kib else f"{kib / 1024:.1f} MiB"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small ladder and short steps (under about a minute)")
    parser.add_argument("--rates", help="comma-separated call rates per second for the ladder")
    parser.add_argument("--calls-per-step", type=int, default=0,
                        help="calls per ladder step (default: rate x step seconds)")
    parser.add_argument("--step-seconds", type=float, help="seconds of calls per ladder step")
    parser.add_argument("--targets", default="direct,sippy,sipguard",
                        help="comma-separated: direct, sippy, sipguard")
    parser.add_argument("--latency-rate", type=int, default=200)
    parser.add_argument("--hold-calls", type=int, help="live calls for the memory figure")
    parser.add_argument("--hold-rate", type=int, help="rate at which the held calls are placed")
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the SIPp/log work directory")
    args = parser.parse_args(argv)

    if not shutil.which("sipp"):
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    quick = args.quick
    rates = ([int(r) for r in args.rates.split(",") if r.strip()] if args.rates
             else list(QUICK_RATES if quick else FULL_RATES))
    plan = {
        "mode": "quick" if quick else "full",
        "rates": rates,
        "step_seconds": args.step_seconds or (1.0 if quick else 5.0),
        "calls_per_step": args.calls_per_step,
        "latency_rate": args.latency_rate,
        "latency_calls": args.latency_rate * (1 if quick else 5),
        "warmup_calls": 20 if quick else 50,
        "hold_calls": args.hold_calls if args.hold_calls is not None else (200 if quick else 2000),
        "hold_rate": args.hold_rate or (200 if quick else 400),
        "plateau_s": 2.5 if quick else 5.0,
        "pause_between_steps_s": 0.2 if quick else 1.0,
        "target_budget_s": 25 if quick else 200,
    }
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    classes = {"direct": Direct, "sippy": Sippy, "sipguard": Sipguard,
               "sipguard-nocdr": SipguardNoCdr, "sipguard-limits": SipguardLimits,
               "sipguard-redis": SipguardRedis}
    unknown = [n for n in names if n not in classes]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")

    workdir = Path(tempfile.mkdtemp(prefix="sipguard-bench-"))
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "plan": plan,
        "targets": [],
    }
    print(f"sipguard call-rate benchmark ({plan['mode']}): rates {rates}, "
          f"targets {names}; work dir {workdir}", flush=True)
    began = time.monotonic()
    try:
        for name in names:
            target = classes[name](workdir, free_udp_port())
            try:
                results["targets"].append(run_target(target, args, plan))
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                target.stop()
                print(f"  {name}: error: {error}", flush=True)
                results["targets"].append({"target": name, "error": str(error)})
    finally:
        results["duration_s"] = round(time.monotonic() - began, 1)
        by = {t["target"]: t for t in results["targets"]}
        results["ratios"] = {
            "sipguard_over_direct": ratio(by.get("sipguard", {}).get("max_rate"),
                                          by.get("direct", {}).get("max_rate")),
            "sipguard_over_sippy": ratio(by.get("sipguard", {}).get("max_rate"),
                                         by.get("sippy", {}).get("max_rate")),
            "redis_over_memory_limits": ratio(by.get("sipguard-redis", {}).get("max_rate"),
                                              by.get("sipguard-limits", {}).get("max_rate")),
            "cdr_over_nocdr": ratio(by.get("sipguard", {}).get("max_rate"),
                                    by.get("sipguard-nocdr", {}).get("max_rate")),
        }
        json_path = args.json or RESULTS_DIR / (
            "calls-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            + ("-quick" if quick else "") + ".json")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        results["json_path"] = str(json_path)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.keep:
            results["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summarize(results)
    print(f"total time: {results['duration_s']} s")
    # Failing steps are measurements, not errors; a target that could not be run at all, or
    # that failed even the first step of its ladder, is.
    broken = [t["target"] for t in results["targets"]
              if "error" in t or ("skipped" not in t and not t.get("max_rate"))]
    if broken:
        print(f"not measured: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
