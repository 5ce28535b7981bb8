"""Header fields: names, the ordered header list, and structured values.

Names are matched without regard to case and compact forms are expanded
when the message is parsed (RFC 3261 §7.3.3), so ``v:`` and ``VIA:`` are
both ``Via``. Values are kept as the text that arrived; the structured
forms (:class:`Via`, :class:`NameAddress`, :class:`CSeq`) are parsed only
when something asks for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.grammar import (
    Parameters,
    format_parameters,
    get_parameter,
    is_token,
    parse_parameters,
    split_commas,
    unquote,
)
from sipguard.sip.uri import Uri, parse_host_port, parse_uri

# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL_NAMES = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Diversion",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "History-Info",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Remote-Party-ID",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}
for _compact, _full in COMPACT_FORMS.items():
    _CANONICAL_NAMES[_compact] = _full
    _CANONICAL_NAMES[_full.lower()] = _full
for _full in list(_CANONICAL_NAMES.values()):
    _CANONICAL_NAMES[_full] = _full

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1); others,
# such as WWW-Authenticate or Date, contain commas that do not separate values.
LIST_HEADERS = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "History-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "Privacy",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)


# The exact spellings that need no further checking (canonical names, their
# lower-case forms and the compact forms); learned names are not added here.
KNOWN_NAMES: dict[str, str] = dict(_CANONICAL_NAMES)

_MAX_LEARNED_NAMES = 4096


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded).

    Names we do not know are capitalised word by word (``x-foo`` becomes
    ``X-Foo``), so that lookups of any header ignore case.
    """
    known = _CANONICAL_NAMES.get(name)  # most callers pass the canonical spelling
    if known is not None:
        return known
    lowered = name.lower()
    known = _CANONICAL_NAMES.get(lowered)
    if known is not None:
        return known
    spelled = "-".join(part[:1].upper() + part[1:] for part in lowered.split("-"))
    if len(_CANONICAL_NAMES) < _MAX_LEARNED_NAMES:
        _CANONICAL_NAMES[lowered] = spelled
        _CANONICAL_NAMES[spelled] = spelled
    return spelled


class Headers:
    """An ordered list of ``(name, value)`` header fields.

    Names are canonical (see :func:`canonical_name`). Lookups ignore case.
    Repeated fields and comma-separated values are both supported: use
    :meth:`values` to get every value of a list header.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str]] = fields if fields is not None else []

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        wanted = canonical_name(name)
        return any(key == wanted for key, _ in self._fields)

    def copy(self) -> Headers:
        """A shallow copy (values are strings, so this is a full copy)."""
        return Headers(list(self._fields))

    def get(self, name: str) -> str | None:
        """The first field's value, or None."""
        wanted = canonical_name(name)
        for key, value in self._fields:
            if key == wanted:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every field's value, as it arrived (one entry per header line)."""
        wanted = canonical_name(name)
        return [value for key, value in self._fields if key == wanted]

    def values(self, name: str, strict: bool = False) -> list[str]:
        """Every value of a header, splitting comma-separated lists.

        With ``strict``, an empty list element is a :class:`RemoteProtocolError`.
        """
        wanted = canonical_name(name)
        result: list[str] = []
        for key, value in self._fields:
            if key == wanted:
                if wanted in LIST_HEADERS:
                    result.extend(split_commas(value, strict))
                else:
                    result.append(value.strip())
        return result

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        self._fields.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before all others (as a new top Via goes)."""
        self._fields.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one (kept at the first one's place)."""
        wanted = canonical_name(name)
        for index, (key, _) in enumerate(self._fields):
            if key == wanted:
                self._fields[index] = (wanted, value)
                self._fields = [
                    field
                    for position, field in enumerate(self._fields)
                    if position <= index or field[0] != wanted
                ]
                return
        self._fields.append((wanted, value))

    def remove(self, name: str) -> None:
        """Remove every field of this name."""
        wanted = canonical_name(name)
        self._fields = [field for field in self._fields if field[0] != wanted]

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first value of a list header (the top Via)."""
        wanted = canonical_name(name)
        for index, (key, value) in enumerate(self._fields):
            if key == wanted:
                parts = split_commas(value)
                if len(parts) <= 1:
                    del self._fields[index]
                else:
                    self._fields[index] = (key, ", ".join(parts[1:]))
                return parts[0] if parts else None
        return None


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...`` (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None
    parameters: Parameters

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None."""
        return get_parameter(self.parameters, "branch")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as written."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def parameter(self, name: str) -> str | None:
        """A parameter's value (``""`` for a flag), or None."""
        return get_parameter(self.parameters, name)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_parameters(self.parameters)}"


