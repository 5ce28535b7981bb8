"""``sipguard lock|unlock|lockdown|locks`` and ``sipguard alerts list|ack|snooze|unsnooze|set``.

Like `sipguard bans`, each command goes to the running service over its control
socket. When no service answers and the state store is Redis, the lock commands
work on the store itself (every node reads the locks on every call); with the
memory store the locks live in the service, so it must be running. Alerts are
the running service's: `sipguard alerts` needs it, except `alerts set`, which edits
the policy file (sipguard.policy.edit) that the service then reloads.
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
from sipguard.config import Settings, make_store, settings_or_report
from sipguard.logs import silent_logger
from sipguard.policy import AlertType, Policy, current_values, edit_alerts, load_policy_file
from sipguard.schema import ConfigError
from sipguard.screening import SCOPES, Locks

COMMANDS = ("lock", "unlock", "lockdown", "locks", "alerts")


def add_commands(commands: Any,
                 with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add the lock and alert commands to the command line."""
    lock = with_config(commands.add_parser(
        "lock", help="stop an account's international and premium (or all non-emergency) "
                     "dialling"))
    lock.add_argument("account", help="the account (PBX peer) to lock")
    lock.add_argument("--class", dest="scope", choices=SCOPES, default="international",
                      help="what to stop (default: international)")
    lock.add_argument("--reason", default="locked by hand", help="why (shown by `locks`)")
    unlock = with_config(commands.add_parser("unlock", help="lift an account's lock"))
    unlock.add_argument("account", help="the account to unlock")
    lockdown = with_config(commands.add_parser(
        "lockdown", help="the kill switch: no international or premium calls from any account"))
    lockdown.add_argument("state", choices=("on", "off", "status"))
    lockdown.add_argument("--reason", default="incident response", help="why (shown by locks)")
    listed = with_config(commands.add_parser("locks", help="the locks in force"))
    listed.add_argument("--json", action="store_true", help="print them as JSON")
    alerts = commands.add_parser("alerts", help="recent alerts; snooze an alert type")
    actions = alerts.add_subparsers(dest="alerts_command", required=True)
    recent = with_config(actions.add_parser("list", help="recent alerts and snoozed types"))
    recent.add_argument("--json", action="store_true", help="print them as JSON")
    recent.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    acknowledge = with_config(actions.add_parser(
        "ack", help="acknowledge alerts (they leave the open alerts)"))
    acknowledge.add_argument("ids", nargs="+", metavar="ID",
                             help="alert ids as `alerts list` shows them, or: all")
    change = with_config(actions.add_parser(
        "set", help="change alert thresholds and contacts in the policy file",
        description="Change keys of the policy file's alerts section (comments kept; "
                    "checked as `sipguard check` does; nothing is written if the result is "
                    "invalid). With no KEY=VALUE, print what can be changed and its values."))
    change.add_argument("pairs", nargs="*", metavar="KEY=VALUE",
                        help="e.g. thresholds.notify=30 contacts=log,email:ops@example.org "
                             "types.ban.enabled=false types.traffic.contacts=webhook:pager")
    change.add_argument("--json", action="store_true", help="print the result as JSON")
    types = [kind.value for kind in AlertType]
    for name, text in (("snooze", "silence an alert type for the rest of the day"),
                       ("unsnooze", "end a snooze")):
        sub = with_config(actions.add_parser(name, help=text))
        sub.add_argument("type", choices=types, help="the alert type")


def run(arguments: argparse.Namespace) -> int:
    """Run one of the commands: 0 on success, 1 otherwise (with a message on stderr)."""
    settings = settings_or_report(arguments.config)
    if settings is None:
        return 1
    if arguments.command == "alerts" and arguments.alerts_command == "set":
        return _set(settings, arguments)
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


def _set(settings: Settings, arguments: argparse.Namespace) -> int:
    """`sipguard alerts set`: edit the policy file (the service reloads it on its own)."""
    path = settings.policy_path
    if not arguments.pairs:
        try:
            values = current_values(load_policy_file(path).policy.alerts)
        except ConfigError as error:
            error.report()
            return 1
        if arguments.json:
            print(json.dumps(values, indent=2))
        else:
            for key, value in values.items():
                print(f"{key} = {_shown(value)}")
        return 0
    changes: dict[str, str] = {}
    for pair in arguments.pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            print(f"sipguard: {pair!r}: give KEY=VALUE", file=sys.stderr)
            return 2
        changes[key.strip().removeprefix("alerts.")] = value
    try:
        edit = edit_alerts(path, changes,
                           check=lambda policy: settings.alerts.unreachable_problems(
                               policy.alerts, settings.path))
    except ConfigError as error:
        error.report()
        return 1
    if arguments.json:
        print(json.dumps(edit.as_dict(), indent=2))
    elif not edit.changed:
        print(f"{path}: no change (the policy already does that)")
    else:
        for key, (before, after) in edit.changed.items():
            print(f"alerts.{key}: {_shown(before)} -> {_shown(after)}")
        print(f"{path}: written (policy version {edit.version}; the previous text is in "
              f"{edit.backup}); a running service takes it within "
              f"{settings.policy_poll:g} s")
    return 0


def _shown(value: Any) -> str:
    if value is None:
        return "(the section's contacts)"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


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
    if arguments.alerts_command == "ack":
        return "alerts.ack", {"ids": list(arguments.ids), "by": who}
    return f"alerts.{arguments.alerts_command}", {"type": arguments.type, "by": who}


async def _on_store(settings: Settings, command: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The lock commands on the Redis store directly (no service running here)."""
    from sipguard.alerts.control import lock_handlers  # noqa: PLC0415 - only without a service

    try:
        policy: Policy | None = load_policy_file(settings.policy_path).policy
    except ConfigError:
        policy = None  # an invalid policy here: no check of the name
    store = make_store(settings)
    try:
        handlers = lock_handlers(Locks(store, silent_logger()),
                                 None if policy is None else lambda: policy)
        return {"ok": True, **await handlers[command](fields)}
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
        print("lockdown ON: no international or premium calls from any account (emergency "
              "calls go through)" if reply.get("lockdown") else "lockdown off")
    elif command in ("locks", "lockdown"):
        _print_locks(arguments, reply)
    elif arguments.alerts_command == "list":
        _print_alerts(arguments, reply)
    elif arguments.alerts_command == "ack":
        done = reply["acknowledged"]
        print(f"acknowledged {len(done)} alert{'s' if len(done) != 1 else ''}"
              + (f": {', '.join(done)}" if done else ""))
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
    snoozed = reply.get("snoozed")
    if snoozed is None:
        print("snoozed: unknown (the state store does not answer)")
    for name, left in sorted((snoozed or {}).items()):
        print(f"snoozed: {name} ({int(left) // 60} min left)")
    if not reply["alerts"]:
        print("no alerts kept")
        return
    print(f"{reply.get('open', 0)} open (acknowledge with: sipguard alerts ack ID|all)")
    for alert in reply["alerts"]:
        done = alert.get("acknowledged")
        state = f"ack by {done['by']}" if done else "OPEN"
        print(f"{alert['at']}  {alert['id'][:12]}  {alert['level']:<7}  {alert['type']:<20}  "
              f"{state:<16}  {alert['text']}")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
