"""The edge as the service runs it: the filter, the bans, the blocklist file.

:class:`EdgeGuard` is what the service holds. Per datagram it asks the filter
(no I/O); failures (from the filter's drops and the controller's
``SourceFailure`` commands) are reported at most once a second per source and
counted in the store in the background; a loop keeps the filter's bans in step
with the store's and reloads the blocklist file when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sipguard.b2bua import Network, Peer, Trunk
from sipguard.control import Handler
from sipguard.edge.bans import Ban, Bans
from sipguard.edge.filter import Drop, EdgeFilter, parse_blocklist

# A blocklist file as read: its mtime, its networks, and the lines that were none.
LoadedBlocklist = tuple[float, list[Network], list[tuple[int, str]]]
REPORT_EVERY = 1.0  # seconds: a source's failures are counted at most this often
REPORTED_SOURCES = 10_000  # sources remembered for that (then the table starts again)


def known_networks(peers: list[Peer], trunks: list[Trunk],
                   extra_hosts: tuple[str, ...] = ()) -> list[Network]:
    """Every peer's networks (those that authenticate too), the trunks and ``extra_hosts``
    (the IVR): sources that are never silently dropped as strangers."""
    from ipaddress import ip_network  # noqa: PLC0415 - only here

    networks: list[Network] = [network for peer in peers for network in peer.networks]
    networks += [ip_network(host) for host in (*(trunk.address[0] for trunk in trunks),
                                               *extra_hosts)]
    return networks


def exempt_networks(peers: list[Peer], trunks: list[Trunk]) -> list[Network]:
    """What is never dropped or banned: every peer's networks and every trunk's address."""
    from ipaddress import ip_network  # noqa: PLC0415 - only here

    # A peer that authenticates is known by its password, not its address: its
    # networks (often the whole internet) are not exempt.
    networks: list[Network] = [network for peer in peers if peer.auth is None
                               for network in peer.networks]
    networks += [ip_network(trunk.address[0]) for trunk in trunks]
    return networks


class EdgeGuard:
    """Filter, bans and blocklist, with the background work they need."""

    def __init__(self, edge: EdgeFilter, bans: Bans, log: Any,
                 blocklist: Path | None = None, unknown_sources: str = "reject",
                 sync_seconds: float = 2.0, known: list[Network] | None = None) -> None:
        self.filter = edge
        # Sources within some peer's networks (one that authenticates included): never
        # dropped as strangers, never banned at once, and banned only for failing to
        # authenticate (anything else from them may be spoofed, or a busy PBX).
        self._known = EdgeFilter(known or [])
        self.bans = bans
        self.log = log
        self.blocklist = blocklist
        self.drop_unknown = unknown_sources == "drop"
        self.sync_seconds = sync_seconds
        self._reported: dict[str, float] = {}
        self._blocklist_mtime: float | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- per datagram -----------------------------------------------------------------

    def check(self, host: str, data: bytes, now: float) -> Drop | None:
        """Whether to drop a datagram before parsing; floods and scanners count as failures."""
        drop = self.filter.check(host, data, now)
        if drop is Drop.SCANNER:
            # A scanner's own User-Agent is evidence enough: banned at once.
            self.report(host, "a known scanner's User-Agent", now, at_once=True)
        elif drop is Drop.FLOOD:
            self.report(host, "flood", now)
        elif drop is None and self.drop_unknown and not self._known.is_exempt(host):
            # Not a peer, and told to stay silent to strangers.
            self.filter.dropped[Drop.UNKNOWN] += 1
            self.report(host, "not a peer", now)
            return Drop.UNKNOWN
        return drop

    def admit(self, host: str, now: float) -> bool:
        """Whether to take a TCP/TLS connection from ``host``: not banned or blocklisted
        (the same answer the datagrams of every other transport get)."""
        return self.filter.refuses(host, now) is None

    def report(self, host: str, reason: str, now: float, at_once: bool = False) -> None:
        """Count a failure of ``host`` in the background; ``at_once`` bans it without
        waiting for maxretry failures. Every failed authentication counts (each is a
        guess); other failures count at most once a second per source (a flood's
        thousands of drops are one failure a second, not a store write each)."""
        if self.filter.is_exempt(host):
            return
        authentication = reason.startswith("authentication failed")
        if self._known.is_exempt(host) and not authentication:
            return
        last = self._reported.get(host)
        if not authentication and last is not None and now - last < REPORT_EVERY:
            return
        if len(self._reported) >= REPORTED_SOURCES:
            self._reported.clear()
        self._reported[host] = now
        if at_once:
            if not self.filter.is_banned(host, now):
                self._spawn(self.bans.ban(host, reason, time.time(), now))
            return
        self._spawn(self.bans.failure(host, reason, time.time(), now))

    # -- by hand (CLI, control socket) -----------------------------------------------------

    async def ban(self, host: str, seconds: float | None, reason: str, by: str,
                  now: float) -> Ban | None:
        return await self.bans.ban(host, reason, time.time(), now, seconds=seconds, by=by)

    async def unban(self, host: str, by: str) -> bool:
        return await self.bans.unban(host, by=by)

    async def list(self) -> list[Ban]:
        return await self.bans.list(time.time())

    def handlers(self, clock: Callable[[], float]) -> dict[str, Handler]:
        """The control socket's bans.* commands (``clock`` is the loop's time)."""

        async def listed(_: dict[str, Any]) -> dict[str, Any]:
            return {"bans": [asdict(ban) for ban in await self.list()]}

        async def added(request: dict[str, Any]) -> dict[str, Any]:
            seconds = request.get("seconds")
            if seconds is not None and not 0 < float(seconds) <= 10 * 365 * 86400:
                raise ValueError("seconds must be a number above 0 (at most ten years)")
            ban = await self.ban(str(request["address"]),
                                 None if seconds is None else float(seconds),
                                 str(request.get("reason") or "added by hand"),
                                 str(request.get("by") or "cli"), clock())
            if ban is None:
                raise ValueError("a configured peer or trunk is never banned")
            return {"ban": asdict(ban)}

        async def removed(request: dict[str, Any]) -> dict[str, Any]:
            return {"removed": await self.unban(str(request["address"]),
                                                str(request.get("by") or "cli"))}

        return {"bans.list": listed, "bans.add": added, "bans.remove": removed}

    # -- background ------------------------------------------------------------------------

    def load_blocklist(self) -> bool:
        """Read the blocklist file when it changed; a bad line is logged, the rest used."""
        return self._apply_blocklist(self._read_blocklist())

    async def refresh_blocklist(self) -> bool:
        """As load_blocklist, reading and parsing off the event loop (a feed can be big)."""
        return self._apply_blocklist(await asyncio.to_thread(self._read_blocklist))

    def _read_blocklist(self) -> LoadedBlocklist | None:
        path = self.blocklist
        if path is None:
            return None
        try:
            mtime = path.stat().st_mtime
            if mtime == self._blocklist_mtime:
                return None
            text = path.read_text(errors="replace")
        except OSError as error:
            self.log.error("edge.blocklist_unreadable", path=str(path), error=str(error))
            return None
        return (mtime, *parse_blocklist(text))

    def _apply_blocklist(self, loaded: LoadedBlocklist | None) -> bool:
        path = self.blocklist
        if loaded is None or path is None:
            return False
        mtime, networks, bad = loaded
        self._blocklist_mtime = mtime
        self.filter.set_blocklist(networks)
        for number, line in bad[:20]:
            self.log.warning("edge.blocklist_line_skipped", path=f"{path}:{number}", line=line)
        self.log.info("edge.blocklist_loaded", path=str(path), networks=len(networks),
                      skipped=len(bad))
        return True

    async def run(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep the filter's bans in step with the store's, and the blocklist fresh."""
        while True:
            with contextlib.suppress(Exception):
                await self.bans.sync(time.time(), loop.time())
            await self.refresh_blocklist()
            await asyncio.sleep(self.sync_seconds)

    def stats(self) -> dict[str, Any]:
        dropped = {drop.value: count for drop, count in self.filter.dropped.items()}
        return {"dropped_before_parsing": dropped, "bans": len(self.filter.banned),
                "tracked_sources": self.filter.sources}

    async def settle(self) -> None:
        """Wait (briefly) for failures still being counted."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("edge.failure_not_counted", error=str(task.exception()))
