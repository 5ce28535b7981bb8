"""The sans-IO endpoint's edges: bad input, keep-alives, where responses go, and TU helpers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sipguard.sip.endpoint import MAGIC_COOKIE, Endpoint
from sipguard.sip.errors import LocalProtocolError
from sipguard.sip.events import Datagram, MessageDiscarded, RequestReceived, ResponseReceived
from sipguard.sip.headers import Headers
from sipguard.sip.message import Request
from sipguard.sip.transaction import ServerTransaction
from sipguard.sip.uri import parse_uri
from tests.unit.sip_messages import (
    LOCAL,
    PBX,
    TRUNK,
    build,
    new_endpoint,
    outgoing_request,
    parse_request,
    parse_response,
    request,
    request_headers,
    response_to,
)


def feed(
    endpoint: Endpoint, data: bytes, source: tuple[str, int] = PBX, now: float = 0.0
) -> tuple[list[object], list[Datagram]]:
    """Feed one datagram; return the events and whatever the endpoint wants sent."""
    events = endpoint.receive_datagram(data, source, LOCAL, now)
    return list(events), endpoint.datagrams_to_send()


# -- requests that cannot be understood -------------------------------------------------------------


BAD_REQUESTS = [
    pytest.param(
        request("OPTIONS", cseq_method="INVITE"),
        400,
        "CSeq method does not match the Request-Line",
        id="cseq-method-mismatch",
    ),
    pytest.param(
        request(replace={"Max-Forwards": "300"}), 400, "Bad Max-Forwards '300'", id="max-forwards"
    ),
    pytest.param(request(version="SIP/3.0"), 505, "Version Not Supported", id="sip-3.0"),
    pytest.param(request(uri="http://example.com/"), 416, "Unsupported URI Scheme", id="http-uri"),
    pytest.param(request(uri="urn:service:sos"), 416, "Unsupported URI Scheme", id="urn-uri"),
    pytest.param(request(extra=[("Require", "foo")]), 420, "Bad Extension", id="require-foo"),
    pytest.param(
        request(content_length="9999"),
        400,
        "Content-Length larger than the message body",
        id="content-length-too-big",
    ),
    pytest.param(
        request(content_length="abc"), 400, "Bad Content-Length 'abc'", id="content-length-nan"
    ),
    pytest.param(
        request(uri="sip:bob@exa_mple.com"), 400, "Bad host 'exa_mple.com'", id="bad-request-uri"
    ),
    pytest.param(
        request(extra=[("Bad Header", "x")]),
        400,
        "Malformed header line 'Bad Header: x'",
        id="malformed-header-line",
    ),
]


@pytest.mark.parametrize(("data", "status_code", "reason"), BAD_REQUESTS)
def test_bad_request_gets_one_answer(data: bytes, status_code: int, reason: str) -> None:
    """A request with a usable top Via gets exactly one error response, to the Via's address."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, data)
    assert events == [MessageDiscarded(reason, PBX, status_code)]
    assert len(sent) == 1
    assert (sent[0].destination, sent[0].local) == (PBX, LOCAL)
    response = parse_response(sent[0].data)
    assert (response.status_code, response.reason) == (status_code, reason)
    original = parse_request(request())  # the same dialog fields, before the damage
    assert response.headers.get_all("Via") == original.headers.get_all("Via")
    assert response.call_id == original.call_id
    assert response.from_address == original.from_address
    assert response.to_address.uri == original.to_address.uri
    assert response.to_tag is not None  # §8.2.6.2: a UAS adds a To tag to a non-100 response
    assert str(response.cseq) == str(original.cseq)
    assert endpoint.transaction_count == 0
    assert endpoint.get_timer() is None


def test_a_version_we_cannot_read_in_the_via_too_still_gets_505() -> None:
    """RFC 4475 §3.1.2.16 (badvers): SIP/7.0 in the Request-Line and in the Via. The Via
    cannot say where the answer goes, so it goes back to the source (as with rport)."""
    endpoint = new_endpoint()
    data = request(
        "OPTIONS",
        version="SIP/7.0",
        replace={"Via": "SIP/7.0/UDP 192.0.2.1:5070;branch=z9hG4bKbadvers"},
    )
    events, sent = feed(endpoint, data, source=("192.0.2.1", 40000))
    assert len(events) == 1 and isinstance(events[0], MessageDiscarded)
    assert (events[0].source, events[0].status_code) == (("192.0.2.1", 40000), 505)
    assert [datagram.destination for datagram in sent] == [("192.0.2.1", 40000)]
    # Our own parser refuses the copied Via, so read the answer as text.
    lines = sent[0].data.decode().split("\r\n")
    assert lines[0] == "SIP/2.0 505 Version Not Supported"
    assert "Via: SIP/7.0/UDP 192.0.2.1:5070;branch=z9hG4bKbadvers" in lines


