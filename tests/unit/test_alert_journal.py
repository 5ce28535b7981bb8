"""The alert journal (sipguard.alerts.journal): alerts raised and acknowledged are written as
JSON lines, read back at start (newest first, the last ``keep``), compacted when the file
grows past four times ``keep`` lines, with unreadable lines skipped and counted, write
errors counted rather than raised, and nothing written when there is no path."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from sipguard.alerts.journal import Acknowledgment, AlertJournal
from sipguard.alerts.model import Alert
from sipguard.policy.alerting import AlertType, Level

AT = 1715839200.0  # 2024-05-16 06:00:00 UTC


def _alert(number: int, *, alert_id: str | None = None, at: float | None = None,
           level: Level = Level.URGENT) -> Alert:
    """Alert ``number``, a minute after the one before, with every field filled in."""
    return Alert(
        AlertType.TRAFFIC, level,
        f"International minutes for account acme are {100 + number}% above normal",
        f"traffic:acme:international:{number}",
        account="acme", jurisdiction="US-NY",
        details=MappingProxyType({"current": 180.5, "normal": 60.0, "number": number,
                                  "hour": "Thu 02:00", "percent_above": None}),
        at=AT + 60 * number if at is None else at,
        id=alert_id if alert_id is not None else f"{number:08x}" + "0" * 24)


def _entries(path: Path) -> list[dict[str, Any]]:
    """The journal file's lines, decoded."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _reloaded(path: Path, keep: int = 500) -> AlertJournal:
    """A fresh journal on ``path``, loaded as at start."""
    journal = AlertJournal(path, keep)
    journal.load()
    return journal


# -- round trip --------------------------------------------------------------------------


def test_added_alerts_load_back_newest_first_with_every_field(tmp_path: Path) -> None:
    """Alerts added to a journal are read back by a new one, newest first, field for field."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path)
    added = [_alert(1), _alert(2, level=Level.WARNING), _alert(3, level=Level.NOTIFY)]
    for alert in added:
        journal.add(alert)

    loaded = _reloaded(path)

    assert list(loaded.alerts) == list(reversed(added))
    assert [alert.as_dict() for alert in loaded.alerts] == [
        alert.as_dict() for alert in reversed(added)]
    assert isinstance(loaded.alerts[0].details, MappingProxyType)
    assert loaded.unreadable == 0


def test_add_keeps_alerts_newest_first_in_memory(tmp_path: Path) -> None:
    """The journal lists the alert added last first, before any reload."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    journal.add(_alert(1))
    journal.add(_alert(2))

    assert [alert.id for alert in journal.alerts] == [_alert(2).id, _alert(1).id]


def test_add_writes_one_alert_line_with_its_time_in_seconds(tmp_path: Path) -> None:
    """Each alert added is one JSON line holding the alert's data and its exact time."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path)
    journal.add(_alert(1, at=AT + 0.25))

    entries = _entries(path)

    assert len(entries) == 1
    assert entries[0]["alert"]["id"] == _alert(1).id
    assert entries[0]["alert"]["at_seconds"] == AT + 0.25
    assert entries[0]["alert"]["details"]["hour"] == "Thu 02:00"


def test_add_creates_the_missing_directory(tmp_path: Path) -> None:
    """A journal under a directory that does not exist yet creates it on the first write."""
    path = tmp_path / "var" / "state" / "alerts.jsonl"
    journal = AlertJournal(path)
    journal.add(_alert(1))

    assert path.is_file()
    assert journal.write_errors == 0
    # Alerts name extensions and numbers: the service's user alone reads them.
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_compacted_journal_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=2)
    for number in range(12):  # past 4 * keep lines the file is rewritten
        journal.add(_alert(number))
    assert len(path.read_bytes().splitlines()) < 12
    assert path.stat().st_mode & 0o777 == 0o600


def test_acknowledgments_load_back(tmp_path: Path) -> None:
    """Who acknowledged which alert, and when, is read back after a restart."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path)
    for number in (1, 2, 3):
        journal.add(_alert(number))
    journal.acknowledge([_alert(2).id], "alice", now=AT + 600)

    loaded = _reloaded(path)

    assert loaded.acknowledged == {_alert(2).id: Acknowledgment("alice", AT + 600)}
    assert [alert.id for alert in loaded.open_alerts()] == [_alert(3).id, _alert(1).id]


def test_load_orders_alerts_by_time_not_by_file_order(tmp_path: Path) -> None:
    """Alert lines written out of time order still load newest first."""
    path = tmp_path / "alerts.jsonl"
    lines = [orjson.dumps({"alert": _alert(number).as_dict() | {"at_seconds": _alert(number).at}})
             for number in (2, 3, 1)]
    path.write_bytes(b"\n".join(lines) + b"\n")

    loaded = _reloaded(path)

    assert [alert.id for alert in loaded.alerts] == [_alert(3).id, _alert(2).id, _alert(1).id]


