"""Editing the policy file's ``alerts:`` section: only the keys asked for change, the
result is checked like ``sipguard check`` checks a file, and only a valid result is put
in place (atomically, with the previous text kept as FILE.bak)."""

from __future__ import annotations

import difflib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sipguard.policy.alerting import LEVELS, AlertPolicy, AlertType, Level
from sipguard.policy.edit import EDITABLE, Edit, current_values, edit_alerts, parse_changes
from sipguard.policy.loader import load_policy_file
from sipguard.policy.model import Policy
from sipguard.schema.document import ConfigError, parse_marked

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "conf" / "policy.yaml"
POLICIES = REPO / "tests" / "policies"
INVALID_BY_DESIGN = {"loader_invalid.yaml"}  # the loader tests' file of problems
VALID_POLICIES = [SHIPPED, *(path for path in sorted(POLICIES.glob("*.yaml"))
                             if path.name not in INVALID_BY_DESIGN)]
ALL_LEVELS = ["notify", "warning", "urgent"]
TYPE_NAMES = [alert_type.value for alert_type in AlertType]


def _copy_policy(source: Path, folder: Path) -> Path:
    """A copy of a policy file in ``folder``, with the rate decks beside it."""
    target = folder / source.name
    shutil.copyfile(source, target)
    for sibling in source.parent.glob("*.csv"):
        shutil.copyfile(sibling, folder / sibling.name)
    return target


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of conf/policy.yaml (and its rate deck) to edit."""
    return _copy_policy(SHIPPED, tmp_path)


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    """A copy of tests/policies/basic.yaml, a policy with no alerts section."""
    return _copy_policy(POLICIES / "basic.yaml", tmp_path)


def _with_alerts(tmp_path: Path, alerts: str) -> Path:
    """basic.yaml with an ``alerts:`` section of our own appended."""
    path = tmp_path / "policy.yaml"
    path.write_text((POLICIES / "basic.yaml").read_text() + alerts)
    return path


def _differences(before: str, after: str) -> list[tuple[str, list[str], list[str]]]:
    """The blocks of lines that differ: (replace|delete|insert, old lines, new lines)."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [(tag, old[first:last], new[start:end])
            for tag, first, last, start, end in matcher.get_opcodes() if tag != "equal"]


def _alerts_line_number(text: str, prefix: str) -> int:
    """The 1-based number of the first line after ``alerts:`` that starts with ``prefix``."""
    lines = text.splitlines()
    section = lines.index("alerts:")
    for number, line in enumerate(lines[section:], start=section + 1):
        if line.startswith(prefix):
            return number
    raise AssertionError(f"no line of the alerts section starts with {prefix!r}")


def _folder(path: Path) -> list[str]:
    """The names in the policy file's folder (hidden scratch files included)."""
    return sorted(entry.name for entry in path.parent.iterdir())


def _refused(path: Path, changes: dict[str, Any], **options: Any) -> list[str]:
    """The problems an edit is refused with, having checked it left the folder as it was."""
    original = path.read_bytes()
    folder = _folder(path)
    with pytest.raises(ConfigError) as caught:
        edit_alerts(path, changes, **options)
    assert path.read_bytes() == original
    assert not path.with_name(path.name + ".bak").exists()
    assert list(path.parent.glob(f".{path.name}.*.edit")) == []
    assert _folder(path) == folder
    return caught.value.problems


# --- one key changes one line ------------------------------------------------------------


@pytest.mark.parametrize("source", VALID_POLICIES, ids=lambda path: path.name)
def test_one_key_edit_changes_only_what_it_must(source: Path, tmp_path: Path) -> None:
    """Changing thresholds.notify rewrites only its own line, or appends the section a file lacks."""
    path = _copy_policy(source, tmp_path)
    load_policy_file(path)  # every file here must be valid to begin with
    original = path.read_text()
    had_alerts = "alerts" in (parse_marked(original) or {})

    result = edit_alerts(path, {"thresholds.notify": 30})

    edited = path.read_text()
    assert result.changed == {"thresholds.notify": (25, 30)}
    assert load_policy_file(path).policy.alerts.thresholds[Level.NOTIFY] == 30
    if had_alerts:
        [(tag, old_lines, new_lines)] = _differences(original, edited)
        assert tag == "replace"
        assert len(old_lines) == len(new_lines) == 1
        assert "notify: 25" in old_lines[0]
        assert new_lines[0] == old_lines[0].replace("notify: 25", "notify: 30")
    else:
        assert edited == original + "alerts:\n  thresholds:\n    notify: 30\n"