@pytest.mark.parametrize("via", ["SIP/3.0/UDP 192.0.2.1", "SIP/3.0/UDP 192.0.2.1:5070;rport"])
def test_a_via_of_another_version_is_answered_505_at_the_source(via: str) -> None:
    """Only the version is wrong: a 505 to the source, whatever the Request-Line says."""
    events, sent = feed(new_endpoint(), request(replace={"Via": via}), source=("192.0.2.1", 40001))
    assert [datagram.destination for datagram in sent] == [("192.0.2.1", 40001)]
    assert sent[0].data.startswith(b"SIP/2.0 505 Version Not Supported\r\n")
    assert isinstance(events[0], MessageDiscarded) and events[0].status_code == 505


def test_420_lists_the_unsupported_extensions() -> None:
    """A 420 carries Unsupported with every option tag we lack (§8.2.2.3)."""
    endpoint = new_endpoint()
    _, sent = feed(endpoint, request(extra=[("Require", "100rel, foo"), ("Require", "bar")]))
    response = parse_response(sent[0].data)
    assert response.status_code == 420
    assert response.headers.values("Unsupported") == ["foo", "bar"]


def test_existing_to_tag_is_kept_in_an_error_response() -> None:
    """An in-dialog request that is rejected keeps the To tag it came with (§8.2.6.2)."""
    endpoint = new_endpoint()
    _, sent = feed(endpoint, request("INFO", to_tag="pbx-side", cseq_method="BYE"))
    response = parse_response(sent[0].data)
    assert response.status_code == 400
    assert response.to_tag == "pbx-side"


def test_message_too_large_with_a_configured_limit() -> None:
    """A datagram over the endpoint's max_message_size is answered 513 (§21.5.7)."""
    endpoint = new_endpoint(max_message_size=1000)
    data = request(body=b"x" * 1000)
    events, sent = feed(endpoint, data)
    assert events == [MessageDiscarded("Message Too Large", PBX, 513)]
    response = parse_response(sent[0].data)
    assert (response.status_code, response.reason) == (513, "Message Too Large")
    events, sent = feed(new_endpoint(), data)  # the default 64 KiB lets it through
    assert isinstance(events[0], RequestReceived)


def test_error_reason_cannot_break_the_status_line() -> None:
    """Control characters from the input never reach the reason phrase raw."""
    endpoint = new_endpoint()
    data = request(replace={"Max-Forwards": "7\x00\r"})
    _, sent = feed(endpoint, data)
    first_line = sent[0].data.split(b"\r\n", 1)[0]
    assert first_line.startswith(b"SIP/2.0 400 ")
    assert b"\x00" not in first_line
    assert b"\r" not in first_line
    assert parse_response(sent[0].data).status_code == 400


# -- input that is dropped ----------------------------------------------------------------------------


def _response_bytes() -> bytes:
    return build("SIP/2.0 200 OK", request_headers(to_tag="x"))


