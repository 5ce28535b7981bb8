"""Call records (CDRs): the record, the CdrSink Protocol and its backends (SQLite,
PostgreSQL), the spool and the recorder that never lets call handling wait, the writer
process's drain loop, records built from finished calls, replay through another policy,
and what exports need.

Owns: everything stored about calls. May import: ``sipguard.policy``, ``sipguard.b2bua``
(the finished call a record is built from), ``sipguard.screening`` (replay),
``sipguard.store`` and ``sipguard.logs``; never the configuration or the service.
"""

from __future__ import annotations

from sipguard.records.database import CdrSettings, make_sink
from sipguard.records.export import csv_cell, parse_time
from sipguard.records.from_calls import CallRecords
from sipguard.records.record import FIELDS, CallRecord, iso_time
from sipguard.records.recorder import Recorder
from sipguard.records.replay import Difference, differences, replay
from sipguard.records.sink import (
    GROUPS,
    CdrSink,
    CdrUnavailableError,
    SummaryRow,
    TimelineRow,
    TrafficRow,
)
from sipguard.records.spool import Spool
from sipguard.records.writer import WriterProcess, serve

__all__ = [
    "FIELDS",
    "GROUPS",
    "CallRecord",
    "CallRecords",
    "CdrSettings",
    "CdrSink",
    "CdrUnavailableError",
    "Difference",
    "Recorder",
    "Spool",
    "SummaryRow",
    "TimelineRow",
    "TrafficRow",
    "WriterProcess",
    "csv_cell",
    "differences",
    "iso_time",
    "make_sink",
    "parse_time",
    "replay",
    "serve",
]
