"""Small tokenising helpers for SIP header values (RFC 3261 §25.1).

Every function here takes a ``str`` that was decoded from the wire and
raises :class:`RemoteProtocolError` on text it cannot make sense of.
"""

from __future__ import annotations

import re

from sipguard.sip.errors import RemoteProtocolError

Parameters = tuple[tuple[str, str | None], ...]

_WHITESPACE = " \t"


def split_commas(value: str, strict: bool = False) -> list[str]:
    """Split a header value on commas outside quoted strings and ``<...>``.

    RFC 3261 §7.3.1: several values of one header may share a line,
    separated by commas; a comma inside a quoted display name or a URI in
    angle brackets does not separate values. With ``strict``, an empty
    element (``a,,b``) is an error instead of being skipped.
    """
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    parts: list[str] = []
    for raw in _split_unquoted(value, ",", skip_angle_brackets=True):
        part = raw.strip()
        if part:
            parts.append(part)
        elif strict:
            raise RemoteProtocolError("Empty element in a comma-separated list")
    return parts


def split_outside_quotes(value: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not inside a quoted string."""
    if '"' not in value:
        return value.split(separator)
    return _split_unquoted(value, separator, skip_angle_brackets=False)


def _split_unquoted(value: str, separator: str, skip_angle_brackets: bool) -> list[str]:
    """Split on ``separator`` outside quoted strings (and ``<...>`` when asked)."""
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    index = 0
    length = len(value)
    while index < length:
        char = value[index]
        if in_quotes:
            if char == "\\":
                index += 1
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif skip_angle_brackets and char == "<":
            in_angle = True
        elif skip_angle_brackets and char == ">":
            in_angle = False
        elif char == separator and not in_angle:
            parts.append(value[start:index])
            start = index + 1
        index += 1
    if in_quotes:
        raise RemoteProtocolError("Unterminated quoted string")
    parts.append(value[start:])
    return parts


def parse_parameters(text: str) -> Parameters:
    """Parse ``;name=value;flag`` into ``((name, value), (flag, None))``.

    ``text`` starts after the first ``;`` or is empty. Names keep their
    case (comparisons use :func:`get_parameter`, which ignores it).
    """
    if not text:
        return ()
    result: list[tuple[str, str | None]] = []
    for raw_item in split_outside_quotes(text, ";"):
        item = raw_item.strip(_WHITESPACE)
        if not item:
            # RFC 3261 §25.1 has no empty parameter; RFC 4475 §3.1.2.1 wants a 400.
            raise RemoteProtocolError("Empty parameter")
        name, equals, raw_value = item.partition("=")
        name = name.strip(_WHITESPACE)
        if not name or not is_token(name):
            raise RemoteProtocolError(f"Bad parameter name {name!r}")
        result.append((name, raw_value.strip(_WHITESPACE) if equals else None))
    return tuple(result)


def format_parameters(parameters: Parameters) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in parameters
    )


def get_parameter(parameters: Parameters, name: str) -> str | None:
    """The value of a parameter (``""`` for a flag), or None when absent."""
    lowered = name.lower()
    for key, value in parameters:
        if key.lower() == lowered:
            return "" if value is None else value
    return None


def has_parameter(parameters: Parameters, name: str) -> bool:
    """Whether a parameter is present, as a flag or with a value."""
    lowered = name.lower()
    return any(key.lower() == lowered for key, _ in parameters)


def replace_parameter(parameters: Parameters, name: str, value: str | None) -> Parameters:
    """Parameters with ``name`` set to ``value`` (added at the end when absent)."""
    lowered = name.lower()
    result: list[tuple[str, str | None]] = []
    replaced = False
    for key, old in parameters:
        if key.lower() == lowered:
            if not replaced:
                result.append((key, value))
                replaced = True
        else:
            result.append((key, old))
    if not replaced:
        result.append((name, value))
    return tuple(result)


def remove_parameter(parameters: Parameters, name: str) -> Parameters:
    """Parameters without ``name``."""
    lowered = name.lower()
    return tuple((key, value) for key, value in parameters if key.lower() != lowered)


_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")


def is_token(text: str) -> bool:
    """Whether ``text`` is an RFC 3261 ``token``."""
    return _TOKEN.match(text) is not None


# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")


def is_scheme(text: str) -> bool:
    """A URI scheme name (``sip``, ``tel``, ``soap.beep``...)."""
    return _SCHEME.match(text) is not None


def unquote(text: str) -> str:
    """The content of a quoted string, escapes resolved; other text unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        index = 0
        while index < len(inner):
            char = inner[index]
            if char == "\\" and index + 1 < len(inner):
                index += 1
                char = inner[index]
            out.append(char)
            index += 1
        return "".join(out)
    return text


def quote(text: str) -> str:
    """``text`` as a quoted string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