SHIPPED_LINES = [
    ({"thresholds.urgent": "150"}, "  thresholds:", "  thresholds: {notify: 25, warning: 50, urgent: 150}"),
    ({"min_minutes": 12.5}, "  min_minutes:", "  min_minutes: 12.5"),
    ({"min_calls": "20"}, "  min_calls:", "  min_calls: 20"),
    ({"contacts": "log, email:ops@example.org"}, "  contacts:",
     "  contacts: [log, email:ops@example.org]"),
    ({"types.traffic.levels": "urgent, notify"}, "    traffic:", "    traffic: {levels: [notify, urgent]}"),
    ({"types.first_source.enabled": "off"}, "    first_source:",
     "    first_source: {level: warning, enabled: false}"),
    ({"types.ban.contacts": ["sms:+15551234567"]}, "    ban:",
     "    ban: {level: notify, contacts: [sms:+15551234567]}"),
]


@pytest.mark.parametrize(("changes", "prefix", "expected"), SHIPPED_LINES,
                         ids=[next(iter(changes)) for changes, _, _ in SHIPPED_LINES])
def test_shipped_policy_edit_rewrites_only_the_keys_line(shipped: Path, changes: dict[str, Any],
                                                         prefix: str, expected: str) -> None:
    """In conf/policy.yaml each editable key changes its own line and keeps its comment."""
    original = shipped.read_text()

    edit_alerts(shipped, changes)

    [(tag, old_lines, new_lines)] = _differences(original, shipped.read_text())
    assert tag == "replace"
    assert len(old_lines) == len(new_lines) == 1
    assert old_lines[0].startswith(prefix)
    code, _, comment = new_lines[0].partition("#")
    assert code.rstrip() == expected
    assert comment == old_lines[0].partition("#")[2]
    load_policy_file(shipped)


def test_section_is_created_when_the_file_has_none(basic: Path) -> None:
    """A file with no alerts section gets one holding the edited keys, and still loads."""
    original = basic.read_text()

    edit_alerts(basic, {"min_calls": 5, "types.ban.enabled": False})

    edited = basic.read_text()
    assert edited.startswith(original)
    assert parse_marked(edited)["alerts"] == {"min_calls": 5, "types": {"ban": {"enabled": False}}}
    alerts = load_policy_file(basic).policy.alerts
    assert alerts.min_calls == 5
    assert alerts.settings(AlertType.BAN).enabled is False


def test_edit_keeps_a_document_start_marker(basic: Path) -> None:
    """A file that opens with ``---`` keeps that line: only the added section differs."""
    original = "---\n" + basic.read_text()
    basic.write_text(original)

    edit_alerts(basic, {"min_calls": 5})

    assert _differences(original, basic.read_text()) == [
        ("insert", [], ["alerts:\n", "  min_calls: 5\n"])]


# --- values as text and as JSON ------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("30", 30), ("30%", 30), (" 30 % ", 30), (30, 30),
                                               (30.0, 30), (30.5, 30.5), ("30.5%", 30.5)])
def test_threshold_values_as_text_or_json(shipped: Path, raw: Any, expected: float) -> None:
    """A threshold given as text (with or without %) or as a JSON number is written as that number."""
    result = edit_alerts(shipped, {"thresholds.notify": raw})

    assert result.changed == {"thresholds.notify": (25, expected)}
    assert type(result.changed["thresholds.notify"][1]) is type(expected)
    assert f"{{notify: {expected}, warning: 50" in shipped.read_text()
    assert load_policy_file(shipped).policy.alerts.thresholds[Level.NOTIFY] == expected


