"""Hypothesis properties of the SIP core: no input makes it raise anything unexpected.

* parse_message on any mutation of a valid message returns a Request or a
  Response, or raises MessageParseError (a RemoteProtocolError) — nothing else.
* Endpoint.receive_datagram never raises, whatever arrives, and whatever it
  sends in reply is a response or an ACK.
* A generated valid message parses to the fields it was built from, and
  parse → to_bytes → parse is stable.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.sip.endpoint import Endpoint
from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.events import MessageDiscarded, ResponseReceived, TransactionTimedOut
from sipguard.sip.headers import display_name_text
from sipguard.sip.message import MessageParseError, Request, Response, parse_message
from tests.unit.sip_messages import (
    LOCAL,
    PBX,
    TRUNK,
    Trace,
    check_timer,
    new_endpoint,
    outgoing_request,
    request,
    response_to,
)

PROPERTY_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
GENERATION_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=300)

# -- generated valid messages -------------------------------------------------------------------

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
domain_names = st.lists(labels, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda parts: ".".join(map(str, parts)))
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda groups: "[" + ":".join(f"{group:x}" for group in groups) + "]"
)
hosts = st.one_of(domain_names, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(0, 65535))
USER_CHARS = string.ascii_letters + string.digits + "-_.!~*'()&=+$,;/"
users = st.one_of(
    st.text(USER_CHARS, min_size=1, max_size=10),
    st.lists(st.sampled_from(["%2B", "%40", "%20", "a", "1", "%3A"]), min_size=1, max_size=5).map(
        "".join
    ),
)
uri_parameters = st.lists(st.tuples(tokens, st.one_of(st.none(), tokens)), max_size=3).map(
    lambda items: "".join(f";{n}" if v is None else f";{n}={v}" for n, v in items)
)


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    """A sip, sips or tel URI in text form."""
    kind = draw(st.sampled_from(["sip", "sips", "SIP", "tel"]))
    if kind == "tel":
        digits = draw(st.text(string.digits + "-", min_size=1, max_size=12))
        return f"tel:+{digits}{draw(uri_parameters)}"
    user = draw(st.one_of(st.none(), users))
    port = draw(ports)
    userinfo = "" if user is None else f"{user}@"
    hostport = draw(hosts) + ("" if port is None else f":{port}")
    return f"{kind}:{userinfo}{hostport}{draw(uri_parameters)}"


display_names = st.one_of(
    st.none(),
    st.text(string.ascii_letters + string.digits + " ,;<>@:\"\\'", max_size=12).map(
        lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
    st.text(string.ascii_letters, min_size=1, max_size=8),
)


@st.composite
def addresses(draw: st.DrawFn, tag: str | None) -> str:
    """A From/To/Contact value in name-addr form (addr-spec when there is no display name)."""
    display = draw(display_names)
    uri = draw(sip_uris())
    tag_text = "" if tag is None else f";tag={tag}"
    if display is None and draw(st.booleans()) and ";" not in uri and "?" not in uri:
        return f"{uri}{tag_text}"  # addr-spec
    prefix = "" if display is None else f"{display} "
    return f"{prefix}<{uri}>{tag_text}"


HEADER_SPELLINGS = {
    "Via": ["Via", "v", "VIA", "via"],
    "From": ["From", "f", "FROM"],
    "To": ["To", "t", "to"],
    "Call-ID": ["Call-ID", "i", "call-id"],
    "CSeq": ["CSeq", "cseq", "CSEQ"],
    "Max-Forwards": ["Max-Forwards", "max-forwards"],
    "Contact": ["Contact", "m"],
}
header_values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(
    str.strip
)


@dataclass(frozen=True)
class Generated:
    """A generated message and the fields it was built from."""

    data: bytes
    is_request: bool
    method: str
    status_code: int
    call_id: str
    cseq: int
    from_tag: str
    branches: tuple[str, ...]
    body: bytes
    display: str | None


@st.composite
def valid_messages(draw: st.DrawFn) -> Generated:
    """A valid SIP request or response with random spellings, values and body."""
    is_request = draw(st.booleans())
    method = draw(st.one_of(st.sampled_from(["INVITE", "OPTIONS", "BYE", "ACK", "INFO"]), tokens))
    status_code = draw(st.integers(100, 699))
    branches = tuple(
        "z9hG4bK" + branch for branch in draw(st.lists(tokens, min_size=1, max_size=3))
    )
    vias = [
        f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'udp', 'TLS']))} "
        f"{draw(hosts)}{'' if (port := draw(ports)) is None else f':{port}'};branch={branch}"
        for branch in branches
    ]
    call_id = draw(tokens) + draw(st.sampled_from(["", "@" + draw(domain_names)]))
    cseq = draw(st.integers(0, 2**31 - 1))
    from_tag = draw(tokens)
    display = draw(display_names)
    from_uri = draw(sip_uris())
    from_value = f"{display + ' ' if display else ''}<{from_uri}>;tag={from_tag}"
    fields: list[tuple[str, str]] = []
    if draw(st.booleans()):
        fields += [("Via", ", ".join(vias))]
    else:
        fields += [("Via", via) for via in vias]
    fields += [
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("From", from_value),
        ("To", draw(addresses(draw(st.one_of(st.none(), tokens))))),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if draw(st.booleans()):
        fields.append(("Contact", draw(addresses(None))))
    for _ in range(draw(st.integers(0, 3))):
        fields.append(("X-" + draw(tokens), draw(header_values)))
    if draw(st.booleans()):
        # Shuffle the header order, but keep the Via values top to bottom.
        via_values = iter([value for name, value in fields if name == "Via"])
        shuffled = draw(st.permutations(fields))
        fields = [(n, next(via_values) if n == "Via" else v) for n, v in shuffled]
    fields = [(draw(st.sampled_from(HEADER_SPELLINGS.get(n, [n]))), v) for n, v in fields]
    body = draw(st.binary(max_size=64))
    if is_request:
        start = f"{method} {draw(sip_uris())} SIP/2.0"
    else:
        start = f"SIP/2.0 {status_code} {draw(header_values)}"
    lines = [start, *(f"{name}: {value}" for name, value in fields)]
    if draw(st.booleans()):
        lines.append(f"Content-Length: {len(body)}")
    line_end = draw(st.sampled_from(["\r\n", "\n"])) if not body else "\r\n"
    data = (line_end.join(lines) + line_end * 2).encode() + body
    return Generated(
        data,
        is_request,
        method,
        status_code,
        call_id,
        cseq,
        from_tag,
        branches,
        body,
        display,
    )


@given(valid_messages())
@GENERATION_SETTINGS
def test_generated_messages_parse_to_their_fields(generated: Generated) -> None:
    """A generated valid message parses, and its fields are the ones it was built from."""
    message = parse_message(generated.data)
    assert isinstance(message, Request) is generated.is_request
    if isinstance(message, Request):
        assert message.method == generated.method
    else:
        assert message.status_code == generated.status_code
    assert message.call_id == generated.call_id
    assert message.cseq.number == generated.cseq
    assert message.from_tag == generated.from_tag
    assert tuple(via.branch for via in message.vias) == generated.branches
    assert message.body == generated.body
    if generated.display is not None and generated.display.startswith('"'):
        assert message.from_address.display_name == generated.display
        assert display_name_text(message.from_address) is not None


@given(valid_messages())
@GENERATION_SETTINGS
def test_round_trip_is_stable(generated: Generated) -> None:
    """parse → to_bytes → parse keeps every field, and serialising again changes nothing."""
    first = parse_message(generated.data)
    data = first.to_bytes()
    second = parse_message(data)
    assert type(second) is type(first)
    strip = [field for field in first.headers if field[0] != "Content-Length"]
    assert [field for field in second.headers if field[0] != "Content-Length"] == strip
    assert second.body == first.body
    if isinstance(first, Request):
        assert isinstance(second, Request)
        assert (second.method, str(second.uri)) == (first.method, str(first.uri))
    else:
        assert isinstance(second, Response)
        assert (second.status_code, second.reason) == (first.status_code, first.reason)
    assert second.to_bytes() == data


# -- mutations ------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` after a few random byte-level and line-level mutations."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                [
                    "flip",
                    "insert",
                    "delete",
                    "truncate",
                    "duplicate-line",
                    "random-line",
                    "swap-lines",
                    "line-break",
                    "random",
                ]
            )
        )
        size = len(data)
        position = draw(st.integers(0, size)) if size else 0
        if kind == "flip" and size:
            index = min(position, size - 1)
            data[index] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[position:position] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=8),
                    st.sampled_from(
                        [b":", b";", b",", b'"', b"<", b">", b"\\", b"[", b"]", b"%", b"\x00"]
                    ),
                )
            )
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[position:]
        elif kind in ("duplicate-line", "random-line", "swap-lines"):
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate-line":
                lines.insert(index, lines[index])
            elif kind == "random-line":
                name = draw(
                    st.one_of(
                        st.sampled_from(
                            [
                                b"Via",
                                b"v",
                                b"CSeq",
                                b"Content-Length",
                                b"l",
                                b"Require",
                                b"Max-Forwards",
                                b"To",
                                b"From",
                                b"Contact",
                                b"Call-ID",
                                b"Route",
                            ]
                        ),
                        st.binary(max_size=8),
                    )
                )
                value = draw(st.binary(max_size=24))
                lines.insert(index, name + b": " + value)
            else:
                other = draw(st.integers(0, len(lines) - 1))
                lines[index], lines[other] = lines[other], lines[index]
            data = bytearray(b"\r\n".join(lines))
        elif kind == "line-break":
            data[position:position] = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n "]))
        elif kind == "random":
            data = bytearray(draw(st.binary(max_size=200)))
    return bytes(data)


SEEDS = [
    request(),
    request(
        "INVITE",
        body=b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
        extra=[
            ("Record-Route", '<sip:p1;lr>, "a,b" <sip:p2;lr>'),
            ("Require", "100rel"),
            ("Content-Type", "application/sdp"),
        ],
    ),
    request("CANCEL"),
    request("ACK", to_tag="x"),
    request("OPTIONS", uri="sip:[2001:db8::1]:5070;transport=udp", sent_by="[2001:db8::1]:5070"),
    request("BYE", uri="tel:+15551234567", to_tag="y", via_parameters=";rport"),
    response_to(request(), 180),
    response_to(request(), 486),
    response_to(request(), 200, body=b"\xff\x00"),
]

messages_and_mutations = st.one_of(
    st.sampled_from(SEEDS).flatmap(mutated),
    valid_messages().flatmap(lambda generated: mutated(generated.data)),
)


@given(messages_and_mutations)
@PROPERTY_SETTINGS
def test_parser_raises_only_message_parse_error(data: bytes) -> None:
    """Any mutation parses to a message or raises MessageParseError with a usable status."""
    try:
        message = parse_message(data)
    except MessageParseError as error:
        assert isinstance(error, RemoteProtocolError)
        assert 400 <= error.status_code <= 599
        assert error.reason
        assert isinstance(error.is_request, bool)
    else:
        assert isinstance(message, Request | Response)
        assert isinstance(message.to_bytes(), bytes)


@given(st.binary(max_size=300))
@PROPERTY_SETTINGS
def test_parser_on_random_bytes(data: bytes) -> None:
    """Random bytes never make the parser raise anything but MessageParseError."""
    try:
        parse_message(data)
    except MessageParseError as error:
        assert 400 <= error.status_code <= 599


def _busy_endpoint() -> tuple[Endpoint, list[bytes]]:
    """An endpoint with live client and server transactions, and their wire bytes."""
    endpoint = new_endpoint()
    client = endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    endpoint.send_request(outgoing_request("OPTIONS"), TRUNK, 0.0)
    invite_out = endpoint.datagrams_to_send()[0].data
    endpoint.receive_datagram(request(), PBX, LOCAL, 0.0)
    endpoint.receive_datagram(request("OPTIONS", branch="z9hG4bKopt"), PBX, LOCAL, 0.0)
    endpoint.receive_datagram(response_to(invite_out, 180), TRUNK, LOCAL, 0.0)
    endpoint.datagrams_to_send()
    assert client.has_provisional
    seeds = [
        invite_out,
        response_to(invite_out, 486),
        response_to(invite_out, 200),
        request("CANCEL"),
        request("ACK", to_tag="sg"),
    ]
    return endpoint, seeds


def _check_output(endpoint: Endpoint) -> None:
    for datagram in endpoint.datagrams_to_send():
        assert datagram.data.startswith((b"SIP/2.0 ", b"ACK ", b"CANCEL ", b"INVITE ", b"OPTIONS "))
        assert datagram.local == LOCAL
        assert isinstance(datagram.destination[1], int)


@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(SEEDS).flatmap(mutated),
                st.sampled_from(_busy_endpoint()[1]).flatmap(mutated),
                st.sampled_from(_busy_endpoint()[1]),
            ),
            st.sampled_from([PBX, TRUNK, ("2001:db8::5", 5060)]),
            st.floats(0.0, 5.0),
        ),
        min_size=1,
        max_size=6,
    )
)
@PROPERTY_SETTINGS
def test_endpoint_never_raises(datagrams: list[tuple[bytes, tuple[str, int], float]]) -> None:
    """receive_datagram and handle_timer never raise, whatever arrives and whenever."""
    endpoint, _ = _busy_endpoint()
    now = 0.0
    for data, source, step in datagrams:
        now += step
        events = endpoint.receive_datagram(data, source, LOCAL, now)
        assert isinstance(events, list)
        for event in events:
            if isinstance(event, MessageDiscarded):
                assert event.reason
                assert event.source == source
        _check_output(endpoint)
        endpoint.handle_timer(now)
        check_timer(endpoint)
        _check_output(endpoint)
    endpoint.handle_timer(now + 1000.0)
    check_timer(endpoint)


@given(messages_and_mutations)
@PROPERTY_SETTINGS
def test_endpoint_answers_at_most_once(data: bytes) -> None:
    """One datagram into a fresh endpoint yields at most one datagram out (a response)."""
    endpoint = new_endpoint()
    events = endpoint.receive_datagram(data, PBX, LOCAL, 0.0)
    sent = endpoint.datagrams_to_send()
    assert len(sent) <= 1
    if sent:
        assert sent[0].data.startswith(b"SIP/2.0 ")
    discarded = [event for event in events if isinstance(event, MessageDiscarded)]
    if discarded:
        assert len(events) == 1
        assert (discarded[0].status_code is not None) == bool(sent)


# -- a client INVITE under any sequence of responses ---------------------------------------------------

INVITE_RETRANSMISSIONS = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.25, 0.5, 1.0, 3.0, 10.0, 31.0]),
            st.sampled_from([100, 180, 183, 200, 486, 603]),
        ),
        max_size=6,
    )
)
@PROPERTY_SETTINGS
def test_client_invite_under_any_response_sequence(
    responses: list[tuple[float, int]],
) -> None:
    """Whatever responses arrive, and when, the client INVITE obeys §17.1.1 and RFC 6026."""
    trace = Trace(new_endpoint())
    transaction = trace.endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    invite = trace.matching(lambda datagram: datagram.data.startswith(b"INVITE "))[0].data
    now = 0.0
    arrivals: list[tuple[float, int]] = []
    for delay, code in responses:
        now += delay
        trace.receive(response_to(invite, code), TRUNK, at=now)
        arrivals.append((now, code))
    trace.run_until(now + 200.0)

    timed_out = [at for at, event in trace.events if isinstance(event, TransactionTimedOut)]
    first_response = arrivals[0][0] if arrivals else None
    if first_response is None or first_response >= 32.0:
        assert timed_out == [32.0]
    else:
        assert timed_out == []
    # Retransmissions follow Timer A and stop at the first response (or Timer B).
    stop = min(first_response if first_response is not None else 32.0, 32.0)
    invites = [at for at, d in trace.sent if d.data.startswith(b"INVITE ")]
    assert invites == [at for at in INVITE_RETRANSMISSIONS if at <= stop]
    # Every ACK is the same request, sent when a non-2xx final arrived and nowhere else.
    acks = [(at, d.data) for at, d in trace.sent if d.data.startswith(b"ACK ")]
    assert len({data for _, data in acks}) <= 1
    failure_times = {at for at, code in arrivals if code >= 300}
    assert {at for at, _ in acks} <= failure_times
    # The TU hears of at most one non-2xx final response.
    finals = [
        event.response.status_code
        for _, event in trace.events
        if isinstance(event, ResponseReceived) and event.response.status_code >= 300
    ]
    assert len(finals) <= 1
    if finals:
        assert len(acks) >= 1
    # In the end only a call that rings for ever is still there (its TU ends it).
    has_final = any(code >= 200 for at, code in arrivals if not timed_out or at < 32.0)
    if timed_out or has_final:
        assert trace.endpoint.transaction_count == 0
        assert trace.endpoint.get_timer() is None
    else:
        assert trace.endpoint.transaction_count == 1
        assert transaction.has_provisional
