"""The StateStore contract: MemoryStore and RedisStore count, refuse and expire alike.

Every contract test runs twice, once per store: ``store`` is a :class:`StoreCase`
whose ``run`` creates the store inside a fresh event loop (``asyncio.run``; the
Redis client binds to the loop it first runs in), runs the scenario and closes
the store. The Redis store talks to a real redis-server started once for the
session on a free loopback port (tests/store_server.py), flushed before each test.

Time is a parameter: every ``now`` is an explicit value far from the wall clock,
so windows and lease expiries are judged against the ``now`` the test passes,
never against how long the test took.

The Redis-only tests at the end stop, pause and restart a server of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import redis

from sipguard.store import CounterRequest, MemoryStore, StateStore, StoreUnavailableError
from sipguard.store.redis import RedisStore
from tests.store_server import REDIS_SERVER, RedisServer

NOW = 1_000_000.0  # an arbitrary instant; only differences matter
REDIS_TIMEOUT = 0.5  # seconds, as the service would be configured for a slow network
SLACK = 0.3  # seconds a failing call may take beyond the timeout (loop and process jitter)

_T = TypeVar("_T")


def rate(key: str, maximum: int = 100, window: float = 10.0, hard: bool = False) -> CounterRequest:
    """A sliding-window counter."""
    return CounterRequest(key, "rate", maximum, window, hard)


def lease(key: str, maximum: int = 100, ttl: float = 30.0, hard: bool = False) -> CounterRequest:
    """A concurrency counter whose leases live ``ttl`` seconds unless renewed."""
    return CounterRequest(key, "lease", maximum, ttl, hard)


def counter(kind: str, key: str, maximum: int, hard: bool) -> CounterRequest:
    """A counter of either kind (for tests that hold for both)."""
    return rate(key, maximum, hard=hard) if kind == "rate" else lease(key, maximum, hard=hard)


@dataclass(frozen=True)
class StoreCase:
    """One store implementation: how to make it inside a running loop, and run a scenario."""

    name: str
    make: Callable[[], StateStore]

    def run(self, scenario: Callable[[StateStore], Awaitable[_T]]) -> _T:
        """Run ``scenario`` against a new store in a new event loop; close the store after."""

        async def main() -> _T:
            store = self.make()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for the whole session (skipped without one)."""
    if not REDIS_SERVER:
        pytest.fail("redis-server is not installed: ./dev test installs it (apt-get install redis-server)")
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop, pause and restart."""
    if not REDIS_SERVER:
        pytest.fail("redis-server is not installed: ./dev test installs it (apt-get install redis-server)")
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> StoreCase:
    """Each store implementation in turn; the Redis database starts empty."""
    if request.param == "memory":
        return StoreCase("memory", MemoryStore)
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.running:
        server.start()
    with redis.Redis.from_url(server.url, socket_timeout=2.0) as client:
        client.flushdb()
    return StoreCase("redis", lambda: RedisStore(server.url, timeout=REDIS_TIMEOUT))


# --------------------------------------------------------------------------- the contract


def test_rate_counter_counts_over_a_sliding_window(store: StoreCase) -> None:
    """One call a second into a 10 s window: the 11th second drops the first call."""
    window = [rate("rate:ext-intl:asterisk-1/2001", window=10.0)]

    async def scenario(s: StateStore) -> tuple[list[int], list[int]]:
        counts = []
        for second in range(11):
            taken, got = await s.try_take(window, f"call-{second}", NOW + second)
            assert taken
            counts.append(got[0])
        later = [(await s.peek(window, NOW + at))[0] for at in (10.0, 15.5, 19.5, 20.0)]
        return counts, later

    counts, later = store.run(scenario)
    assert counts == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]
    # At 15.5 the calls of seconds 6..10 remain; at 19.5 only second 10's; at 20 none.
    assert later == [10, 5, 1, 0]


@pytest.mark.parametrize("hard_kind", ["rate", "lease"])
def test_hard_counter_at_its_maximum_refuses_and_records_nothing_anywhere(
    store: StoreCase, hard_kind: str
) -> None:
    """A take refused by a full hard counter leaves every counter of that take untouched."""
    requests = [
        rate("rate:account-intl:asterisk-1"),
        lease("concurrency:live:asterisk-1/2001"),
        counter(hard_kind, "hard:ext:asterisk-1/2001", maximum=2, hard=True),
    ]

    async def scenario(s: StateStore) -> dict[str, Any]:
        first = await s.try_take(requests, "call-1", NOW)
        second = await s.try_take(requests, "call-2", NOW + 1)
        refused = await s.try_take(requests, "call-3", NOW + 2)
        after = await s.peek(requests, NOW + 2)
        after_renew = await s.peek(requests, NOW + 3)  # the refused call left nothing
        soft_only = await s.try_take(requests[:2], "call-4", NOW + 4)
        return {
            "first": first,
            "second": second,
            "refused": refused,
            "after": after,
            "after_renew": after_renew,
            "soft_only": soft_only,
        }

    result = store.run(scenario)
    assert result["first"] == (True, [1, 1, 1])
    assert result["second"] == (True, [2, 2, 2])
    assert result["refused"] == (False, [2, 2, 2])  # the current counts, without the call
    assert result["after"] == [2, 2, 2]
    assert result["after_renew"] == [2, 2, 2]
    assert result["soft_only"] == (True, [3, 3])


def test_soft_counters_record_past_their_maximum(store: StoreCase) -> None:
    """Counters that only report (not hard) keep counting beyond their maximum."""
    requests = [
        rate("rate:report:asterisk-1", maximum=2),
        lease("lease:report:asterisk-1", maximum=2),
    ]

    async def scenario(s: StateStore) -> tuple[list[tuple[bool, list[int]]], list[int]]:
        takes = [await s.try_take(requests, f"call-{n}", NOW + n) for n in range(4)]
        return takes, await s.peek(requests, NOW + 4)

    takes, peeked = store.run(scenario)
    assert takes == [(True, [1, 1]), (True, [2, 2]), (True, [3, 3]), (True, [4, 4])]
    assert peeked == [4, 4]


def test_leases_count_live_calls_release_renew_and_expire(store: StoreCase) -> None:
    """Leases count live calls; release drops one, renew extends one, an un-renewed one expires."""
    live = lease("concurrency:live:asterisk-1/2001", ttl=30.0)

    async def scenario(s: StateStore) -> dict[str, Any]:
        taken = [await s.try_take([live], f"call-{n}", NOW) for n in (1, 2, 3)]
        await s.release([live.key], "call-2")
        seen: dict[str, Any] = {"taken": taken, "released": await s.peek([live], NOW + 1)}
        await s.renew([live.key], "call-1", 30.0, NOW + 20)  # call-1 now lives to NOW + 50
        for at in (29.5, 30.5, 49.5, 50.5):
            seen[at] = (await s.peek([live], NOW + at))[0]
        return seen

    seen = store.run(scenario)
    assert seen["taken"] == [(True, [1]), (True, [2]), (True, [3])]
    assert seen["released"] == [2]
    assert seen[29.5] == 2  # call-1 and call-3
    assert seen[30.5] == 1  # call-3 was never renewed: gone at NOW + 30
    assert seen[49.5] == 1  # call-1, renewed at NOW + 20 for 30 s
    assert seen[50.5] == 0


def test_expired_lease_frees_its_place_on_a_hard_counter(store: StoreCase) -> None:
    """A full hard concurrency counter takes a new call once an un-renewed lease has expired."""
    live = lease("concurrency:live:asterisk-1/2001", maximum=1, ttl=30.0, hard=True)

    async def scenario(s: StateStore) -> list[tuple[bool, list[int]]]:
        return [
            await s.try_take([live], "call-1", NOW),
            await s.try_take([live], "call-2", NOW + 29.5),
            await s.try_take([live], "call-3", NOW + 30.5),
        ]

    assert store.run(scenario) == [(True, [1]), (False, [1]), (True, [1])]


def test_peek_counts_without_recording(store: StoreCase) -> None:
    """Peeking any number of times changes no count; unknown counters read 0."""
    requests = [rate("rate:ext-intl:asterisk-1/2001"), lease("concurrency:live:asterisk-1/2001")]
    unknown = [rate("rate:never:used"), lease("lease:never:used")]

    async def scenario(s: StateStore) -> dict[str, Any]:
        await s.try_take(requests, "call-1", NOW)
        await s.try_take(requests, "call-2", NOW + 1)
        peeks = [await s.peek(requests, NOW + 2) for _ in range(3)]
        return {
            "peeks": peeks,
            "unknown": await s.peek(unknown, NOW + 2),
            "next": await s.try_take(requests, "call-3", NOW + 3),
        }

    result = store.run(scenario)
    assert result["peeks"] == [[2, 2]] * 3
    assert result["unknown"] == [0, 0]
    assert result["next"] == (True, [3, 3])


@pytest.mark.parametrize("kind", ["rate", "lease"])
def test_concurrent_takers_get_exactly_the_maximum(store: StoreCase, kind: str) -> None:
    """Twenty takes at once on a hard counter of five: exactly five are taken."""
    limited = [counter(kind, f"{kind}:ext-intl:asterisk-1/2001", maximum=5, hard=True)]

    async def scenario(s: StateStore) -> tuple[list[tuple[bool, list[int]]], list[int]]:
        takes = await asyncio.gather(*(s.try_take(limited, f"call-{n}", NOW) for n in range(20)))
        return list(takes), await s.peek(limited, NOW)

    takes, peeked = store.run(scenario)
    taken_counts = sorted(counts[0] for taken, counts in takes if taken)
    assert taken_counts == [1, 2, 3, 4, 5]
    assert all(counts == [5] for taken, counts in takes if not taken)
    assert peeked == [5]


def test_counters_of_different_accounts_and_extensions_do_not_mix(store: StoreCase) -> None:
    """A full counter for one extension leaves the same limit free for other extensions and accounts."""
    keys = [
        "rate:ext-intl:asterisk-1/2001",
        "rate:ext-intl:asterisk-1/2002",
        "rate:ext-intl:asterisk-2/2001",
    ]

    async def scenario(s: StateStore) -> dict[str, Any]:
        first = [
            await s.try_take([rate(key, 1, hard=True)], f"call-{n}", NOW)
            for n, key in enumerate(keys)
        ]
        again = await s.try_take([rate(keys[0], 1, hard=True)], "call-9", NOW + 1)
        return {
            "first": first,
            "again": again,
            "peek": await s.peek([rate(key) for key in keys], NOW + 1),
        }

    result = store.run(scenario)
    assert result["first"] == [(True, [1])] * 3
    assert result["again"] == (False, [1])
    assert result["peek"] == [1, 1, 1]


def test_leases_of_different_calls_do_not_mix(store: StoreCase) -> None:
    """Release and renew touch only the named call's leases on the named counters."""
    first, second = lease("lease:a", ttl=30.0), lease("lease:b", ttl=30.0)

    async def scenario(s: StateStore) -> dict[str, Any]:
        await s.try_take([first], "call-1", NOW)
        await s.try_take([first, second], "call-2", NOW)
        await s.release([second.key], "call-1")  # call-1 holds nothing on lease:b
        await s.release(["lease:unknown"], "call-1")  # nothing there at all
        seen: dict[str, Any] = {"untouched": await s.peek([first, second], NOW + 1)}
        await s.release([first.key], "call-1")
        seen["released"] = await s.peek([first, second], NOW + 1)
        await s.renew([first.key, second.key], "call-2", 30.0, NOW + 20)
        seen["renewed"] = await s.peek([first, second], NOW + 40)
        return seen

    seen = store.run(scenario)
    assert seen["untouched"] == [2, 1]
    assert seen["released"] == [1, 1]
    assert seen["renewed"] == [1, 1]  # call-2 on both, renewed to NOW + 50


