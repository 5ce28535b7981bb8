"""``sipguard pin set|remove|list``: manage the PIN file (scrypt hashes, never PINs).

``set`` reads the PIN without echo, twice, from a terminal, or one line from
standard input otherwise (for scripts). The running service picks changes
up within a second.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sipguard.config import find_config, load_settings
from sipguard.pin import PinSettings, hash_pin, load_pin_file, pin_key, save_pin_file, validate_pin
from sipguard.schema import ConfigError


def add_commands(commands: Any,
                 with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add ``pin`` and its subcommands to the command line."""
    pin = commands.add_parser("pin", help="set, remove or list PINs (stored as scrypt hashes)")
    actions = pin.add_subparsers(dest="pin_command", required=True)
    for name, text in (("set", "set the PIN of an extension (read without echo)"),
                       ("remove", "remove the PIN of an extension")):
        sub = with_config(actions.add_parser(name, help=text))
        sub.add_argument("extension", help="the extension, or * with --account for the "
                         "account's PIN for extensions without one")
        sub.add_argument("--account", help="only for this account (PBX peer); "
                         "wins over a PIN for the bare extension")
    with_config(actions.add_parser("list", help="list who has a PIN (never the hashes)"))


def run(arguments: argparse.Namespace) -> int:
    """Run a ``pin`` subcommand; 0 on success, 1 otherwise (with a message on stderr)."""
    config = find_config(arguments.config)
    try:
        settings = load_settings(config).pin
    except ConfigError as error:
        error.report()
        return 1
    if arguments.pin_command == "list":
        return _list(settings)
    try:
        key = pin_key(arguments.account, arguments.extension)
    except ValueError as error:
        print(f"{arguments.extension}: {error}", file=sys.stderr)
        return 1
    if arguments.pin_command == "set":
        return _set(settings, key, None if arguments.extension == "*" else arguments.extension)
    return _remove(settings, key)


def _read_pin() -> str | None:
    """The new PIN: twice without echo from a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("New PIN: ")
        if getpass.getpass("The same PIN again: ") != first:
            print("the two PINs differ; nothing changed", file=sys.stderr)
            return None
        return first.strip()
    line = sys.stdin.readline()
    if not line.strip():
        print("no PIN on standard input; nothing changed", file=sys.stderr)
        return None
    return line.strip()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the PIN file (two `pin set` at once lose nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _load(settings: PinSettings) -> dict[str, str] | None:
    try:
        return load_pin_file(settings.file)
    except ConfigError as error:
        error.report()
        print(f"{settings.file}: fix or remove the file first; nothing changed",
              file=sys.stderr)
        return None


def _set(settings: PinSettings, key: str, extension: str | None) -> int:
    pin = _read_pin()
    if pin is None:
        return 1
    problem = validate_pin(pin, extension, settings.min_length)
    if problem is not None:
        print(f"{problem}; nothing changed", file=sys.stderr)
        return 1
    hashed = hash_pin(pin, settings.pepper)
    with _locked(settings.file):
        pins = _load(settings)
        if pins is None:
            return 1
        pins[key] = hashed
        save_pin_file(settings.file, pins)
    print(f"PIN set for {key}")
    return 0


def _remove(settings: PinSettings, key: str) -> int:
    with _locked(settings.file):
        pins = _load(settings)
        if pins is None:
            return 1
        if key not in pins:
            print(f"no PIN for {key} in {settings.file}", file=sys.stderr)
            return 1
        del pins[key]
        save_pin_file(settings.file, pins)
    print(f"PIN removed for {key}")
    return 0


def _list(settings: PinSettings) -> int:
    pins = _load(settings)
    if pins is None:
        return 1
    for key in sorted(pins):
        print(key)
    if not pins:
        print(f"no PINs in {settings.file}", file=sys.stderr)
    return 0