@pytest.mark.parametrize("raw", ["log, email:ops@example.org", ["log", "email:ops@example.org"],
                                 "log,email:ops@example.org,log", "log\nemail:ops@example.org",
                                 [" log ", "email:ops@example.org", "log", ""]])
def test_contacts_as_text_or_list_without_duplicates(shipped: Path, raw: Any) -> None:
    """Contacts given as comma-separated text or a list are written once each, in order."""
    result = edit_alerts(shipped, {"contacts": raw})

    assert result.changed == {"contacts": (["log"], ["log", "email:ops@example.org"])}
    assert load_policy_file(shipped).policy.alerts.contacts == ("log", "email:ops@example.org")


@pytest.mark.parametrize(("raw", "expected"), [("off", False), ("false", False), (False, False),
                                               ("no", False), ("0", False), ("OFF", False),
                                               ("on", True), ("true", True), (True, True),
                                               ("yes", True), (" On ", True)])
def test_enabled_as_text_or_json(raw: Any, expected: bool) -> None:
    """``enabled`` takes true/false, on/off, yes/no, 1/0 in any case, or a JSON boolean."""
    parsed, problems = parse_changes({"types.ban.enabled": raw})

    assert problems == []
    assert parsed == {"types.ban.enabled": expected}


def test_enabled_off_then_on_round_trip(shipped: Path) -> None:
    """Switching a type off and on again is two changes, and the file says each time."""
    off = edit_alerts(shipped, {"types.pin_lockout.enabled": "off"})
    assert off.changed == {"types.pin_lockout.enabled": (True, False)}
    assert load_policy_file(shipped).policy.alerts.settings(AlertType.PIN_LOCKOUT).enabled is False

    on = edit_alerts(shipped, {"types.pin_lockout.enabled": "on"})
    assert on.changed == {"types.pin_lockout.enabled": (False, True)}
    assert load_policy_file(shipped).policy.alerts.settings(AlertType.PIN_LOCKOUT).enabled is True


@pytest.mark.parametrize(("raw", "expected"), [("urgent, notify", ["notify", "urgent"]),
                                               (["urgent", "warning", "urgent"], ["warning", "urgent"]),
                                               ("warning,notify,urgent", ALL_LEVELS),
                                               ("", [])])
def test_levels_filtered_and_ordered(raw: Any, expected: list[str]) -> None:
    """Levels are kept once each in the order notify, warning, urgent."""
    parsed, problems = parse_changes({"types.traffic.levels": raw})

    assert problems == []
    assert parsed == {"types.traffic.levels": expected}


def test_levels_edit_changes_what_is_sent(shipped: Path) -> None:
    """An edit of a type's levels is what the loaded policy then sends."""
    edit_alerts(shipped, {"types.traffic.levels": ["urgent", "notify"]})

    settings = load_policy_file(shipped).policy.alerts.settings(AlertType.TRAFFIC)
    assert settings.levels == frozenset({Level.NOTIFY, Level.URGENT})


@pytest.mark.parametrize("empty", ["", " , ", [], None])
def test_empty_type_contacts_removes_the_types_own_contacts(tmp_path: Path, empty: Any) -> None:
    """An empty types.TYPE.contacts deletes the key, so the section's contacts apply again."""
    path = _with_alerts(tmp_path, (
        "alerts:\n"
        "  contacts: [log]\n"
        "  types:\n"
        "    ban: {level: notify, contacts: [email:ops@example.org]}   # bans\n"))
    original = path.read_text()

    result = edit_alerts(path, {"types.ban.contacts": empty})

    assert result.changed == {"types.ban.contacts": (["email:ops@example.org"], None)}
    [(tag, old_lines, new_lines)] = _differences(original, path.read_text())
    assert tag == "replace"
    assert old_lines[0].startswith("    ban:")
    assert new_lines[0].partition("#")[0].rstrip() == "    ban: {level: notify}"
    assert new_lines[0].partition("#")[2] == " bans\n"
    alerts = load_policy_file(path).policy.alerts
    assert alerts.settings(AlertType.BAN).contacts is None
    assert alerts.contacts_for(AlertType.BAN) == ("log",)


