"""The ``sipguard`` command line: the argparse tree of every command group (run, check,
explain, pin, bans, cdr, report, replay, lock, unlock, lockdown, locks, alerts,
admin-password), each in a module of its own.

Every subcommand takes ``--config FILE`` (default conf/sipguard.yaml, then
/etc/sipguard/sipguard.yaml). Exit codes: 0 success, 1 invalid input
(a bad policy or configuration), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys

from sipguard.cli import admin, bans, locks, pins, policy, records, run


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
    policy.add_commands(commands, with_config)
    pins.add_commands(commands, with_config)
    bans.add_commands(commands, with_config)
    records.add_commands(commands, with_config)
    locks.add_commands(commands, with_config)
    admin.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "run":
        return run.run(arguments)
    if arguments.command in policy.COMMANDS:
        return policy.run(arguments)
    if arguments.command == "pin":
        return pins.run(arguments)
    if arguments.command == "bans":
        return bans.run(arguments)
    if arguments.command in ("cdr", "report", "replay"):
        return records.run(arguments)
    if arguments.command in locks.COMMANDS:
        return locks.run(arguments)
    return admin.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