def test_an_alert_written_twice_loads_once(tmp_path: Path) -> None:
    """An alert id that appears on two lines is one alert after loading."""
    path = tmp_path / "alerts.jsonl"
    line = orjson.dumps({"alert": _alert(1).as_dict() | {"at_seconds": _alert(1).at}})
    path.write_bytes(line + b"\n" + line + b"\n")

    loaded = _reloaded(path)

    assert [alert.id for alert in loaded.alerts] == [_alert(1).id]


# -- acknowledging -----------------------------------------------------------------------


def test_acknowledge_returns_only_known_ids_not_yet_acknowledged(tmp_path: Path) -> None:
    """Unknown ids, repeats and alerts already acknowledged are left out of the ids done."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    for number in (1, 2, 3):
        journal.add(_alert(number))
    assert journal.acknowledge([_alert(1).id], "alice", now=AT + 100) == [_alert(1).id]

    done = journal.acknowledge(
        [_alert(1).id, "f" * 32, _alert(2).id, _alert(2).id, _alert(3).id], "bob", now=AT + 200)

    assert done == [_alert(2).id, _alert(3).id]
    assert journal.acknowledged[_alert(1).id] == Acknowledgment("alice", AT + 100)
    assert journal.acknowledged[_alert(2).id] == Acknowledgment("bob", AT + 200)
    assert "f" * 32 not in journal.acknowledged


def test_acknowledge_writes_one_line_per_alert_acknowledged(tmp_path: Path) -> None:
    """Each acknowledgment done is a line with the id, who and when; the others write nothing."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path)
    journal.add(_alert(1))
    journal.add(_alert(2))

    journal.acknowledge([_alert(2).id, "unknown-id", _alert(1).id], "alice", now=AT + 300)
    journal.acknowledge([_alert(2).id], "bob", now=AT + 400)

    acks = [entry for entry in _entries(path) if "ack" in entry]
    assert acks == [{"ack": _alert(2).id, "by": "alice", "at": AT + 300},
                    {"ack": _alert(1).id, "by": "alice", "at": AT + 300}]


def test_acknowledge_without_a_time_uses_the_clock(tmp_path: Path) -> None:
    """An acknowledgment with no time given is stamped with the current time."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    journal.add(_alert(1))

    before = time.time()
    journal.acknowledge([_alert(1).id], "alice")
    after = time.time()

    assert before <= journal.acknowledged[_alert(1).id].at <= after


def test_open_alerts_leaves_out_acknowledged_ones_newest_first(tmp_path: Path) -> None:
    """Open alerts are the ones no one acknowledged, newest first."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    for number in (1, 2, 3, 4):
        journal.add(_alert(number))
    journal.acknowledge([_alert(1).id, _alert(3).id], "alice", now=AT)

    assert [alert.id for alert in journal.open_alerts()] == [_alert(4).id, _alert(2).id]


def test_listed_gives_the_newest_alerts_with_who_acknowledged_them(tmp_path: Path) -> None:
    """listed() returns at most ``limit`` alerts as data, newest first, with the acknowledgment."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    for number in (1, 2, 3):
        journal.add(_alert(number))
    journal.acknowledge([_alert(3).id], "alice", now=AT + 3600)

    listed = journal.listed(2)

    assert [entry["id"] for entry in listed] == [_alert(3).id, _alert(2).id]
    assert listed[0]["acknowledged"] == {"by": "alice", "at": "2024-05-16T07:00:00+00:00"}
    assert listed[1]["acknowledged"] is None
    assert listed[1] == _alert(2).as_dict() | {"acknowledged": None}


# -- resolving ids -----------------------------------------------------------------------


RESOLVE_IDS = ("abcdef01" + "1" * 24, "abcdef02" + "2" * 24, "123456" + "3" * 26)


@pytest.mark.parametrize(("given", "expected"), [
    (RESOLVE_IDS[0], RESOLVE_IDS[0]),  # the full id
    ("abcdef01", RESOLVE_IDS[0]),  # a unique prefix
    ("abcdef0", None),  # a prefix two alerts share
    ("abcdef", None),  # a six-character prefix two alerts share
    ("123456", RESOLVE_IDS[2]),  # a unique prefix of exactly six characters
    ("12345", None),  # unique, but shorter than six characters
    ("a", None),
    ("", None),
    ("999999", None),  # names no alert
    (RESOLVE_IDS[0] + "0", None),  # longer than any id
])
def test_resolve_accepts_full_ids_and_unique_prefixes_of_six_or_more(
        tmp_path: Path, given: str, expected: str | None) -> None:
    """resolve() finds an alert by its id or a prefix of at least six characters naming it alone."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    for number, alert_id in enumerate(RESOLVE_IDS):
        journal.add(_alert(number, alert_id=alert_id))

    assert journal.resolve(given) == expected


