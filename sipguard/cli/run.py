"""``sipguard run``: the service in the foreground (on uvloop when it is installed)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback

from sipguard import logs
from sipguard.config import Settings, exposed_secrets, find_config, load_settings
from sipguard.policy import LoadedPolicy, load_policy_file
from sipguard.schema import ConfigError


def run(arguments: argparse.Namespace) -> int:
    """Load the configuration and the policy, then run the service until it stops."""
    return _run(arguments)


def _load_all(arguments: argparse.Namespace) -> tuple[Settings, LoadedPolicy] | None:
    config = find_config(arguments.config)
    try:
        settings = load_settings(config)
        policy = load_policy_file(settings.policy_path)
    except ConfigError as error:
        error.report()
        return None
    refused = exposed_secrets(settings)
    if refused is not None:
        print(refused, file=sys.stderr)
        return None
    return settings, policy


def _run(arguments: argparse.Namespace) -> int:
    loaded = _load_all(arguments)
    if loaded is None:
        return 1
    settings, policy = loaded
    # Everything the service and its children create (call records, spool, journal,
    # sockets) is for the service's user alone: files 0600, directories 0700.
    os.umask(0o077)
    logs.configure(settings.log_level, settings.log_format)
    from sipguard.service.pump import Service  # noqa: PLC0415 - keeps check/explain light

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