def test_a_take_with_no_counters_is_taken_with_no_counts(store: StoreCase) -> None:
    """A call no limit applies to is taken, and nothing is counted or refused."""

    async def scenario(s: StateStore) -> tuple[bool, list[int]]:
        return await s.try_take([], "call-1", NOW)

    assert store.run(scenario) == (True, [])


# --------------------------------------------------------------------------- Redis keys


def test_redis_keys_expire_by_themselves_and_renew_extends_them(redis_server: RedisServer) -> None:
    """Every key the Redis store writes expires within its window (or lease) plus a second,
    and renewing a lease pushes its key's expiry out, so idle counters leave Redis alone."""
    window, live = rate("rate:ext-intl:asterisk-1/2001", window=10.0), lease("lease:live", ttl=30.0)

    async def scenario() -> None:
        s = RedisStore(redis_server.url, timeout=REDIS_TIMEOUT)
        try:
            await s.try_take([window, live], "call-1", NOW)
        finally:
            await s.close()

    async def renew() -> None:
        s = RedisStore(redis_server.url, timeout=REDIS_TIMEOUT)
        try:
            await s.renew([live.key], "call-1", 60.0, NOW + 1)
        finally:
            await s.close()

    with redis.Redis.from_url(redis_server.url, socket_timeout=2.0) as client:
        client.flushdb()
        asyncio.run(scenario())
        ttls = {key.decode(): client.pttl(key) for key in client.keys("*")}
        asyncio.run(renew())
        renewed = client.pttl("sipguard:" + live.key)
    assert set(ttls) == {"sipguard:" + window.key, "sipguard:" + live.key}
    assert 0 < ttls["sipguard:" + window.key] <= 11_000, ttls
    assert 0 < ttls["sipguard:" + live.key] <= 31_000, ttls
    assert 31_000 < renewed <= 61_000, renewed