def test_resolve_finds_a_short_id_given_in_full(tmp_path: Path) -> None:
    """An id shorter than six characters still resolves when given whole."""
    journal = AlertJournal(tmp_path / "alerts.jsonl")
    journal.add(_alert(1, alert_id="abc"))
    journal.add(_alert(2, alert_id="abcdefgh"))

    assert journal.resolve("abc") == "abc"


# -- keep limit and compaction -----------------------------------------------------------


def test_add_beyond_keep_drops_the_oldest_from_memory(tmp_path: Path) -> None:
    """Only the newest ``keep`` alerts stay in memory."""
    journal = AlertJournal(tmp_path / "alerts.jsonl", keep=3)
    for number in range(1, 6):
        journal.add(_alert(number))

    assert [alert.id for alert in journal.alerts] == [_alert(5).id, _alert(4).id, _alert(3).id]


def test_load_keeps_the_newest_alerts_and_only_their_acknowledgments(tmp_path: Path) -> None:
    """Loading with a smaller ``keep`` keeps the newest alerts and drops other acknowledgments."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=10)
    for number in range(1, 6):
        journal.add(_alert(number))
    journal.acknowledge([_alert(1).id, _alert(5).id], "alice", now=AT)

    loaded = _reloaded(path, keep=2)

    assert [alert.id for alert in loaded.alerts] == [_alert(5).id, _alert(4).id]
    assert set(loaded.acknowledged) == {_alert(5).id}


def test_compaction_rewrites_the_file_with_only_what_is_kept(tmp_path: Path) -> None:
    """Past four times ``keep`` lines, the file is rewritten with the kept alerts and their acks."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=3)
    for number in range(1, 12):  # 11 lines
        journal.add(_alert(number))
    journal.acknowledge([_alert(10).id], "alice", now=AT + 5000)  # 12 lines: not past 4 × 3
    assert len(path.read_bytes().splitlines()) == 12

    journal.add(_alert(12))  # 13 lines: compacted

    entries = _entries(path)
    assert sorted(entry["alert"]["id"] for entry in entries if "alert" in entry) == sorted(
        [_alert(10).id, _alert(11).id, _alert(12).id])
    assert [entry for entry in entries if "ack" in entry] == [
        {"ack": _alert(10).id, "by": "alice", "at": AT + 5000}]
    assert len(entries) == 4
    assert list(tmp_path.iterdir()) == [path]  # no alerts.jsonl.new left behind
    assert journal.write_errors == 0


def test_compacted_file_loads_back_the_same_journal(tmp_path: Path) -> None:
    """A compacted file reads back as the alerts and acknowledgments the journal held."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=2)
    for number in range(1, 10):  # the 9th line is past 4 × 2
        journal.add(_alert(number))
        if number == 8:
            journal.acknowledge([_alert(8).id], "alice", now=AT + 7000)

    loaded = _reloaded(path, keep=2)

    assert len(path.read_bytes().splitlines()) < 9
    assert list(loaded.alerts) == list(journal.alerts)
    assert loaded.acknowledged == {_alert(8).id: Acknowledgment("alice", AT + 7000)}
    assert loaded.unreadable == 0


def test_writes_after_compaction_append_and_compact_again(tmp_path: Path) -> None:
    """After a compaction the journal appends again and compacts once more past the limit."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=2)
    line_counts = []
    for number in range(1, 30):
        journal.add(_alert(number))
        line_counts.append(len(path.read_bytes().splitlines()))

    assert max(line_counts) <= 4 * 2
    assert line_counts.count(2) >= 2  # compacted to the two kept alerts more than once
    assert [alert.id for alert in _reloaded(path, keep=2).alerts] == [
        _alert(29).id, _alert(28).id]


