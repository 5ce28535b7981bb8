"""``sipguard cdr export``, ``sipguard report`` and ``sipguard replay``: reading the call
records (from the database the configuration names, SQLite or PostgreSQL)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from sipguard.config import Settings, settings_or_report
from sipguard.policy import load_policy_file
from sipguard.records import (
    FIELDS,
    CdrSink,
    CdrUnavailableError,
    Difference,
    SummaryRow,
    csv_cell,
    differences,
    iso_time,
    make_sink,
    parse_time,
    replay,
)
from sipguard.schema import ConfigError

REPORT_GROUPS = ("country", "extension", "jurisdiction", "source", "state", "account")
TOP_SOURCES = 10

WithConfig = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_commands(commands: Any, with_config: WithConfig) -> None:
    """The cdr, report and replay subcommands."""
    cdr = with_config(commands.add_parser("cdr", help="call records"))
    actions = cdr.add_subparsers(dest="cdr_command", required=True)
    export = with_config(actions.add_parser("export", help="write call records out"))
    _time_range(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    report = with_config(commands.add_parser(
        "report", help="minutes and calls by country, extension, jurisdiction, source, "
                       "state and account"))
    _time_range(report)
    replay_command = with_config(commands.add_parser(
        "replay", help="run past call records through a candidate policy"))
    replay_command.add_argument("--policy", required=True, help="the candidate policy file")
    _time_range(replay_command)
    replay_command.add_argument("--json", action="store_true", help="print the result as JSON")


def _time_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO 8601 time (UTC unless it says), or an age "
                        "such as 24h or 7d")
    parser.add_argument("--until", help="as --since; default: now")


def run(arguments: argparse.Namespace) -> int:
    """Dispatch one of the commands (exit 0 done, 1 database or policy error, 2 usage)."""
    settings = settings_or_report(arguments.config)
    if settings is None:
        return 1
    try:
        now = time.time()
        since, until = parse_time(arguments.since, now), parse_time(arguments.until, now)
    except ValueError as error:
        print(f"sipguard: bad time: {error}", file=sys.stderr)
        return 2
    if arguments.command == "cdr":
        return _with_sink(settings, lambda sink: _export(sink, arguments.format, since, until,
                                                         sys.stdout))
    if arguments.command == "report":
        return _with_sink(settings, lambda sink: _report(sink, since, until, sys.stdout))
    return _with_sink(settings, lambda sink: _replay(settings, sink, arguments, since, until))


def _with_sink(settings: Settings, work: Callable[[CdrSink], Coroutine[Any, Any, int]]) -> int:
    async def go() -> int:
        sink = make_sink(settings.cdr)
        try:
            await sink.open(read_only=True)  # reading creates nothing, changes nothing
            return await work(sink)
        finally:
            await sink.close()

    try:
        return asyncio.run(go())
    except CdrUnavailableError as error:
        print(f"sipguard: call records unavailable: {error}", file=sys.stderr)
        return 1


async def _export(sink: CdrSink, form: str, since: float | None, until: float | None,
                  out: TextIO) -> int:
    records = await sink.records(since, until)
    if form == "json":
        json.dump([record.for_export() for record in records], out, indent=1)
        out.write("\n")
        return 0
    writer = csv.DictWriter(out, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({name: csv_cell(value) for name, value in record.for_export().items()})
    return 0


async def _report(sink: CdrSink, since: float | None, until: float | None,
                  out: TextIO) -> int:
    span = (f"{iso_time(since) if since is not None else 'the first record'} to "
            f"{iso_time(until) if until is not None else 'now'}")
    out.write(f"Call records from {span}: {await sink.count(since, until)}\n")
    for group in REPORT_GROUPS:
        out.write(f"\nBy {group}\n")
        out.write(_table(await sink.summary(group, since, until), group))
    top = sorted(await sink.summary("source", since, until),
                 key=lambda row: (-row.calls, row.key))[:TOP_SOURCES]
    out.write(f"\nTop {TOP_SOURCES} source addresses by calls\n")
    out.write(_table(top, "source"))
    return 0


def _table(rows: list[SummaryRow], heading: str) -> str:
    if not rows:
        return "  (no calls)\n"
    width = max(len(heading), *(len(row.key) for row in rows))
    lines = [f"  {heading:<{width}}  {'calls':>7}  {'answered':>8}  {'minutes':>9}  "
             f"{'cost':>10}  {'blocked':>7}"]
    lines += [f"  {row.key:<{width}}  {row.calls:>7}  {row.answered:>8}  {row.minutes:>9.2f}  "
              f"{row.cost:>10.4f}  {row.blocked:>7}" for row in rows]
    return "\n".join(lines) + "\n"


async def _replay(settings: Settings, sink: CdrSink, arguments: argparse.Namespace,
                  since: float | None, until: float | None) -> int:
    try:
        current = load_policy_file(settings.policy_path)
        candidate = load_policy_file(Path(arguments.policy))
    except ConfigError as error:
        error.report()
        return 1
    records = await sink.records(since, until)
    now = await replay(records, current, settings.policy_path)
    new = await replay(records, candidate, Path(arguments.policy))
    stopped, released = differences(now, new)
    if arguments.json:
        json.dump({"records": len(records), "current": current.policy.version,
                   "candidate": candidate.policy.version,
                   "stopped": [item.as_dict() for item in stopped],
                   "released": [item.as_dict() for item in released]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"{len(records)} call records replayed through {settings.policy_path} "
              f"(version {current.policy.version}) and {arguments.policy} "
              f"(version {candidate.policy.version})\n")
    out.write("(limits are counted from the first record replayed on)\n")
    out.write(f"\nThe candidate stops {len(stopped)} the current policy let through "
              "(or only challenged):\n")
    out.write(_differences(stopped))
    out.write(f"\nThe candidate lets through {len(released)} the current policy stopped "
              "(or challenges what it blocked):\n")
    out.write(_differences(released))
    return 0


def _differences(items: list[Difference]) -> str:
    if not items:
        return "  (none)\n"
    return "".join(
        f"  {iso_time(item.record.started_at)}  {item.record.account}/"
        f"{item.record.extension or '-'}  {item.record.e164 or item.record.dialled}  "
        f"current: {item.current.action} ({item.current.rule})  "
        f"candidate: {item.candidate.action} ({item.candidate.rule})\n" for item in items)


__all__ = ["add_commands", "parse_time", "run"]