# --------------------------------------------------------------------------- Redis outages


async def _timed(operation: Awaitable[Any]) -> tuple[BaseException | None, float]:
    """Await ``operation``; return the exception it raised (or None) and how long it took."""
    began = time.monotonic()
    try:
        await operation
    except Exception as error:
        return error, time.monotonic() - began
    return None, time.monotonic() - began


def _all_operations(s: RedisStore, call_id: str) -> dict[str, Awaitable[Any]]:
    live = [rate("rate:ext-intl:asterisk-1/2001"), lease("concurrency:live:asterisk-1/2001")]
    keys = [request.key for request in live]
    return {
        "try_take": s.try_take(live, call_id, NOW + 5),
        "peek": s.peek(live, NOW + 5),
        "renew": s.renew(keys, call_id, 30.0, NOW + 5),
        "release": s.release(keys, call_id),
        "count_event": s.count_event("fail:" + call_id, 900.0, NOW + 5),
        "put_mark": s.put_mark("lock:" + call_id, "x", 900.0, NOW + 5),
        "get_mark": s.get_mark("lock:" + call_id, NOW + 5),
        "clear": s.clear(["fail:" + call_id]),
    }


def test_stopped_redis_fails_within_the_timeout_and_the_store_recovers(
    private_redis: RedisServer,
) -> None:
    """With redis-server stopped every operation raises StoreUnavailableError within the
    timeout; after a restart on the same port the same store object works again."""
    requests = [rate("rate:ext-intl:asterisk-1/2001"), lease("concurrency:live:asterisk-1/2001")]

    async def scenario() -> dict[str, Any]:
        s = RedisStore(private_redis.url, timeout=REDIS_TIMEOUT)
        try:
            seen: dict[str, Any] = {"before": await s.try_take(requests, "call-1", NOW)}
            await asyncio.to_thread(private_redis.stop)
            seen["down"] = {
                name: await _timed(operation)
                for name, operation in _all_operations(s, "call-2").items()
            }
            seen["ping_down"] = await s.ping()
            await asyncio.to_thread(private_redis.start)
            # No persistence: the restarted server is empty, so the count starts again.
            seen["after"] = await s.try_take(requests, "call-3", NOW + 6)
            seen["peek_after"] = await s.peek(requests, NOW + 6)
            seen["ping_up"] = await s.ping()
            return seen
        finally:
            await s.close()

    seen = asyncio.run(scenario())
    assert seen["before"] == (True, [1, 1])
    for name, (error, elapsed) in seen["down"].items():
        assert isinstance(error, StoreUnavailableError), (name, error)
        assert elapsed <= REDIS_TIMEOUT + SLACK, (name, elapsed)
    assert seen["ping_down"] is False
    assert seen["after"] == (True, [1, 1])
    assert seen["peek_after"] == [1, 1]
    assert seen["ping_up"] is True


