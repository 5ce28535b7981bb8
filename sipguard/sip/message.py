"""SIP requests and responses: parsing from a datagram and serialising back.

Parsing reads the start line, splits the header block into fields once
(unfolding continuation lines and expanding compact names) and checks the
few headers every message must have. Structured values (Via, From, To,
CSeq) are parsed the first time something asks for them and then cached,
so a message is treated as read-only once parsed: to change one, build a
new one from a copy of its headers.

Bodies are bytes and are never decoded or altered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.grammar import is_scheme, is_token
from sipguard.sip.headers import (
    KNOWN_NAMES,
    CSeq,
    Headers,
    NameAddress,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_address,
    parse_via,
)
from sipguard.sip.uri import SUPPORTED_SCHEMES, Uri, parse_uri

SIP_VERSION = "SIP/2.0"
DEFAULT_MAX_MESSAGE_SIZE = 65536

# RFC 3261 §21 reason phrases for the codes the core and controller send.
REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}

_T = TypeVar("_T")


class cached_property(Generic[_T]):  # noqa: N801 - named after functools.cached_property
    """functools.cached_property without its lock (Python 3.11 takes one per access).

    Messages are used by one thread; the value is stored in the instance
    dictionary on first use, so later reads never reach this descriptor.
    """

    def __init__(self, function: Callable[[Any], _T]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self.function(instance)
        instance.__dict__[self.name] = value
        return value


_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # undecodable bytes survive a round trip untouched


class Message:
    """What requests and responses share: headers, body and parsed views."""

    headers: Headers
    body: bytes

    @cached_property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return [parse_via(value) for value in self.headers.values("Via", strict=True)]

    @cached_property
    def top_via(self) -> Via:
        """The first Via value."""
        values = self.headers.values("Via", strict=True)
        if not values:
            raise RemoteProtocolError("Missing Required Header: Via")
        return parse_via(values[0])

    @cached_property
    def call_id(self) -> str:
        """The Call-ID."""
        value = self.headers.get("Call-ID")
        if value is None or not value.strip():
            raise RemoteProtocolError("Missing Required Header: Call-ID")
        return value.strip()

    @cached_property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        value = self.headers.get("CSeq")
        if value is None:
            raise RemoteProtocolError("Missing Required Header: CSeq")
        return parse_cseq(value)

    @cached_property
    def from_address(self) -> NameAddress:
        """The parsed From header."""
        return _single_address(self.headers, "From")

    @cached_property
    def to_address(self) -> NameAddress:
        """The parsed To header."""
        return _single_address(self.headers, "To")

    @property
    def from_tag(self) -> str | None:
        """The From tag."""
        return self.from_address.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag."""
        return self.to_address.tag

    @cached_property
    def contact(self) -> NameAddress | None:
        """The first Contact, or None (``*`` counts as none)."""
        values = self.headers.values("Contact")
        if not values or values[0] == "*":
            return None
        return parse_name_address(values[0])

    def _header_bytes(self) -> list[str]:
        lines = [f"{name}: {value}\r\n" for name, value in self.headers if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return lines


def _single_address(headers: Headers, name: str) -> NameAddress:
    value = headers.get(name)
    if value is None:
        raise RemoteProtocolError(f"Missing Required Header: {name}")
    return parse_name_address(value)


class Request(Message):
    """A SIP request."""

    def __init__(self, method: str, uri: Uri, headers: Headers, body: bytes = b"") -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body

    @cached_property
    def max_forwards(self) -> int | None:
        """Max-Forwards as an integer, or None when absent."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        value = value.strip()
        if not value.isascii() or not value.isdigit() or int(value) > 255:
            raise RemoteProtocolError(f"Bad Max-Forwards {value!r}")
        return int(value)

    def to_bytes(self) -> bytes:
        """The request as it goes on the wire, Content-Length recomputed."""
        head = [f"{self.method} {self.uri} {SIP_VERSION}\r\n", *self._header_bytes()]
        return "".join(head).encode(_ENCODING, _ERRORS) + self.body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response."""

    def __init__(
        self, status_code: int, reason: str, headers: Headers, body: bytes = b""
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.body = body

    def to_bytes(self) -> bytes:
        """The response as it goes on the wire, Content-Length recomputed."""
        head = [f"{SIP_VERSION} {self.status_code} {self.reason}\r\n", *self._header_bytes()]
        return "".join(head).encode(_ENCODING, _ERRORS) + self.body

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"


class MessageParseError(RemoteProtocolError):
    """A datagram that is not an acceptable SIP message.

    ``headers`` holds what could be read of the header block, so that the
    endpoint can still answer a request whose top Via is usable;
    ``is_request`` tells whether the start line looked like a request.
    """

    def __init__(
        self,
        cause: RemoteProtocolError,
        headers: Headers | None,
        is_request: bool,
        method: str | None,
    ) -> None:
        super().__init__(cause.reason, cause.status_code, cause.extra_headers)
        self.headers = headers
        self.is_request = is_request
        self.method = method


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")  # tolerate bare LF line ends
    if end >= 0:
        return data[:end], data[end + 2 :]
    return data.rstrip(b"\r\n"), b""


def _parse_header_lines(lines: list[str]) -> tuple[Headers, RemoteProtocolError | None]:
    """The header fields, and the first malformed line's error (the rest are kept).

    Keeping the good fields lets the endpoint answer a request with a bad
    line when its top Via is usable (RFC 3261 §21.4.1).
    """
    fields: list[tuple[str, str]] = []
    error: RemoteProtocolError | None = None
    append = fields.append
    known_names = KNOWN_NAMES
    single = SINGLE_VALUED
    seen_single: set[str] = set()
    for line in lines:
        if not line:
            continue
        if line[0] in " \t":
            # RFC 3261 §7.3.1: a line starting with whitespace continues the previous one.
            if not fields:
                error = error or RemoteProtocolError("Continuation line before any header")
                continue
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        canonical = known_names.get(name)
        if canonical is None:
            name = name.rstrip(" \t")
            if not colon or not is_token(name):
                error = error or RemoteProtocolError(f"Malformed header line {line[:40]!r}")
                continue
            canonical = canonical_name(name)
        elif not colon:
            error = error or RemoteProtocolError(f"Malformed header line {line[:40]!r}")
            continue
        if canonical in single:
            # RFC 3261 §7.3.1: a header that is no comma-separated list appears once;
            # two To, Call-ID or Content-Length values cannot both be believed
            # (RFC 4475 §3.3.8 multi01, §3.3.9 mcl01).
            if canonical in seen_single:
                error = error or RemoteProtocolError(f"Repeated header {canonical}")
            seen_single.add(canonical)
        append((canonical, value.strip(" \t")))
    return Headers(fields), error


# Headers that take one value (RFC 3261 §20): a message with two is refused.
SINGLE_VALUED = frozenset({
    "Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type",
    "Expires", "Min-Expires", "RSeq", "RAck", "Session-Expires", "Min-SE",
})

# Extensions a request may Require of us: sipguard relays them end to end.
SUPPORTED_EXTENSIONS = frozenset(
    {"100rel", "timer", "replaces", "norefersub", "path", "outbound", "gruu", "precondition",
     "histinfo", "join", "tdialog", "from-change"}
)


def parse_message(
    data: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE, stream: bool = False,
    too_large: bool = False,
) -> Request | Response:
    """Parse one datagram into a :class:`Request` or :class:`Response`.

    Raise :class:`MessageParseError` when the datagram is not acceptable;
    it carries the status code a request should be answered with. On UDP a
    missing Content-Length means the body runs to the end of the datagram;
    a Content-Length larger than what arrived is an error and bytes beyond
    it are ignored (RFC 3261 §18.3). With ``stream=True`` Content-Length is
    required. ``too_large`` says ``data`` is the header block of a stream
    message whose body was not kept because of its size: it fails with 513.
    """
    is_request = data[:4].upper() != b"SIP/"  # SIP-Version is case-insensitive (§7.1)
    method: str | None = None
    headers: Headers | None = None
    try:
        head_bytes, body = _split_head(data)
        try:
            head = head_bytes.decode(_ENCODING, _ERRORS)
        except UnicodeError as error:  # pragma: no cover - surrogateescape never fails
            raise RemoteProtocolError("Undecodable header block") from error
        lines = head.replace("\r\n", "\n").split("\n")
        start_line = lines[0]
        if is_request:
            method = start_line.partition(" ")[0]
        headers, line_error = _parse_header_lines(lines[1:])
        if line_error is not None:
            raise line_error
        if too_large or len(data) > max_size:
            raise RemoteProtocolError("Message Too Large", 513)
        body = _apply_content_length(headers, body, stream)
        message: Request | Response
        if is_request:
            message = _parse_request_line(start_line, headers, body)
            method = message.method
        else:
            message = _parse_status_line(start_line, headers, body)
        _check_mandatory(message)
        return message
    except MessageParseError:
        raise
    except RemoteProtocolError as error:
        raise MessageParseError(error, headers, is_request, method) from None


def _apply_content_length(headers: Headers, body: bytes, stream: bool) -> bytes:
    value = headers.get("Content-Length")
    if value is None:
        if stream:
            raise RemoteProtocolError("Missing Required Header: Content-Length")
        return body
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise RemoteProtocolError(f"Bad Content-Length {value!r}")
    length = int(value)
    if length > len(body):
        raise RemoteProtocolError("Content-Length larger than the message body")
    return body[:length]


def _parse_request_line(line: str, headers: Headers, body: bytes) -> Request:
    parts = line.split(" ")
    if len(parts) != 3:
        raise RemoteProtocolError("Malformed Request-Line")
    method, uri_text, version = parts
    if not is_token(method):
        raise RemoteProtocolError(f"Bad method {method[:20]!r}")
    if version.upper() != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise RemoteProtocolError("Version Not Supported", 505)
        raise RemoteProtocolError("Malformed Request-Line")
    scheme = uri_text.partition(":")[0].lower()
    if is_scheme(scheme) and scheme not in SUPPORTED_SCHEMES:
        raise RemoteProtocolError("Unsupported URI Scheme", 416)
    uri = parse_uri(uri_text)
    if uri.headers and uri.is_sip:
        # RFC 3261 §19.1.1 (table 1): URI headers are not allowed in a Request-URI;
        # RFC 4475 §3.1.2.11 (escruri) must not be forwarded.
        raise RemoteProtocolError("Headers are not allowed in the Request-URI")
    return Request(method, uri, headers, body)


def _parse_status_line(line: str, headers: Headers, body: bytes) -> Response:
    version, _, rest = line.partition(" ")
    code_text, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        raise RemoteProtocolError("Version Not Supported", 505)
    if len(code_text) != 3 or not code_text.isascii() or not code_text.isdigit():
        raise RemoteProtocolError(f"Bad status code {code_text[:10]!r}")
    code = int(code_text)
    if not 100 <= code <= 699:
        raise RemoteProtocolError(f"Bad status code {code}")
    return Response(code, reason.strip(), headers, body)


def _check_mandatory(message: Request | Response) -> None:
    """RFC 3261 §8.1.1: the headers every message must carry, well formed."""
    _ = message.top_via
    _ = message.call_id
    cseq = message.cseq
    _ = message.from_address
    _ = message.to_address
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise RemoteProtocolError("CSeq method does not match the Request-Line")
        _ = message.max_forwards
        if message.method not in ("ACK", "CANCEL"):
            unsupported = [
                option
                for option in message.headers.values("Require")
                if option.lower() not in SUPPORTED_EXTENSIONS
            ]
            if unsupported:
                raise RemoteProtocolError(
                    "Bad Extension", 420, (("Unsupported", ", ".join(unsupported)),)
                )


def reason_phrase(status_code: int) -> str:
    """The usual reason phrase of a status code."""
    return REASON_PHRASES.get(status_code, "Unknown")
