"""``sipguard check`` and ``sipguard explain``: the configuration and the policy file
validated (with the code ``run`` uses), and the decision for a number with every rule
consulted, without placing a call."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipguard.config import exposed_secrets, find_config, load_settings, make_store
from sipguard.policy import (
    CallAttempt,
    Decision,
    LimitKind,
    LoadedPolicy,
    Policy,
    Verdict,
    clean,
    evaluate,
    format_decision,
    limit_checks,
    load_policy_file,
)
from sipguard.schema import ConfigError
from sipguard.store import CounterRequest, StoreUnavailableError

COMMANDS = ("check", "explain")
WithConfig = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_commands(commands: Any, with_config: WithConfig) -> None:
    """Add ``check`` and ``explain``."""
    check = with_config(commands.add_parser(
        "check", help="validate the configuration file and the policy file it names"))
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


def run(arguments: argparse.Namespace) -> int:
    """Run ``check`` or ``explain``."""
    if arguments.command == "check":
        return _check(arguments)
    return _explain(arguments)


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
    """Both files, every problem of each reported; rc 1 when either has one."""
    config = find_config(arguments.config)
    settings_valid = True
    policy_path = Path(arguments.policy) if arguments.policy else config.parent / "policy.yaml"
    if arguments.config or config.exists():
        try:
            settings = load_settings(config)
        except ConfigError as error:
            error.report()
            settings_valid = False
        else:
            if not arguments.policy:
                policy_path = settings.policy_path
            refused = exposed_secrets(settings)
            if refused is not None:  # run would refuse to start
                print(refused, file=sys.stderr)
                settings_valid = False
            print(f"{config}: valid ({len(settings.peers)} peers, {len(settings.trunks)} "
                  f"trunks, {len(settings.listen)} listen addresses)")
    loaded = _load_policy_or_report(policy_path)
    if loaded is None:
        return 1
    policy = loaded.policy
    print(f"{policy_path}: valid (version {policy.version}; {len(policy.accounts)} accounts, "
          f"{len(policy.destinations)} destination rules, {len(loaded.warnings)} warnings)")
    return 0 if settings_valid else 1


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