def test_unresponsive_redis_fails_within_the_timeout_and_late_replies_are_not_misread(
    private_redis: RedisServer,
) -> None:
    """A paused redis-server (connections accepted, nothing answered) gives StoreUnavailableError
    after the timeout, not a hang; once it answers again every reply belongs to its own request."""
    requests = [rate("rate:ext-intl:asterisk-1/2001"), lease("concurrency:live:asterisk-1/2001")]

    async def scenario() -> dict[str, Any]:
        s = RedisStore(private_redis.url, timeout=REDIS_TIMEOUT)
        try:
            seen: dict[str, Any] = {"before": await s.try_take(requests, "call-1", NOW)}
            private_redis.pause()
            try:
                # Only take and peek: a release or renew the server ran late could
                # reorder with the take and blur what the counts below must be.
                seen["paused"] = {
                    "try_take": await _timed(s.try_take(requests, "call-2", NOW + 5)),
                    "peek": await _timed(s.peek(requests, NOW + 5)),
                }
            finally:
                private_redis.resume()
            seen["peeks"] = [await s.peek(requests, NOW + 6) for _ in range(4)]
            seen["after"] = await s.try_take(requests, "call-3", NOW + 6)
            return seen
        finally:
            await s.close()

    seen = asyncio.run(scenario())
    assert seen["before"] == (True, [1, 1])
    for name, (error, elapsed) in seen["paused"].items():
        assert isinstance(error, StoreUnavailableError), (name, error)
        assert REDIS_TIMEOUT - 0.05 <= elapsed <= REDIS_TIMEOUT + SLACK, (name, elapsed)
    # The paused server may or may not have run the take it received (call-2) when it
    # resumed, but every later reply must be the count, not a stale answer to another call.
    assert len(set(map(tuple, seen["peeks"]))) == 1, seen["peeks"]
    assert seen["peeks"][0] in ([1, 1], [2, 2]), seen["peeks"]
    assert seen["after"] == (True, [count + 1 for count in seen["peeks"][0]])


