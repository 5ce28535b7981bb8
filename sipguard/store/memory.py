"""The in-memory store: one node, nothing to install (the default)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from sipguard.store.base import CounterRequest

SWEEP_EVERY = 1024  # takes (or events counted) between sweeps of idle keys
EVENT_KEYS = 100_000  # event logs kept before idle ones are swept


class MemoryStore:
    """Sliding-window logs and lease tables in dictionaries.

    Every method runs without awaiting anything, so on one event loop each
    call is atomic, as the Redis scripts are.
    """

    def __init__(self) -> None:
        self._windows: dict[str, collections.deque[float]] = {}
        self._window_of: dict[str, float] = {}  # each rate key's window, for the sweep
        self._takes = 0
        self._leases: dict[str, dict[str, float]] = {}
        self._spend: dict[str, collections.deque[tuple[float, float]]] = {}
        self._reserved: dict[tuple[str, str], tuple[float, float]] = {}  # (key, call) -> (t, x)
        self._streaks: dict[str, tuple[str, int, float]] = {}  # key -> number, run, expiry
        self._events: dict[str, collections.deque[float]] = {}
        self._event_window: dict[str, float] = {}  # each event key's window, for the sweep
        self._event_counts = 0
        self._marks: dict[str, tuple[str, float]] = {}  # key -> value, expiry

    def _count(self, request: CounterRequest, now: float) -> int:
        if request.kind == "rate":
            times = self._windows.get(request.key)
            if times is None:
                return 0
            while times and times[0] <= now - request.window:
                times.popleft()
            if not times:
                del self._windows[request.key]
                return 0
            return len(times)
        leases = self._leases.get(request.key)
        if leases is None:
            return 0
        for call_id in [call for call, expiry in leases.items() if expiry <= now]:
            del leases[call_id]
        if not leases:
            del self._leases[request.key]
            return 0
        return len(leases)

    async def try_take(self, requests: Sequence[CounterRequest], call_id: str,
                       now: float) -> tuple[bool, list[int]]:
        """Count the call everywhere, or nowhere when a hard limit would be exceeded."""
        counts = [self._count(request, now) for request in requests]
        if any(request.hard and count + 1 > request.maximum
               for request, count in zip(requests, counts, strict=True)):
            return False, counts
        self._takes += 1
        if self._takes % SWEEP_EVERY == 0:
            self._sweep(now)
        for request in requests:
            if request.kind == "rate":
                self._windows.setdefault(request.key, collections.deque()).append(now)
                self._window_of[request.key] = request.window
            else:
                self._leases.setdefault(request.key, {})[call_id] = now + request.window
        return True, [count + 1 for count in counts]

    def _sweep(self, now: float) -> None:
        """Forget rate keys whose newest entry left its window (per-number keys pile up)."""
        for key in [key for key, times in self._windows.items()
                    if not times or times[-1] <= now - self._window_of.get(key, 0.0)]:
            del self._windows[key]
            self._window_of.pop(key, None)
        for key in [key for key, leases in self._leases.items()
                    if all(expiry <= now for expiry in leases.values())]:
            del self._leases[key]

    async def release(self, keys: Sequence[str], call_id: str) -> None:
        """Drop the call's leases."""
        for key in keys:
            leases = self._leases.get(key)
            if leases is not None:
                leases.pop(call_id, None)
                if not leases:
                    del self._leases[key]

    async def release_many(self, releases: Sequence[tuple[Sequence[str], str]]) -> None:
        """Drop the leases of several calls."""
        for keys, call_id in releases:
            await self.release(keys, call_id)

    async def renew(self, keys: Sequence[str], call_id: str, ttl: float, now: float) -> None:
        """Extend the call's leases (re-creating one that expired: the call is live)."""
        for key in keys:
            self._leases.setdefault(key, {})[call_id] = now + ttl

    async def peek(self, requests: Sequence[CounterRequest], now: float) -> list[int]:
        """Current counts."""
        return [self._count(request, now) for request in requests]

    async def spent(self, windows: Sequence[tuple[str, float]], now: float) -> list[float]:
        """The amounts within each window (reservations of live calls included)."""
        totals = []
        for key, window in windows:
            entries = self._spend.get(key)
            total = 0.0
            if entries is not None:
                while entries and entries[0][0] <= now - window:
                    entries.popleft()
                if not entries:
                    del self._spend[key]
                total = sum(amount for _, amount in entries)
            for (reserved_key, call_id), (when, amount) in list(self._reserved.items()):
                if reserved_key == key:
                    if when <= now - window:
                        del self._reserved[(reserved_key, call_id)]
                    else:
                        total += amount
            totals.append(total)
        return totals

    async def reserve_spend(self, budgets: Sequence[tuple[str, float, float]], call_id: str,
                            wanted: float | None, now: float) -> tuple[float, list[float]]:
        """Set aside the smallest remaining budget (at most ``wanted``) on every key."""
        totals = await self.spent([(key, window) for key, window, _ in budgets], now)
        remaining = min((maximum - total for (_, _, maximum), total
                         in zip(budgets, totals, strict=True)), default=0.0)
        granted = remaining if wanted is None else min(remaining, wanted)
        if granted <= 0:
            return 0.0, totals
        for key, _, _ in budgets:
            self._reserved[(key, call_id)] = (now, granted)
        return granted, totals

    async def settle_spend(self, entries: Sequence[tuple[str, float]], call_id: str,
                           actual: float, now: float) -> None:
        """Replace the call's reservation by its real cost."""
        for key, _window in entries:
            self._reserved.pop((key, call_id), None)
            if actual > 0:
                self._spend.setdefault(key, collections.deque()).append((now, actual))

    async def add_spend(self, entries: Sequence[tuple[str, float]], amount: float,
                        call_id: str, now: float) -> None:
        """Record a call's cost."""
        for key, _window in entries:
            self._spend.setdefault(key, collections.deque()).append((now, amount))

    async def streak(self, key: str, number: str, ttl: float, now: float) -> int:
        """Count a call on the run of consecutive calls to one number."""
        last = self._streaks.get(key)
        run = last[1] + 1 if last is not None and last[0] == number and last[2] > now else 1
        self._streaks[key] = (number, run, now + ttl)
        if len(self._streaks) > 100000:  # forget runs that ended long ago
            for stale in [k for k, (_, _, expiry) in self._streaks.items() if expiry <= now]:
                del self._streaks[stale]
        return run

    async def count_event(self, key: str, window: float, now: float) -> int:
        """Count one event on a sliding window; return the events within it."""
        times = self._events.setdefault(key, collections.deque())
        self._event_window[key] = window
        while times and times[0] <= now - window:
            times.popleft()
        times.append(now)
        self._event_counts += 1
        if len(self._events) > EVENT_KEYS and self._event_counts % SWEEP_EVERY == 0:
            # Forget keys whose events all left their own window (not the caller's:
            # a long-lived key, such as a count of earlier bans, keeps its history).
            for stale in [k for k, t in self._events.items()
                          if not t or t[-1] <= now - self._event_window.get(k, 0.0)]:
                del self._events[stale]
                self._event_window.pop(stale, None)
        return len(times)

    async def clear(self, keys: Sequence[str]) -> None:
        """Forget these keys, whatever they hold."""
        for key in keys:
            tables: tuple[dict[str, Any], ...] = (
                self._windows, self._window_of, self._leases, self._spend, self._streaks,
                self._events, self._event_window, self._marks)
            for table in tables:
                table.pop(key, None)
            for reserved in [pair for pair in self._reserved if pair[0] == key]:
                del self._reserved[reserved]

    async def put_mark(self, key: str, value: str, ttl: float, now: float) -> None:
        """Set a mark that expires ``ttl`` seconds after ``now``."""
        self._marks[key] = (value, now + ttl)
        if len(self._marks) > 100000:
            for stale in [k for k, (_, expiry) in self._marks.items() if expiry <= now]:
                del self._marks[stale]

    async def get_mark(self, key: str, now: float) -> tuple[str, float] | None:
        """The mark's value and its seconds left, or None."""
        mark = self._marks.get(key)
        if mark is None:
            return None
        value, expiry = mark
        if expiry <= now:
            del self._marks[key]
            return None
        return value, expiry - now

    async def get_marks(self, keys: Sequence[str],
                        now: float) -> list[tuple[str, float] | None]:
        """The marks' values and seconds left (None for each one absent or expired)."""
        return [await self.get_mark(key, now) for key in keys]

    async def list_marks(self, prefix: str, now: float) -> list[tuple[str, str, float]]:
        """Every live mark whose key starts with ``prefix``."""
        return [(key, value, expiry - now) for key, (value, expiry) in self._marks.items()
                if key.startswith(prefix) and expiry > now]

    async def close(self) -> None:
        """Nothing to release."""