def test_acknowledging_many_alerts_keeps_the_file_bounded(tmp_path: Path) -> None:
    """Acknowledgments of alerts no longer kept are dropped by compaction, so the file stays small."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=2)
    for number in range(1, 21):
        journal.add(_alert(number))
        journal.acknowledge([_alert(number).id], "alice", now=AT + number)

    kept = {alert.id for alert in journal.alerts}
    acknowledged_in_file = {entry["ack"] for entry in _entries(path) if "ack" in entry}
    assert acknowledged_in_file <= kept
    assert len(path.read_bytes().splitlines()) <= 4 * 2


def test_failed_compaction_keeps_the_old_file_and_is_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction that cannot finish leaves the old file whole and counts a write error."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=1)
    for number in range(1, 5):  # 4 lines: not past 4 × 1
        journal.add(_alert(number))

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    journal.add(_alert(5))

    assert journal.write_errors == 1
    assert [entry["alert"]["id"] for entry in _entries(path)] == [
        _alert(number).id for number in range(1, 6)]


def test_failed_compaction_leaves_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction that fails part way removes its half-written temporary file."""
    path = tmp_path / "alerts.jsonl"
    journal = AlertJournal(path, keep=1)
    for number in range(1, 5):
        journal.add(_alert(number))

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    journal.add(_alert(5))

    assert sorted(child.name for child in tmp_path.iterdir()) == ["alerts.jsonl"]


# -- damaged, missing and unwritable files -----------------------------------------------


def test_unreadable_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    """Lines that are not JSON, not an entry, or an entry with bad fields are skipped and counted."""
    path = tmp_path / "alerts.jsonl"
    good = _alert(1).as_dict() | {"at_seconds": _alert(1).at}
    lines = [
        orjson.dumps({"alert": good}),
        b"not json at all",
        b'{"alert": {"id": "trunc',  # a line cut short by a crash
        b"\xff\xfe\xfd",  # not UTF-8
        b"[1, 2, 3]",
        b"42",
        b"null",
        orjson.dumps({"something": "else"}),
        orjson.dumps({"alert": good | {"id": "bad-type", "type": "no-such-type"}}),
        orjson.dumps({"alert": good | {"id": "bad-level", "level": "deafening"}}),
        orjson.dumps({"alert": {key: value for key, value in good.items()
                                if key != "at_seconds"} | {"id": "no-time"}}),
        orjson.dumps({"alert": good | {"id": "bad-time", "at_seconds": "yesterday"}}),
        orjson.dumps({"alert": good | {"id": "bad-details", "details": 5}}),
        orjson.dumps({"alert": "just text"}),
        orjson.dumps({"ack": _alert(1).id, "by": "alice"}),  # no time
        orjson.dumps({"ack": _alert(1).id, "by": "alice", "at": None}),
        orjson.dumps({"ack": _alert(1).id, "by": "bob", "at": AT + 60}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")

    loaded = _reloaded(path)

    assert loaded.unreadable == len(lines) - 2
    assert [alert.id for alert in loaded.alerts] == [_alert(1).id]
    assert loaded.acknowledged == {_alert(1).id: Acknowledgment("bob", AT + 60)}


def test_a_missing_file_loads_as_an_empty_journal(tmp_path: Path) -> None:
    """No journal file yet means no alerts, nothing unreadable, and no file created."""
    path = tmp_path / "var" / "alerts.jsonl"

    loaded = _reloaded(path)

    assert list(loaded.alerts) == []
    assert loaded.acknowledged == {}
    assert loaded.unreadable == 0
    assert not path.exists()


def test_without_a_path_the_journal_is_in_memory_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal with no path keeps alerts and acknowledgments in memory and writes no file."""
    monkeypatch.chdir(tmp_path)
    journal = AlertJournal(None, keep=2)
    journal.load()
    for number in range(1, 20):
        journal.add(_alert(number))
    done = journal.acknowledge([_alert(19).id], "alice", now=AT)

    assert done == [_alert(19).id]
    assert [alert.id for alert in journal.open_alerts()] == [_alert(18).id]
    assert journal.write_errors == 0
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_is_counted_not_raised(tmp_path: Path) -> None:
    """When the journal path cannot be written (it is a directory), writes are counted as errors."""
    journal = AlertJournal(tmp_path)

    journal.add(_alert(1))
    done = journal.acknowledge([_alert(1).id], "alice", now=AT)

    assert journal.write_errors == 2
    assert [alert.id for alert in journal.alerts] == [_alert(1).id]
    assert done == [_alert(1).id]
    assert list(tmp_path.iterdir()) == []


def test_acknowledgment_as_dict_gives_the_time_in_utc() -> None:
    """An acknowledgment's data names who and the time as ISO 8601 in UTC, to the second."""
    assert Acknowledgment("alice", AT + 0.9).as_dict() == {
        "by": "alice", "at": "2024-05-16T06:00:00+00:00"}


def test_a_journal_made_before_the_rule_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)
    AlertJournal(path).add(_alert(1))
    assert path.stat().st_mode & 0o777 == 0o600