def test_spend_sums_within_each_window_and_forgets_older_amounts(store: StoreCase) -> None:
    """Amounts add up per key within its window; older ones drop out; keys do not mix."""
    day, five_minutes = ("spend:intl-day:asterisk-1", 86400.0), ("spend:gb-5m:GB", 300.0)

    async def scenario(s: StateStore) -> list[list[float]]:
        await s.add_spend([day, five_minutes], 1.25, "call-1", NOW)
        await s.add_spend([day, five_minutes], 0.5, "call-2", NOW + 100)
        await s.add_spend([day], 2.0, "call-3", NOW + 200)
        return [await s.spent([day, five_minutes], NOW + 250),
                await s.spent([day, five_minutes], NOW + 350),
                await s.spent([day, five_minutes], NOW + 86500),
                await s.spent([("spend:intl-day:other", 86400.0)], NOW + 250)]

    totals = store.run(scenario)
    assert totals[0] == pytest.approx([3.75, 1.75])
    assert totals[1] == pytest.approx([3.75, 0.5])  # call-1 left the 5-minute window
    assert totals[2] == pytest.approx([2.0, 0.0])
    assert totals[3] == [0.0]


def test_release_many_drops_the_leases_of_several_calls(store: StoreCase) -> None:
    """One batched release frees every listed call's leases and leaves the others."""
    live = [lease("concurrency:live:asterisk-1", 10)]

    async def scenario(s: StateStore) -> tuple[list[int], list[int]]:
        for call in ("a", "b", "c"):
            await s.try_take(live, call, NOW)
        before = await s.peek(live, NOW + 1)
        await s.release_many([(["concurrency:live:asterisk-1"], "a"),
                              (["concurrency:live:asterisk-1"], "c")])
        return before, await s.peek(live, NOW + 1)

    assert store.run(scenario) == ([3], [1])


