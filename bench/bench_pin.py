#!/usr/bin/env python3
"""PIN challenge benchmark: SIPp PBX -> sipguard (+ its pjsua2 IVR workers) -> SIPp trunk.

Two measurements, each on a fresh sipguard with the PIN policy (every US number needs a PIN):

1. How many PIN challenges run at once. For each number of IVR workers, more callers than
   the IVRs can hold dial at once (SIPp, 50 calls/s) and stay in the IVR for ``--hold``
   seconds before keying their PIN. Reported: challenges served and refused (403 "PIN
   service unavailable", the fail-closed answer when every IVR is full), the most IVR
   sessions seen at once (SIGUSR1 stats, polled), and the RSS and CPU of the IVR workers.
2. What the bridging re-INVITE adds to call setup. ``--calls`` PIN calls at ``--rate``
   calls/s; from sipguard's log timestamps, per call: trunk answered -> bridged (the
   re-INVITE to the PBX and its 200, i.e. the setup time a PIN call has beyond a plain one),
   and from SIPp's response-time trace: the PIN's last key -> the PBX's media on the trunk.
   The cost of one scrypt PIN check is timed on its own.

    python bench/bench_pin.py [--quick] [--workers 1,2,4] [--hold 3] [--calls 200] [--rate 5]

Loopback only (127.0.0.1); every process it starts is stopped by its PID; every run is
bounded in calls and time. Results: a summary on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(REPO_DIR))
sys.path.insert(0, str(BENCH_DIR))

from bench_calls import free_udp_port, percentile, stop_process  # noqa: E402
from sipguard_process import SipguardProcess, write_results  # noqa: E402

from sipguard.pin.pins import hash_pin, save_pin_file, verify_pin  # noqa: E402

FIXTURES = REPO_DIR / "tests" / "sip_fixtures"
PIN_POLICY = REPO_DIR / "tests" / "policies" / "pin.yaml"
HOST = "127.0.0.1"
DIALLED = "12125551234"
PIN = "246810"


class Service(SipguardProcess):
    """sipguard with the PIN policy, a PIN for extension 2001 and ``workers`` IVR workers."""

    def __init__(self, directory: Path, workers: int, trunk_port: int) -> None:
        save_pin_file(directory / "pins.yaml", {"2001": hash_pin(PIN)})
        shutil.copy(PIN_POLICY, directory / "policy.yaml")
        self.port = free_udp_port()
        super().__init__(directory, {
            "listen": [f"udp:{HOST}:{self.port}"],
            "peers": [{"name": "asterisk-1", "addresses": [f"{HOST}/32"]}],
            "trunks": [{"name": "carrier", "uri": f"sip:{HOST}:{trunk_port}"}],
            "policy": "policy.yaml",
            "pin": {"file": "pins.yaml"},
            "ivr": {"workers": workers, "overall_timeout": 60.0, "digit_timeout": 10.0},
            "service": {"drain_grace": 1.0, "control_socket": str(directory / "control.sock")},
            "logging": {"level": "info", "format": "json"},
        })

    def worker_pids(self) -> list[int]:
        result = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                                capture_output=True, text=True, check=False)
        return [int(pid) for pid in result.stdout.split()]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scenario_with_hold(directory: Path, hold: float) -> Path:
    """uac_pin.xml with the time spent in the IVR before the PIN set to ``hold``."""
    text = (FIXTURES / "uac_pin.xml").read_text()
    marker = '<pause milliseconds="300"/>'
    assert text.count(marker) == 1
    path = directory / "uac_pin_hold.xml"
    path.write_text(text.replace(marker, f'<pause milliseconds="{int(hold * 1000)}"/>'))
    return path


def start_trunk(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_udp_port()
    process = subprocess.Popen(
        # In the foreground (no -bg, which forks away from the PID we stop).
        ["sipp", "-sf", str(FIXTURES / "uas_answer.xml"), "-i", HOST, "-p", str(port),
         "-mp", str(free_udp_port()), "-cp", str(free_udp_port()),
         "-nostdin", "-trace_err", "-error_file", str(directory / "uas.err")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=directory)
    time.sleep(0.3)
    return process, port


def run_callers(directory: Path, scenario: Path, target: int, calls: int, rate: float,
                hold_after: float, timeout: float) -> dict[str, Any]:
    digits = [arg for index, digit in enumerate(PIN, 1) for arg in ("-set", f"d{index}", digit)]
    stats = directory / f"uac-{calls}-{rate}.csv"
    command = ["sipp", "-sf", str(scenario), f"{HOST}:{target}", "-i", HOST,
               "-p", str(free_udp_port()), "-s", DIALLED, "-m", str(calls), "-r", str(rate),
               "-d", str(int(hold_after * 1000)), "-l", str(calls), "-nostdin",
               "-timeout", str(int(timeout)), "-timeout_error",
               "-trace_stat", "-stf", str(stats), "-trace_rtt", "-rtt_freq", "1",
               "-trace_err", "-error_file", str(directory / "uac.err"), *digits]
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=directory)
    try:
        process.wait(timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        stop_process(process)
    rows = list(csv.DictReader(stats.open(), delimiter=";")) if stats.exists() else []
    last = rows[-1] if rows else {}
    rtts: list[float] = []
    for path in directory.glob("*_rtt.csv"):
        with path.open() as handle:
            for row in csv.reader(handle, delimiter=";"):
                if len(row) >= 3 and row[2].strip() == "pin":
                    rtts.append(float(row[1]))
        path.unlink()
    return {"successful": int(last.get("SuccessfulCall(C)", "0") or 0),
            "failed": int(last.get("FailedCall(C)", "0") or 0),
            "elapsed": round(time.monotonic() - began, 2), "pin_rtd_ms": rtts}


def stamp(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def capacity_run(workers: int, hold: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sipguard-bench-pin-") as tmp:
        directory = Path(tmp)
        trunk, trunk_port = start_trunk(directory)
        service = Service(directory, workers, trunk_port)
        try:
            offered = 4 * workers + 4
            scenario = scenario_with_hold(directory, hold)
            workers_before = {pid: cpu_seconds(pid) for pid in service.worker_pids()}
            idle_rss = [rss_kib(pid) for pid in workers_before]
            result: dict[str, Any] = {}
            peak_sessions = 0
            peak_rss: list[int] = idle_rss
            runner = threading.Thread(target=lambda: result.update(run_callers(
                directory, scenario, service.port, offered, 50, 0.5, hold + 30)))
            runner.start()
            began = time.monotonic()
            while runner.is_alive() and time.monotonic() - began < hold + 40:
                stats = service.stats()
                if stats is not None and stats.get("ivr_sessions", 0) > peak_sessions:
                    peak_sessions = int(stats["ivr_sessions"])
                    peak_rss = [rss_kib(pid) for pid in workers_before]
                time.sleep(0.25)
            runner.join(timeout=60)
            cpu = sum(cpu_seconds(pid) - before for pid, before in workers_before.items())
            refused = [event for event in service.named("call.rejected")
                       if event.get("reason") == "PIN service unavailable"]
            return {
                "workers": workers, "offered": offered, "hold_seconds": hold,
                "bridged": len(service.named("call.bridged")), "refused_403": len(refused),
                "sipp_successful": result.get("successful"),
                "peak_ivr_sessions": peak_sessions,
                "worker_rss_idle_mib": [round(kib / 1024, 1) for kib in idle_rss],
                "worker_rss_peak_mib": [round(kib / 1024, 1) for kib in peak_rss],
                "worker_cpu_seconds": round(cpu, 2),
                "elapsed": result.get("elapsed"),
            }
        finally:
            service.stop()
            stop_process(trunk)


def setup_run(calls: int, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sipguard-bench-pin-") as tmp:
        directory = Path(tmp)
        trunk, trunk_port = start_trunk(directory)
        service = Service(directory, 2, trunk_port)
        try:
            result = run_callers(directory, FIXTURES / "uac_pin.xml", service.port, calls,
                                 rate, 0.2, calls / rate + 60)
            service.wait("call.ended", 10.0, calls)
            by_call: dict[str, dict[str, float]] = {}
            for name in ("call.answered", "call.bridged", "call.challenged",
                         "call.pin_accepted"):
                for event in service.named(name):
                    by_call.setdefault(event["call_id"], {})[name] = stamp(event)
            bridge_ms = [1000 * (times["call.bridged"] - times["call.answered"])
                         for times in by_call.values()
                         if "call.bridged" in times and "call.answered" in times]
            rtd = result["pin_rtd_ms"]
            return {
                "calls": calls, "rate": rate, "successful": result["successful"],
                "failed": result["failed"],
                "reinvite_step_ms": {"p50": _r(percentile(bridge_ms, 50)),
                                     "p99": _r(percentile(bridge_ms, 99)),
                                     "max": _r(max(bridge_ms, default=None))},
                "pin_key_to_trunk_media_ms": {"p50": _r(percentile(rtd, 50)),
                                              "p99": _r(percentile(rtd, 99))},
            }
        finally:
            service.stop()
            stop_process(trunk)


def scrypt_cost(rounds: int = 10) -> dict[str, float]:
    stored = hash_pin(PIN)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        assert verify_pin(PIN, stored)
        times.append(1000 * (time.perf_counter() - began))
    return {"p50_ms": round(percentile(times, 50) or 0, 1),
            "max_ms": round(max(times), 1)}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 worker, 20 calls")
    parser.add_argument("--workers", default="1,2,4", help="IVR worker counts to try")
    parser.add_argument("--hold", type=float, default=3.0,
                        help="seconds each caller stays in the IVR before its PIN")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    worker_counts = [1] if args.quick else [int(n) for n in args.workers.split(",")]
    calls = 20 if args.quick else args.calls
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"machine": {"python": platform.python_version(),
                                           "cpus": os.cpu_count()},
                               "scrypt_check": scrypt_cost()}
    print(f"scrypt PIN check: p50 {results['scrypt_check']['p50_ms']} ms")
    results["capacity"] = []
    for workers in worker_counts:
        run = capacity_run(workers, args.hold)
        results["capacity"].append(run)
        print(f"workers={workers}: offered {run['offered']} at once, bridged {run['bridged']}, "
              f"refused 403 {run['refused_403']}, peak IVR sessions {run['peak_ivr_sessions']}, "
              f"worker RSS idle {run['worker_rss_idle_mib']} MiB, "
              f"peak {run['worker_rss_peak_mib']} MiB, worker CPU {run['worker_cpu_seconds']} s")
    setup = setup_run(calls, args.rate)
    results["setup"] = setup
    print(f"setup: {setup['successful']}/{calls} PIN calls at {args.rate}/s; re-INVITE step "
          f"(trunk answer -> bridged) p50 {setup['reinvite_step_ms']['p50']} ms, "
          f"p99 {setup['reinvite_step_ms']['p99']} ms; PIN '#' -> media on the trunk "
          f"p50 {setup['pin_key_to_trunk_media_ms']['p50']} ms, "
          f"p99 {setup['pin_key_to_trunk_media_ms']['p99']} ms")
    write_results("pin", results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
