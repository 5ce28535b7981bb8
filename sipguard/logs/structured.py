"""Structured logging: JSON lines when not on a terminal, readable text when on one.

Log event names are ``noun.verb`` (``call.screened``). Lifecycle lines
(``service.started``, ``service.stopped``) are written whatever the level,
because scripts read the bound ports from them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def _processors(output_format: str, stream: TextIO) -> list[Any]:
    use_json = output_format == "json" or (output_format == "auto" and not stream.isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if use_json
                     else structlog.dev.ConsoleRenderer(colors=False))
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]


def configure(level: str = "info", output_format: str = "auto",
              stream: TextIO | None = None) -> None:
    """Set up structlog for the process."""
    target = stream or sys.stdout
    structlog.configure(
        processors=_processors(output_format, target),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # One write per line (PrintLogger writes the line and its newline apart): the
        # IVR workers and the records' writer share this stream, and a line another
        # process writes between the two would break both lines.
        logger_factory=structlog.WriteLoggerFactory(target),
        cache_logger_on_first_use=False,
    )
    global _lifecycle_format, _lifecycle_stream
    _lifecycle_format, _lifecycle_stream = output_format, target


_lifecycle_format = "auto"
_lifecycle_stream: TextIO | None = None


def get_logger(**context: Any) -> Any:
    """A logger bound to ``context``."""
    return structlog.get_logger("sipguard").bind(**context)


def lifecycle_logger() -> Any:
    """A logger that writes whatever the configured level (start and stop lines)."""
    target = _lifecycle_stream or sys.stdout
    return structlog.wrap_logger(
        structlog.WriteLogger(target),
        processors=_processors(_lifecycle_format, target),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )


def silent_logger() -> Any:
    """A logger that writes nothing (replays, benchmarks): structlog's own ReturnLogger."""
    return structlog.wrap_logger(structlog.ReturnLogger(), processors=[])
