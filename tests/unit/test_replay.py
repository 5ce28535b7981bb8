"""Replaying recorded calls through a policy, comparing two policies, and the end reasons
CallRecords keeps from the controller's call events."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.policy import Decision, Verdict
from sipguard.policy.loader import LoadedPolicy, load_policy_file
from sipguard.records import CallRecord
from sipguard.records import from_calls as recording
from sipguard.records.from_calls import CallRecords
from sipguard.records.replay import Replayed, differences, replay

MONDAY_NOON = 1795435200.0  # 2026-11-23T12:00:00Z, a Monday
HOUR = 3600.0
LONDON = "011442079460321"  # international from a US account ("011" prefix)
LONDON_TOO = "011442079460322"
PARIS = "01133142685300"
NEW_YORK = "12125550100"

ACCOUNT = """\
accounts:
  - name: pbx
    home_region: US
    home_state: NY
    time_zone: UTC
    business_hours: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}
    may_dial: [domestic, international]
"""
LENIENT = ACCOUNT + """\
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: allow-gb, region: GB, action: allow}
    - {id: allow-fr, region: FR, action: allow}
"""
STRICT = ACCOUNT + """\
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: deny-gb, region: GB, action: deny}
    - {id: pin-fr, region: FR, action: pin}
"""
PIN_GB = ACCOUNT + """\
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: pin-gb, region: GB, action: pin}
    - {id: allow-fr, region: FR, action: allow}
"""
RATE = LENIENT + """\
limits:
  rate:
    - {id: extension-international-hour, per: extension, class: international, max: 2, window: 1h, action: deny}
"""
CONCURRENCY = LENIENT + """\
limits:
  concurrency:
    - {id: extension-live, per: extension, class: any, max: 1, action: deny}
"""
AFTER_HOURS = LENIENT + """\
time_rules:
  - {id: international-after-hours, when: outside_business_hours, classes: [international], action: pin}
