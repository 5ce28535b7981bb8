"""The alerts this node raised, and who acknowledged them, kept across restarts.

One JSON line per event in a file under var/ (``alerts.journal``): ``{"alert": {...}}``
when an alert is raised, ``{"ack": ID, "by": WHO, "at": SECONDS}`` when a person
acknowledges it. At start the last ``keep`` alerts and their acknowledgments are read
back; a line that cannot be read is skipped and counted, never fatal. When the file
holds many more lines than that, it is rewritten with only what is kept (to a
temporary file, then renamed over, so a crash leaves the old file or the new one).
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from sipguard.alerts.model import Alert
from sipguard.policy import AlertType, Level


@dataclass(frozen=True, slots=True)
class Acknowledgment:
    """Who acknowledged an alert, and when."""

    by: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by,
                "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")}


class AlertJournal:
    """Recent alerts, newest first, with their acknowledgments; written through to a file
    (or kept in memory only when ``path`` is None)."""

    def __init__(self, path: Path | None, keep: int = 500, log: Any = None) -> None:
        self.path = path
        self.log = log  # the first write that fails is logged (the rest only counted)
        self.keep = keep
        self.alerts: collections.deque[Alert] = collections.deque(maxlen=keep)
        self.acknowledged: dict[str, Acknowledgment] = {}
        self.unreadable = 0  # lines skipped when the file was read (-1: it could not be)
        self.read_error: str | None = None
        self.write_errors = 0
        self._lines = 0

    def load(self) -> None:
        """Read the file back (none yet: nothing to read)."""
        if self.path is None:
            return
        try:
            with self.path.open("rb") as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            return
        except OSError as error:
            self.unreadable = -1
            self.read_error = str(error)
            return
        alerts: dict[str, Alert] = {}
        for line in lines:
            self._lines += 1
            try:
                entry = orjson.loads(line)
                if "alert" in entry:
                    alert = _alert(entry["alert"])
                    alerts[alert.id] = alert
                else:
                    self.acknowledged[str(entry["ack"])] = Acknowledgment(
                        str(entry["by"]), float(entry["at"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.unreadable += 1
        for alert in sorted(alerts.values(), key=lambda alert: alert.at)[-self.keep:]:
            self.alerts.appendleft(alert)
        kept = {alert.id for alert in self.alerts}
        self.acknowledged = {key: value for key, value in self.acknowledged.items()
                             if key in kept}

    def add(self, alert: Alert) -> None:
        """A new alert (newest first)."""
        self.alerts.appendleft(alert)
        self._append({"alert": alert.as_dict() | {"at_seconds": alert.at}})

    def acknowledge(self, ids: Iterable[str], by: str, now: float | None = None) -> list[str]:
        """Acknowledge the alerts named (those kept and not yet acknowledged); the ids
        acknowledged now."""
        known = {alert.id for alert in self.alerts}
        done = []
        at = time.time() if now is None else now
        for alert_id in ids:
            if alert_id in known and alert_id not in self.acknowledged:
                self.acknowledged[alert_id] = Acknowledgment(by, at)
                self._append({"ack": alert_id, "by": by, "at": at})
                done.append(alert_id)
        return done

    def resolve(self, given: str) -> str | None:
        """The id of the kept alert ``given`` names: its id, or a prefix of at least 6
        characters that names only it."""
        matches = {alert.id for alert in self.alerts
                   if alert.id == given or (len(given) >= 6 and alert.id.startswith(given))}
        return matches.pop() if len(matches) == 1 else None

    def open_alerts(self) -> list[Alert]:
        """The alerts no one has acknowledged, newest first."""
        return [alert for alert in self.alerts if alert.id not in self.acknowledged]

    def listed(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` alerts as JSON-ready data, with who acknowledged them."""
        return [alert.as_dict() | {"acknowledged": self._acknowledgment(alert.id)}
                for alert in list(self.alerts)[:limit]]

    def _acknowledgment(self, alert_id: str) -> dict[str, Any] | None:
        found = self.acknowledged.get(alert_id)
        return None if found is None else found.as_dict()

    def _append(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "ab") as handle:
                os.fchmod(descriptor, 0o600)  # a file made before this rule, too
                handle.write(orjson.dumps(entry) + b"\n")
            self._lines += 1
            if self._lines > 4 * self.keep:
                self._compact()
        except OSError as error:
            self.write_errors += 1
            if self.write_errors == 1 and self.log is not None:
                self.log.error("alert.journal_write_failed", path=str(self.path),
                               error=str(error), consequence="alerts are kept in memory "
                               "only: a restart forgets them and their acknowledgments")

    def _compact(self) -> None:
        """Rewrite the file with only what is kept: the last ``keep`` alerts and their
        acknowledgments (those of alerts no longer kept are forgotten too)."""
        assert self.path is not None
        kept = {alert.id for alert in self.alerts}
        self.acknowledged = {key: value for key, value in self.acknowledged.items()
                             if key in kept}
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(descriptor, 0o600)  # a leftover .new keeps no wider mode
                for alert in reversed(self.alerts):
                    handle.write(orjson.dumps(
                        {"alert": alert.as_dict() | {"at_seconds": alert.at}}) + b"\n")
                for alert_id, done in self.acknowledged.items():
                    handle.write(orjson.dumps({"ack": alert_id, "by": done.by, "at": done.at})
                                 + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        self._lines = len(self.alerts) + len(self.acknowledged)


def _alert(data: dict[str, Any]) -> Alert:
    return Alert(type=AlertType(data["type"]), level=Level(data["level"]),
                 text=str(data["text"]), key=str(data["key"]),
                 account=data.get("account"), jurisdiction=data.get("jurisdiction"),
                 details=MappingProxyType(dict(data.get("details") or {})),
                 at=float(data["at_seconds"]), id=str(data["id"]))
