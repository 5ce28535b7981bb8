"""The CDR spool: records on local disk until the database has them.

Every record goes through the spool first (it is the recorder's write-ahead
log): a batch is written to a file of its own, flushed and fsynced, renamed
into place and the directory fsynced; only then is the batch acknowledged. A
batch file is removed once the database has committed every record in it. A
crash (even SIGKILL or a power cut after the fsync) therefore loses no
acknowledged record: at the next start the files still there are written
again, and the database keeps a record once however often it is written (its
id is the key).

Files are JSON lines (one record each), named so that they sort oldest first.
A line that cannot be read (a torn write of a batch never acknowledged) is
skipped and counted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from sipguard.records.record import CallRecord

SUFFIX = ".jsonl"
REFUSED = ".refused"
STALE_TEMPORARY = 60.0  # seconds: a batch file being written is never this old


class Spool:
    """A directory of acknowledged batches not yet in the database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sequence = itertools.count()
        self.unreadable_lines = 0

    def prepare(self) -> None:
        """Create the directory (mode 0700: records name numbers and callers)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.time()
        for leftover in self.directory.glob(f"*{SUFFIX}.tmp"):
            # Never acknowledged: a crash came before the rename. One another process
            # sharing the spool is writing right now is young: it is left alone.
            with contextlib.suppress(OSError):
                if now - leftover.stat().st_mtime > STALE_TEMPORARY:
                    leftover.unlink()

    def append(self, records: Sequence[CallRecord], refused: bool = False) -> Path:
        """Write one batch durably; return its file (blocking: run it off the event loop).

        ``refused`` records (the database will not take them) go to a file beside the
        batches (``*.jsonl.refused``), which is never written to the database again.
        """
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):08d}{SUFFIX}"
        if refused:
            name += REFUSED
        final = self.directory / name
        temporary = final.with_name(name + ".tmp")
        data = b"".join(_line(record) for record in records)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, final)
        self._sync_directory()
        return final

    def pending(self) -> list[Path]:
        """Batch files not yet in the database, oldest first."""
        try:
            return sorted(self.directory.glob(f"*{SUFFIX}"))
        except OSError:
            return []

    def read(self, path: Path) -> list[CallRecord]:
        """The records of one batch file (unreadable lines skipped and counted)."""
        records: list[CallRecord] = []
        with path.open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    records.append(CallRecord.from_row(orjson.loads(line)))
                except (ValueError, TypeError, KeyError):  # orjson.JSONDecodeError is a ValueError
                    self.unreadable_lines += 1
        return records

    def set_aside(self, path: Path) -> Path:
        """Rename a batch the database refuses (``.refused``): out of the way, not lost."""
        target = path.with_name(path.name + REFUSED)
        path.replace(target)
        return target

    def remove(self, path: Path) -> None:
        """The database has every record of this batch."""
        path.unlink(missing_ok=True)

    def _sync_directory(self) -> None:
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _line(record: CallRecord) -> bytes:
    """One record as a JSON line (orjson; the standard library for an integer past 64 bits,
    which the database then refuses on its own)."""
    row = record.as_row()
    try:
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return json.dumps(row, separators=(",", ":")).encode() + b"\n"
