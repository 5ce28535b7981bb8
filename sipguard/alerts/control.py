"""The control socket's ``locks.*`` and ``alerts.*`` commands (what `sipguard lock`,
`unlock`, `lockdown`, `locks` and `alerts` send to the running service)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipguard.alerts.watch import Alerting
from sipguard.control import Handler
from sipguard.policy import AlertType, Policy
from sipguard.screening import Locks
from sipguard.store import StoreUnavailableError


def lock_handlers(locks: Locks,
                  policy: Callable[[], Policy] | None = None) -> dict[str, Handler]:
    """locks.list, locks.lock, locks.unlock, locks.lockdown. With ``policy`` (the one in
    force), a lock on a name that is no account of it is refused: a typo must not look
    like a lock."""

    async def listed(_: dict[str, Any]) -> dict[str, Any]:
        held, switch = await locks.listing()
        return {"locks": [lock.as_dict() for lock in held],
                "lockdown": None if switch is None else switch.as_dict()}

    async def lock(request: dict[str, Any]) -> dict[str, Any]:
        if policy is not None and policy().account(str(request["account"])) is None:
            names = sorted(account.name for account in policy().accounts)
            raise ValueError(f"no account named {request['account']!r} in the policy "
                             f"(accounts: {', '.join(names)})")
        held = await locks.lock(str(request["account"]), str(request.get("scope") or
                                                             "international"),
                                str(request.get("reason") or "locked by hand"),
                                str(request.get("by") or "cli"))
        return {"lock": held.as_dict()}

    async def unlock(request: dict[str, Any]) -> dict[str, Any]:
        return {"removed": await locks.unlock(str(request["account"]),
                                              str(request.get("by") or "cli"))}

    async def lockdown(request: dict[str, Any]) -> dict[str, Any]:
        on = request.get("on")
        if not isinstance(on, bool):
            raise ValueError("on must be true or false")
        switch = await locks.lockdown(on, str(request.get("reason") or "kill switch"),
                                      str(request.get("by") or "cli"))
        return {"lockdown": None if switch is None else switch.as_dict()}

    return {"locks.list": listed, "locks.lock": lock, "locks.unlock": unlock,
            "locks.lockdown": lockdown}


def alert_handlers(alerting: Alerting) -> dict[str, Handler]:
    """alerts.list, alerts.ack, alerts.snooze, alerts.unsnooze."""

    def alert_type(request: dict[str, Any]) -> AlertType:
        name = str(request.get("type"))
        try:
            return AlertType(name)
        except ValueError:
            known = ", ".join(kind.value for kind in AlertType)
            raise ValueError(f"{name!r} is not an alert type (known: {known})") from None

    async def listed(request: dict[str, Any]) -> dict[str, Any]:
        limit = int(request.get("limit") or 50)
        try:
            snoozed: dict[str, float] | None = await alerting.snoozed()
        except StoreUnavailableError:  # the alerts are this node's: list them all the same
            snoozed = None
        return {"alerts": alerting.journal.listed(limit),
                "open": len(alerting.journal.open_alerts()),
                "snoozed": snoozed, "stats": alerting.stats()}

    async def acknowledge(request: dict[str, Any]) -> dict[str, Any]:
        ids = request.get("ids")
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError('ids: give alert ids, or ["all"]')
        return {"acknowledged": alerting.acknowledge(ids, str(request.get("by") or "cli"))}

    async def snooze(request: dict[str, Any]) -> dict[str, Any]:
        kind = alert_type(request)
        return {"type": kind.value,
                "seconds": await alerting.snooze(kind, str(request.get("by") or "cli"))}

    async def unsnooze(request: dict[str, Any]) -> dict[str, Any]:
        kind = alert_type(request)
        await alerting.unsnooze(kind, str(request.get("by") or "cli"))
        return {"type": kind.value}

    return {"alerts.list": listed, "alerts.ack": acknowledge, "alerts.snooze": snooze,
            "alerts.unsnooze": unsnooze}
