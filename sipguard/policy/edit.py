"""Changing the policy's alert thresholds and contacts in its file, for the dashboard
and ``sipguard alerts set``.

The policy file stays the one place the policy lives, so an edit is made to the file
itself: ruamel.yaml reads it and writes it back with its comments, key order, quoting
and flow style kept (the indentation is the one that gives the untouched file back line
for line), only the keys asked for are changed, and the result is checked exactly as
``sipguard check`` checks a file. Only a valid result is put in place: it is written
beside the file, synced, and renamed over it, and the previous text is kept as
``FILE.bak``. An edit that would make the policy invalid changes nothing and comes back
as ``file:line: key.path: message``. The running service takes the new file as it
takes any change to it (its file watcher, or SIGHUP); the dashboard reloads at once.

The keys that can be changed (paths under ``alerts:``)::

    thresholds.notify  thresholds.warning  thresholds.urgent   percent above normal
    min_minutes  min_calls                                     floors of traffic alerts
    contacts                                                   who hears of alerts
    types.TYPE.enabled  types.TYPE.contacts  types.TYPE.levels one alert type

A value is given as text (the command line, a form) or as JSON (the API): a number, a
list or comma-separated text for contacts and levels (an empty ``types.TYPE.contacts``
removes the type's own contacts, so the section's apply), true/false (or on/off) for
``enabled``. A value equal to what the policy already does is no change.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from sipguard.policy.alerting import LEVELS, AlertPolicy, AlertType
from sipguard.policy.alerts_section import contact_problem
from sipguard.policy.loader import load_policy_file
from sipguard.policy.model import Policy
from sipguard.schema import ConfigError

LEVEL_NAMES = tuple(level.value for level in LEVELS)
TYPE_NAMES = tuple(alert_type.value for alert_type in AlertType)
TYPE_FIELDS = ("enabled", "contacts", "levels")
EDITABLE = (*(f"thresholds.{name}" for name in LEVEL_NAMES), "min_minutes", "min_calls",
            "contacts", *(f"types.{kind}.{field}" for kind in TYPE_NAMES for field in TYPE_FIELDS))
# (mapping, sequence, offset) indentations tried, this project's own style first.
INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 2), (4, 4, 0))
TRUE, FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


@dataclass(frozen=True, slots=True)
class Edit:
    """What an edit did: the keys changed (path -> (before, after)), the policy version
    now in the file, and where the previous text was kept (None when nothing changed)."""

    changed: dict[str, tuple[Any, Any]]
    version: str
    backup: Path | None

    def as_dict(self) -> dict[str, Any]:
        return {"changed": {path: {"before": before, "after": after}
                            for path, (before, after) in self.changed.items()},
                "version": self.version,
                "backup": None if self.backup is None else str(self.backup)}


def current_values(alerts: AlertPolicy) -> dict[str, Any]:
    """What the policy does now for every editable key (defaults included)."""
    values: dict[str, Any] = {f"thresholds.{level.value}": _plain_number(alerts.thresholds[level])
                              for level in LEVELS}
    values["min_minutes"] = _plain_number(alerts.min_minutes)
    values["min_calls"] = alerts.min_calls
    values["contacts"] = list(alerts.contacts)
    for alert_type in AlertType:
        settings = alerts.settings(alert_type)
        prefix = f"types.{alert_type.value}"
        values[f"{prefix}.enabled"] = settings.enabled
        values[f"{prefix}.contacts"] = (None if settings.contacts is None
                                        else list(settings.contacts))
        values[f"{prefix}.levels"] = [level.value for level in LEVELS
                                      if level in settings.levels]
    return values


def parse_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The changes as values of their keys' kinds, and the problems (``key: message``)."""
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for path, raw in changes.items():
        if path not in EDITABLE:
            problems.append(f"alerts.{path}: not a key that can be changed here (these can: "
                            "thresholds.LEVEL, min_minutes, min_calls, contacts, "
                            "types.TYPE.enabled|contacts|levels)")
            continue
        try:
            parsed[path] = _parse(path, raw)
        except ValueError as error:
            problems.append(f"alerts.{path}: {error}")
    return parsed, problems


def edit_alerts(path: Path, changes: Mapping[str, Any],
                check: Callable[[Policy], list[str]] | None = None,
                expected_version: str | None = None) -> Edit:
    """Change keys of the policy file's ``alerts:`` section and put the file in place if
    the policy it makes is valid (``check`` may add problems of its own, such as contacts
    the service cannot reach). With ``expected_version`` (the version a form was filled
    in from), a file that has changed since is refused: saving a whole form must not put
    back what someone else changed meanwhile. Raises ConfigError with every problem; the
    file is then untouched."""
    path = path.resolve()  # a link to the policy is followed, not replaced by a file
    parsed, problems = parse_changes(changes)
    if problems:
        raise ConfigError([f"{path}: {problem}" for problem in problems])
    try:
        original = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot be read ({error.strerror})"]) from None
    try:
        current = load_policy_file(path).policy
        before, version = current_values(current.alerts), current.version
    except ConfigError:
        # an invalid file: the edit must mend it
        before, version = current_values(AlertPolicy()), None
    if expected_version is not None and expected_version != version:
        raise ConfigError([f"{path}: changed since the form was filled in (policy version "
                           f"{version or 'invalid'}, the form's {expected_version}); "
                           "nothing was written: load the page again"])
    wanted = {key: value for key, value in parsed.items() if before.get(key) != value}
    if not wanted:
        return Edit({}, version or load_policy_file(path).policy.version, None)
    text = _edited_text(path, original, wanted)
    loaded = _validated(path, text, check)
    if path.read_text(encoding="utf-8") != original:
        raise ConfigError([f"{path}: changed by someone else while it was being edited; "
                           "nothing was written, try again"])
    backup = path.with_name(path.name + ".bak")
    _write_beside(path, original, backup)
    _write_beside(path, text, path)
    return Edit({key: (before.get(key), value) for key, value in wanted.items()},
                loaded.policy.version, backup)


