#!/usr/bin/env python3
"""How fast the dashboard's pages load with many call records in SQLite.

Writes N records (default 1,000,000) spread over the last 30 days into a fresh SQLite
file (through the SqliteSink the service uses), starts sipguard on it with a token, and
times GET of every page and of the JSON API over loopback HTTP: the first request and
the median and worst of the next ones. The issue's target is under 300 ms a page.

    python bench/bench_dashboard.py [--records 1000000] [--repeat 5]

Loopback only; the sipguard process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_calls import free_udp_port
from sipguard_process import SipguardProcess

from sipguard.records.record import CallRecord
from sipguard.records.sqlite import SqliteSink

TOKEN = "bench-token-0123456789abcdefghij"
PATHS = ("/", "/widgets?since=24h", "/widgets?since=30d", "/alerts", "/locks",
         "/widgets?since=300h&until=7h",  # not on hour boundaries: the edges read records
         "/api/alerts/settings",
         "/explain?number=011442079460321", "/api/overview", "/api/widgets/country?since=7d",
         "/api/widgets/source?since=30d&format=csv")
REGIONS = (("US", "interstate", "+1212555"), ("US", "intrastate", "+1415555"),
           ("CA", "international", "+1416555"), ("GB", "international", "+44207946"),
           ("CU", "international", "+5372"))


async def fill(path: Path, count: int) -> None:
    sink = SqliteSink(path)
    await sink.open()
    now = time.time()
    rng = random.Random(7)
    batch: list[CallRecord] = []
    for number in range(count):
        region, where, prefix = REGIONS[rng.randrange(len(REGIONS))]
        started = now - rng.random() * 30 * 86400
        rejected = region == "CU"
        duration = 0.0 if rejected else rng.random() * 600
        batch.append(CallRecord(
            call_id=f"bench-{number}", started_at=started, account=f"acct-{number % 20}",
            source=f"10.0.{number % 50}.{number % 200}", dialled=f"{prefix}{number % 10000:04d}",
            decision="reject" if rejected else "forward", extension=str(2000 + number % 300),
            e164=f"{prefix}{number % 10000:04d}", region=region, jurisdiction=where,
            state="NY" if where != "international" else None,
            rule="irsf-cu" if rejected else "allow", status=403 if rejected else 200,
            answered_at=None if rejected else started + 2, ended_at=started + 2 + duration,
            duration=duration, trace=("bench: a record",)))
        if len(batch) == 10_000:
            await sink.write(batch)
            batch = []
    if batch:
        await sink.write(batch)
    await sink.close()


def get(base: str, path: str) -> float:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        assert response.status == 200, (path, response.status)
    return (time.perf_counter() - began) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sipguard-dashboard-") as name:
        directory = Path(name)
        began = time.monotonic()
        asyncio.run(fill(directory / "cdr.sqlite", args.records))
        print(f"{args.records} records written in {time.monotonic() - began:.0f} s", flush=True)
        (directory / "policy.yaml").write_text(
            "accounts: [{name: pbx, home_region: US}]\n"
            "destinations: {default: deny, rules: [{id: allow-us, region: US, action: allow}]}\n")
        guard = SipguardProcess(directory, {
            "listen": ["udp:127.0.0.1:0"], "peers": [{"name": "pbx",
                                                      "addresses": ["127.0.0.1/32"]}],
            "trunks": [{"name": "carrier", "uri": f"sip:127.0.0.1:{free_udp_port()}"}],
            "policy": "policy.yaml", "logging": {"level": "warning", "format": "json"},
            "ivr": {"enabled": False}, "service": {"control_socket": "control.sock"},
            "cdr": {"path": str(directory / "cdr.sqlite")},
            "admin": {"listen": "127.0.0.1:0", "token": TOKEN}})
        try:
            admin = guard.named("service.started")[0]["admin"]
            base = f"http://{admin}"
            results = {}
            print(f"{'page':45s} {'first ms':>9s} {'median ms':>10s} {'worst ms':>9s}")
            for path in PATHS:
                first = get(base, path)
                rest = [get(base, path) for _ in range(args.repeat)]
                results[path] = {"first_ms": round(first, 1),
                                 "median_ms": round(statistics.median(rest), 1),
                                 "worst_ms": round(max(rest), 1)}
                print(f"{path:45s} {first:9.1f} {statistics.median(rest):10.1f} "
                      f"{max(rest):9.1f}", flush=True)
            print(json.dumps({"records": args.records, "pages": results}))
        finally:
            guard.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
