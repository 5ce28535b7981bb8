"""The Redis store: several nodes, one truth (redis-py asyncio, Lua for atomicity)."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sipguard.store.base import CounterRequest, StoreUnavailableError

_T = TypeVar("_T")

# KEYS: the counters. ARGV: now, call id, then kind, maximum, window, hard per key.
# Sliding windows and leases are sorted sets (score = time, or lease expiry).
_TRY_TAKE = """
local now = tonumber(ARGV[1])
local call_id = ARGV[2]
local counts = {}
local refused = false
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local maximum = tonumber(ARGV[base + 2])
  local window = tonumber(ARGV[base + 3])
  if kind == 'rate' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  end
  counts[i] = redis.call('ZCARD', key)
  if ARGV[base + 4] == '1' and counts[i] + 1 > maximum then
    refused = true
  end
end
if refused then
  table.insert(counts, 1, 0)
  return counts
end
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local window = tonumber(ARGV[base + 3])
  if kind == 'rate' then
    redis.call('ZADD', key, now, call_id .. ':' .. now)
  else
    redis.call('ZADD', key, now + window, call_id)
  end
  redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
  counts[i] = counts[i] + 1
end
table.insert(counts, 1, 1)
return counts
"""

# KEYS: lease counters. ARGV: call id, expiry, ttl in ms.
# Renewing re-creates a lease lost to an outage or a server restart: the call is
# still live, so it must count again.
_RENEW = """
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[1])
  redis.call('PEXPIRE', key, ARGV[3])
end
return 1
"""


# KEYS: spend keys. ARGV: now, then each key's window. Members are "call:amount".
_SPENT = """
local now = tonumber(ARGV[1])
local totals = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[i + 1]))
  local total = 0
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    total = total + tonumber(string.match(member, ':([^:]+)$'))
  end
  totals[i] = tostring(total)
end
return totals
"""


# KEYS[1]: the run. ARGV: number, ttl in ms. The hash holds the number and the run length.
_STREAK = """
local run = 1
if redis.call('HGET', KEYS[1], 'number') == ARGV[1] then
  run = tonumber(redis.call('HGET', KEYS[1], 'run')) + 1
end
redis.call('HSET', KEYS[1], 'number', ARGV[1], 'run', run)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return run
"""


# KEYS: spend keys. ARGV: now, call id, wanted ("" for no cap), then window and maximum
# per key. Grants the smallest remaining budget; the reservation is the member
# "<call>:reserved:<amount>", replaced by "<call>:<cost>" when the call is settled.
_RESERVE = """
local now = tonumber(ARGV[1])
local totals = {}
local remaining = nil
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + i * 2])
  local maximum = tonumber(ARGV[3 + i * 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local total = 0
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    total = total + tonumber(string.match(member, ':([^:]+)$'))
  end
  totals[i] = tostring(total)
  if remaining == nil or maximum - total < remaining then remaining = maximum - total end
end
local granted = remaining or 0
if ARGV[3] ~= '' and tonumber(ARGV[3]) < granted then granted = tonumber(ARGV[3]) end
if granted > 0 then
  for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[2] .. ':reserved:' .. tostring(granted))
    redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 + i * 2]) * 1000) + 1000)
  end
else
  granted = 0
end
table.insert(totals, 1, tostring(granted))
return totals
"""

# KEYS: spend keys. ARGV: now, call id, actual cost, then each key's window.
_SETTLE = """
for i, key in ipairs(KEYS) do
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(member, 1, string.len(ARGV[2]) + 10) == ARGV[2] .. ':reserved:' then
      redis.call('ZREM', key, member)
    end
  end
  if tonumber(ARGV[3]) > 0 then
    redis.call('ZADD', key, tonumber(ARGV[1]), ARGV[2] .. ':' .. ARGV[3])
    redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[3 + i]) * 1000) + 1000)
  end
end
return 1
"""

# KEYS[1]: the event log. ARGV: now, window, a member unique to this event.
_COUNT_EVENT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return redis.call('ZCARD', KEYS[1])
"""


