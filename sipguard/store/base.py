"""The StateStore Protocol and what it takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


class StoreUnavailableError(Exception):
    """The store could not answer in time; the caller fails open or closed."""


@dataclass(frozen=True, slots=True)
class CounterRequest:
    """One counter a call is to be counted on.

    ``kind`` is ``rate`` (``window`` = the sliding window in seconds) or
    ``lease`` (``window`` = how long the lease lives unless renewed).
    A ``hard`` counter refuses the whole take when the call would exceed
    ``maximum`` on it.
    """

    key: str
    kind: Literal["rate", "lease"]
    maximum: int
    window: float
    hard: bool


class StateStore(Protocol):
    """Counters and leases; MemoryStore for one node, RedisStore for several."""

    async def try_take(self, requests: Sequence[CounterRequest], call_id: str,
                       now: float) -> tuple[bool, list[int]]:
        """Count the call on every counter, unless a hard one would be exceeded.

        Returns (taken, counts): with ``taken`` the counts include the call;
        without it nothing was recorded and the counts are the current ones.
        """
        ...

    async def release(self, keys: Sequence[str], call_id: str) -> None:
        """Drop the call's leases (the call ended)."""
        ...

    async def release_many(self, releases: Sequence[tuple[Sequence[str], str]]) -> None:
        """Drop the leases of several calls at once (one round trip for Redis)."""
        ...

    async def renew(self, keys: Sequence[str], call_id: str, ttl: float, now: float) -> None:
        """Extend the call's leases (the call is still up); a lost lease is re-created."""
        ...

    async def peek(self, requests: Sequence[CounterRequest], now: float) -> list[int]:
        """Current counts, recording nothing (for explain and the dashboard)."""
        ...

    async def spent(self, windows: Sequence[tuple[str, float]], now: float) -> list[float]:
        """The amounts recorded on each (key, window) within its window."""
        ...

    async def add_spend(self, entries: Sequence[tuple[str, float]], amount: float,
                        call_id: str, now: float) -> None:
        """Record what a call cost on each (key, window)."""
        ...

    async def reserve_spend(self, budgets: Sequence[tuple[str, float, float]], call_id: str,
                            wanted: float | None, now: float) -> tuple[float, list[float]]:
        """Atomically set aside what a call may spend, on every (key, window, maximum).

        Grants the smallest remaining budget (at most ``wanted``), records it
        as the call's reservation on every key, and returns (granted, the
        totals spent before it). Nothing is recorded when nothing is left.
        """
        ...

    async def settle_spend(self, entries: Sequence[tuple[str, float]], call_id: str,
                           actual: float, now: float) -> None:
        """Replace a call's reservation by what it really cost (0 when unanswered)."""
        ...

    async def streak(self, key: str, number: str, ttl: float, now: float) -> int:
        """Count a call to ``number`` on a run of consecutive calls; return the run's length.

        A call to another number starts a new run at 1; so does a key left
        untouched for ``ttl`` seconds.
        """
        ...

    async def count_event(self, key: str, window: float, now: float) -> int:
        """Count one event on ``key``; return the events within the last ``window`` seconds,
        this one included (failed PINs, refused sources)."""
        ...

    async def clear(self, keys: Sequence[str]) -> None:
        """Forget these keys entirely, whatever they hold."""
        ...

    async def put_mark(self, key: str, value: str, ttl: float, now: float) -> None:
        """Set a mark that expires ``ttl`` seconds after ``now`` (a lock, a ban)."""
        ...

    async def get_mark(self, key: str, now: float) -> tuple[str, float] | None:
        """The mark's value and the seconds it has left at ``now``; None when absent or expired."""
        ...

    async def get_marks(self, keys: Sequence[str],
                        now: float) -> list[tuple[str, float] | None]:
        """:meth:`get_mark` of several keys at once (one round trip for Redis)."""
        ...

    async def list_marks(self, prefix: str, now: float) -> list[tuple[str, str, float]]:
        """Every live mark whose key starts with ``prefix``: (key, value, seconds left)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