"""


def _policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> tuple[LoadedPolicy, Path]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_policy_file(path), path


def _call(number: int, dialled: str, started_at: float, seconds: float = 60.0,
          extension: str = "201") -> CallRecord:
    return CallRecord(call_id=f"call-{number}@127.0.0.1", started_at=started_at,
                      account="pbx", source="127.0.0.1", dialled=dialled,
                      decision="forward", id=f"{number:032x}", extension=extension,
                      answered_at=started_at + 1, ended_at=started_at + 1 + seconds,
                      duration=seconds, action="allow")


def _replay(records: list[CallRecord], tmp_path: Path, text: str,
            name: str = "policy.yaml") -> list[Replayed]:
    loaded, path = _policy(tmp_path, text, name)

    async def main() -> list[Replayed]:
        async with asyncio.timeout(20):
            return await replay(records, loaded, path)

    return asyncio.run(main())


def _actions(replayed: list[Replayed]) -> list[str]:
    return [item.decision.action for item in replayed]


MIXED = [
    _call(1, NEW_YORK, MONDAY_NOON),
    _call(2, LONDON, MONDAY_NOON + 600),
    _call(3, PARIS, MONDAY_NOON + 1200),
    _call(4, LONDON_TOO, MONDAY_NOON + 1800, extension="202"),
    _call(5, NEW_YORK, MONDAY_NOON + 2400, extension="202"),
]


def test_replay_decides_every_record_in_its_order(tmp_path: Path):
    """replay gives one decision per record, in the order the records were given."""
    replayed = _replay(MIXED, tmp_path, STRICT)
    assert [item.record for item in replayed] == MIXED
    assert _actions(replayed) == ["allow", "deny", "pin", "deny", "allow"]
    assert [item.decision.rule for item in replayed] == [
        "allow-us", "deny-gb", "pin-fr", "deny-gb", "allow-us"]
    assert [item.stops for item in replayed] == [False, True, True, True, False]


def test_a_stricter_policy_stops_exactly_the_calls_it_treats_more_strictly(tmp_path: Path):
    """differences(lenient, strict) lists the denied and challenged calls as stopped, and nothing released."""
    current = _replay(MIXED, tmp_path, LENIENT, "current.yaml")
    candidate = _replay(MIXED, tmp_path, STRICT, "candidate.yaml")
    stopped, released = differences(current, candidate)
    assert [difference.record.id for difference in stopped] == [MIXED[i].id for i in (1, 2, 3)]
    assert released == []
    assert [(d.current.action, d.candidate.action) for d in stopped] == [
        ("allow", "deny"), ("allow", "pin"), ("allow", "deny")]
    back_stopped, back_released = differences(candidate, current)
    assert back_stopped == []
    assert [difference.record.id for difference in back_released] == [
        MIXED[i].id for i in (1, 2, 3)]


def test_pin_to_deny_is_stricter_and_deny_to_pin_is_not(tmp_path: Path):
    """A call challenged by one policy and denied by the other is stopped one way, released the other."""
    challenged = _replay(MIXED, tmp_path, PIN_GB, "pin.yaml")
    denied = _replay(MIXED, tmp_path, STRICT, "strict.yaml")
    stopped, released = differences(challenged, denied)
    assert [(d.record.id, d.current.action, d.candidate.action) for d in stopped] == [
        (MIXED[1].id, "pin", "deny"), (MIXED[2].id, "allow", "pin"),
        (MIXED[3].id, "pin", "deny")]
    assert released == []
    stopped, released = differences(denied, challenged)
    assert stopped == [] and len(released) == 3


def test_one_policy_against_itself_differs_nowhere(tmp_path: Path):
    """Replaying the same policy twice gives the same decisions and no differences."""
    first = _replay(MIXED, tmp_path, STRICT, "a.yaml")
    second = _replay(MIXED, tmp_path, STRICT, "b.yaml")
    assert _actions(first) == _actions(second)
    assert differences(first, second) == ([], [])


def test_difference_as_dict(tmp_path: Path):
    """A difference reads as the call, what was recorded, and each policy's action and rule."""
    current = _replay(MIXED, tmp_path, LENIENT, "current.yaml")
    candidate = _replay(MIXED, tmp_path, STRICT, "candidate.yaml")
    stopped, _ = differences(current, candidate)
    assert stopped[0].as_dict() == {
        "id": MIXED[1].id, "call_id": "call-2@127.0.0.1", "started_at": MONDAY_NOON + 600,
        "account": "pbx", "extension": "201", "dialled": LONDON, "e164": None,
        "recorded": "allow",
        "current": {"action": "allow", "rule": "allow-gb"},
        "candidate": {"action": "deny", "rule": "deny-gb"},
    }


def test_differences_need_replays_of_the_same_records(tmp_path: Path):
    """Two replays of different lengths cannot be compared."""
    replayed = _replay(MIXED, tmp_path, STRICT)
    with pytest.raises(ValueError, match="zip"):
        differences(replayed, replayed[:-1])


@pytest.mark.parametrize(
    ("offsets", "dialled", "expected"),
    [
        ([0, 600, 1200], [LONDON, LONDON_TOO, LONDON], ["allow", "allow", "deny"]),
        ([0, 1200, 600], [LONDON, LONDON, LONDON_TOO], ["allow", "deny", "allow"]),  # any order
        ([1200, 600, 0], [LONDON, LONDON, LONDON], ["deny", "allow", "allow"]),
        ([0, HOUR + 1, 2 * HOUR + 2], [LONDON, LONDON, LONDON], ["allow", "allow", "allow"]),
        ([0, 1800, HOUR + 1], [LONDON, LONDON, LONDON], ["allow", "allow", "allow"]),  # sliding
        ([0, 600, 1200, 1800], [LONDON, NEW_YORK, LONDON, NEW_YORK],
         ["allow", "allow", "allow", "allow"]),  # domestic calls are not counted
    ],
    ids=["three-in-an-hour", "unsorted", "reversed", "over-three-hours", "window-slides",
         "domestic-not-counted"],
)
def test_rate_limits_count_the_records_own_start_times(tmp_path: Path, offsets: list[float],
                                                       dialled: list[str], expected: list[str]):
    """Two international calls an hour per extension: the third within an hour (by start time) is stopped."""
    records = [_call(number, number_dialled, MONDAY_NOON + offset)
               for number, (offset, number_dialled) in enumerate(zip(offsets, dialled,
                                                                     strict=True))]
    replayed = _replay(records, tmp_path, RATE)
    assert _actions(replayed) == expected
    stopped = [item for item in replayed if item.stops]
    assert all(item.decision.rule == "extension-international-hour" for item in stopped)