class RedisStore:
    """Counters in Redis, shared by every node that uses the same server."""

    def __init__(self, url: str, timeout: float = 0.05, prefix: str = "sipguard:") -> None:
        self.url = url
        self.timeout = timeout
        self.prefix = prefix
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=0, retry_on_timeout=False)
        self._try_take = self._client.register_script(_TRY_TAKE)
        self._renew = self._client.register_script(_RENEW)
        self._spent = self._client.register_script(_SPENT)
        self._streak = self._client.register_script(_STREAK)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._count_event = self._client.register_script(_COUNT_EVENT)

    async def _call(self, operation: Awaitable[_T]) -> _T:
        try:
            return await asyncio.wait_for(operation, self.timeout)
        except (RedisError, OSError, TimeoutError) as error:
            raise StoreUnavailableError(f"{type(error).__name__}: {error}") from error

    async def try_take(self, requests: Sequence[CounterRequest], call_id: str,
                       now: float) -> tuple[bool, list[int]]:
        """Count the call everywhere, or nowhere when a hard limit would be exceeded."""
        if not requests:
            return True, []
        keys = [self.prefix + request.key for request in requests]
        arguments: list[Any] = [repr(now), call_id]
        for request in requests:
            arguments += [request.kind, request.maximum, repr(request.window),
                          "1" if request.hard else "0"]
        reply = await self._call(self._try_take(keys=keys, args=arguments))
        values = [int(value) for value in reply]
        return bool(values[0]), values[1:]

    async def release(self, keys: Sequence[str], call_id: str) -> None:
        """Drop the call's leases."""
        if not keys:
            return
        pipeline = self._client.pipeline(transaction=False)
        for key in keys:
            pipeline.zrem(self.prefix + key, call_id)
        await self._call(pipeline.execute())

    async def release_many(self, releases: Sequence[tuple[Sequence[str], str]]) -> None:
        """Drop the leases of several calls in one pipeline."""
        pipeline = self._client.pipeline(transaction=False)
        for keys, call_id in releases:
            for key in keys:
                pipeline.zrem(self.prefix + key, call_id)
        if len(pipeline):
            await self._call(pipeline.execute())

    async def renew(self, keys: Sequence[str], call_id: str, ttl: float, now: float) -> None:
        """Extend the call's leases."""
        if not keys:
            return
        await self._call(self._renew(keys=[self.prefix + key for key in keys],
                                     args=[call_id, repr(now + ttl), int(ttl * 1000) + 1000]))

    async def peek(self, requests: Sequence[CounterRequest], now: float) -> list[int]:
        """Current counts."""
        pipeline = self._client.pipeline(transaction=False)
        for request in requests:
            low = now - request.window if request.kind == "rate" else now
            pipeline.zcount(self.prefix + request.key, f"({low}", "+inf")
        return [int(value) for value in await self._call(pipeline.execute())]

    async def spent(self, windows: Sequence[tuple[str, float]], now: float) -> list[float]:
        """The amounts within each window."""
        if not windows:
            return []
        reply = await self._call(self._spent(
            keys=[self.prefix + key for key, _ in windows],
            args=[repr(now), *(repr(window) for _, window in windows)]))
        return [float(value) for value in reply]

    async def add_spend(self, entries: Sequence[tuple[str, float]], amount: float,
                        call_id: str, now: float) -> None:
        """Record a call's cost (one member per call and key)."""
        if not entries:
            return
        pipeline = self._client.pipeline(transaction=True)
        for key, window in entries:
            pipeline.zadd(self.prefix + key, {f"{call_id}:{amount!r}": now})
            pipeline.pexpire(self.prefix + key, int(window * 1000) + 1000)
        await self._call(pipeline.execute())

    async def reserve_spend(self, budgets: Sequence[tuple[str, float, float]], call_id: str,
                            wanted: float | None, now: float) -> tuple[float, list[float]]:
        """Set aside the smallest remaining budget (at most ``wanted``), atomically."""
        if not budgets:
            return 0.0, []
        arguments: list[Any] = [repr(now), call_id, "" if wanted is None else repr(wanted)]
        for _key, window, maximum in budgets:
            arguments += [repr(window), repr(maximum)]
        reply = await self._call(self._reserve(
            keys=[self.prefix + key for key, _, _ in budgets], args=arguments))
        values = [float(value) for value in reply]
        return values[0], values[1:]

    async def settle_spend(self, entries: Sequence[tuple[str, float]], call_id: str,
                           actual: float, now: float) -> None:
        """Replace the call's reservation by its real cost."""
        if not entries:
            return
        await self._call(self._settle(
            keys=[self.prefix + key for key, _ in entries],
            args=[repr(now), call_id, repr(actual), *(repr(window) for _, window in entries)]))

    async def streak(self, key: str, number: str, ttl: float, now: float) -> int:
        """Count a call on the run of consecutive calls to one number (expiry by Redis)."""
        reply = await self._call(self._streak(keys=[self.prefix + key],
                                              args=[number, int(ttl * 1000)]))
        return int(reply)

    async def count_event(self, key: str, window: float, now: float) -> int:
        """Count one event on a sliding window (a sorted set); return the events within it."""
        reply = await self._call(self._count_event(
            keys=[self.prefix + key],
            args=[repr(now), repr(window), f"{now!r}:{secrets.token_hex(8)}"]))
        return int(reply)

    async def clear(self, keys: Sequence[str]) -> None:
        """Delete these keys."""
        if keys:
            await self._call(self._client.delete(*(self.prefix + key for key in keys)))

    async def put_mark(self, key: str, value: str, ttl: float, now: float) -> None:
        """Set a mark. Its expiry is judged on the caller's clock, as every window here is;
        Redis drops the key itself a second after that (PX), so idle marks do not pile up."""
        await self._call(self._client.set(self.prefix + key, f"{now + ttl!r}|{value}",
                                          px=math.ceil(max(ttl, 0.0) * 1000) + 1000))

    async def get_mark(self, key: str, now: float) -> tuple[str, float] | None:
        """The mark's value and its seconds left, or None."""
        return _read_mark(await self._call(self._client.get(self.prefix + key)), now)

    async def get_marks(self, keys: Sequence[str],
                        now: float) -> list[tuple[str, float] | None]:
        """The marks' values and seconds left, in one MGET."""
        if not keys:
            return []
        replies = await self._call(self._client.mget([self.prefix + key for key in keys]))
        return [_read_mark(reply, now) for reply in replies]

    async def list_marks(self, prefix: str, now: float) -> list[tuple[str, str, float]]:
        """Every live mark under ``prefix`` (SCAN, then MGET in batches: no blocking KEYS)."""
        keys: list[bytes | str] = []
        cursor = 0
        pattern = _glob_escape(self.prefix + prefix) + "*"
        while True:
            cursor, batch = await self._call(self._client.scan(cursor, match=pattern, count=1000))
            keys.extend(batch)
            if cursor == 0:
                break
        marks: list[tuple[str, str, float]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            replies = await self._call(self._client.mget(chunk))
            for key, reply in zip(chunk, replies, strict=True):
                mark = _read_mark(reply, now)
                if mark is not None:
                    name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
                    marks.append((name[len(self.prefix):], mark[0], mark[1]))
        return marks

    async def ping(self) -> bool:
        """Whether the server answers now."""
        try:
            return bool(await self._call(self._client.ping()))
        except StoreUnavailableError:
            return False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _read_mark(reply: Any, now: float) -> tuple[str, float] | None:
    """A stored mark ("expiry|value") as (value, seconds left), None when gone or expired."""
    if reply is None:
        return None
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    expiry_text, _, value = text.partition("|")
    try:
        expiry = float(expiry_text)
    except ValueError:
        return None
    if expiry <= now:
        return None
    return value, expiry - now


def _glob_escape(text: str) -> str:
    """``text`` taken literally in a Redis MATCH pattern."""
    return "".join(f"\\{character}" if character in "*?[]\\" else character
                   for character in text)
