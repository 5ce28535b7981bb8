#!/usr/bin/env python3
"""Edge benchmark: sipguard under a flood from a stranger while the real PBX places calls.

Per run, a fresh sipguard (IVR off, the basic policy, peer 127.0.0.5/32, edge settings at
their defaults) with a fresh SIPp trunk (``uas_answer.xml`` on 127.0.0.5). The PBX is SIPp
``uac_call_bye.xml`` from 127.0.0.5; the flood is SIPp ``uac_flood.xml`` from 127.0.0.2 (a
stranger) asked for 20,000 INVITEs/s, bounded in count and time. Three runs:

a. the PBX's calls alone (baseline);
b. the PBX's calls during the flood;
c. the flood alone, for sipguard's memory and CPU.

Reported: the flood's achieved INVITE rate (SIPp's final counts: INVITEs sent / elapsed),
the PBX's calls successful/failed and INVITE -> 200 latency p50/p99 (from SIPp's
-trace_msg log) in (a) and (b), sipguard's RSS before/peak/after the flood (VmRSS polled
every 0.2 s) and CPU seconds during it, its SIGUSR1 ``service.stats`` edge counters
(dropped before parsing by reason, tracked sources, bans) and whether the flood source
ended up banned (``sipguard bans list --json``).

    python bench/bench_edge.py [--quick] [--calls 300] [--rate 50] [--flood 200000]
        [--flood-rate 20000] [--flood-timeout 60] [--json FILE]

Loopback only (127.0.0.x); every process it starts is stopped by its PID (SIPp in the
foreground); every load is bounded in count and time. Results: lines on stdout and JSON in
bench/results/edge-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from bench_calls import (  # noqa: E402
    counter,
    latency_from_messages,
    proc_cpu_seconds,
    proc_status_kib,
    read_stat_csv,
    sipp_version,
    stat_time,
    stop_process,
)
from sipguard_process import SipguardProcess, write_results  # noqa: E402

FIXTURES = REPO_DIR / "tests" / "sip_fixtures"
POLICY = REPO_DIR / "tests" / "policies" / "basic.yaml"
SIPGUARD_HOST = "127.0.0.1"
PBX_HOST = "127.0.0.5"  # the peer, and the trunk's address
STRANGER = "127.0.0.2"  # the flood's source
DIALLED = "12125551234"  # allowed by the basic policy
FLOOD_RATE = 20000
POLL_SECONDS = 0.2


def free_udp_port(host: str) -> int:
    """A UDP port free on ``host`` right now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Service(SipguardProcess):
    """sipguard (IVR off) taking calls from the PBX at PBX_HOST only."""

    def __init__(self, directory: Path, trunk_port: int) -> None:
        shutil.copy(POLICY, directory / "policy.yaml")
        self.port = free_udp_port(SIPGUARD_HOST)
        super().__init__(directory, {
            "listen": [f"udp:{SIPGUARD_HOST}:{self.port}"],
            "peers": [{"name": "asterisk-1", "addresses": [f"{PBX_HOST}/32"]}],
            "trunks": [{"name": "carrier", "uri": f"sip:{PBX_HOST}:{trunk_port}"}],
            "policy": "policy.yaml",
            "ivr": {"enabled": False},
            "service": {"drain_grace": 1.0,
                        "control_socket": str(directory / "control.sock")},
            "logging": {"level": "info", "format": "json"},
        })

    def bans(self) -> list[dict[str, Any]] | None:
        listed = subprocess.run(
            [sys.executable, "-m", "sipguard", "bans", "list", "--json",
             "--config", str(self.config_path)],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            check=False, cwd=self.directory)
        if listed.returncode != 0:
            return None
        return list(json.loads(listed.stdout))

class Sipp:
    """A SIPp run in the foreground (its own PID), bounded by -m, -timeout and a kill."""

    def __init__(self, directory: Path, name: str, scenario: str, host: str,
                 args: list[str], timeout: float) -> None:
        self.directory = directory
        self.name = name
        self.timeout = timeout
        self.stat_file = directory / f"{name}_stat.csv"
        self.message_file = directory / f"{name}_msg.log"
        command = ["sipp", "-sf", str(FIXTURES / scenario), "-i", host,
                   "-p", str(free_udp_port(host)), "-mp", str(free_udp_port(host)),
                   "-cp", str(free_udp_port(host)), "-nostdin",
                   "-timeout", str(int(timeout)), "-trace_stat", "-stf", str(self.stat_file),
                   "-fd", "1", "-trace_err", "-error_file", str(directory / f"{name}.err"),
                   *args]
        self.screen = (directory / f"{name}.screen").open("wb")
        self.began = time.monotonic()
        self.process = subprocess.Popen(command, stdout=self.screen, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=directory)

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self) -> dict[str, Any]:
        remaining = self.timeout + 10 - (time.monotonic() - self.began)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(1.0, remaining))
        stop_process(self.process)
        self.screen.close()
        rows = read_stat_csv(self.stat_file)
        last = rows[-1] if rows else {}
        return {"returncode": self.process.returncode,
                "wall_seconds": round(time.monotonic() - self.began, 2),
                "elapsed_seconds": elapsed_seconds(last),
                "outgoing": counter(last, "OutgoingCall(C)"),
                "successful": counter(last, "SuccessfulCall(C)"),
                "failed": counter(last, "FailedCall(C)"),
                "retransmissions": counter(last, "Retransmissions(C)")}