def test_empty_type_contacts_in_block_style_removes_the_line(tmp_path: Path) -> None:
    """In a block mapping the type's contacts line goes and every other line stays."""
    path = _with_alerts(tmp_path, (
        "alerts:\n"
        "  types:\n"
        "    traffic:\n"
        "      contacts: [email:ops@example.org]\n"
        "      levels: [urgent]   # only the loudest\n"))
    original = path.read_text()

    edit_alerts(path, {"types.traffic.contacts": ""})

    assert _differences(original, path.read_text()) == [
        ("delete", ["      contacts: [email:ops@example.org]\n"], [])]


# --- what an edit reports -----------------------------------------------------------------


def test_edit_result_changed_version_and_backup(shipped: Path) -> None:
    """The result lists before and after, the version now in the file, and the backup of the old text."""
    original = shipped.read_text()
    version_before = load_policy_file(shipped).policy.version

    result = edit_alerts(shipped, {"thresholds.warning": "60%", "min_calls": 5})

    assert result.changed == {"thresholds.warning": (50, 60), "min_calls": (10, 5)}
    assert result.version == load_policy_file(shipped).policy.version
    assert result.version != version_before
    assert result.backup == shipped.with_name("policy.yaml.bak")
    assert result.backup.read_text() == original
    assert list(shipped.parent.glob(".policy.yaml.*.edit")) == []


def test_edit_result_as_dict(shipped: Path) -> None:
    """as_dict gives the same facts as plain JSON types."""
    result = edit_alerts(shipped, {"min_minutes": 15})

    assert result.as_dict() == {"changed": {"min_minutes": {"before": 10, "after": 15}},
                                "version": result.version,
                                "backup": str(shipped.with_name("policy.yaml.bak"))}
    assert Edit({}, "abc", None).as_dict() == {"changed": {}, "version": "abc", "backup": None}


def test_thresholds_may_move_together(shipped: Path) -> None:
    """The result is checked as a whole, so all three thresholds can move past each other at once."""
    result = edit_alerts(shipped, {"thresholds.urgent": 300, "thresholds.warning": 200,
                                   "thresholds.notify": 150})

    thresholds = load_policy_file(shipped).policy.alerts.thresholds
    assert [thresholds[level] for level in LEVELS] == [150, 200, 300]
    assert set(result.changed) == {"thresholds.notify", "thresholds.warning", "thresholds.urgent"}


def test_check_sees_the_edited_policy(shipped: Path) -> None:
    """The check callback is given the policy the edit makes, before the file is replaced."""
    seen: list[float] = []
    original = shipped.read_text()

    def check(policy: Policy) -> list[str]:
        seen.append(policy.alerts.thresholds[Level.URGENT])
        assert shipped.read_text() == original
        return []

    edit_alerts(shipped, {"thresholds.urgent": 120}, check=check)

    assert seen == [120]
    assert load_policy_file(shipped).policy.alerts.thresholds[Level.URGENT] == 120


# --- no change ----------------------------------------------------------------------------


NO_CHANGES = [
    ("policy.yaml", {"thresholds.notify": "25%"}),
    ("policy.yaml", {"contacts": "log, log"}),
    ("policy.yaml", {"types.traffic.levels": "urgent, warning, notify"}),
    ("policy.yaml", {"types.ban.enabled": "on"}),
    ("policy.yaml", {"types.ban.contacts": ""}),
    ("basic.yaml", {"min_minutes": 10.0}),  # defaults the file does not spell out
    ("basic.yaml", {"thresholds.urgent": "100"}),
    ("basic.yaml", {"types.pin_lockout.enabled": True, "min_calls": 10}),
    ("basic.yaml", {"types.first_source.levels": ALL_LEVELS}),
]


@pytest.mark.parametrize(("name", "changes"), NO_CHANGES,
                         ids=[f"{name}-{next(iter(changes))}" for name, changes in NO_CHANGES])