DROPPED = [
    pytest.param(build("SIP/2.0 200 OK", request_headers()[:-2]), id="response-without-cseq"),
    pytest.param(
        build(
            "SIP/2.0 200 OK", [(n, "x INVITE" if n == "CSeq" else v) for n, v in request_headers()]
        ),
        id="response-bad-cseq",
    ),
    pytest.param(build("SIP/3.0 200 OK", request_headers()), id="response-sip-3.0"),
    pytest.param(build("SIP/2.0 2000 OK", request_headers()), id="response-bad-code"),
    pytest.param(
        build("SIP/2.0 486 Busy Here", request_headers(), b"short", content_length="50"),
        id="response-content-length",
    ),
    pytest.param(request("ACK", replace={"From": "<sip:broken"}), id="ack-bad-from"),
    pytest.param(request("ACK", cseq_method="INVITE"), id="ack-cseq-mismatch"),
    pytest.param(request("ACK", version="SIP/3.0"), id="ack-sip-3.0"),
    pytest.param(request("ACK", content_length="900"), id="ack-content-length"),
    pytest.param(request(omit=["Via"], replace={"Max-Forwards": "300"}), id="request-no-via"),
    pytest.param(request(replace={"Via": "SIP/2.0/UDP"}), id="request-bad-via"),
    pytest.param(request(omit=["Call-ID"]), id="request-no-call-id"),
    pytest.param(request(omit=["From"]), id="request-no-from"),
    pytest.param(request(omit=["To"]), id="request-no-to"),
    pytest.param(request(omit=["CSeq"]), id="request-no-cseq"),
    pytest.param(b"\x00\x01\x02\x03garbage\xff\xfe", id="garbage"),
    pytest.param(b"hello world", id="text"),
    pytest.param(b"INVITE", id="bare-method"),
    pytest.param(b"SIP/2.0", id="bare-version"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", id="http"),
    pytest.param(b" \r\n", id="space-crlf"),
    pytest.param(b"sip/2.0 200 OK\r\n" + request().split(b"\r\n", 1)[1], id="lower-case-response"),
]


@pytest.mark.parametrize("data", DROPPED)
def test_unanswerable_input_is_dropped(data: bytes) -> None:
    """Malformed responses, ACKs and requests without a usable Via are dropped silently."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, data)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MessageDiscarded)
    assert event.source == PBX
    assert event.status_code is None
    assert event.reason
    assert sent == []
    assert endpoint.transaction_count == 0


def test_response_matching_no_transaction_is_discarded() -> None:
    """A well-formed response for no transaction of ours is dropped with a reason (§17.1.3)."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, _response_bytes(), TRUNK)
    assert events == [MessageDiscarded("Response matches no transaction", TRUNK)]
    assert sent == []


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n", b"\n", b"\r\n" * 20])
def test_keep_alives_are_ignored(data: bytes) -> None:
    """CRLF keep-alives (RFC 5626 §3.5.1) produce no event and no datagram."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, data)
    assert events == []
    assert sent == []


def test_stray_ack_goes_to_the_tu() -> None:
    """An ACK matching no transaction is passed to the TU without a transaction (§17.2.3)."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, request("ACK", to_tag="x", branch="z9hG4bKack"))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, RequestReceived)
    assert event.transaction is None
    assert event.request.method == "ACK"
    assert sent == []
    assert endpoint.transaction_count == 0


# -- where responses go -------------------------------------------------------------------------------

RESPONSE_ROUTES = [
    pytest.param("192.0.2.1:5070", "", ("192.0.2.1", 5070), ("192.0.2.1", 5070), id="plain"),
    pytest.param("192.0.2.1", "", ("192.0.2.1", 5060), ("192.0.2.1", 5060), id="default-port"),
    pytest.param(
        "192.0.2.1:5070", ";rport", ("203.0.113.9", 41000), ("203.0.113.9", 41000), id="rport"
    ),
    pytest.param(
        "[2001:db8::1]:5070",
        "",
        ("2001:db8::1", 5070),
        ("2001:db8::1", 5070),
        id="ipv6",
    ),
    pytest.param(
        "[2001:db8::1]:5070",
        ";rport",
        ("2001:db8::99", 6000),
        ("2001:db8::99", 6000),
        id="ipv6-rport",
    ),
    pytest.param(
        "pbx.example.com:5070", "", ("192.0.2.1", 5070), ("192.0.2.1", 5070), id="host-name"
    ),
    pytest.param(
        "192.0.2.1:5070", "", ("192.0.2.200", 5070), ("192.0.2.200", 5070), id="nat-no-rport"
    ),
]


@pytest.mark.parametrize(("sent_by", "parameters", "source", "destination"), RESPONSE_ROUTES)
def test_error_response_destination(
    sent_by: str, parameters: str, source: tuple[str, int], destination: tuple[str, int]
) -> None:
    """An error response goes where RFC 3261 §18.2.2 and RFC 3581 §4 say."""
    endpoint = new_endpoint()
    data = request("OPTIONS", cseq_method="INVITE", sent_by=sent_by, via_parameters=parameters)
    _, sent = feed(endpoint, data, source)
    assert [datagram.destination for datagram in sent] == [destination]


@pytest.mark.parametrize(("sent_by", "parameters", "source", "destination"), RESPONSE_ROUTES)
def test_transaction_response_destination(
    sent_by: str, parameters: str, source: tuple[str, int], destination: tuple[str, int]
) -> None:
    """A 100 Trying and a final response go where RFC 3261 §18.2.2 and RFC 3581 §4 say."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, request(sent_by=sent_by, via_parameters=parameters), source)
    assert [datagram.destination for datagram in sent] == [destination]
    event = events[0]
    assert isinstance(event, RequestReceived) and event.transaction is not None
    transaction = event.transaction
    endpoint.respond(transaction, endpoint.make_response(transaction, 486, to_tag="sg"), 0.1)
    assert [datagram.destination for datagram in endpoint.datagrams_to_send()] == [destination]


@pytest.mark.parametrize(
    ("sent_by", "parameters", "source", "expected"),
    [
        pytest.param(
            "192.0.2.1:5070",
            "",
            ("192.0.2.1", 5070),
            {"received": None, "rport": None},
            id="same-address",
        ),
        pytest.param(
            "192.0.2.1:5070",
            "",
            ("192.0.2.77", 5070),
            {"received": "192.0.2.77", "rport": None},
            id="received",
        ),
        pytest.param(
            "pbx.example.com",
            "",
            ("192.0.2.1", 5060),
            {"received": "192.0.2.1", "rport": None},
            id="host-name",
        ),
        pytest.param(
            "10.0.0.5:5070",
            ";rport",
            ("203.0.113.9", 41000),
            {"received": "203.0.113.9", "rport": "41000"},
            id="rport-behind-nat",
        ),
        pytest.param(
            "192.0.2.1:5070",
            ";rport",
            ("192.0.2.1", 5070),
            {"received": "192.0.2.1", "rport": "5070"},
            id="rport-same-address",
        ),
    ],
)
def test_response_via_tells_the_client_its_address(
    sent_by: str, parameters: str, source: tuple[str, int], expected: dict[str, str | None]
) -> None:
    """The response's top Via carries received and rport as RFC 3261 §18.2.1 and RFC 3581 say."""
    endpoint = new_endpoint()
    _, sent = feed(endpoint, request(sent_by=sent_by, via_parameters=parameters), source)
    response = parse_response(sent[0].data)
    via = response.top_via
    assert via.sent_by == sent_by  # sent-by itself is never rewritten
    assert via.branch == "z9hG4bKpbx-1"
    assert {name: via.parameter(name) for name in expected} == expected
    assert len(response.vias) == 1


# -- server transaction matching -------------------------------------------------------------------------


def test_same_branch_from_another_sent_by_is_a_new_transaction() -> None:
    """Server transactions match on branch, sent-by and method together (§17.2.3)."""
    endpoint = new_endpoint()
    first, _ = feed(endpoint, request("OPTIONS"))
    second, _ = feed(endpoint, request("OPTIONS", sent_by="192.0.2.2:5070"), ("192.0.2.2", 5070))
    third, _ = feed(endpoint, request("OPTIONS"))  # a retransmission of the first
    assert isinstance(first[0], RequestReceived)
    assert isinstance(second[0], RequestReceived)
    assert first[0].transaction is not second[0].transaction
    assert third == []
    assert endpoint.transaction_count == 2


def test_same_branch_other_method_is_a_new_transaction() -> None:
    """An INFO reusing an OPTIONS branch is not a retransmission of it (§17.2.3)."""
    endpoint = new_endpoint()
    feed(endpoint, request("OPTIONS"))
    events, _ = feed(endpoint, request("INFO"))
    assert isinstance(events[0], RequestReceived)
    assert endpoint.transaction_count == 2


def test_rfc2543_request_without_magic_cookie_is_matched_by_its_fields() -> None:
    """Without a z9hG4bK branch, retransmissions match by Call-ID, From tag and CSeq (§17.2.3)."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, request(branch="old-style-1"))
    assert isinstance(events[0], RequestReceived)
    assert len(sent) == 1  # 100 Trying
    again, resent = feed(endpoint, request(branch="old-style-1"), now=0.5)
    assert again == []
    assert [parse_response(d.data).status_code for d in resent] == [100]
    other, _ = feed(endpoint, request(branch="old-style-1", cseq=2), now=0.6)
    assert isinstance(other[0], RequestReceived)
    assert endpoint.transaction_count == 2


def test_rfc2543_request_without_branch() -> None:
    """A Via without any branch still makes a server transaction."""
    endpoint = new_endpoint()
    data = request("OPTIONS", replace={"Via": "SIP/2.0/UDP 192.0.2.1:5070"})
    events, _ = feed(endpoint, data)
    assert isinstance(events[0], RequestReceived)
    assert feed(endpoint, data, now=0.5)[0] == []


# -- make_response and the TU's sending helpers -----------------------------------------------------------


def _received_transaction(endpoint: Endpoint, data: bytes) -> ServerTransaction:
    events, _ = feed(endpoint, data)
    event = events[0]
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event.transaction


def test_make_response_copies_the_dialog_fields() -> None:
    """A response copies Via, From, Call-ID and CSeq, and adds the TU's To tag (§8.2.6.2)."""
    endpoint = new_endpoint()
    transaction = _received_transaction(endpoint, request(extra=[("Timestamp", "54")]))
    response = endpoint.make_response(
        transaction,
        180,
        to_tag="sg-tag",
        headers=[("Contact", "<sip:sipguard@192.0.2.10>")],
        body=b"sdp",
    )
    original = parse_request(request())
    assert (response.status_code, response.reason) == (180, "Ringing")
    assert response.headers.get_all("Via") == original.headers.get_all("Via")
    assert response.headers.get("From") == original.headers.get("From")
    assert response.to_tag == "sg-tag"
    assert response.call_id == original.call_id
    assert str(response.cseq) == "1 INVITE"
    assert response.headers.get("Contact") == "<sip:sipguard@192.0.2.10>"
    assert "Timestamp" not in response.headers  # only a 100 echoes Timestamp (§8.2.6.1)
    assert response.body == b"sdp"


def test_100_trying_echoes_timestamp_and_has_no_tag() -> None:
    """The automatic 100 Trying copies Timestamp (§8.2.6.1) and adds no To tag."""
    endpoint = new_endpoint()
    _, sent = feed(endpoint, request(extra=[("Timestamp", "54.3 0.1")]))
    trying = parse_response(sent[0].data)
    assert (trying.status_code, trying.reason) == (100, "Trying")
    assert trying.headers.get("Timestamp") == "54.3 0.1"
    assert trying.to_tag is None


def test_make_response_keeps_an_existing_to_tag() -> None:
    """For an in-dialog request the To header is copied as it came, tag and all (§8.2.6.2)."""
    endpoint = new_endpoint()
    transaction = _received_transaction(endpoint, request("BYE", to_tag="theirs"))
    response = endpoint.make_response(transaction, 200, to_tag="ignored")
    assert response.to_tag == "theirs"


def test_make_response_custom_reason() -> None:
    """A reason given by the TU replaces the usual phrase."""
    endpoint = new_endpoint()
    transaction = _received_transaction(endpoint, request("OPTIONS"))
    response = endpoint.make_response(transaction, 403, "Blocked by policy")
    assert (response.status_code, response.reason) == (403, "Blocked by policy")


def test_send_request_puts_our_via_on_top() -> None:
    """send_request adds a Via with a fresh z9hG4bK branch and rport (§8.1.1.7, RFC 3581)."""
    endpoint = new_endpoint()
    transaction = endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    [datagram] = endpoint.datagrams_to_send()
    assert (datagram.destination, datagram.local) == (TRUNK, LOCAL)
    sent = parse_request(datagram.data)
    via = sent.top_via
    assert via.branch is not None and via.branch.startswith(MAGIC_COOKIE)
    assert (via.transport, via.host, via.port) == ("UDP", *LOCAL.address)
    assert via.parameter("rport") == ""
    assert transaction.key == (via.branch, "INVITE")
    other = endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    assert other.key[0] != via.branch  # a new branch for every transaction


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_send_request_refuses_ack_and_cancel(method: str) -> None:
    """ACK and CANCEL are not sent through send_request."""
    endpoint = new_endpoint()
    headers = Headers([("CSeq", f"1 {method}")])
    with pytest.raises(LocalProtocolError):
        endpoint.send_request(Request(method, parse_uri("sip:a@b"), headers), TRUNK, 0.0)


def test_send_ack_uses_a_new_branch_and_returns_the_bytes() -> None:
    """An ACK for a 2xx is its own transaction-less request with a new branch (§13.2.2.4)."""
    endpoint = new_endpoint()
    invite = endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    endpoint.datagrams_to_send()
    headers = Headers(
        [
            ("Max-Forwards", "70"),
            ("From", "<sip:200@sipguard.example.com>;tag=sg-1"),
            ("To", "<sip:+15551234567@trunk.example.com>;tag=tr"),
            ("Call-ID", "out-1@sipguard"),
            ("CSeq", "1 ACK"),
        ]
    )
    data = endpoint.send_ack(Request("ACK", parse_uri("sip:t@198.51.100.7"), headers), TRUNK)
    assert endpoint.datagrams_to_send() == [Datagram(data, TRUNK, LOCAL)]
    ack = parse_request(data)
    assert ack.top_via.branch != invite.key[0]
    assert ack.top_via.branch is not None and ack.top_via.branch.startswith(MAGIC_COOKIE)
    endpoint.resend(data, TRUNK)
    assert endpoint.datagrams_to_send() == [Datagram(data, TRUNK, LOCAL)]
    assert endpoint.transaction_count == 1  # the ACK made no transaction


def test_local_for_picks_the_address_family() -> None:
    """Requests to an IPv6 destination leave from the IPv6 socket, and vice versa."""
    endpoint = Endpoint([("192.0.2.10", 5060), ("2001:db8::10", 5060)])
    assert endpoint.local_for(("2001:db8::7", 5060)).address == ("2001:db8::10", 5060)
    assert endpoint.local_for(("198.51.100.7", 5060)).address == ("192.0.2.10", 5060)
    assert Endpoint([("192.0.2.10", 5060)]).local_for(("2001:db8::7", 5060)).address == (
        "192.0.2.10",
        5060,
    )
    assert endpoint.via_for(("2001:db8::10", 5062), "z9hG4bKx") == (
        "SIP/2.0/UDP [2001:db8::10]:5062;branch=z9hG4bKx;rport"
    )


def test_endpoint_needs_a_local_address() -> None:
    """An endpoint without a local address is a programming error."""
    with pytest.raises(LocalProtocolError):
        Endpoint([])


def test_responses_to_our_request_reach_the_tu() -> None:
    """A response matching our branch and CSeq method is a ResponseReceived (§17.1.3)."""
    endpoint = new_endpoint()
    transaction = endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    [datagram] = endpoint.datagrams_to_send()
    events, _ = feed(endpoint, response_to(datagram.data, 180), TRUNK, 0.1)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ResponseReceived)
    assert event.transaction is transaction
    assert event.response.status_code == 180
    wrong_method = response_to(datagram.data, 200).replace(b"1 INVITE", b"1 BYE")
    events, _ = feed(endpoint, wrong_method, TRUNK, 0.2)
    assert events == [MessageDiscarded("Response matches no transaction", TRUNK)]


