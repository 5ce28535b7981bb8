"""YAML loading that remembers where every key and item came from.

Configuration errors must name the file, the line and the key path
(``conf/sipguard.yaml:12: trunks[0].uri: must be a sip: URI``). The loader
here builds ordinary dicts and lists that also carry the line of each key
and item, and :class:`ConfigError` formats messages that way.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode


class ConfigError(Exception):
    """One or more problems in a configuration or policy file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def report(self) -> None:
        """Print every problem on stderr, one a line (what the command line does)."""
        for problem in self.problems:
            print(problem, file=sys.stderr)


class MarkedDict(dict[str, Any]):
    """A mapping that knows the line of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class MarkedList(list[Any]):
    """A sequence that knows the line of each of its items (1-based)."""

    line: int = 0
    item_lines: list[int]


_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAPPING_TAG = "tag:yaml.org,2002:map"
_SEQUENCE_TAG = "tag:yaml.org,2002:seq"


def _refuse_duplicate_keys(node: MappingNode) -> None:
    """YAML keeps the last of two equal keys silently; a typo's twin is an error. Only
    the mapping's own keys count: a key it sets over a merged one (``<<: *base``) is an
    override, as YAML means it."""
    first_lines: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
            continue
        key = str(key_node.value)
        if key in first_lines:
            raise ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {first_lines[key]})",
                key_node.start_mark)
        first_lines[key] = key_node.start_mark.line + 1


class _MarkingConstructor(SafeConstructor):
    """The safe constructor (YAML 1.2's core schema) whose mappings and sequences carry
    the line of each key and item."""

    def construct_marked_mapping(self, node: MappingNode) -> MarkedDict:
        _refuse_duplicate_keys(node)
        self.flatten_mapping(node)  # merged pairs first, the mapping's own after them
        result = MarkedDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_marked_sequence(self, node: SequenceNode) -> MarkedList:
        result = MarkedList(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_MarkingConstructor.add_constructor(_MAPPING_TAG,
                                    _MarkingConstructor.construct_marked_mapping)
_MarkingConstructor.add_constructor(_SEQUENCE_TAG,
                                    _MarkingConstructor.construct_marked_sequence)


def parse_marked(text: str) -> Any:
    """Parse YAML text (YAML 1.2: ``yes``, ``NO`` and ``08:00`` are strings) into marked
    mappings and sequences; raises ruamel.yaml's errors."""
    reader = YAML(typ="safe", pure=True)
    reader.Constructor = _MarkingConstructor
    return reader.load(text)


def load_marked(path: Path, allow_empty: bool = False) -> Any:
    """Load a YAML file; raise :class:`ConfigError` with the place of a syntax error, or
    saying the file is empty (unless ``allow_empty``: then None)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror or error}"]) from error
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}:1: (file): not UTF-8 text ({error.reason})"]) from error
    try:
        loaded = parse_marked(text)
    except MarkedYAMLError as error:
        raise ConfigError([_syntax_problem(path, error)]) from error
    except YAMLError as error:
        raise ConfigError([f"{path}:1: (syntax): {error}"]) from error
    if loaded is None and not allow_empty:
        raise ConfigError([f"{path}:1: (file): empty (nothing but blanks and comments)"])
    return loaded


def _syntax_problem(path: Path, error: MarkedYAMLError) -> str:
    """Where a YAML syntax error starts: an unclosed bracket or quote is reported at
    the line it opens on (the context), with the line the parser gave up on."""
    problem = error.problem or "not valid YAML"
    problem_line = error.problem_mark.line + 1 if error.problem_mark is not None else 0
    # Only an unclosed bracket or quote is found far from where it opens; for the rest
    # (indentation, a stray colon) the parser's own place is the line to fix.
    opened = error.context is not None and ("flow" in error.context
                                            or "quoted" in error.context)
    if error.context_mark is None or error.context is None or not opened:
        return f"{path}:{problem_line or 1}: (syntax): {problem}"
    context_line = error.context_mark.line + 1
    found = f" (line {problem_line})" if problem_line and problem_line != context_line else ""
    return f"{path}:{context_line}: (syntax): {error.context}: {problem}{found}"


class Problems:
    """Collects ``file:line: key.path: message`` lines while validating."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, line: int, key_path: str, message: str) -> None:
        """Record one problem."""
        self.messages.append(f"{self.path}:{line}: {key_path}: {message}")

    def raise_if_any(self) -> None:
        """Raise :class:`ConfigError` when anything was recorded."""
        if self.messages:
            raise ConfigError(self.messages)


def line_of(container: Any, key: str | int) -> int:
    """The line of a key or item in a marked container (0 when unknown)."""
    if isinstance(container, MarkedDict) and isinstance(key, str):
        lines: dict[str, int] = getattr(container, "key_lines", {})
        return lines.get(key, container.line)
    if isinstance(container, MarkedList) and isinstance(key, int):
        if 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return int(getattr(container, "line", 0))


def dump_yaml(data: Any) -> str:
    """Plain data (dicts, lists, scalars) as block-style YAML text, keys in their order."""
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = False
    writer.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    out = io.StringIO()
    writer.dump(data, out)
    return out.getvalue()