def test_same_value_writes_nothing(tmp_path: Path, name: str, changes: dict[str, Any]) -> None:
    """A value the policy already has (spelled out or by default) leaves the file alone."""
    path = _copy_policy(SHIPPED if name == "policy.yaml" else POLICIES / name, tmp_path)
    original = path.read_bytes()
    modified = path.stat().st_mtime_ns
    folder = _folder(path)

    result = edit_alerts(path, changes)

    assert result.changed == {}
    assert result.backup is None
    assert result.version == load_policy_file(path).policy.version
    assert path.read_bytes() == original
    assert path.stat().st_mtime_ns == modified
    assert _folder(path) == folder


def test_repeating_an_edit_changes_nothing_the_second_time(shipped: Path) -> None:
    """The same edit twice writes once: the second finds the value already there."""
    first = edit_alerts(shipped, {"thresholds.notify": 30.5})
    text = shipped.read_text()

    second = edit_alerts(shipped, {"thresholds.notify": "30.5%"})

    assert first.changed == {"thresholds.notify": (25, 30.5)}
    assert second.changed == {}
    assert second.version == first.version
    assert shipped.read_text() == text


# --- refusals -----------------------------------------------------------------------------


REFUSALS = [
    ({"colour": "red"}, "alerts.colour: not a key that can be changed here"),
    ({"thresholds.loud": 10}, "alerts.thresholds.loud: not a key that can be changed here"),
    ({"types.spam.enabled": False}, "alerts.types.spam.enabled: not a key that can be changed here"),
    ({"thresholds.notify": "lots"}, "alerts.thresholds.notify: 'lots' is not a number"),
    ({"thresholds.notify": True}, "alerts.thresholds.notify: True is not a number"),
    ({"min_minutes": -5}, "alerts.min_minutes: -5 is not a number of 0 or more"),
    ({"thresholds.urgent": "-1%"}, "alerts.thresholds.urgent: '-1%' is not a number of 0 or more"),
    ({"min_calls": "2.5"}, "alerts.min_calls: '2.5' is not a whole number"),
    ({"contacts": "log, pager"}, "alerts.contacts: 'pager' is not a contact"),
    ({"contacts": ["email:nobody"]}, "alerts.contacts: 'email:nobody' is not a contact"),
    ({"types.ban.contacts": "sms:5551234"}, "alerts.types.ban.contacts: 'sms:5551234' is not a contact"),
    ({"contacts": ""}, "alerts.contacts: give at least one contact"),
    ({"types.traffic.levels": "notify, loud"},
     "alerts.types.traffic.levels: 'loud' is not notify, warning or urgent"),
    ({"types.ban.enabled": "maybe"}, "alerts.types.ban.enabled: 'maybe' is not true or false"),
]


@pytest.mark.parametrize(("changes", "message"), REFUSALS,
                         ids=[message.split(":")[0] + "-" + repr(next(iter(changes.values())))
                              for changes, message in REFUSALS])
def test_bad_change_is_refused_and_nothing_written(shipped: Path, changes: dict[str, Any],
                                                   message: str) -> None:
    """A key that cannot be changed or a value of the wrong kind is a ConfigError naming the file."""
    problems = _refused(shipped, changes)

    assert len(problems) == 1
    assert problems[0].startswith(f"{shipped}: {message}")


def test_whole_number_min_calls_given_as_float_is_accepted() -> None:
    """min_calls of 2.0 or "2" is the whole number 2."""
    parsed, problems = parse_changes({"min_calls": 2.0, "min_minutes": "2"})

    assert problems == []
    assert parsed == {"min_calls": 2, "min_minutes": 2}
    assert type(parsed["min_calls"]) is int


def test_thresholds_that_no_longer_rise_are_refused_with_file_and_line(shipped: Path) -> None:
    """A notify threshold above warning is refused as path:LINE: alerts.thresholds: ... of the real file."""
    line = _alerts_line_number(shipped.read_text(), "  thresholds:")

    problems = _refused(shipped, {"thresholds.notify": 60})

    assert problems == [f"{shipped}:{line}: alerts.thresholds: notify, warning and urgent must "
                        "rise in that order (they are 60%, 50%, 100%)"]


