"""An alert: what happened, how loud, about whom, in words a person reads at 3 a.m."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from sipguard.policy import AlertType, Level


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as sent to every contact and listed by ``sipguard alerts list``.

    ``key`` names what the alert is about, without its level: the same traffic in
    the same hour, the same source address. It is what repeats are recognised by.
    """

    type: AlertType
    level: Level
    text: str
    key: str
    account: str | None = None
    jurisdiction: str | None = None
    details: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def subject(self) -> str:
        """A short first line (an email's subject, an SMS's start)."""
        return f"[sipguard {self.level.value}] {self.text}"

    def as_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data (webhooks, the control socket)."""
        return {"id": self.id, "type": self.type.value, "level": self.level.value,
                "text": self.text, "key": self.key, "account": self.account,
                "jurisdiction": self.jurisdiction, "details": dict(self.details),
                "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")}
