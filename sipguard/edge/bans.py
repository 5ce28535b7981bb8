"""Bans: fail2ban for SIP, shared by every node through the state store.

Each failure a source causes (a request from an address that is no peer, a
scanner's request, a flood, a malformed message, a failed authentication) is
counted in the store over ``findtime`` seconds; ``maxretry`` failures ban the
source for ``bantime`` seconds, longer for a repeat offender (``growth``
times longer for each earlier ban within ``offence_window``, at most
``max_bantime``). A ban is a mark ``ban:<address>`` in the store, so every
node refuses the source; each node keeps its :class:`EdgeFilter` in step
with the store's bans (:meth:`Bans.sync`). Configured peers and trunks are
never banned.

Two clocks meet here: the store's marks are on the wall clock (shared by
every node); the filter is on the event loop's monotonic clock. A ban's
seconds left convert one into the other.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sipguard.edge.filter import EdgeFilter
from sipguard.store import StateStore, StoreUnavailableError

BAN_PREFIX = "ban:"


@dataclass(frozen=True, slots=True)
class BanSettings:
    """How failures turn into bans (the ``edge`` section of the configuration)."""

    findtime: float = 600.0  # seconds failures are counted over
    maxretry: int = 5  # failures within findtime that ban a source
    bantime: float = 3600.0  # seconds of a first ban
    growth: float = 2.0  # each earlier ban within offence_window multiplies the next by this
    max_bantime: float = 7 * 86400.0
    offence_window: float = 30 * 86400.0  # how long earlier bans are remembered


@dataclass(frozen=True, slots=True)
class Ban:
    """One ban, as listed."""

    address: str
    reason: str
    seconds_left: float
    offences: int = 1
    by: str = "sipguard"  # sipguard (automatic) or who added it by hand


def normalised_address(text: str) -> str:
    """An IP address in its canonical text form (ValueError when it is not one)."""
    return str(ipaddress.ip_address(text.strip().strip("[]")))


class Bans:
    """Counts failures, bans, unbans, and keeps the filter in step with the store."""

    def __init__(self, settings: BanSettings, store: StateStore, edge: EdgeFilter,
                 log: Any) -> None:
        self.settings = settings
        self.store = store
        self.edge = edge
        self.log = log
        # Told of every ban (address, reason, seconds, by): the alerts.
        self.on_ban: Callable[[str, str, float, str], None] | None = None

    async def failure(self, host: str, reason: str, wall: float, monotonic: float) -> bool:
        """Count one failure of ``host``; ban it when it has had too many. True if banned."""
        if self.edge.is_exempt(host):
            return False
        try:
            failures = await self.store.count_event(f"edge:fail:{host}", self.settings.findtime,
                                                    wall)
        except StoreUnavailableError as error:
            self.log.warning("ban.store_unavailable", address=host, error=str(error))
            return False
        if failures < self.settings.maxretry:
            return False
        await self.ban(host, f"{failures} failures, the last: {reason}", wall, monotonic)
        return True

    async def ban(self, host: str, reason: str, wall: float, monotonic: float,
                  seconds: float | None = None, by: str = "sipguard") -> Ban | None:
        """Ban ``host`` (for ``seconds``, else by the growing bantime). None when exempt."""
        host = normalised_address(host)
        if self.edge.is_exempt(host):
            self.log.warning("ban.refused", address=host, reason="a configured peer or trunk")
            return None
        offences = 1
        try:
            offences = await self.store.count_event(f"edge:offences:{host}",
                                                    self.settings.offence_window, wall)
        except StoreUnavailableError as error:
            self.log.warning("ban.store_unavailable", address=host, error=str(error))
        if seconds is None:
            seconds = min(self.settings.bantime * self.settings.growth ** (offences - 1),
                          self.settings.max_bantime)
        record = json.dumps({"reason": reason, "offences": offences, "by": by})
        self.edge.ban(host, monotonic + seconds, monotonic)  # this node now, whatever the store
        try:
            await self.store.put_mark(BAN_PREFIX + host, record, seconds, wall)
            await self.store.clear([f"edge:fail:{host}"])
        except StoreUnavailableError as error:
            self.log.warning("ban.store_unavailable", address=host, error=str(error),
                             consequence="banned on this node only")
        self.log.warning("ban.added", address=host, reason=reason, seconds=round(seconds),
                         offences=offences, by=by)
        if self.on_ban is not None:
            self.on_ban(host, reason, seconds, by)
        return Ban(host, reason, seconds, offences, by)

    async def unban(self, host: str, by: str = "sipguard") -> bool:
        """Lift a ban everywhere; True when there was one."""
        host = normalised_address(host)
        was = host in self.edge.banned
        self.edge.unban(host)
        try:
            was = was or await self.store.get_mark(BAN_PREFIX + host, 0.0) is not None
            await self.store.clear([BAN_PREFIX + host, f"edge:fail:{host}"])
        except StoreUnavailableError as error:
            self.log.warning("ban.store_unavailable", address=host, error=str(error))
        self.log.warning("ban.removed", address=host, by=by)
        return was

    async def list(self, wall: float) -> list[Ban]:
        """Every ban in force, longest left first."""
        bans = [_ban_of(key[len(BAN_PREFIX):], value, left)
                for key, value, left in await self.store.list_marks(BAN_PREFIX, wall)]
        return sorted(bans, key=lambda ban: -ban.seconds_left)

    async def sync(self, wall: float, monotonic: float) -> None:
        """Take the store's bans into this node's filter (other nodes' bans, lifted ones)."""
        try:
            marks = await self.store.list_marks(BAN_PREFIX, wall)
        except StoreUnavailableError:
            return  # keep what the filter has
        self.edge.set_bans({key[len(BAN_PREFIX):]: monotonic + left for key, _, left in marks})


def _ban_of(address: str, value: str, left: float) -> Ban:
    try:
        record = json.loads(value)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    return Ban(address, str(record.get("reason", value)), left, int(record.get("offences", 1)),
               str(record.get("by", "sipguard")))
