"""State shared by every call (and, with Redis, every node): counters and leases.

A :class:`StateStore` counts calls over sliding windows (rate limits) and
holds one lease per live call on each concurrency counter. ``try_take``
is atomic over all the counters of one call: either the call is counted on
all of them, or (when a hard limit would be exceeded) on none.

Leases expire unless their node renews them, so the calls of a node that
died stop counting by themselves.

Owns: the StateStore Protocol, MemoryStore and RedisStore (Lua scripts). May import:
redis and the standard library, nothing of sipguard's.
"""

from sipguard.store.base import CounterRequest, StateStore, StoreUnavailableError
from sipguard.store.memory import MemoryStore

__all__ = ["CounterRequest", "MemoryStore", "StateStore", "StoreUnavailableError"]
