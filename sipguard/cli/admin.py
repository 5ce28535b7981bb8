"""``sipguard admin-password``: the scrypt hash of a dashboard password for
``admin.users`` (read twice without echo from a terminal, or one line of stdin)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(commands: Any) -> None:
    """Add ``admin-password``."""
    commands.add_parser("admin-password", help="hash a dashboard password for admin.users "
                        "(read twice without echo from a terminal, or one line of stdin)")


def run(arguments: argparse.Namespace) -> int:
    """Run ``admin-password``."""
    return _admin_password()


MIN_PASSWORD = 12


def _admin_password() -> int:
    """Print the scrypt hash of a password for ``admin.users`` (never the password)."""
    import getpass  # noqa: PLC0415

    from sipguard.pin.pins import hash_pin  # noqa: PLC0415 - the same scrypt hash as PINs

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