def test_streak_counts_consecutive_calls_to_one_number(store: StoreCase) -> None:
    """Calls in a row to one number count up; another number or the ttl starts again at 1."""
    key = "streak:same-number:asterisk-1/2001"

    async def scenario(s: StateStore) -> list[int]:
        runs = [await s.streak(key, "+442079460321", 3600.0, NOW + second)
                for second in range(3)]
        runs.append(await s.streak(key, "+33142685300", 3600.0, NOW + 3))
        runs.append(await s.streak(key, "+442079460321", 3600.0, NOW + 4))
        runs.append(await s.streak("streak:same-number:asterisk-1/2002", "+442079460321",
                                   3600.0, NOW + 5))
        return runs

    assert store.run(scenario) == [1, 2, 3, 1, 1, 1]


def test_reserved_budget_is_granted_once_and_settled_to_the_real_cost(store: StoreCase) -> None:
    """Concurrent reservations never exceed the budget; settling replaces them by real costs."""
    budget = [("spend:intl-day:asterisk-1", 86400.0, 10.0)]
    window = [("spend:intl-day:asterisk-1", 86400.0)]

    async def concurrent(s: StateStore) -> tuple[list[float], list[float]]:
        grants = await asyncio.gather(*[
            s.reserve_spend(budget, f"call-{n}", 4.0, NOW) for n in range(4)])
        return sorted(grant for grant, _ in grants), await s.spent(window, NOW + 1)

    granted, during = store.run(concurrent)
    assert granted == [0.0, 2.0, 4.0, 4.0]  # 4 + 4 + the 2 left, then nothing
    assert during == [10.0]


def test_settling_replaces_a_reservation_by_the_real_cost(store: StoreCase) -> None:
    """A call that cost 1.5 of its 4 reserved, and one that was never answered, free the rest."""
    budget = [("spend:intl-day:asterisk-2", 86400.0, 10.0)]
    window = [("spend:intl-day:asterisk-2", 86400.0)]

    async def scenario(s: StateStore) -> tuple[list[float], float, list[float]]:
        first, _ = await s.reserve_spend(budget, "call-a", 4.0, NOW)
        second, _ = await s.reserve_spend(budget, "call-b", 4.0, NOW)
        assert (first, second) == (4.0, 4.0)
        await s.settle_spend(window, "call-a", 1.5, NOW + 2)
        await s.settle_spend(window, "call-b", 0.0, NOW + 2)
        after = await s.spent(window, NOW + 3)
        third, totals = await s.reserve_spend(budget, "call-c", None, NOW + 3)
        return after, third, totals

    after, third, totals = store.run(scenario)
    assert after == [1.5]
    assert (third, totals) == (8.5, [1.5])


def test_renew_recreates_a_lease_lost_while_the_call_lives(store: StoreCase) -> None:
    """A live call whose lease expired (an outage longer than its ttl) counts again once renewed."""
    live = lease("lease:live", ttl=30.0)

    async def scenario(s: StateStore) -> list[int]:
        await s.try_take([live], "call-1", NOW)
        lost = await s.peek([live], NOW + 40)  # the node could not renew for 40 s
        await s.renew([live.key], "call-1", 30.0, NOW + 41)
        return [lost[0], (await s.peek([live], NOW + 42))[0]]

    assert store.run(scenario) == [0, 1]


def test_count_event_counts_within_a_sliding_window(store: StoreCase) -> None:
    """Events count up within the window, older ones drop out, keys do not mix; events at
    the same instant each count."""
    key = "pin:asterisk-1/2001"

    async def scenario(s: StateStore) -> list[int]:
        counts = [await s.count_event(key, 900.0, NOW) for _ in range(2)]
        counts.append(await s.count_event(key, 900.0, NOW + 100))
        counts.append(await s.count_event("pin:asterisk-1/2002", 900.0, NOW + 100))
        counts.append(await s.count_event(key, 900.0, NOW + 950))  # the two at NOW left
        counts.append(await s.count_event(key, 900.0, NOW + 2000))
        return counts

    assert store.run(scenario) == [1, 2, 3, 1, 2, 1]


