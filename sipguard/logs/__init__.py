"""Structured logs (structlog): one JSON line per event when not on a terminal.

Owns: the logging set-up every process of sipguard uses (the service, the IVR workers,
the records' writer, the command line). May import: structlog and the standard library.
"""

from sipguard.logs.structured import (
    configure,
    debug_enabled,
    get_logger,
    lifecycle_logger,
    module_logger,
    silent_logger,
)

__all__ = [
    "configure",
    "debug_enabled",
    "get_logger",
    "lifecycle_logger",
    "module_logger",
    "silent_logger",
]
