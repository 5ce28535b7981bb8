"""Reading one field of a configuration section, with ``file:line: key.path: message``
errors collected in :class:`~sipguard.schema.document.Problems` (the settings modules
share these)."""

from __future__ import annotations

from typing import Any

from sipguard.schema.document import MarkedDict, Problems, line_of


def section_of(data: dict[str, Any], name: str, problems: Problems,
               where: str | None = None) -> dict[str, Any]:
    """The mapping under ``name`` (empty when absent or not a mapping: reported at
    ``where``, the key's whole path, default ``name``)."""
    value = data.get(name)
    if value is None:
        return MarkedDict()
    if not isinstance(value, dict):
        problems.add(line_of(data, name), where or name, "must be a mapping")
        return MarkedDict()
    return value


def number(section: dict[str, Any], key: str, default: float, problems: Problems,
            prefix: str, minimum: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        problems.add(line_of(section, key), f"{prefix}.{key}", f"must be a number >= {minimum}")
        return default
    return float(value)


def choice(section: dict[str, Any], key: str, default: str, choices: tuple[str, ...],
            problems: Problems, prefix: str) -> str:
    value = section.get(key, default)
    if value not in choices:
        problems.add(line_of(section, key), f"{prefix}.{key}",
                     f"must be one of {', '.join(choices)}")
        return default
    return str(value)


def integer(section: dict[str, Any], key: str, default: int, problems: Problems, prefix: str,
             minimum: int, maximum: int | None = None) -> int:
    value = section.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        problems.add(line_of(section, key), f"{prefix}.{key}", f"must be a whole number {bounds}")
        return default
    return value


def unknown_keys(section: dict[str, Any], prefix: str, known: tuple[str, ...],
                  problems: Problems) -> None:
    for key in section:
        if key not in known:
            problems.add(line_of(section, key), f"{prefix}.{key}",
                         f"unknown setting (known: {', '.join(known)})")