def test_rate_limits_are_per_extension(tmp_path: Path):
    """Calls from other extensions do not use up one extension's rate limit."""
    records = [_call(number, LONDON, MONDAY_NOON + 60 * number, extension=f"20{number}")
               for number in range(4)]
    assert _actions(_replay(records, tmp_path, RATE)) == ["allow"] * 4


@pytest.mark.parametrize(
    ("second_start", "first_length", "expected"),
    [
        (HOUR, 3 * HOUR, ["allow", "deny"]),  # inside a 3-hour call (past any lease time)
        (600, 60, ["allow", "allow"]),  # the first call is over
        (61.0, 60, ["allow", "allow"]),  # ended exactly when the second starts
    ],
)
def test_concurrency_follows_the_recorded_call_lengths(tmp_path: Path, second_start: float,
                                                       first_length: float,
                                                       expected: list[str]):
    """A call holds its concurrency lease until its recorded end, however long it was."""
    records = [_call(1, LONDON, MONDAY_NOON, seconds=first_length),
               _call(2, NEW_YORK, MONDAY_NOON + second_start)]
    assert _actions(_replay(records, tmp_path, CONCURRENCY)) == expected


def test_time_rules_see_when_each_call_was_made(tmp_path: Path):
    """Business hours are judged at each record's start time, not at the time of the replay."""
    records = [_call(1, LONDON, MONDAY_NOON), _call(2, LONDON, MONDAY_NOON - 10 * HOUR),
               _call(3, NEW_YORK, MONDAY_NOON - 10 * HOUR),
               _call(4, LONDON, MONDAY_NOON - 2 * 86400)]  # a Saturday
    assert _actions(_replay(records, tmp_path, AFTER_HOURS)) == ["allow", "pin", "allow", "pin"]


def test_replaying_nothing_gives_nothing(tmp_path: Path):
    """An empty list of records replays to an empty list."""
    assert _replay([], tmp_path, STRICT) == []


VERDICTS = st.sampled_from(list(Verdict))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(VERDICTS, VERDICTS), max_size=12))
def test_differences_partition_by_strictness(pairs: list[tuple[Verdict, Verdict]]):
    """Every call is stopped, released or unchanged, by the order allow < pin < deny; swapping swaps."""
    records = [_call(number, LONDON, MONDAY_NOON + number) for number in range(len(pairs))]
    current = [Replayed(record, Decision(now, "now")) for record, (now, _) in zip(
        records, pairs, strict=True)]
    candidate = [Replayed(record, Decision(new, "new")) for record, (_, new) in zip(
        records, pairs, strict=True)]
    strictness = {Verdict.FORWARD: 0, Verdict.CHALLENGE: 1, Verdict.REJECT: 2}
    stopped, released = differences(current, candidate)
    assert [d.record.id for d in stopped] == [
        record.id for record, (now, new) in zip(records, pairs, strict=True)
        if strictness[new] > strictness[now]]
    assert [d.record.id for d in released] == [
        record.id for record, (now, new) in zip(records, pairs, strict=True)
        if strictness[new] < strictness[now]]
    swapped_stopped, swapped_released = differences(candidate, current)
    assert [d.record.id for d in swapped_stopped] == [d.record.id for d in released]
    assert [d.record.id for d in swapped_released] == [d.record.id for d in stopped]


