"""The ``sipguard`` command line: run, check, explain, pin, bans, cdr, report, replay,
lock, unlock, lockdown, locks, alerts.

Every subcommand takes ``--config FILE`` (default conf/sipguard.yaml, then
/etc/sipguard/sipguard.yaml). Exit codes: 0 success, 1 invalid input
(a bad policy or configuration), 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipguard import banscli, cdrcli, lockcli, logs, pincli
from sipguard.policy import CallAttempt, Decision, LimitKind, Policy, Verdict, clean, evaluate
from sipguard.policy.explain import format_decision
from sipguard.policy.limits import limit_checks
from sipguard.policyfile import LoadedPolicy, load_policy_file
from sipguard.screening import make_store
from sipguard.settings import Settings, find_config, load_settings
from sipguard.store import CounterRequest, StoreUnavailableError
from sipguard.yamlfile import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sipguard", description="SIP B2BUA that screens outbound calls for toll fraud.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help="configuration file (default conf/sipguard.yaml, "
                         "then /etc/sipguard/sipguard.yaml)")
        return sub

    with_config(commands.add_parser("run", help="run the service in the foreground"))
    check = with_config(commands.add_parser("check", help="validate the policy file"))
    check.add_argument("--policy", help="policy file (default: the one the config names)")
    explain = with_config(commands.add_parser(
        "explain", help="show the decision for a number and every rule consulted"))
    explain.add_argument("--policy", help="policy file (default: the one the config names)")
    explain.add_argument("--account", help="account (PBX peer) name; default: the first")
    explain.add_argument("--extension", help="extension placing the call")
    explain.add_argument("--at", help="time of the call, ISO 8601 (default: now); "
                         "without a zone it is read in the account's time zone")
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")
    explain.add_argument("number", help="the dialled number, as the PBX sends it")
    pincli.add_commands(commands, with_config)
    banscli.add_commands(commands, with_config)
    cdrcli.add_commands(commands, with_config)
    lockcli.add_commands(commands, with_config)
    commands.add_parser("admin-password", help="hash a dashboard password for admin.users "
                        "(read twice without echo from a terminal, or one line of stdin)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "run":
        return _run(arguments)
    if arguments.command == "check":
        return _check(arguments)
    if arguments.command == "pin":
        return pincli.run(arguments)
    if arguments.command == "bans":
        return banscli.run(arguments)
    if arguments.command in ("cdr", "report", "replay"):
        return cdrcli.run(arguments)
    if arguments.command in lockcli.COMMANDS:
        return lockcli.run(arguments)
    if arguments.command == "admin-password":
        return _admin_password()
    return _explain(arguments)


MIN_PASSWORD = 12


def _admin_password() -> int:
    """Print the scrypt hash of a password for ``admin.users`` (never the password)."""
    import getpass  # noqa: PLC0415

    from sipguard.pins import hash_pin  # noqa: PLC0415 - the same scrypt hash as PINs

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        print(f"a password has at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 1
    print(hash_pin(password))
    return 0


def _policy_path(arguments: argparse.Namespace) -> Path:
    if arguments.policy:
        return Path(arguments.policy)
    config = find_config(arguments.config)
    try:
        return load_settings(config).policy_path
    except ConfigError:
        return config.parent / "policy.yaml"


def _load_policy_or_report(path: Path) -> LoadedPolicy | None:
    """The policy, or None after printing its problems (file:line: key: message)."""
    try:
        loaded = load_policy_file(path)
    except ConfigError as error:
        error.report()
        return None
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    return loaded


def _check(arguments: argparse.Namespace) -> int:
    path = _policy_path(arguments)
    loaded = _load_policy_or_report(path)
    if loaded is None:
        return 1
    policy = loaded.policy
    print(f"{path}: valid (version {policy.version}; {len(policy.accounts)} accounts, "
          f"{len(policy.destinations)} destination rules, {len(loaded.warnings)} warnings)")
    return 0


def _explain(arguments: argparse.Namespace) -> int:
    loaded = _load_policy_or_report(_policy_path(arguments))
    if loaded is None:
        return 1
    policy = loaded.policy
    account = policy.account(arguments.account) if arguments.account else policy.accounts[0]
    if account is None:
        print(f"no account named {arguments.account!r} in the policy", file=sys.stderr)
        return 1
    when = datetime.now(UTC)
    if arguments.at:
        try:
            when = datetime.fromisoformat(arguments.at)
        except ValueError:
            print(f"--at {arguments.at!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
        if when.tzinfo is None:
            from zoneinfo import ZoneInfo  # noqa: PLC0415

            when = when.replace(tzinfo=ZoneInfo(account.time_zone))
    attempt = CallAttempt(call_id="explain", account=account.name, source="",
                          caller=arguments.extension or "", dialled=arguments.number,
                          extension=arguments.extension, when=when)
    decision = evaluate(policy, attempt)
    counters = _counters(arguments, policy, decision, account.name, when)
    if arguments.json:
        print(json.dumps({"account": account.name, "extension": arguments.extension,
                          "at": when.isoformat(), **decision.as_dict(), "limits": counters},
                         indent=2))
    else:
        print(format_decision(attempt, decision))
        if counters:
            print("limits:" + ("" if counters[0]["count"] is not None else
                               "  (? = counted in the running service's memory; with the "
                               "Redis store the current values show here)"))
            for counter in counters:
                value = "?" if counter["count"] is None else counter["count"]
                print(f"  {counter['limit']}: {counter['key']} = {value} "
                      f"(limit {counter['max']}{counter['window']}, {counter['action']})")
    return 0


def _counters(arguments: argparse.Namespace, policy: Policy, decision: Decision,
              account: str, when: datetime) -> list[dict[str, Any]]:
    """Each limit this call would count on, with its current value from the store."""
    if decision.verdict is Verdict.REJECT or decision.rule == "emergency":
        return []
    extension = clean(arguments.extension) if arguments.extension else None
    checks = limit_checks(policy, decision, account, extension)
    if not checks:
        return []
    requests = [CounterRequest(check.key, "rate" if check.rule.kind is LimitKind.RATE
                               else "lease", check.rule.maximum,
                               check.rule.window or policy.limits.lease_seconds, check.hard)
                for check in checks]
    counts: list[int | None] = [None] * len(checks)
    try:
        settings = load_settings(find_config(arguments.config))
    except ConfigError:
        settings = None
    if settings is not None and settings.store_backend == "redis":
        store = make_store(settings)

        async def peek() -> list[int]:
            try:
                return await store.peek(requests, when.timestamp())
            finally:
                await store.close()

        try:
            counts = list(asyncio.run(peek()))
        except StoreUnavailableError as error:
            print(f"state store unavailable: {error}", file=sys.stderr)
    return [
        {"limit": check.rule.id, "key": check.key, "count": count,
         "max": check.rule.maximum, "action": check.rule.action.value,
         "window": f" per {check.rule.window:g} s" if check.rule.kind is LimitKind.RATE
         else " at once"}
        for check, count in zip(checks, counts, strict=True)
    ]


def _load_all(arguments: argparse.Namespace) -> tuple[Settings, LoadedPolicy] | None:
    config = find_config(arguments.config)
    try:
        settings = load_settings(config)
        policy = load_policy_file(settings.policy_path)
    except ConfigError as error:
        error.report()
        return None
    return settings, policy


def _run(arguments: argparse.Namespace) -> int:
    loaded = _load_all(arguments)
    if loaded is None:
        return 1
    settings, policy = loaded
    logs.configure(settings.log_level, settings.log_format)
    from sipguard.service import Service  # noqa: PLC0415 - keeps check/explain light

    service = Service(settings, policy)
    try:
        return _run_loop(service.run(), settings.event_loop)
    except Exception:
        # A service that failed must end: the database connections' threads would keep
        # the interpreter waiting for them (acknowledged records are in the spool).
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(70)


def _run_loop(coroutine: object, choice: str) -> int:
    """Run on uvloop when asked or, with ``auto``, when it is installed."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop  # noqa: PLC0415

            return int(uvloop.run(coroutine))  # type: ignore[arg-type]
        except ImportError:
            if choice == "uvloop":
                print("event_loop: uvloop is not installed", file=sys.stderr)
                return 1
    return int(asyncio.run(coroutine))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