def test_thresholds_that_no_longer_rise_in_a_new_section_name_its_line(basic: Path) -> None:
    """When the section is new, the problem's line is the one the section would have had."""
    line = len(basic.read_text().splitlines()) + 2  # after "alerts:" comes "  thresholds:"

    problems = _refused(basic, {"thresholds.warning": 10})

    assert problems == [f"{basic}:{line}: alerts.thresholds: notify, warning and urgent must "
                        "rise in that order (they are 25%, 10%, 100%)"]


def test_check_problem_refuses_the_edit(shipped: Path) -> None:
    """A problem from the check callback refuses the edit and is reported against the file."""
    def check(policy: Policy) -> list[str]:
        return [f"alerts.contacts[1]: {policy.alerts.contacts[1]!r} has no webhook in sipguard.yaml"]

    problems = _refused(shipped, {"contacts": "log, webhook:pager"}, check=check)

    assert problems == [f"{shipped}: alerts.contacts[1]: 'webhook:pager' has no webhook in "
                        "sipguard.yaml"]


def test_file_changed_during_the_edit_is_not_overwritten(shipped: Path) -> None:
    """If someone else writes the file while it is being checked, the edit gives up and keeps theirs."""
    theirs = shipped.read_text().replace("min_calls: 10 ", "min_calls: 11 ")
    assert theirs != shipped.read_text()

    def check(policy: Policy) -> list[str]:
        shipped.write_text(theirs)
        return []

    with pytest.raises(ConfigError) as caught:
        edit_alerts(shipped, {"min_minutes": 20}, check=check)

    assert caught.value.problems == [f"{shipped}: changed by someone else while it was being "
                                     "edited; nothing was written, try again"]
    assert shipped.read_text() == theirs
    assert not shipped.with_name("policy.yaml.bak").exists()
    assert list(shipped.parent.glob(".policy.yaml.*.edit")) == []


def test_a_key_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    """An edit under a key that holds something other than a mapping is refused, not overwritten."""
    path = _with_alerts(tmp_path, "alerts:\n  thresholds: 25\n")

    problems = _refused(path, {"thresholds.notify": 30})

    assert problems == [f"{path}: alerts.thresholds: must be a mapping to be edited"]


def test_parse_changes_reports_every_problem_at_once() -> None:
    """parse_changes lists a problem for each bad change and still parses the good ones."""
    parsed, problems = parse_changes({
        "colour": "red",
        "thresholds.notify": "lots",
        "min_calls": 2.5,
        "contacts": "log, pager",
        "types.traffic.levels": "loud",
        "types.ban.enabled": "maybe",
        "min_minutes": "15",
    })

    assert parsed == {"min_minutes": 15}
    assert [problem.split(":")[0] for problem in problems] == [
        "alerts.colour", "alerts.thresholds.notify", "alerts.min_calls", "alerts.contacts",
        "alerts.types.traffic.levels", "alerts.types.ban.enabled"]


def test_edit_reports_every_parse_problem_at_once(shipped: Path) -> None:
    """edit_alerts raises one ConfigError holding every problem, each naming the file."""
    problems = _refused(shipped, {"min_minutes": -1, "contacts": "pager", "colour": "red"})

    assert len(problems) == 3
    assert all(problem.startswith(f"{shipped}: alerts.") for problem in problems)


def test_parse_changes_reports_an_infinite_whole_number_as_a_problem() -> None:
    """min_calls of "inf" (or a number too big for a float) is a problem, not an exception."""
    parsed, problems = parse_changes({"min_calls": "inf", "thresholds.notify": "1e400"})

    assert "min_calls" not in parsed
    assert len(problems) >= 1
    assert problems[0].startswith("alerts.min_calls: ")


