"""``sipguard lock|unlock|lockdown|locks`` and ``sipguard alerts list|snooze|unsnooze``.

Like `sipguard bans`, each command goes to the running service over its control
socket. When no service answers and the state store is Redis, the lock commands
work on the store itself (every node reads the locks on every call); with the
memory store the locks live in the service, so it must be running. Alerts are
the running service's: `sipguard alerts` needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sipguard import control
from sipguard.locks import SCOPES, Locks
from sipguard.logs import silent_logger
from sipguard.policy.alerting import AlertType
from sipguard.screening import make_store
from sipguard.settings import Settings, find_config, load_settings
from sipguard.yamlfile import ConfigError

COMMANDS = ("lock", "unlock", "lockdown", "locks", "alerts")


def add_commands(commands: Any,
                 with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add the lock and alert commands to the command line."""
    lock = with_config(commands.add_parser(
        "lock", help="stop an account's international (or all non-emergency) dialling"))
    lock.add_argument("account", help="the account (PBX peer) to lock")
    lock.add_argument("--class", dest="scope", choices=SCOPES, default="international",
                      help="what to stop (default: international)")
    lock.add_argument("--reason", default="locked by hand", help="why (shown by `locks`)")
    unlock = with_config(commands.add_parser("unlock", help="lift an account's lock"))
    unlock.add_argument("account", help="the account to unlock")
    lockdown = with_config(commands.add_parser(
        "lockdown", help="the kill switch: no international calls from any account"))
    lockdown.add_argument("state", choices=("on", "off", "status"))
    lockdown.add_argument("--reason", default="incident response", help="why (shown by locks)")
    listed = with_config(commands.add_parser("locks", help="the locks in force"))
    listed.add_argument("--json", action="store_true", help="print them as JSON")
    alerts = commands.add_parser("alerts", help="recent alerts; snooze an alert type")
    actions = alerts.add_subparsers(dest="alerts_command", required=True)
    recent = with_config(actions.add_parser("list", help="recent alerts and snoozed types"))
    recent.add_argument("--json", action="store_true", help="print them as JSON")
    recent.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    types = [kind.value for kind in AlertType]
    for name, text in (("snooze", "silence an alert type for the rest of the day"),
                       ("unsnooze", "end a snooze")):
        sub = with_config(actions.add_parser(name, help=text))
        sub.add_argument("type", choices=types, help="the alert type")


def run(arguments: argparse.Namespace) -> int:
    """Run one of the commands: 0 on success, 1 otherwise (with a message on stderr)."""
    try:
        settings = load_settings(find_config(arguments.config))
    except ConfigError as error:
        error.report()
        return 1
    who = f"cli:{getpass.getuser()}"
    command, fields = _request(arguments, who)
    try:
        reply = asyncio.run(control.request(settings.control_socket, command, **fields))
    except ConnectionError as error:
        if settings.store_backend != "redis" or command.startswith("alerts."):
            where = ("the running service" if command.startswith("alerts.")
                     else "the running service with the memory store")
            print(f"{error}\nThese live in {where}: start it"
                  + ("" if command.startswith("alerts.") else ", or use the Redis store")
                  + ".", file=sys.stderr)
            return 1
        reply = asyncio.run(_on_store(settings, command, fields))
    if not reply.get("ok"):
        print(f"sipguard: {reply.get('error')}", file=sys.stderr)
        return 1
    _print(arguments, reply)
    return 0


def _request(arguments: argparse.Namespace, who: str) -> tuple[str, dict[str, Any]]:
    command = arguments.command
    if command == "lock":
        return "locks.lock", {"account": arguments.account, "scope": arguments.scope,
                              "reason": arguments.reason, "by": who}
    if command == "unlock":
        return "locks.unlock", {"account": arguments.account, "by": who}
    if command == "lockdown":
        if arguments.state == "status":
            return "locks.list", {}
        return "locks.lockdown", {"on": arguments.state == "on", "reason": arguments.reason,
                                  "by": who}
    if command == "locks":
        return "locks.list", {}
    if arguments.alerts_command == "list":
        return "alerts.list", {"limit": arguments.limit}
    return f"alerts.{arguments.alerts_command}", {"type": arguments.type, "by": who}


async def _on_store(settings: Settings, command: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The lock commands on the Redis store directly (no service running here)."""
    from sipguard.alertcontrol import lock_handlers  # noqa: PLC0415 - only without a service

    store = make_store(settings)
    try:
        return {"ok": True, **await lock_handlers(Locks(store, silent_logger()))[command](
            fields)}
    except (ValueError, KeyError) as error:
        return {"ok": False, "error": str(error)}
    finally:
        await store.close()


def _print(arguments: argparse.Namespace, reply: dict[str, Any]) -> None:
    command = arguments.command
    if command == "lock":
        lock = reply["lock"]
        print(f"locked {lock['account']}: {lock['scope']} calls refused until "
              f"`sipguard unlock {lock['account']}`")
    elif command == "unlock":
        print(f"unlocked {arguments.account}" if reply.get("removed")
              else f"{arguments.account} was not locked")
    elif command == "lockdown" and arguments.state != "status":
        print("lockdown ON: no international calls from any account (emergency calls go "
              "through)" if reply.get("lockdown") else "lockdown off")
    elif command in ("locks", "lockdown"):
        _print_locks(arguments, reply)
    elif arguments.alerts_command == "list":
        _print_alerts(arguments, reply)
    elif arguments.alerts_command == "snooze":
        print(f"{reply['type']} alerts snoozed for {int(reply['seconds']) // 60} min "
              "(until the end of the day)")
    else:
        print(f"{reply['type']} alerts no longer snoozed")


def _print_locks(arguments: argparse.Namespace, reply: dict[str, Any]) -> None:
    if getattr(arguments, "json", False):
        print(json.dumps({"locks": reply["locks"], "lockdown": reply["lockdown"]}, indent=2))
        return
    switch = reply.get("lockdown")
    print(f"lockdown: ON since {_when(switch['since'])} by {switch['by']}: {switch['reason']}"
          if switch else "lockdown: off")
    if arguments.command == "lockdown":
        return
    if not reply["locks"]:
        print("no account locks")
        return
    print(f"{'account':<24} {'class':<14} {'since':<20} by / reason")
    for lock in reply["locks"]:
        print(f"{lock['account']:<24} {lock['scope']:<14} {_when(lock['since']):<20} "
              f"{lock['by']}: {lock['reason']}")


def _print_alerts(arguments: argparse.Namespace, reply: dict[str, Any]) -> None:
    if arguments.json:
        print(json.dumps(reply, indent=2))
        return
    for name, left in sorted(reply.get("snoozed", {}).items()):
        print(f"snoozed: {name} ({int(left) // 60} min left)")
    if not reply["alerts"]:
        print("no alerts since the service started")
        return
    for alert in reply["alerts"]:
        print(f"{alert['at']}  {alert['level']:<7}  {alert['type']:<20}  {alert['text']}")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
