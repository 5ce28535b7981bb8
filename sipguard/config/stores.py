"""The state store the configuration asks for (the memory store, or Redis)."""

from __future__ import annotations

from sipguard.config.settings import Settings
from sipguard.store import MemoryStore, StateStore


def make_store(settings: Settings) -> StateStore:
    """The store the configuration asks for."""
    if settings.store_backend == "redis":
        from sipguard.store.redis import RedisStore  # noqa: PLC0415 - only when configured

        return RedisStore(settings.store_url, timeout=settings.store_timeout)
    return MemoryStore()
