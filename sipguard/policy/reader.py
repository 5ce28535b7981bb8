"""The validating reader the policy loaders share: problems with file, line and key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import phonenumbers

from sipguard.policy.model import CLASSES, Action, Mode
from sipguard.schema import MarkedDict, Problems, line_of

REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


class PolicyReader:
    """Validation helpers that record problems instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.problems = Problems(path)
        self.warnings: list[str] = []
        self.path = path

    def error(self, container: Any, key: str | int, where: str, message: str) -> None:
        self.problems.add(line_of(container, key), where, message)

    def warn(self, line: int, where: str, message: str) -> None:
        self.warnings.append(f"{self.path}:{line}: {where}: warning: {message}")

    def mapping(self, container: Any, key: str, where: str) -> dict[str, Any]:
        value = container.get(key) if isinstance(container, dict) else None
        if value is None:
            return MarkedDict()
        if not isinstance(value, dict):
            self.error(container, key, where, "must be a mapping")
            return MarkedDict()
        return value

    def sequence(self, container: Any, key: str, where: str) -> list[Any]:
        value = container.get(key) if isinstance(container, dict) else None
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(container, key, where, "must be a list")
            return []
        return value

    def known_keys(self, mapping: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                prefix = f"{where}." if where else ""
                self.error(mapping, key, f"{prefix}{key}",
                           f"unknown key (known: {', '.join(allowed)})")

    def action(self, mapping: dict[str, Any], key: str, where: str,
               default: Action | None = None) -> Action:
        value = mapping.get(key)
        if value is None and default is not None:
            return default
        if value is None:
            self.error(mapping, key, where, "required (one of allow, pin, deny)")
            return Action.DENY
        try:
            return Action(str(value).lower())
        except ValueError:
            self.error(mapping, key, where, f"{value!r} is not one of allow, pin, deny")
            return Action.DENY

    def mode(self, mapping: dict[str, Any], where: str, default: Mode = Mode.ENFORCE) -> Mode:
        value = mapping.get("mode")
        if value is None:
            return default
        try:
            return Mode(str(value).lower())
        except ValueError:
            self.error(mapping, "mode", where, f"{value!r} is not enforce or report")
            return default

    def region(self, mapping: dict[str, Any], key: str, where: str) -> str | None:
        value = mapping.get(key)
        text = str(value).upper() if value is not None else ""
        if text not in REGIONS:
            self.error(mapping, key, where, f"{value!r} is not an ISO 3166 region code "
                       "with a numbering plan (such as US, GB, JM)")
            return None
        return text

    def classes(self, mapping: dict[str, Any], key: str, where: str) -> frozenset[str] | None:
        if key not in mapping:
            return None
        value = mapping.get(key)
        if not isinstance(value, list):
            self.error(mapping, key, where, f"must be a list of {', '.join(CLASSES)}")
            return frozenset()
        result: set[str] = set()
        for index, item in enumerate(value):
            if item not in CLASSES:
                self.error(value, index, f"{where}[{index}]",
                           f"{item!r} is not one of {', '.join(CLASSES)}")
            else:
                result.add(item)
        return frozenset(result)