def _parse(path: str, raw: Any) -> Any:
    field = path.rsplit(".", 1)[-1]
    if field in LEVEL_NAMES or field in ("min_minutes", "min_calls"):
        number = _number(raw)
        if number < 0:
            raise ValueError(f"{raw!r} is not a number of 0 or more")
        if field == "min_calls" and number != int(number):
            raise ValueError(f"{raw!r} is not a whole number")
        return _plain_number(number)
    if field == "enabled":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in TRUE or text in FALSE:
            return text in TRUE
        raise ValueError(f"{raw!r} is not true or false")
    items = _items(raw)
    if field == "levels":
        items = [item.lower() for item in items]
        for item in items:
            if item not in LEVEL_NAMES:
                raise ValueError(f"{item!r} is not notify, warning or urgent")
        return [name for name in LEVEL_NAMES if name in items]
    for item in items:
        problem = contact_problem(item)
        if problem is not None:
            raise ValueError(problem)
    if path.startswith("types.") and not items:
        return None  # the type follows the section's contacts again
    if not items:
        raise ValueError("give at least one contact (log keeps alerts in the log only)")
    return list(dict.fromkeys(items))


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number")
    try:
        number = float(str(raw).strip().rstrip("%"))
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{raw!r} is not a number")  # nan, inf
    return number


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _items(raw: Any) -> list[str]:
    if isinstance(raw, list | tuple):
        return [str(item).strip() for item in raw if str(item).strip()]
    return [item.strip() for item in str(raw or "").replace("\n", ",").split(",")
            if item.strip()]


def _loaded(original: str) -> tuple[YAML, Any]:
    """The file read once for a round trip, and a YAML whose indentation writes the
    untouched file back as it is (or with the fewest changed lines)."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.explicit_start = original.startswith("---")  # not kept by the round trip
    document = yaml.load(original)
    best: tuple[int, tuple[int, int, int]] | None = None
    for indent in INDENTS:
        mapping, sequence, offset = indent
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        out = io.StringIO()
        yaml.dump(document, out)
        differing = sum(1 for line in difflib.ndiff(original.splitlines(),
                                                    out.getvalue().splitlines())
                        if line[:1] in "+-")
        if best is None or differing < best[0]:
            best = (differing, indent)
        if differing == 0:
            break
    assert best is not None
    mapping, sequence, offset = best[1]
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml, document


def _edited_text(path: Path, original: str, wanted: dict[str, Any]) -> str:
    try:
        yaml, document = _loaded(original)
    except YAMLError as error:
        raise ConfigError([f"{path}: not YAML that can be edited ({error})"]) from None
    if document is None:
        document = CommentedMap()
    if not isinstance(document, CommentedMap):
        raise ConfigError([f"{path}:1: (top): must be a mapping"])
    section = _mapping(document, "alerts", path)
    for key, value in wanted.items():
        *parents, last = key.split(".")
        target = section
        where = "alerts"
        for parent in parents:
            where = f"{where}.{parent}"
            target = _mapping(target, parent, path, where)
        if value is None:
            target.pop(last, None)
        elif isinstance(value, list):
            sequence = CommentedSeq(value)
            sequence.fa.set_flow_style()
            target[last] = sequence
        else:
            target[last] = value
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _mapping(container: CommentedMap, key: str, path: Path, where: str = "") -> CommentedMap:
    """``container[key]`` as a mapping, made (in flow style when its parent is) if absent."""
    value = container.get(key)
    if value is None:
        value = CommentedMap()
        if container.fa.flow_style():
            value.fa.set_flow_style()
        container[key] = value
    if not isinstance(value, CommentedMap):
        raise ConfigError([f"{path}: {where or key}: must be a mapping to be edited"])
    return value


def _validated(path: Path, text: str,
               check: Callable[[Policy], list[str]] | None) -> Any:
    """The policy ``text`` makes, checked as `sipguard check` checks the file (problems
    name the file itself, not the scratch copy)."""
    scratch = _scratch(path, text)
    try:
        try:
            loaded = load_policy_file(scratch)
        except ConfigError as error:
            raise ConfigError([problem.replace(str(scratch), str(path))
                               for problem in error.problems]) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
    extra = check(loaded.policy) if check is not None else []
    if extra:
        raise ConfigError([f"{path}: {problem}" for problem in extra])
    return loaded


def _scratch(path: Path, text: str) -> Path:
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".edit",
                                        dir=path.parent)
    except OSError as error:
        raise ConfigError([f"{path}: its folder cannot be written ({error.strerror}); "
                           "edit the file by hand"]) from None
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(name)


def _write_beside(path: Path, text: str, target: Path) -> None:
    """Write ``text`` to ``target`` through a synced file beside ``path`` renamed over it
    (a crash leaves the old text or the new, never half of one); ``path``'s mode kept."""
    scratch = _scratch(path, text)
    try:
        with scratch.open("rb+") as file:
            os.fsync(file.fileno())
        status = path.stat()
        os.chmod(scratch, status.st_mode & 0o7777)
        try:  # the service's user must still read it (root editing a sipguard-owned file)
            os.chown(scratch, status.st_uid, status.st_gid)
        except PermissionError:
            raise ConfigError([f"{path}: its owner and group ({status.st_uid}:"
                               f"{status.st_gid}) could not be kept; run this as its owner"]
                              ) from None
        os.replace(scratch, target)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise ConfigError([f"{target}: cannot be written ({error.strerror})"]) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
