"""What exporting call records needs beside the sink: time ranges as people write them
(ISO 8601 or an age such as 24h) and CSV cells a spreadsheet cannot run as formulas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_FORMULA_STARTS = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"^[+-]?[0-9][0-9 .()-]*$")


def parse_time(text: str | None, now: float) -> float | None:
    """Epoch seconds from an ISO 8601 time (naive = UTC) or an age (90m, 24h, 7d)."""
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: caller-supplied text that starts like a
    formula gets a leading quote (numbers such as +12125551234 stay as they are)."""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS and not _NUMBER.match(value):
        return "'" + value
    return value
