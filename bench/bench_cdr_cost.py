#!/usr/bin/env python3
"""What recording calls costs in call capacity: sipguard with records on against off.

"On" is sipguard as it ships (records, and the alerts that watch them); "off" has both
switched off (``cdr: {enabled: false}``, ``alerts: {enabled: false}``).

A rate ladder moves in steps of 20% or more and this machine's speed drifts from one
minute to the next, so the two ladders of ``bench_calls.py`` cannot tell a 10% cost from
noise. This benchmark measures what capacity comes from instead, the sipguard process's
CPU time per call (all its threads: the spool and database threads included), at one
fixed rate, on fresh processes taken in turn (on, off, on, off, ...) so that drift
touches both alike. Capacity is inversely proportional to CPU per call, so

    capacity with records on / capacity with records off = CPU per call off / CPU per call on

and the requirement (recording lowers calls per second by no more than 10%) is a ratio of
0.9 or more. Each run is bounded in calls; every process is stopped by its PID.

    python bench/bench_cdr_cost.py [--rounds 5] [--rate 400] [--calls 4000] [--alerts on|off]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_calls import (
    Sipguard,
    SipguardNoCdr,
    free_udp_port,
    machine_info,
    print_step,
    proc_cpu_seconds,
    run_step,
)


class SipguardRecordsOnly(Sipguard):
    """sipguard with call records and without the alerts built on them."""

    name = "sipguard-records-only"

    def store_config(self) -> str:
        return "alerts: {enabled: false}\n"


def _children_cpu(pid: int) -> float:
    """CPU seconds of a process's children so far (the records' writer process)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return sum(proc_cpu_seconds(int(child)) or 0.0 for child in children)


def one_run(target_class: type[Sipguard], workdir: Path, rate: int,
            calls: int, children: list[float] | None = None) -> float | None:
    """CPU per call (µs) of one fresh sipguard process over ``calls`` calls at ``rate``
    (its child processes' CPU per call is appended to ``children``)."""
    target = target_class(workdir, free_udp_port())
    port = target.start()
    try:
        run_step(target=target.name, phase="warmup", target_port=port,
                 uas_port=target.uas_port, rate=50, calls=100, workdir=workdir,
                 b2bua_pid=target.pid)
        before = _children_cpu(target.pid)
        step = run_step(target=target.name, phase="measure", target_port=port,
                        uas_port=target.uas_port, rate=rate, calls=calls, workdir=workdir,
                        b2bua_pid=target.pid)
        time.sleep(1.5)  # the last batch stored
        child_us = (_children_cpu(target.pid) - before) * 1e6 / calls
        print_step(step)
        print(f"             child processes (IVR workers; the records' writer when on): "
              f"{child_us:.0f} us/call", flush=True)
        if children is not None and step.passed:
            children.append(child_us)
        return step.b2bua_cpu_us_per_call if step.passed else None
    finally:
        target.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--rate", type=int, default=400, help="calls per second (default 400)")
    parser.add_argument("--calls", type=int, default=4000, help="calls per run (default 4000)")
    parser.add_argument("--alerts", choices=("on", "off"), default="on",
                        help="on (default): records and the alerts on them against neither; "
                             "off: records alone against none (alerts off in both)")
    args = parser.parse_args(argv)
    recording: type[Sipguard] = Sipguard if args.alerts == "on" else SipguardRecordsOnly
    machine = machine_info()
    print(f"records on/off (alerts {args.alerts} with them), {args.rounds} rounds of {args.calls} calls at {args.rate}/s; "
          f"load average at start {machine.get('loadavg_at_start')}", flush=True)
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    children: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="sipguard-cdr-cost-") as directory:
        for number in range(args.rounds):
            for label, target_class in (("on", recording), ("off", SipguardNoCdr)):
                workdir = Path(directory) / f"{label}-{number}"
                workdir.mkdir()
                value = one_run(target_class, workdir, args.rate, args.calls,
                                children[label])
                if value is not None:
                    cpu[label].append(value)
    if not cpu["on"] or not cpu["off"]:
        print("not measured: a run failed (see the lines above)")
        return 1
    on, off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    print(f"\nCPU per call, median of {len(cpu['on'])} / {len(cpu['off'])} runs: "
          f"records on {on:.0f} µs, records off {off:.0f} µs")
    print(f"  on:  {', '.join(f'{value:.0f}' for value in cpu['on'])}")
    print(f"  off: {', '.join(f'{value:.0f}' for value in cpu['off'])}")
    print(f"capacity with records on / off: {off / on:.3f} (the requirement: 0.9 or more)")
    if children["on"] and children["off"]:
        print(f"child processes, on other cores: on {statistics.median(children['on']):.0f}"
              f" us/call, off {statistics.median(children['off']):.0f} (the difference is "
              "the records' writer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
