"""``sipguard bans list|add|remove``: the bans every node honours.

The command goes to the running service over its control socket. When no
service answers and the store is Redis, it works on the store itself (the
services take the change within ``edge.sync_seconds``); with the memory
store the bans live in the service, so it must be running.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sipguard import control
from sipguard.config import Settings, make_store, settings_or_report
from sipguard.edge import Bans, EdgeFilter, exempt_networks, normalised_address


def add_commands(commands: Any,
                 with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add ``bans`` and its subcommands to the command line."""
    bans = commands.add_parser("bans", help="list, add or remove bans of source addresses")
    actions = bans.add_subparsers(dest="bans_command", required=True)
    listed = with_config(actions.add_parser("list", help="the bans in force"))
    listed.add_argument("--json", action="store_true", help="print them as JSON")
    add = with_config(actions.add_parser("add", help="ban an address"))
    add.add_argument("address", help="the IP address to ban")
    add.add_argument("--seconds", type=float, help="how long (default: edge.bantime, "
                     "growing for repeat offenders)")
    add.add_argument("--reason", default="added by hand", help="why (shown by list)")
    remove = with_config(actions.add_parser("remove", help="lift a ban"))
    remove.add_argument("address", help="the IP address to unban")


def run(arguments: argparse.Namespace) -> int:
    """Run a ``bans`` subcommand: 0 on success, 1 otherwise (with a message on stderr)."""
    settings = settings_or_report(arguments.config)
    if settings is None:
        return 1
    if arguments.bans_command != "list":
        try:
            arguments.address = normalised_address(arguments.address)
        except ValueError:
            print(f"{arguments.address}: not an IP address", file=sys.stderr)
            return 1
    who = f"cli:{getpass.getuser()}"
    request: dict[str, Any] = {"by": who}
    if arguments.bans_command in ("add", "remove"):
        request["address"] = arguments.address
    if arguments.bans_command == "add":
        request.update(seconds=arguments.seconds, reason=arguments.reason)
    try:
        reply = asyncio.run(control.request(settings.control_socket,
                                            f"bans.{arguments.bans_command}", **request))
    except ConnectionError as error:
        if settings.store_backend != "redis":
            print(f"{error}\nWith the memory store the bans live in the running service: "
                  "start it, or use the Redis store.", file=sys.stderr)
            return 1
        reply = asyncio.run(_on_store(settings, arguments, who))
    if not reply.get("ok"):
        print(f"sipguard: {reply.get('error')}", file=sys.stderr)
        return 1
    _print(arguments, reply)
    return 0


async def _on_store(settings: Settings, arguments: argparse.Namespace,
                    who: str) -> dict[str, Any]:
    """The same commands on the Redis store directly (no service running here)."""
    store = make_store(settings)
    edge = EdgeFilter(exempt_networks(list(settings.peers), list(settings.trunks)))
    bans = Bans(settings.edge.bans, store, edge, _Quiet())
    try:
        if arguments.bans_command == "list":
            return {"ok": True, "bans": [asdict(ban) for ban in await bans.list(time.time())]}
        if arguments.bans_command == "add":
            ban = await bans.ban(arguments.address, arguments.reason, time.time(), 0.0,
                                 seconds=arguments.seconds, by=who)
            if ban is None:
                return {"ok": False, "error": "a configured peer or trunk is never banned"}
            return {"ok": True, "ban": asdict(ban)}
        return {"ok": True, "removed": await bans.unban(arguments.address, by=who)}
    finally:
        await store.close()


def _print(arguments: argparse.Namespace, reply: dict[str, Any]) -> None:
    if arguments.bans_command == "list":
        bans = reply.get("bans", [])
        if getattr(arguments, "json", False):
            print(_json(bans))
            return
        if not bans:
            print("no bans")
            return
        print(f"{'address':<40} {'left':>9} {'bans':>4}  by / reason")
        for ban in bans:
            print(f"{ban['address']:<40} {_duration(ban['seconds_left']):>9} "
                  f"{ban['offences']:>4}  {ban['by']}: {ban['reason']}")
    elif arguments.bans_command == "add":
        ban = reply["ban"]
        print(f"banned {ban['address']} for {_duration(ban['seconds_left'])}")
    elif reply.get("removed"):
        print(f"unbanned {arguments.address}")
    else:
        print(f"{arguments.address} was not banned")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _json(value: Any) -> str:
    import json  # noqa: PLC0415 - only for --json

    return json.dumps(value, indent=2)


class _Quiet:
    """A logger that drops everything (the CLI prints its own lines)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *_args, **_fields: None