# sent-protocol with SLASH = SWS "/" SWS (RFC 3261 §25.1), then LWS and sent-by.
_VIA_PROTOCOL = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(.+)\Z",
    re.DOTALL,
)


def parse_via(text: str) -> Via:
    """Parse one Via value."""
    match = _VIA_PROTOCOL.match(text)
    if match is None:
        raise RemoteProtocolError(f"Bad Via {text[:60]!r}")
    name, version, transport, rest = match.groups()
    if name.upper() != "SIP":
        raise RemoteProtocolError(f"Bad Via protocol {name!r}")
    if version != "2.0":
        raise RemoteProtocolError(f"Unsupported SIP version in Via {version!r}", 505)
    sent_by, _, parameter_text = rest.strip().partition(";")
    host, port = parse_host_port(sent_by.strip())
    return Via(transport.upper(), host, port, parse_parameters(parameter_text))


@dataclass(frozen=True, slots=True)
class NameAddress:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route…)."""

    display_name: str | None
    uri: Uri
    parameters: Parameters

    @property
    def tag(self) -> str | None:
        """The tag parameter (From and To), or None."""
        return get_parameter(self.parameters, "tag")

    def parameter(self, name: str) -> str | None:
        """A header parameter's value (``""`` for a flag), or None."""
        return get_parameter(self.parameters, name)

    def __str__(self) -> str:
        name = f"{self.display_name} " if self.display_name else ""
        return f"{name}<{self.uri}>{format_parameters(self.parameters)}"


def _is_unquoted_display_name(text: str) -> bool:
    """RFC 3261 §25.1: an unquoted display-name is ``*(token LWS)``; a comma or another
    separator there (RFC 4475 §3.1.2.15, baddn) must be quoted. Letters beyond ASCII
    are let through: some phones send a UTF-8 name unquoted, and it is harmless."""
    ascii_only = "".join(char for char in text if char.isascii())
    return all(map(is_token, ascii_only.split()))


def parse_name_address(text: str) -> NameAddress:
    """Parse ``"Name" <uri>;params``, ``Name <uri>;params`` or ``uri;params``.

    RFC 3261 §20.10: in the addr-spec form (no angle brackets) the
    parameters after the URI belong to the header, not to the URI.
    """
    text = text.strip()
    display_name: str | None = None
    if text.startswith('"'):
        index = 1
        while index < len(text):
            if text[index] == "\\":
                index += 2
                continue
            if text[index] == '"':
                break
            index += 1
        else:
            raise RemoteProtocolError(f"Unterminated display name in {text!r}")
        display_name = text[: index + 1]
        text = text[index + 1 :].lstrip()
        if not text.startswith("<"):
            raise RemoteProtocolError("Quoted display name without <URI>")
    less = text.find("<")
    if less >= 0:
        if display_name is None and less > 0:
            display_name = text[:less].strip() or None
            if display_name is not None and not _is_unquoted_display_name(display_name):
                raise RemoteProtocolError(f"Unquoted display name {display_name!r}")
        greater = text.find(">", less)
        if greater < 0:
            raise RemoteProtocolError(f"Unterminated <URI> in {text!r}")
        uri = parse_uri(text[less + 1 : greater].strip())
        rest = text[greater + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise RemoteProtocolError(f"Unexpected text after URI: {rest!r}")
        return NameAddress(display_name, uri, parse_parameters(rest[1:]))
    uri_text, _, parameter_text = text.partition(";")
    if not uri_text or " " in uri_text.strip():
        raise RemoteProtocolError(f"Bad address {text!r}")
    return NameAddress(None, parse_uri(uri_text.strip()), parse_parameters(parameter_text))


def display_name_text(address: NameAddress) -> str | None:
    """The display name with quotes and escapes removed."""
    return None if address.display_name is None else unquote(address.display_name)


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 314159 INVITE`` (RFC 3261 §20.16)."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    """Parse a CSeq value; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
        raise RemoteProtocolError(f"Bad CSeq {text!r}")
    number = int(parts[0])
    if number >= 2**31 or not is_token(parts[1]):
        raise RemoteProtocolError(f"Bad CSeq {text!r}")
    return CSeq(number, parts[1])
