"""Message builders and a virtual-clock pump for the SIP core's unit tests.

Every builder returns wire bytes, so a test reads as "this datagram goes in,
these datagrams come out". The defaults describe one PBX calling through
sipguard; a test overrides only the fields it is about.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sipguard.sip.endpoint import Endpoint
from sipguard.sip.events import Datagram, Event
from sipguard.sip.headers import Headers
from sipguard.sip.message import Request, Response, parse_message, reason_phrase
from sipguard.sip.transaction import Transaction
from sipguard.sip.transport import Local
from sipguard.sip.uri import parse_uri

LOCAL = Local("192.0.2.10", 5060)  # sipguard's socket (UDP)
PBX = ("192.0.2.1", 5070)  # the PBX, as in its Via sent-by
TRUNK = ("198.51.100.7", 5060)  # the carrier

DEFAULT_BRANCH = "z9hG4bKpbx-1"

HeaderList = list[tuple[str, str]]


def request_headers(
    method: str = "INVITE",
    *,
    branch: str = DEFAULT_BRANCH,
    sent_by: str = "192.0.2.1:5070",
    via_parameters: str = "",
    call_id: str = "call-1@pbx.example.com",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "pbx-tag-1",
    to_tag: str | None = None,
    contact: str | None = "<sip:pbx@192.0.2.1:5070>",
) -> HeaderList:
    """The header fields of a plain request, in the order a PBX sends them."""
    to_value = "<sip:+15551234567@sipguard.example.com>"
    if to_tag is not None:
        to_value += f";tag={to_tag}"
    headers = [
        ("Via", f"SIP/2.0/UDP {sent_by};branch={branch}{via_parameters}"),
        ("Max-Forwards", "70"),
        ("From", f'"Reception" <sip:200@pbx.example.com>;tag={from_tag}'),
        ("To", to_value),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {cseq_method or method}"),
    ]
    if contact is not None and method not in ("ACK", "CANCEL", "BYE"):
        headers.append(("Contact", contact))
    return headers


def build(
    start_line: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    *,
    content_length: str | None = "auto",
    line_end: bytes = b"\r\n",
) -> bytes:
    """Wire bytes from a start line, header fields and a body.

    ``content_length="auto"`` writes the body's length; None writes no
    Content-Length; any other string is written as given.
    """
    lines = [start_line, *(f"{name}: {value}" for name, value in headers)]
    if content_length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    head = line_end.join(line.encode("utf-8", "surrogateescape") for line in lines)
    return head + line_end + line_end + body


def request(
    method: str = "INVITE",
    uri: str = "sip:+15551234567@sipguard.example.com",
    *,
    body: bytes = b"",
    extra: Iterable[tuple[str, str]] = (),
    omit: Iterable[str] = (),
    replace: dict[str, str] | None = None,
    content_length: str | None = "auto",
    version: str = "SIP/2.0",
    **header_options: object,
) -> bytes:
    """A request datagram; ``omit`` drops fields, ``replace`` rewrites their values."""
    headers = request_headers(method, **header_options)  # type: ignore[arg-type]
    return build(
        f"{method} {uri} {version}",
        edit_headers(headers, extra=extra, omit=omit, replace=replace),
        body,
        content_length=content_length,
    )


def edit_headers(
    headers: HeaderList,
    *,
    extra: Iterable[tuple[str, str]] = (),
    omit: Iterable[str] = (),
    replace: dict[str, str] | None = None,
) -> HeaderList:
    """Headers with some removed, some values replaced and some appended."""
    dropped = {name.lower() for name in omit}
    replacements = {name.lower(): value for name, value in (replace or {}).items()}
    edited = [
        (name, replacements.get(name.lower(), value))
        for name, value in headers
        if name.lower() not in dropped
    ]
    return edited + list(extra)


def response_to(
    sent: bytes | Request,
    status_code: int,
    *,
    to_tag: str | None = "trunk-tag-1",
    reason: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """The response a well-behaved peer gives to a request we sent (RFC 3261 §8.2.6)."""
    req = parse(sent) if isinstance(sent, bytes) else sent
    assert isinstance(req, Request)
    headers: HeaderList = [("Via", value) for value in req.headers.get_all("Via")]
    headers.append(("From", req.headers.get("From") or ""))
    to_value = req.headers.get("To") or ""
    if to_tag is not None and req.to_tag is None and status_code != 100:
        to_value += f";tag={to_tag}"
    headers.append(("To", to_value))
    headers.append(("Call-ID", req.call_id))
    headers.append(("CSeq", str(req.cseq)))
    headers.extend(extra)
    phrase = reason if reason is not None else reason_phrase(status_code)
    return build(f"SIP/2.0 {status_code} {phrase}", headers, body)


def outgoing_request(
    method: str = "INVITE",
    uri: str = "sip:+15551234567@trunk.example.com",
    *,
    cseq: int = 1,
    routes: Iterable[str] = (),
    body: bytes = b"",
) -> Request:
    """A request as the controller hands it to send_request: no Via yet."""
    headers = Headers()
    for route in routes:
        headers.add("Route", route)
    headers.add("Max-Forwards", "69")
    headers.add("From", "<sip:200@sipguard.example.com>;tag=sg-1")
    headers.add("To", f"<{uri}>")
    headers.add("Call-ID", "out-1@sipguard")
    headers.add("CSeq", f"{cseq} {method}")
    if method == "INVITE":
        headers.add("Contact", "<sip:sipguard@192.0.2.10:5060>")
    return Request(method, parse_uri(uri), headers, body)


def parse(data: bytes) -> Request | Response:
    """Parse bytes that the test expects to be valid."""
    return parse_message(data)


def parse_response(data: bytes) -> Response:
    """Parse bytes that must be a response."""
    message = parse_message(data)
    assert isinstance(message, Response), message
    return message


def parse_request(data: bytes) -> Request:
    """Parse bytes that must be a request."""
    message = parse_message(data)
    assert isinstance(message, Request), message
    return message


def counter_tokens() -> Callable[[int], str]:
    """A deterministic token source for tags and branches."""
    counter = itertools.count(1)
    return lambda length: f"tok{next(counter)}"


def new_endpoint(**options: object) -> Endpoint:
    """An endpoint on LOCAL with deterministic tokens."""
    return Endpoint([LOCAL], token=counter_tokens(), **options)  # type: ignore[arg-type]


@dataclass
class Trace:
    """What an endpoint did while a test drove it: (time, datagram) and (time, event)."""

    endpoint: Endpoint
    now: float = 0.0
    sent: list[tuple[float, Datagram]] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    _taken: int = 0

    def receive(
        self, data: bytes, source: tuple[str, int] = PBX, at: float | None = None
    ) -> list[Event]:
        """Feed a datagram at ``at`` (default: the current time)."""
        self.run_until(self.now if at is None else at)
        events = self.endpoint.receive_datagram(data, source, LOCAL, self.now)
        self._collect(events)
        return events

    def run_until(self, end: float) -> list[Event]:
        """Fire every timer due up to ``end``, each exactly at its deadline."""
        assert end >= self.now, "time never runs backwards"
        self._collect([])
        fired: list[Event] = []
        while True:
            deadline = self.endpoint.get_timer()
            check_timer(self.endpoint)
            if deadline is None or deadline > end:
                break
            assert deadline >= self.now, "a timer was due in the past"
            self.now = deadline
            events = self.endpoint.handle_timer(deadline)
            fired.extend(events)
            self._collect(events)
        self.now = end
        return fired

    def take(self) -> list[Datagram]:
        """Datagrams sent since the last take (already recorded in ``sent``)."""
        self._collect([])
        taken = [datagram for _, datagram in self.sent[self._taken :]]
        self._taken = len(self.sent)
        return taken

    def matching(self, predicate: Callable[[Datagram], bool]) -> list[Datagram]:
        """Every datagram sent so far that matches ``predicate``, oldest first."""
        self._collect([])
        return [datagram for _, datagram in self.sent if predicate(datagram)]

    def sent_times(self, predicate: Callable[[Datagram], bool] = lambda _: True) -> list[float]:
        """When datagrams matching ``predicate`` were sent."""
        self._collect([])
        return [at for at, datagram in self.sent if predicate(datagram)]

    def _collect(self, events: list[Event]) -> None:
        for datagram in self.endpoint.datagrams_to_send():
            self.sent.append((self.now, datagram))
        for event in events:
            self.events.append((self.now, event))


def live_transactions(endpoint: Endpoint) -> list[Transaction]:
    """Every live transaction (reads the endpoint's tables, for timer checks only)."""
    return [*endpoint._client.values(), *endpoint._server.values()]


def check_timer(endpoint: Endpoint) -> None:
    """get_timer() must equal the earliest deadline of any live transaction."""
    deadlines = [
        deadline
        for transaction in live_transactions(endpoint)
        if (deadline := transaction.next_deadline) is not None
    ]
    assert endpoint.get_timer() == (min(deadlines) if deadlines else None)


def starts_with(prefix: bytes) -> Callable[[Datagram], bool]:
    """A predicate on a datagram's first bytes."""
    return lambda datagram: datagram.data.startswith(prefix)
