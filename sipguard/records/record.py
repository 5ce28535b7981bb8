"""One call record (CDR) per call attempt, with its decision and trace (pure).

A record is built when a call ends, from three things the service has at
hand: the controller's call (times, legs, SIP status, PIN outcome, who
ended it), the decision screening took on it (number, rules, trace, policy
version) and the last call event the controller logged for it (its end
reason). Times are wall-clock seconds since the epoch (UTC); ``duration`` is
how long the call was answered, and ``cost`` what the rate deck makes of it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

# Columns, in the order exports write them.
FIELDS = (
    "id", "call_id", "node", "started_at", "answered_at", "ended_at", "account", "extension",
    "source", "caller", "dialled", "e164", "region", "number_type", "number_class", "state",
    "jurisdiction", "decision", "action", "would", "category", "rule", "rules", "risk_score",
    "policy_version", "reason", "status", "trunk_status", "duration", "cost", "trunk",
    "pin_outcome",
    "ended_by", "end_reason", "trace",
)  # fmt: skip
TIME_FIELDS = ("started_at", "answered_at", "ended_at")
NUMBER_FIELDS = ("risk_score", "status", "trunk_status", "duration", "cost")


# Record ids: a random prefix drawn once per process and a counter, 32 hex characters
# like a uuid4's and as unique across nodes and restarts. A uuid4 per record cost a
# getrandom system call, which here cost more than building the rest of the record.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def new_record_id() -> str:
    """A record id no other record of any node has."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything recorded about one call attempt."""

    call_id: str
    started_at: float
    account: str
    source: str
    dialled: str
    decision: str  # forward | challenge | reject | unscreened (ended before a decision)
    id: str = field(default_factory=new_record_id)
    node: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    extension: str | None = None
    caller: str | None = None
    e164: str | None = None
    region: str | None = None
    number_type: str | None = None
    number_class: str | None = None
    state: str | None = None  # the US state of the number, when it has one
    jurisdiction: str = "unknown"
    action: str | None = None  # allow | pin | deny
    would: str | None = None  # what an all-enforcing policy would have done
    category: str | None = None
    rule: str | None = None  # the deciding rule
    rules: tuple[str, ...] = ()  # every rule that matched
    risk_score: int | None = None
    policy_version: str | None = None
    reason: str | None = None  # why the decision was taken
    status: int | None = None  # the final SIP status the PBX got
    trunk_status: int | None = None  # the trunk's (a PIN call's PBX got the IVR's 200)
    duration: float = 0.0  # seconds answered
    cost: float = 0.0
    trunk: str | None = None
    pin_outcome: str | None = None
    ended_by: str | None = None  # pbx | trunk | sipguard
    end_reason: str | None = None
    trace: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Text comes from SIP: bytes the parser could not decode, and NULs a URI's %00
        # unescaped into, are made storable here, once, for every field. Almost every
        # record is plain ASCII: one look at all of its text settles that.
        everything = "".join([*(getattr(self, name) or "" for name in TEXT_FIELDS),
                              *self.rules, *self.trace])
        if everything.isascii() and "\x00" not in everything:
            return
        for name in TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not _storable(value):
                object.__setattr__(self, name, clean_text(value))
        for name in ("rules", "trace"):
            items = getattr(self, name)
            if not all(_storable(item) for item in items):
                object.__setattr__(self, name, tuple(clean_text(item) for item in items))

    def as_row(self) -> dict[str, Any]:
        """Plain values by column (rules and trace as JSON text), for databases and spools."""
        row = {name: getattr(self, name) for name in FIELDS}
        # orjson: a tenth of the standard library's time (the text is clean: see
        # __post_init__), on the spool's and the database's threads for every record.
        row["rules"] = orjson.dumps(list(self.rules)).decode()
        row["trace"] = orjson.dumps(list(self.trace)).decode()
        return row

    def as_values(self) -> tuple[Any, ...]:
        """The values of :meth:`as_row` in FIELDS order (an INSERT's parameters)."""
        row = self.as_row()
        return tuple(row[name] for name in FIELDS)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CallRecord:
        """A record back from :meth:`as_row` (unknown keys are ignored)."""
        values = {name: row[name] for name in FIELDS if name in row}
        for name in ("rules", "trace"):
            raw = values.get(name)
            values[name] = tuple(orjson.loads(raw)) if isinstance(raw, str) and raw else tuple(
                raw or ())
        return cls(**values)

    def for_export(self) -> dict[str, Any]:
        """The record as ops read it: times in ISO 8601 UTC, lists joined."""
        row: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
        for name in TIME_FIELDS:
            value = row[name]
            row[name] = None if value is None else iso_time(value)
        row["rules"] = " ".join(self.rules)
        row["trace"] = " | ".join(self.trace)
        return row

    def replace(self, **changes: Any) -> CallRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


TEXT_FIELDS = tuple(name for name in FIELDS if name not in (
    *TIME_FIELDS, *NUMBER_FIELDS, "rules", "trace"))


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """Text every database and export takes: bytes the parser could not decode (kept as
    U+DC80-U+DCFF surrogates) are decoded again as UTF-8 where they are, else become
    U+FFFD, as do other lone surrogates and NUL."""
    spare = "".join("\ufffd" if ("\ud800" <= character <= "\udfff"
                                  and not "\udc80" <= character <= "\udcff")
                    or character == "\x00" else character for character in text)
    return spare.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def iso_time(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
