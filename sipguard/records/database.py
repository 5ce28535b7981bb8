"""Which database the records go to: the ``cdr`` section, and the sink it names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sipguard.records.sink import CdrSink


@dataclass(frozen=True, slots=True)
class CdrSettings:
    """The ``cdr`` section."""

    enabled: bool = True
    backend: str = "sqlite"  # sqlite | postgresql
    path: Path = field(default_factory=lambda: Path("var/cdr.sqlite"))
    dsn: str = "postgresql://sipguard@127.0.0.1:5432/sipguard"
    spool: Path = field(default_factory=lambda: Path("var/cdr-spool"))
    batch_seconds: float = 1.0  # a batch a second: fsyncs and thread hops cost calls
    timeout: float = 5.0  # seconds a database call may take before it counts as down
    writer: str = "process"  # process: a writer process stores the spool; thread: this one


def make_sink(settings: CdrSettings) -> CdrSink:
    """The database the settings name (imported only when used)."""
    if settings.backend == "postgresql":
        from sipguard.records.postgres import PostgresSink  # noqa: PLC0415 - asyncpg on demand

        return PostgresSink(settings.dsn, settings.timeout)
    from sipguard.records.sqlite import SqliteSink  # noqa: PLC0415

    return SqliteSink(settings.path)