@pytest.mark.parametrize("key", ["thresholds.urgent", "min_minutes"])
def test_not_a_number_is_refused(shipped: Path, key: str) -> None:
    """"nan" is not a number of 0 or more: the edit is refused and the file left alone."""
    problems = _refused(shipped, {key: "nan"})

    assert problems[0].startswith(f"{shipped}: alerts.{key}: 'nan' is not a number")


# --- the file itself ----------------------------------------------------------------------


def test_file_mode_is_kept(shipped: Path) -> None:
    """The edited file and its backup keep the file's permission bits."""
    shipped.chmod(0o640)

    result = edit_alerts(shipped, {"min_calls": 12})

    assert shipped.stat().st_mode & 0o7777 == 0o640
    assert result.backup is not None
    assert result.backup.stat().st_mode & 0o7777 == 0o640


def test_folder_that_cannot_be_written(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When no file can be made beside the policy, the edit is refused saying so."""
    def refuse(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)

    problems = _refused(shipped, {"min_calls": 12})

    assert problems == [f"{shipped}: its folder cannot be written "
                        f"({os.strerror(errno.EACCES)}); edit the file by hand"]


def test_rename_that_fails_leaves_the_file_and_no_scratch(shipped: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename refused by the file system is a ConfigError; the file and folder are as they were."""
    def refuse(source: Any, target: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", refuse)

    problems = _refused(shipped, {"min_calls": 12})

    assert len(problems) == 1
    assert "cannot be written" in problems[0]
    assert os.strerror(errno.EROFS) in problems[0]


def test_file_that_cannot_be_read(tmp_path: Path) -> None:
    """A path under a file (not a folder) cannot be read, and the edit says so."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    path = blocker / "policy.yaml"

    with pytest.raises(ConfigError) as caught:
        edit_alerts(path, {"min_calls": 12})

    assert caught.value.problems == [f"{path}: cannot be read ({os.strerror(errno.ENOTDIR)})"]
    assert blocker.read_text() == "not a folder\n"
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["blocker"]


# --- current values -----------------------------------------------------------------------


def test_current_values_of_the_defaults() -> None:
    """An empty alerts section means thresholds 25/50/100, floors of 10, contacts [log], every type on."""
    values = current_values(AlertPolicy())

    expected: dict[str, Any] = {
        "thresholds.notify": 25, "thresholds.warning": 50, "thresholds.urgent": 100,
        "min_minutes": 10, "min_calls": 10, "contacts": ["log"],
    }
    for name in TYPE_NAMES:
        expected[f"types.{name}.enabled"] = True
        expected[f"types.{name}.contacts"] = None
        expected[f"types.{name}.levels"] = ALL_LEVELS
    assert values == expected
    assert set(values) == set(EDITABLE)
    assert all(type(values[key]) is int for key in ("thresholds.notify", "min_minutes", "min_calls"))


def test_current_values_of_the_shipped_policy(shipped: Path) -> None:
    """current_values reads what conf/policy.yaml spells out and the defaults it leaves out."""
    values = current_values(load_policy_file(shipped).policy.alerts)

    assert values["thresholds.notify"] == 25
    assert values["contacts"] == ["log"]
    assert values["types.traffic.levels"] == ALL_LEVELS
    assert values["types.first_source.enabled"] is True
    assert values["types.ban.contacts"] is None


def test_a_form_filled_in_from_an_older_version_is_refused(shipped: Path) -> None:
    """Saving a whole form must not put back what someone changed since it was filled
    in: with the version the form came from, a file changed meanwhile is refused and
    left alone; with the file's own version the edit is made."""
    filled_in = load_policy_file(shipped).policy.version
    edit_alerts(shipped, {"thresholds.notify": "30"})  # someone else, meanwhile
    changed = shipped.read_text()
    with pytest.raises(ConfigError) as refused:
        edit_alerts(shipped, {"min_calls": "20"}, expected_version=filled_in)
    assert "changed since the form was filled in" in refused.value.problems[0]
    assert shipped.read_text() == changed
    now = load_policy_file(shipped).policy.version
    assert edit_alerts(shipped, {"min_calls": "20"}, expected_version=now).changed == {
        "min_calls": (10, 20)}