def test_default_size_limit_at_the_endpoint() -> None:
    """With the default limit a 70,000-byte request is answered 513 (§21.5.7)."""
    endpoint = new_endpoint()
    events, sent = feed(endpoint, request(body=b"x" * 70_000))
    assert events == [MessageDiscarded("Message Too Large", PBX, 513)]
    assert parse_response(sent[0].data).status_code == 513


def _ringing_with_top_via(rewrite: Callable[[str], str]) -> tuple[Endpoint, bytes]:
    """An endpoint with an INVITE out, and a 180 for it whose Via block was rewritten."""
    endpoint = new_endpoint()
    endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    invite = endpoint.datagrams_to_send()[0].data
    top = parse_request(invite).headers.get_all("Via")[0]
    ringing = response_to(invite, 180).replace(top.encode(), rewrite(top).encode())
    return endpoint, ringing


def test_response_with_foreign_sent_by_is_discarded() -> None:
    """A response whose top Via sent-by is not ours is discarded, even with our branch (§18.1.2)."""
    endpoint, ringing = _ringing_with_top_via(
        lambda via: via.replace("192.0.2.10:5060", "203.0.113.1:5060")
    )
    events, _ = feed(endpoint, ringing, TRUNK, 0.1)
    assert [type(event) for event in events] == [MessageDiscarded]


def test_response_with_two_vias_is_discarded() -> None:
    """A response to sipguard with a second Via was not meant for a UAC and is discarded (§8.1.3.3)."""
    endpoint, ringing = _ringing_with_top_via(
        lambda via: f"{via}\r\nVia: SIP/2.0/UDP 198.51.100.99;branch=z9hG4bKextra"
    )
    assert len(parse_response(ringing).vias) == 2
    events, _ = feed(endpoint, ringing, TRUNK, 0.1)
    assert [type(event) for event in events] == [MessageDiscarded]