def test_marks_hold_a_value_until_they_expire(store: StoreCase) -> None:
    """A mark gives its value and the seconds it has left, until ttl after it was put;
    putting it again replaces it; other keys have none."""
    key = "lock:pin:asterisk-1/2001"

    async def scenario(s: StateStore) -> list[tuple[str, float] | None]:
        await s.put_mark(key, "3 failures", 900.0, NOW)
        seen = [await s.get_mark(key, NOW + 100), await s.get_mark("lock:other", NOW + 100),
                await s.get_mark(key, NOW + 900)]
        await s.put_mark(key, "again", 60.0, NOW + 1000)
        seen += [await s.get_mark(key, NOW + 1030), await s.get_mark(key, NOW + 1061)]
        return seen

    seen = store.run(scenario)
    assert seen[0] is not None and seen[0][0] == "3 failures"
    assert seen[0][1] == pytest.approx(800.0)
    assert seen[1] is None and seen[2] is None
    assert seen[3] is not None and seen[3][0] == "again"
    assert seen[3][1] == pytest.approx(30.0)
    assert seen[4] is None


def test_clear_forgets_events_marks_and_counters(store: StoreCase) -> None:
    """Cleared keys start again from nothing, whatever they held; other keys are kept."""
    events, mark, window = "fail:a", "lock:a", rate("rate:a")

    async def scenario(s: StateStore) -> list[Any]:
        await s.count_event(events, 900.0, NOW)
        await s.count_event("fail:b", 900.0, NOW)
        await s.put_mark(mark, "x", 900.0, NOW)
        await s.try_take([window], "call-1", NOW)
        await s.clear([events, mark, window.key, "never-written"])
        await s.clear([])
        return [await s.count_event(events, 900.0, NOW + 1), await s.get_mark(mark, NOW + 1),
                await s.peek([window], NOW + 1), await s.count_event("fail:b", 900.0, NOW + 1)]

    assert store.run(scenario) == [1, None, [0], 2]


def test_redis_events_and_marks_expire_by_themselves(redis_server: RedisServer) -> None:
    """The event log and a mark leave Redis within their window (or ttl) plus a second."""

    async def scenario() -> None:
        s = RedisStore(redis_server.url, timeout=REDIS_TIMEOUT)
        try:
            await s.count_event("fail:a", 900.0, NOW)
            await s.put_mark("lock:a", "x", 60.0, NOW)
        finally:
            await s.close()

    with redis.Redis.from_url(redis_server.url, socket_timeout=2.0) as client:
        client.flushdb()
        asyncio.run(scenario())
        ttls = {key.decode(): client.pttl(key) for key in client.keys("*")}
    assert 0 < ttls["sipguard:fail:a"] <= 901_000, ttls
    assert 0 < ttls["sipguard:lock:a"] <= 61_000, ttls


def test_memory_store_forgets_idle_per_number_keys() -> None:
    """Rate keys no call touches again are swept, so memory does not grow with every number."""
    from sipguard.store.memory import SWEEP_EVERY

    store = MemoryStore()

    async def scenario() -> int:
        for number in range(SWEEP_EVERY):
            await store.try_take([rate(f"rate:per-number:+1212555{number:04d}", window=60.0)],
                                 f"call-{number}", NOW)
        for later in range(SWEEP_EVERY):  # traffic goes on to one other number
            await store.try_take([rate("rate:per-number:+12125559999", window=60.0)],
                                 f"late-{later}", NOW + 120)
        return len(store._windows)

    assert asyncio.run(scenario()) == 1


def test_marks_are_listed_by_prefix_while_they_live(store: StoreCase) -> None:
    """list_marks gives every live mark under a prefix (not others, not expired ones)."""

    async def scenario(s: StateStore) -> list[list[tuple[str, str, float]]]:
        await s.put_mark("ban:127.0.0.2", "flood", 600.0, NOW)
        await s.put_mark("ban:[::1]*", "scanner", 60.0, NOW)
        await s.put_mark("ban:127.0.0.3", "auth", 10.0, NOW)
        await s.put_mark("lock:pin:2001", "3", 600.0, NOW)
        return [sorted(await s.list_marks("ban:", NOW + 20)), await s.list_marks("none:", NOW)]

    listed, nothing = store.run(scenario)
    assert [(key, value) for key, value, _ in listed] == [
        ("ban:127.0.0.2", "flood"), ("ban:[::1]*", "scanner")]
    assert listed[0][2] == pytest.approx(580.0) and listed[1][2] == pytest.approx(40.0)
    assert nothing == []
