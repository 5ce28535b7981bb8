"""Account locks and the kill switch, kept in the state store so every node honours them.

- ``sipguard lock ACCOUNT [--class international|all]`` stops that account's
  international and premium-rate dialling (or all of it), until ``sipguard unlock
  ACCOUNT``. An
  urgent alert can set the same lock by itself (the policy's
  ``alerts.lock_on_urgent``).
- ``sipguard lockdown on|off``: the kill switch; no international (or premium-rate)
  call from any account, on any node, until it is switched off.

Emergency calls are never stopped by either: screening consults the locks
only for calls that are not emergency calls. A lock is a mark
(``lock:<account>``, and ``lockdown``) read on every call, so a lock set on
one node stops the next call on every node. When the store does not answer,
the locks last read are used (a lock never silently lapses in an outage).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

from sipguard.policy import Decision, TraceEntry, Verdict
from sipguard.store import StateStore, StoreUnavailableError

LOCK_PREFIX = "lock:"
LOCKDOWN_KEY = "lockdown"
FOREVER = 10 * 365 * 86400.0  # a lock lasts until it is lifted
SCOPES = ("international", "all")
STOPPED_BY_INTERNATIONAL = frozenset({"international", "premium"})


@dataclass(frozen=True, slots=True)
class Lock:
    """One lock: on an account (``scope`` international or all), or the kill switch."""

    account: str  # "*" for the kill switch
    scope: str
    reason: str
    by: str
    since: float

    def stops(self, number_class: str | None) -> bool:
        """Whether a (non-emergency) call of this class is stopped. The international
        scope stops premium-rate numbers too, at home or abroad: the engine classes an
        international premium number as premium, and IRSF is made of those."""
        return self.scope == "all" or number_class in STOPPED_BY_INTERNATIONAL

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _encode(lock: Lock) -> str:
    return json.dumps({"scope": lock.scope, "reason": lock.reason, "by": lock.by,
                       "since": lock.since})


def _decode(account: str, value: str) -> Lock:
    try:
        data = json.loads(value)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    scope = data.get("scope") if data.get("scope") in SCOPES else "international"
    return Lock(account, str(scope), str(data.get("reason", "")), str(data.get("by", "?")),
                float(data.get("since", 0.0) or 0.0))


class Locks:
    """Sets, lifts, lists and checks locks in the store."""

    def __init__(self, store: StateStore, log: Any) -> None:
        self.store = store
        self.log = log
        self._known: dict[str, Lock | None] = {}  # what the store last said, by key
        self.refused = 0  # calls a lock or the kill switch refused
        self.set = 0  # locks set (by hand or by an alert)

    async def lock(self, account: str, scope: str, reason: str, by: str) -> Lock:
        """Lock an account (replacing a lock it has)."""
        if scope not in SCOPES:
            raise ValueError(f"class must be one of {', '.join(SCOPES)}")
        if not account or account == "*":
            raise ValueError("name an account")
        lock = Lock(account, scope, reason, by, time.time())
        await self.store.put_mark(LOCK_PREFIX + account, _encode(lock), FOREVER, time.time())
        self._known[LOCK_PREFIX + account] = lock
        self.set += 1
        self.log.warning("lock.added", account=account, scope=scope, reason=reason, by=by)
        return lock

    async def unlock(self, account: str, by: str) -> bool:
        """Lift an account's lock; True when it had one."""
        key = LOCK_PREFIX + account
        had = await self.store.get_mark(key, time.time()) is not None
        await self.store.clear([key])
        self._known[key] = None
        self.log.warning("lock.removed", account=account, by=by, had_lock=had)
        return had

    async def lockdown(self, on: bool, reason: str, by: str) -> Lock | None:
        """Switch the kill switch on (international dialling stops everywhere) or off."""
        if on:
            lock = Lock("*", "international", reason, by, time.time())
            await self.store.put_mark(LOCKDOWN_KEY, _encode(lock), FOREVER, time.time())
            self._known[LOCKDOWN_KEY] = lock
            self.log.error("lockdown.on", reason=reason, by=by,
                           consequence="no international or premium call from any account")
            return lock
        await self.store.clear([LOCKDOWN_KEY])
        self._known[LOCKDOWN_KEY] = None
        self.log.warning("lockdown.off", by=by)
        return None

    async def listing(self) -> tuple[list[Lock], Lock | None]:
        """The account locks in force, and the kill switch (None when off)."""
        now = time.time()
        locks = [_decode(key[len(LOCK_PREFIX):], value)
                 for key, value, _ in await self.store.list_marks(LOCK_PREFIX, now)]
        switch = await self.store.get_mark(LOCKDOWN_KEY, now)
        return (sorted(locks, key=lambda lock: lock.account),
                None if switch is None else _decode("*", switch[0]))

    async def current(self, account: str) -> tuple[Lock | None, Lock | None]:
        """The account's lock and the kill switch, from the store; when it does not answer,
        as last read."""
        keys = [LOCK_PREFIX + account, LOCKDOWN_KEY]
        try:
            marks = await self.store.get_marks(keys, time.time())
        except StoreUnavailableError:
            return self._known.get(keys[0]), self._known.get(keys[1])
        found = [None if mark is None else _decode(account if key != LOCKDOWN_KEY else "*",
                                                    mark[0])
                 for key, mark in zip(keys, marks, strict=True)]
        if len(self._known) > 10_000:
            self._known = {LOCKDOWN_KEY: self._known.get(LOCKDOWN_KEY)}
        self._known.update(zip(keys, found, strict=True))
        return found[0], found[1]

    def last_lockdown(self) -> Lock | None:
        """The kill switch as last read (no store access)."""
        return self._known.get(LOCKDOWN_KEY)

    def stats(self) -> dict[str, Any]:
        """Counts for the stats line and the metrics (as last read: no store access)."""
        return {"refused": self.refused, "set": self.set,
                "lockdown": self._known.get(LOCKDOWN_KEY) is not None}

    async def apply(self, account: str, decision: Decision) -> Decision:
        """The decision once locks are applied: a call they stop is refused."""
        if decision.verdict is Verdict.REJECT or decision.rule == "emergency":
            return decision
        lock, switch = await self.current(account)
        for held, rule, what in ((switch, "lockdown",
                                  "kill switch on: no international or premium calls"),
                                 (lock, f"lock:{account}", f"account {account} locked")):
            if held is not None and held.stops(decision.number_class):
                scope = ("all calls" if held.scope == "all"
                         else "international and premium calls")
                detail = f"{what} ({scope}; by {held.by}: {held.reason})"
                entry = TraceEntry(rule, True, detail, "lock", "deny")
                self.refused += 1
                return dataclasses.replace(
                    decision, verdict=Verdict.REJECT, rule=rule, would="deny",
                    category="dialling locked", reason=detail,
                    trace=(*decision.trace, entry))
        return decision
