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


def _renderer(output_format: str, stream: TextIO) -> Any:
    use_json = output_format == "json" or (output_format == "auto" and not stream.isatty())
    return (structlog.processors.JSONRenderer() if use_json
            else structlog.dev.ConsoleRenderer(colors=False))


def _leading(fields: dict[str, Any]) -> list[Any]:
    """What every line gets before it is rendered: level, time, the process's fields."""
    def add_fields(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in fields.items():
            event.setdefault(key, value)
        return event

    return [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True), add_fields]


def _processors(output_format: str, stream: TextIO,
                fields: dict[str, Any] | None = None) -> list[Any]:
    return [*_leading(fields or {}), structlog.processors.format_exc_info,
            _renderer(output_format, stream)]


def configure(level: str = "info", output_format: str = "auto",
              stream: TextIO | None = None, **fields: Any) -> None:
    """Set up structlog for the process; ``fields`` go on every line (an IVR worker's
    pid). Lines of the standard library's logging (libraries, warnings) go through
    structlog's ProcessorFormatter to the same stream in the same format: one line per
    event, whoever logs it."""
    target = stream or sys.stdout
    global _level
    _level = _LEVELS.get(level, logging.INFO)
    handler = logging.StreamHandler(target)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_leading(fields),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _renderer(output_format, target)]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_level)
    structlog.configure(
        processors=_processors(output_format, target, fields),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # One write per line (PrintLogger writes the line and its newline apart): the
        # IVR workers and the records' writer share this stream, and a line another
        # process writes between the two would break both lines.
        logger_factory=structlog.WriteLoggerFactory(target),
        cache_logger_on_first_use=False,
    )
    global _lifecycle_format, _lifecycle_stream, _lifecycle_fields
    _lifecycle_format, _lifecycle_stream, _lifecycle_fields = output_format, target, fields


_level = logging.INFO
_lifecycle_format = "auto"
_lifecycle_stream: TextIO | None = None
_lifecycle_fields: dict[str, Any] = {}


def debug_enabled() -> bool:
    """Whether the configured level lets debug lines through."""
    return _level <= logging.DEBUG


def module_logger() -> Any:
    """A module-level logger that follows :func:`configure` whenever it is called (it
    binds nothing, so it stays lazy)."""
    return structlog.get_logger("sipguard")


def get_logger(**context: Any) -> Any:
    """A logger bound to ``context``."""
    return structlog.get_logger("sipguard").bind(**context)


def lifecycle_logger() -> Any:
    """A logger that writes whatever the configured level (start and stop lines)."""
    target = _lifecycle_stream or sys.stdout
    return structlog.wrap_logger(
        structlog.WriteLogger(target),
        processors=_processors(_lifecycle_format, target, _lifecycle_fields),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )


def silent_logger() -> Any:
    """A logger that writes nothing (replays, benchmarks): structlog's own ReturnLogger."""
    return structlog.wrap_logger(structlog.ReturnLogger(), processors=[])
