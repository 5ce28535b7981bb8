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

from sipguard import control
from sipguard.b2bua import dialled_from_text
from sipguard.config import Settings, exposed_secrets, find_config, load_settings, make_store
from sipguard.policy import (
    CallAttempt,
    Decision,
    LimitKind,
    LoadedPolicy,
    Policy,
    Usage,
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


def _quiet_settings(arguments: argparse.Namespace) -> Settings | None:
    """The configuration explain works with (None when it is missing or invalid: explain
    needs only the policy; check is where the configuration's problems are reported)."""
    try:
        return load_settings(find_config(arguments.config))
    except ConfigError:
        return None


def _policy_path(arguments: argparse.Namespace, settings: Settings | None) -> Path:
    if arguments.policy:
        return Path(arguments.policy)
    if settings is not None:
        return settings.policy_path
    return find_config(arguments.config).parent / "policy.yaml"


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
            else:
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
    settings = _quiet_settings(arguments)  # read once: the policy, the service, the store
    loaded = _load_policy_or_report(_policy_path(arguments, settings))
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
    # Read as the SIP path reads a Request-URI (a tel: or sip: URI may be given).
    attempt = CallAttempt(call_id="explain", account=account.name, source="",
                          caller=arguments.extension or "",
                          dialled=dialled_from_text(arguments.number),
                          extension=arguments.extension, when=when)
    usage, usage_source = _running_usage(settings, account.name, attempt.dialled)
    decision = evaluate(policy, attempt, usage if usage is not None else Usage())
    counters = _counters(arguments, settings, policy, decision, account.name, when)
    counters += _other_limits(policy, decision)
    unknown = [] if usage is not None else _unknown_risk_terms(policy)
    if arguments.json:
        print(json.dumps({"account": account.name, "extension": arguments.extension,
                          "at": when.isoformat(), **decision.as_dict(), "limits": counters,
                          "usage_from": usage_source, "risk_unknown": unknown}, indent=2))
    else:
        print(format_decision(attempt, decision))
        if unknown:
            print(f"risk:     {usage_source}; the score leaves out what needs the call "
                  "history: " + ", ".join(f"{term['term']} (+0 to +{term['up_to']})"
                                          for term in unknown))
        if counters:
            print("limits:" + ("" if counters[0]["count"] is not None else
                               "  (? = counted in the running service's memory; with the "
                               "Redis store the current values show here)"))
            for counter in counters:
                value = "?" if counter["count"] is None else counter["count"]
                print(f"  {counter['limit']}: {counter['key']} = {value} "
                      f"(limit {counter['max']}{counter['window']}, {counter['action']})")
    return 0


def _running_usage(settings: Settings | None, account: str,
                   dialled: str) -> tuple[Usage | None, str]:
    """The call history the running service would score this call with (destinations
    already called, international calls in the last hour), and where it came from."""
    if settings is None:
        return None, "no configuration, so no running service to ask"
    try:
        reply = asyncio.run(control.request(settings.control_socket, "usage",
                                            account=account, dialled=dialled))
    except ConnectionError:
        return None, f"no running service answered on {settings.control_socket}"
    if not reply.get("ok"):
        return None, f"the running service did not say: {reply.get('error')}"
    return Usage(int(reply["international_calls_last_hour"]),
                 reply["destination_seen_before"]), "the running service"


def _unknown_risk_terms(policy: Policy) -> list[dict[str, Any]]:
    """The risk terms explain cannot know without the service, and the most each adds."""
    risk = policy.risk
    return [{"term": "never called before", "up_to": risk.new_destination_points},
            {"term": "international calls in the last hour", "up_to": risk.recent_calls_cap}]


def _other_limits(policy: Policy, decision: Decision) -> list[dict[str, Any]]:
    """Spend and consecutive-call limits that apply to this call (counted as it ends, or
    per run of calls, in the running service: no value here)."""
    if (decision.verdict is Verdict.REJECT or decision.rule == "emergency"
            or decision.number_class is None):
        return []
    number_class = decision.number_class
    found: list[dict[str, Any]] = [
        {"limit": rule.id, "key": f"spend:{rule.id} per {rule.per}", "count": None,
         "max": rule.maximum, "action": rule.action.value,
         "window": f" spent per {rule.window:g} s"}
        for rule in policy.limits.spend if number_class in rule.classes]
    found += [
        {"limit": rule.id, "key": f"consecutive:{rule.id} per {rule.per}", "count": None,
         "max": rule.maximum, "action": rule.action.value,
         "window": f" calls in a row to one number (within {rule.window:g} s)"}
        for rule in policy.limits.consecutive if number_class in rule.classes]
    return found


def _counters(arguments: argparse.Namespace, settings: Settings | None, policy: Policy,
              decision: Decision, account: str, when: datetime) -> list[dict[str, Any]]:
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