def elapsed_seconds(row: dict[str, str]) -> float | None:
    """CurrentTime - StartTime of SIPp's final -trace_stat row, in seconds (its
    ElapsedTime(C) column has whole seconds only)."""
    current = stat_time(row)
    try:
        start = float(row.get("StartTime", "").split()[-1])
    except (ValueError, IndexError):
        return None
    return None if current is None else round(current - start, 3)


def start_trunk(directory: Path, calls: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_udp_port(PBX_HOST)
    process = subprocess.Popen(
        # In the foreground (no -bg, which forks away from the PID we stop); -m bounds it.
        ["sipp", "-sf", str(FIXTURES / "uas_answer.xml"), "-i", PBX_HOST, "-p", str(port),
         "-mp", str(free_udp_port(PBX_HOST)), "-cp", str(free_udp_port(PBX_HOST)),
         "-m", str(max(calls, 1)), "-nostdin", "-trace_err", "-trace_stat",
         "-stf", str(directory / "trunk_stat.csv"), "-fd", "1",
         "-error_file", str(directory / "trunk.err")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        cwd=directory)
    time.sleep(0.3)
    return process, port


def start_pbx(directory: Path, target: int, calls: int, rate: float) -> Sipp:
    timeout = calls / rate + 30
    return Sipp(directory, "pbx", "uac_call_bye.xml", PBX_HOST,
                [f"{SIPGUARD_HOST}:{target}", "-s", DIALLED, "-m", str(calls),
                 "-r", str(rate), "-d", "0", "-l", str(max(calls, 10)),
                 "-trace_msg", "-message_file", str(directory / "pbx_msg.log")], timeout)


def start_flood(directory: Path, target: int, messages: int, rate: int,
                timeout: float) -> Sipp:
    return Sipp(directory, "flood", "uac_flood.xml", STRANGER,
                [f"{SIPGUARD_HOST}:{target}", "-s", DIALLED, "-m", str(messages),
                 "-r", str(rate), "-rp", "1000"], timeout)


class Monitor:
    """sipguard's VmRSS every 0.2 s while something runs, and its CPU time over it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_kib = proc_status_kib(pid, "VmRSS") or 0
        self.peak_kib = self.before_kib
        self.samples = 0
        self.cpu_before = proc_cpu_seconds(pid) or 0.0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.samples += 1
                self.peak_kib = max(self.peak_kib, rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.cpu_seconds = (proc_cpu_seconds(self.pid) or 0.0) - self.cpu_before

    def result(self, after_kib: int) -> dict[str, Any]:
        return {"rss_before_mib": mib(self.before_kib), "rss_peak_mib": mib(self.peak_kib),
                "rss_after_mib": mib(after_kib), "rss_samples": self.samples,
                "cpu_seconds": round(self.cpu_seconds, 2)}


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def pbx_result(directory: Path, pbx: dict[str, Any], calls: int) -> dict[str, Any]:
    latency = latency_from_messages(directory / "pbx_msg.log").get("answer", {})
    return {"calls": calls, "successful": pbx["successful"], "failed": pbx["failed"],
            "retransmissions": pbx["retransmissions"],
            "invite_to_200_ms": {"p50": latency.get("p50"), "p99": latency.get("p99"),
                                 "max": latency.get("max"),
                                 "samples": latency.get("samples", 0)}}


def flood_result(flood: dict[str, Any], rate: int) -> dict[str, Any]:
    elapsed = flood["elapsed_seconds"] or flood["wall_seconds"]
    # Each flood "call" is one INVITE sent once (never retransmitted).
    return {"invites_sent": flood["outgoing"], "elapsed_seconds": elapsed,
            "invite_rate": round(flood["outgoing"] / elapsed) if elapsed else None,
            "asked_rate": rate}


def edge_result(service: Service) -> dict[str, Any]:
    stats = service.stats() or {}
    dropped = dict(stats.get("dropped_before_parsing", {}))
    bans = service.bans()
    ban = next((entry for entry in bans or [] if entry.get("address") == STRANGER), None)
    return {"dropped_before_parsing": dropped,
            "dropped_total": sum(int(value) for value in dropped.values()),
            "tracked_sources": stats.get("tracked_sources"), "bans": stats.get("bans"),
            "calls_live": stats.get("calls"),
            "flood_source_banned": ban is not None,
            "flood_source_ban_reason": ban.get("reason") if ban else None}


def run(kind: str, calls: int, rate: float, flood_messages: int, flood_rate: int,
        flood_timeout: float) -> dict[str, Any]:
    """One run on a fresh sipguard and trunk: 'calls', 'calls+flood' or 'flood'."""
    with_calls, with_flood = kind != "flood", kind != "calls"
    with tempfile.TemporaryDirectory(prefix="sipguard-bench-edge-") as tmp:
        directory = Path(tmp)
        trunk, trunk_port = start_trunk(directory, calls if with_calls else 1)
        service: Service | None = None
        try:
            service = Service(directory, trunk_port)
            time.sleep(0.5)
            result: dict[str, Any] = {"run": kind}
            monitor = Monitor(service.pid)
            flood = start_flood(directory, service.port, flood_messages, flood_rate,
                                flood_timeout) if with_flood else None
            if flood is not None and with_calls:
                time.sleep(0.5)  # the flood under way before the first PBX call
            if with_calls:
                pbx = start_pbx(directory, service.port, calls, rate).finish()
                result["pbx"] = pbx_result(directory, pbx, calls)
                result["flood_outlasted_pbx"] = flood.running() if flood else None
            if flood is not None:
                result["flood"] = flood_result(flood.finish(), flood_rate)
            monitor.stop()
            time.sleep(0.5)
            result["sipguard"] = monitor.result(proc_status_kib(service.pid, "VmRSS") or 0)
            result["edge"] = edge_result(service)
        finally:
            if service is not None:
                service.stop()
            stop_process(trunk)
        rows = read_stat_csv(directory / "trunk_stat.csv")
        # INVITEs that reached the trunk (none of the flood's should).
        result["trunk_calls"] = counter(rows[-1], "IncomingCall(C)") if rows else None
        return result


def print_run(label: str, result: dict[str, Any]) -> None:
    if "flood" in result:
        flood = result["flood"]
        print(f"{label}: flood {flood['invites_sent']} INVITEs in {flood['elapsed_seconds']} s "
              f"= {flood['invite_rate']} INVITE/s (asked {flood['asked_rate']}/s)")
    if "pbx" in result:
        pbx = result["pbx"]
        latency = pbx["invite_to_200_ms"]
        extra = ("" if result.get("flood_outlasted_pbx") is None
                 else f", flood still running at the last call: {result['flood_outlasted_pbx']}")
        print(f"{label}: PBX calls {pbx['successful']}/{pbx['calls']} successful, "
              f"{pbx['failed']} failed; INVITE->200 p50 {latency['p50']} ms, "
              f"p99 {latency['p99']} ms, max {latency['max']} ms; calls at the trunk "
              f"{result['trunk_calls']}{extra}")
    guard = result["sipguard"]
    print(f"{label}: sipguard RSS before {guard['rss_before_mib']} MiB, peak "
          f"{guard['rss_peak_mib']} MiB, after {guard['rss_after_mib']} MiB; CPU "
          f"{guard['cpu_seconds']} s")
    if "flood" in result:
        edge = result["edge"]
        print(f"{label}: dropped before parsing {edge['dropped_total']} "
              f"{edge['dropped_before_parsing']}; tracked sources {edge['tracked_sources']}, "
              f"bans {edge['bans']}; flood source banned: {edge['flood_source_banned']} "
              f"({edge['flood_source_ban_reason']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="60 PBX calls, a flood of 140,000 INVITEs (7 s at 20,000/s: "
                             "a source's failures count once a second, 5 ban it)")
    parser.add_argument("--calls", type=int, default=300, help="PBX calls per run")
    parser.add_argument("--rate", type=float, default=50.0, help="PBX calls a second")
    parser.add_argument("--flood", type=int, default=200000,
                        help="INVITEs the flood sends at most (-m)")
    parser.add_argument("--flood-rate", type=int, default=FLOOD_RATE,
                        help="INVITEs a second the flood asks SIPp for (-r, -rp 1000)")
    parser.add_argument("--flood-timeout", type=float, default=60.0,
                        help="seconds the flood may last at most (-timeout)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.flood, args.flood_timeout = 60, 140000, 30.0
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg()[0], "sipp": sipp_version()},
        "settings": {"calls": args.calls, "rate": args.rate, "flood_messages": args.flood,
                     "flood_rate_asked": args.flood_rate, "flood_timeout": args.flood_timeout,
                     "quick": args.quick, "edge": "defaults"},
    }
    print(f"{args.calls} PBX calls at {args.rate}/s from {PBX_HOST}; flood of at most "
          f"{args.flood} INVITEs from {STRANGER}; load average {results['machine']['loadavg']}")
    runs = {"baseline": "calls", "during_flood": "calls+flood", "flood_alone": "flood"}
    labels = {"baseline": "(a) calls alone", "during_flood": "(b) calls during the flood",
              "flood_alone": "(c) flood alone"}
    for name, kind in runs.items():
        results[name] = run(kind, args.calls, args.rate, args.flood, args.flood_rate,
                            args.flood_timeout)
        print_run(labels[name], results[name])
    write_results("edge-quick" if args.quick else "edge", results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
