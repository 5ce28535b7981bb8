"""The ``sipguard`` command line: run, check, explain.

Every subcommand takes ``--config FILE`` (default conf/sipguard.yaml, then
/etc/sipguard/sipguard.yaml). Exit codes: 0 success, 1 invalid input
(a bad policy or configuration), 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sipguard import logs
from sipguard.policy import CallAttempt, Decision, PrefixPolicy, evaluate
from sipguard.settings import Settings, find_config, load_policy, load_settings
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
    explain.add_argument("--account", default="explain", help="account (PBX peer) name")
    explain.add_argument("--extension", help="extension placing the call")
    explain.add_argument("--at", help="time of the call (ISO 8601); ignored by the interim policy")
    explain.add_argument("number", help="the dialled number")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "run":
        return _run(arguments)
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


def _load_policy_or_report(path: Path) -> PrefixPolicy | None:
    """The policy, or None after printing its problems (file:line: key: message)."""
    try:
        return load_policy(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None


def _check(arguments: argparse.Namespace) -> int:
    path = _policy_path(arguments)
    policy = _load_policy_or_report(path)
    if policy is None:
        return 1
    print(f"{path}: valid ({len(policy.blocked_prefixes)} blocked prefixes)")
    return 0


def _explain(arguments: argparse.Namespace) -> int:
    policy = _load_policy_or_report(_policy_path(arguments))
    if policy is None:
        return 1
    attempt = CallAttempt(call_id="explain", account=arguments.account, source="",
                          caller=arguments.extension or "", dialled=arguments.number,
                          extension=arguments.extension)
    print(format_decision(attempt, evaluate(policy, attempt)))
    return 0


def format_decision(attempt: CallAttempt, decision: Decision) -> str:
    """The decision and its trace as text (``explain`` prints this)."""
    lines = [f"number:   {attempt.dialled}", f"account:  {attempt.account}",
             f"decision: {decision.verdict.value} ({decision.reason})", "trace:"]
    for entry in decision.trace:
        mark = "matched" if entry.matched else "-      "
        lines.append(f"  {mark} {entry.rule}: {entry.detail}")
    return "\n".join(lines)


def _load_all(arguments: argparse.Namespace) -> tuple[Settings, PrefixPolicy] | None:
    config = find_config(arguments.config)
    try:
        settings = load_settings(config)
        policy = load_policy(settings.policy_path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
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
    return _run_loop(service.run(), settings.event_loop)


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
