#!/usr/bin/env python3
"""Stream benchmark: the same calls over UDP, TCP and TLS, and a connection flood over TCP.

Per transport, a fresh sipguard (IVR off, the basic policy) between a SIPp UAC (the PBX,
``uac_call_bye.xml``, no hold time) and a SIPp UAS (the trunk), both legs on that
transport. Debian's SIPp has no TLS, so for TLS both SIPps speak TCP through stunnel
(tests/e2e/tls_harness.py): the TLS is real between the tunnels and sipguard, and the
tunnels' own cost is in the latency (not in sipguard's CPU). Reported per transport:
calls successful/failed, INVITE -> 200 p50/p99 (from the UAC's -trace_msg log),
sipguard's CPU per call (from /proc, over the run) and its peak RSS.

Then a connection flood over TCP: a stranger (127.0.0.2) opens ``--connections``
connections as fast as it can and keeps them open, while the PBX places calls over
TCP: how many connections were accepted and refused (the per-source limit), sipguard's
RSS before and at the peak, and the PBX's calls.

    python bench/bench_streams.py [--quick] [--calls 2000] [--rate 200]
        [--connections 2000] [--json FILE]

Loopback only; every process it starts is stopped by its PID; every load is bounded in
count and time. Results: lines on stdout and JSON in bench/results/streams-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_DIR / "tests" / "e2e"))

from bench_calls import sipp_version, stop_process  # noqa: E402
from bench_edge import Monitor, Sipp, pbx_result  # noqa: E402
from harness import free_port  # noqa: E402
from sipguard_process import SipguardProcess, write_results  # noqa: E402
from tls_harness import (  # noqa: E402
    Certificates,
    Stunnel,
    client_tunnel,
    make_certificates,
    server_tunnel,
)

FIXTURES = REPO_DIR / "tests" / "sip_fixtures"
POLICY = REPO_DIR / "tests" / "policies" / "basic.yaml"
HOST = "127.0.0.1"
STRANGER = "127.0.0.2"
DIALLED = "12125551234"


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on tcp {port}")


class Leg:
    """What one transport run needs: the trunk, the tunnels and sipguard."""

    def __init__(self, directory: Path, transport: str, calls: int,
                 certificates: Certificates | None) -> None:
        self.directory = directory
        self.transport = transport
        self.tunnels: list[Stunnel] = []
        stream = transport != "udp"
        trunk_port = free_port()
        tls_port = free_port() if transport == "tls" else 0
        scenario = "uas_answer_tls.xml" if transport == "tls" else "uas_answer.xml"
        self.trunk = subprocess.Popen(
            ["sipp", "-sf", str(FIXTURES / scenario), "-i", HOST, "-p", str(trunk_port),
             "-mp", str(free_port()), "-cp", str(free_port()), "-m", str(max(calls, 1)),
             "-nostdin", "-trace_err", "-error_file", str(directory / "trunk.err"),
             *(["-t", "t1"] if stream else []),
             *(["-key", "tls_port", str(tls_port)] if tls_port else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            cwd=directory)
        if stream:
            wait_tcp(trunk_port)
        else:
            time.sleep(0.3)
        trunk_uri = f"sip:{HOST}:{trunk_port}"
        if transport == "tcp":
            trunk_uri += ";transport=tcp"
        config: dict[str, Any] = {}
        if transport == "tls":
            assert certificates is not None
            self.tunnels.append(server_tunnel(directory, "trunk", (HOST, tls_port),
                                              (HOST, trunk_port), certificates.server_chain,
                                              certificates.server_key))
            trunk_uri = f"sip:{HOST}:{tls_port};transport=tls"
            config["tls"] = {"certificate": str(certificates.server_chain),
                             "key": str(certificates.server_key), "ca": str(certificates.ca)}
        listen = [f"udp:{HOST}:0"] + ([f"{transport}:{HOST}:0"] if stream else [])
        shutil.copy(POLICY, directory / "policy.yaml")
        self.service = SipguardProcess(directory, {
            "listen": listen,
            "peers": [{"name": "asterisk-1", "addresses": [f"{HOST}/32"]}],
            "trunks": [{"name": "carrier", "uri": trunk_uri}],
            "policy": "policy.yaml",
            "ivr": {"enabled": False},
            "service": {"drain_grace": 1.0, "control_socket": str(directory / "control.sock")},
            "logging": {"level": "warning", "format": "json"},
            **config})
        started = self.service.named("service.started")[0]
        address = next(text for text in started["listen"] if text.startswith(transport + ":"))
        self.port = int(address.rpartition(":")[2])
        self.target = self.port
        if transport == "tls":
            assert certificates is not None
            self.target = free_port()
            self.tunnels.append(client_tunnel(directory, "pbx", (HOST, self.target),
                                              (HOST, self.port), certificates))

    def stop(self) -> None:
        self.service.stop()
        for tunnel in self.tunnels:
            tunnel.stop()
        stop_process(self.trunk)


def pbx(directory: Path, transport: str, target: int, calls: int, rate: float) -> Sipp:
    return Sipp(directory, "pbx", "uac_call_bye.xml", HOST,
                [f"{HOST}:{target}", "-s", DIALLED, "-m", str(calls), "-r", str(rate),
                 "-d", "0", "-l", str(max(calls, 10)),
                 *(["-t", "t1"] if transport != "udp" else []),
                 "-trace_msg", "-message_file", str(directory / "pbx_msg.log")],
                calls / rate + 30)


def run_calls(transport: str, calls: int, rate: float,
              certificates: Certificates | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"sipguard-bench-{transport}-") as tmp:
        directory = Path(tmp)
        leg = Leg(directory, transport, calls, certificates)
        try:
            monitor = Monitor(leg.service.pid)
            result = pbx(directory, transport, leg.target, calls, rate).finish()
            monitor.stop()
            outcome = pbx_result(directory, result, calls)
            memory = monitor.result(0)
            done = max(outcome["successful"], 1)
            outcome |= {"cpu_seconds": memory["cpu_seconds"],
                        "cpu_us_per_call": round(memory["cpu_seconds"] / done * 1e6),
                        "rss_peak_mib": memory["rss_peak_mib"]}
            return outcome
        finally:
            leg.stop()


def open_connections(port: int, count: int, deadline: float) -> dict[str, Any]:
    """Open up to ``count`` TCP connections from the stranger and keep them; count how many
    sipguard closed at once."""
    held: list[socket.socket] = []
    refused = errors = 0
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((STRANGER, 0))
                sock.settimeout(2.0)
                sock.connect((HOST, port))
            except OSError:
                errors += 1
                sock.close()
                continue
            held.append(sock)
        time.sleep(0.5)
        for sock in held:
            sock.settimeout(0.0)
            try:
                if sock.recv(1) == b"":
                    refused += 1
            except BlockingIOError:
                continue  # still open: accepted
            except OSError:
                refused += 1
        return {"attempted": len(held) + errors, "connect_errors": errors,
                "closed_at_once": refused, "kept_open": len(held) - refused}
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def run_connection_flood(calls: int, rate: float, connections: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sipguard-bench-connflood-") as tmp:
        directory = Path(tmp)
        leg = Leg(directory, "tcp", calls, None)
        try:
            monitor = Monitor(leg.service.pid)
            caller = pbx(directory, "tcp", leg.target, calls, rate)
            flood = open_connections(leg.port, connections, time.monotonic() + 60)
            result = caller.finish()
            monitor.stop()
            stats = leg.service.stats() or {}
            streams = stats.get("streams", {})
            tcp = next((value for key, value in streams.items() if key.startswith("tcp:")), {})
            memory = monitor.result(0)
            return {"connections": flood, "refused_by_sipguard": tcp.get("refused", {}),
                    "pbx": pbx_result(directory, result, calls),
                    "rss_before_mib": memory["rss_before_mib"],
                    "rss_peak_mib": memory["rss_peak_mib"], "cpu_seconds": memory["cpu_seconds"]}
        finally:
            leg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="a few calls, for a smoke test")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rate, args.connections = 20, 20.0, 50
    results: dict[str, Any] = {"sipp": sipp_version(), "calls": args.calls, "rate": args.rate,
                               "transports": {}}
    with tempfile.TemporaryDirectory(prefix="sipguard-bench-certs-") as certs:
        certificates = make_certificates(Path(certs))
        for transport in ("udp", "tcp", "tls"):
            outcome = run_calls(transport, args.calls, args.rate, certificates)
            results["transports"][transport] = outcome
            latency = outcome["invite_to_200_ms"]
            print(f"{transport}: {outcome['successful']}/{args.calls} calls at {args.rate:g}/s, "
                  f"failed {outcome['failed']}; INVITE->200 p50 {latency['p50']} ms, "
                  f"p99 {latency['p99']} ms; sipguard CPU {outcome['cpu_us_per_call']} us/call,"
                  f" RSS peak {outcome['rss_peak_mib']} MiB", flush=True)
    flood = run_connection_flood(args.calls, args.rate, args.connections)
    results["connection_flood"] = flood
    connections, pbx_calls = flood["connections"], flood["pbx"]
    print(f"connection flood: {connections['attempted']} connections from {STRANGER}: "
          f"{connections['kept_open']} kept open, {connections['closed_at_once']} closed at "
          f"once; refused by sipguard {flood['refused_by_sipguard']}; PBX calls "
          f"{pbx_calls['successful']}/{args.calls} (failed {pbx_calls['failed']}), "
          f"INVITE->200 p99 {pbx_calls['invite_to_200_ms']['p99']} ms; sipguard RSS "
          f"{flood['rss_before_mib']} -> {flood['rss_peak_mib']} MiB", flush=True)
    write_results("streams", results, args.json)
    ok = all(outcome["failed"] == 0 and outcome["successful"] == args.calls
             for outcome in results["transports"].values())
    return 0 if ok and pbx_calls["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