# -- CallRecords.observe ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "fields", "note"),
    [
        ("call.ended", {"call_id": "c1", "reason": "bye"}, ("call.ended", "bye")),
        ("call.failed", {"call_id": "c1", "reason": "trunk timeout"},
         ("call.failed", "trunk timeout")),
        ("call.rejected", {"call_id": "c1", "reason": "destination rule"},
         ("call.rejected", "destination rule")),
        ("call.pin_refused", {"call_id": "c1", "pin": "locked"}, ("call.pin_refused", "locked")),
        ("call.rejected", {"call_id": "c1", "reason": "", "pin": "wrong"},
         ("call.rejected", "wrong")),  # an empty reason gives way to the PIN outcome
        ("call.failed", {"call_id": "c1"}, ("call.failed", "failed")),  # no reason: the event's
        ("call.ended", {"call_id": "c1", "reason": 487}, ("call.ended", "487")),
        ("call.screened", {"call_id": "c1", "reason": "x"}, None),  # not an ending
        ("call.answered", {"call_id": "c1"}, None),
        ("sip.message_discarded", {"call_id": "c1"}, None),
        ("call.ended", {"reason": "bye"}, None),  # no call_id
        ("call.ended", {"call_id": 7, "reason": "bye"}, None),  # not a Call-ID
        ("call.ended", {"call_id": None, "reason": "bye"}, None),
    ],
)
def test_observe_keeps_why_a_call_ended(event: str, fields: dict[str, Any],
                                        note: tuple[str, str] | None):
    """observe keeps (event, reason) for the call-ending events only, by Call-ID."""
    records = CallRecords("node-1")
    records.observe(event, fields)
    assert records._notes.get("c1") == note
    assert len(records._notes) == (0 if note is None else 1)


def test_the_last_ending_event_wins():
    """A later ending event for the same call replaces the earlier note; other calls keep theirs."""
    records = CallRecords("node-1")
    records.observe("call.rejected", {"call_id": "c1", "reason": "pin required"})
    records.observe("call.ended", {"call_id": "c2", "reason": "bye"})
    records.observe("call.pin_refused", {"call_id": "c1", "pin": "wrong"})
    records.observe("call.screened", {"call_id": "c1", "reason": "ignored"})
    assert dict(records._notes) == {"c1": ("call.pin_refused", "wrong"),
                                    "c2": ("call.ended", "bye")}


def test_observe_is_bounded_and_forgets_the_oldest(monkeypatch: pytest.MonkeyPatch):
    """Past MAX_NOTES unfinished calls the oldest notes go; a call noted again counts as new."""
    monkeypatch.setattr(recording, "MAX_NOTES", 5)
    records = CallRecords("node-1")
    for number in range(5):
        records.observe("call.ended", {"call_id": f"c{number}", "reason": "bye"})
    records.observe("call.failed", {"call_id": "c0", "reason": "again"})  # c0 is now newest
    records.observe("call.ended", {"call_id": "c5", "reason": "bye"})
    records.observe("call.ended", {"call_id": "c6", "reason": "bye"})
    assert list(records._notes) == ["c3", "c4", "c0", "c5", "c6"]
    assert records._notes["c0"] == ("call.failed", "again")


def test_observe_bound_holds_at_its_real_size():
    """With the shipped MAX_NOTES, a flood of strangers' calls keeps exactly MAX_NOTES notes."""
    records = CallRecords("node-1")
    total = recording.MAX_NOTES + 100
    for number in range(total):
        records.observe("call.rejected", {"call_id": f"c{number}", "reason": "unknown source"})
    assert len(records._notes) == recording.MAX_NOTES
    assert next(iter(records._notes)) == "c100"
    assert f"c{total - 1}" in records._notes
