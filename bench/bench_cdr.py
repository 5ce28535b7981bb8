#!/usr/bin/env python3
"""CDR benchmark: call records written per second, to SQLite and to PostgreSQL.

Two ways for each database, with ``--records`` synthetic records (fields filled as a
forwarded international call fills them, trace included):

- **sink**: ``CdrSink.write`` straight, in batches of ``--batch`` (what the database does);
- **recorder**: ``Recorder.record`` for every record, as the service calls it, then wait
  until all are stored (spool write + fsync per batch, then the database): the rate the
  whole path sustains, and how long ``record()`` itself takes (p50/p99 µs: what a call
  pays on the event loop).

PostgreSQL is a server this script starts itself (Debian's postgresql, on a free
loopback port, in a temporary directory; ``tests/postgres_server.py``), stopped by its
PID at the end. What recording costs the calls themselves is measured by
``bench/bench_calls.py --targets sipguard,sipguard-nocdr`` (the same ladder with call
records on and off).

    python bench/bench_cdr.py [--quick] [--records 50000] [--batch 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_DIR / "tests"))

import asyncpg  # noqa: E402
from bench_calls import percentile  # noqa: E402
from postgres_server import PostgresServer, postgres_bin  # noqa: E402
from sipguard_process import write_results  # noqa: E402

from sipguard.logs import silent_logger  # noqa: E402
from sipguard.records import CallRecord, CdrSink, Recorder, Spool  # noqa: E402
from sipguard.records.postgres import PostgresSink  # noqa: E402
from sipguard.records.sqlite import SqliteSink  # noqa: E402


def records(count: int) -> list[CallRecord]:
    now = time.time()
    trace = ("emergency: not an emergency number", "number: +442079460321: region GB, fixed_line",
             "allow-gb: region GB matches (most specific rule)",
             "class:international: international is allowed for this extension",
             "business-hours: Thu 14:55 UTC: inside business hours",
             "risk-score: score 15 (never called before +15) below 60")
    return [CallRecord(call_id=f"bench-{index}@127.0.0.1", started_at=now + index * 0.001,
                       account="acme", source="127.0.0.1", dialled="011442079460321",
                       decision="forward", answered_at=now + index * 0.001 + 3,
                       ended_at=now + index * 0.001 + 63, extension=str(2000 + index % 50),
                       caller="2001", e164="+442079460321", region="GB",
                       number_type="fixed_line", number_class="international",
                       jurisdiction="international", action="allow", would="allow",
                       category="allowed", rule="allow-gb",
                       rules=("number", "allow-gb", "class:international"), risk_score=15,
                       policy_version="676b8dec0d36", reason="region GB matches",
                       status=200, duration=60.0, cost=0.012, trunk="carrier",
                       ended_by="pbx", end_reason="BYE from pbx", trace=trace)
            for index in range(count)]


async def through_sink(sink: CdrSink, batch: list[CallRecord], size: int) -> dict[str, Any]:
    await sink.open()
    began = time.perf_counter()
    for start in range(0, len(batch), size):
        await sink.write(batch[start:start + size])
    elapsed = time.perf_counter() - began
    stored = await sink.count()
    await sink.close()
    return {"records": len(batch), "seconds": round(elapsed, 3),
            "records_per_second": round(len(batch) / elapsed), "stored": stored}


async def through_recorder(sink: CdrSink, spool: Path, batch: list[CallRecord]) -> dict[str, Any]:
    recorder = Recorder(sink, Spool(spool), silent_logger(), batch_seconds=0.05)
    await recorder.start()
    costs: list[float] = []
    began = time.perf_counter()
    for index, record in enumerate(batch):
        before = time.perf_counter()
        recorder.record(record)
        costs.append((time.perf_counter() - before) * 1e6)
        if index % 1000 == 999:
            await asyncio.sleep(0)  # calls arrive over time: let the writer run
    deadline = time.monotonic() + 600
    while recorder.stored < len(batch) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - began
    stats = recorder.stats()
    await recorder.stop()
    return {"records": len(batch), "seconds": round(elapsed, 3),
            "records_per_second": round(len(batch) / elapsed), "stored": stats["stored"],
            "record_call_us": {"p50": round(percentile(costs, 50) or 0, 2),
                               "p99": round(percentile(costs, 99) or 0, 2)}}


async def measure(count: int, size: int, directory: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"records": count, "batch": size}
    results["sqlite"] = {
        "sink": await through_sink(SqliteSink(directory / "sink.sqlite"), records(count), size),
        "recorder": await through_recorder(SqliteSink(directory / "recorder.sqlite"),
                                           directory / "spool-sqlite", records(count))}
    if postgres_bin() is None:
        results["postgresql"] = {"skipped": "PostgreSQL is not installed"}
        return results
    server = PostgresServer().start()
    try:
        results["postgresql"] = {
            "sink": await through_sink(PostgresSink(server.dsn), records(count), size)}
        connection = await asyncpg.connect(server.dsn)  # empty again for the second way
        try:
            await connection.execute("TRUNCATE cdr")
        finally:
            await connection.close()
        results["postgresql"]["recorder"] = await through_recorder(
            PostgresSink(server.dsn), directory / "spool-postgres", records(count))
    finally:
        server.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="2,000 records, for a smoke test")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.records = 2000
    with tempfile.TemporaryDirectory(prefix="sipguard-bench-cdr-") as tmp:
        results = asyncio.run(measure(args.records, args.batch, Path(tmp)))
    for database in ("sqlite", "postgresql"):
        outcome = results[database]
        if "skipped" in outcome:
            print(f"{database}: skipped ({outcome['skipped']})")
            continue
        sink, recorder = outcome["sink"], outcome["recorder"]
        print(f"{database}: sink {sink['records_per_second']:,} records/s "
              f"({sink['records']:,} in {sink['seconds']} s, batches of {args.batch}); "
              f"recorder (spool + fsync + database) {recorder['records_per_second']:,} "
              f"records/s; record() p50 {recorder['record_call_us']['p50']} us, "
              f"p99 {recorder['record_call_us']['p99']} us", flush=True)
    write_results("cdr", results, args.json)
    complete = all(results[database][way]["stored"] == args.records
                   for database in ("sqlite", "postgresql") if "skipped" not in results[database]
                   for way in ("sink", "recorder"))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
