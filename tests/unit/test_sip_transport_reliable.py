"""SIP over TCP and TLS in the sans-IO core: timers, where messages go, aliases, failures.

Transaction scenarios run on a virtual clock (:class:`StreamTrace`, a
:class:`Trace` whose messages arrive on a stream local). On a reliable
transport RFC 3261 §17 sends each request and response once (no Timers A,
E, or G in Completed) and Timers D, I, J and K are zero; Timer G in
Accepted still resends a 2xx until its ACK (§13.3.1.4). No socket is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sipguard.b2bua.calls import contact_for
from sipguard.sip.endpoint import Endpoint
from sipguard.sip.errors import LocalProtocolError
from sipguard.sip.events import (
    AckTimedOut,
    Datagram,
    Event,
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from sipguard.sip.headers import Headers
from sipguard.sip.message import Request
from sipguard.sip.transaction import ClientTransaction, ServerTransaction
from sipguard.sip.transport import (
    Hop,
    Local,
    as_hop,
    as_local,
    transport_parameter,
    uri_hop,
    uri_transport,
)
from sipguard.sip.uri import parse_uri
from tests.unit.sip_messages import (
    TRUNK,
    Trace,
    counter_tokens,
    outgoing_request,
    parse_request,
    parse_response,
    request,
    response_to,
    starts_with,
)

UDP_LOCAL = Local("127.0.0.1", 5060, "UDP")
TCP_LOCAL = Local("127.0.0.1", 5060, "TCP")
TLS_LOCAL = Local("127.0.0.1", 5061, "TLS")
TCP6_LOCAL = Local("::1", 5060, "TCP")
PBX_CONNECTION = ("127.0.0.1", 40001)  # the PBX's end of the connection it opened
PBX_SENT_BY = ("127.0.0.1", 5070)  # the PBX's listening address, as in its Via
OTHER_TRUNK = ("198.51.100.8", 5060)

INVITE_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A on UDP (§17.1.1.2)
NON_INVITE_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # Timer E

is_invite = starts_with(b"INVITE ")
is_options = starts_with(b"OPTIONS ")
is_ack = starts_with(b"ACK ")


def status_is(code: int) -> Callable[[Datagram], bool]:
    """A predicate: the datagram is a response with this status code."""
    return starts_with(f"SIP/2.0 {code} ".encode())


def stream_endpoint(*locals_: Local) -> Endpoint:
    """An endpoint on UDP, TCP and TLS (or the given locals), with deterministic tokens."""
    return Endpoint(list(locals_ or (UDP_LOCAL, TCP_LOCAL, TLS_LOCAL, TCP6_LOCAL)),
                    token=counter_tokens())


def stream_request(method: str = "INVITE", transport: str = "TCP",
                   sent_by: str = "127.0.0.1:5070", **options: object) -> bytes:
    """A PBX request whose top Via names ``transport``."""
    data = request(method, sent_by=sent_by, **options)
    return data.replace(b"Via: SIP/2.0/UDP ", f"Via: SIP/2.0/{transport} ".encode(), 1)


@dataclass
class StreamTrace(Trace):
    """A Trace whose messages arrive on ``local`` from the PBX's connection by default."""

    local: Local = TCP_LOCAL

    def receive(self, data: bytes, source: tuple[str, int] = PBX_CONNECTION,
                at: float | None = None) -> list[Event]:
        """Feed one framed message at ``at`` (default: the current time)."""
        self.run_until(self.now if at is None else at)
        events = self.endpoint.receive_datagram(data, source, self.local, self.now)
        self._collect(events)
        return events


def events_of(trace: Trace) -> list[tuple[float, type]]:
    """(time, event class) for every event so far."""
    return [(at, type(event)) for at, event in trace.events]


def server(trace: StreamTrace, data: bytes) -> ServerTransaction:
    """Feed a new request and return its server transaction."""
    [event] = trace.receive(data)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event.transaction


def answer(trace: Trace, transaction: ServerTransaction, status_code: int, at: float) -> None:
    """The TU answers at ``at``."""
    trace.run_until(at)
    response = trace.endpoint.make_response(transaction, status_code, to_tag="sg-tag")
    trace.endpoint.respond(transaction, response, at)


# -- client transactions (§17.1) ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "transport", "times"), [
    ("INVITE", "UDP", INVITE_TIMES), ("INVITE", "TCP", [0.0]), ("INVITE", "TLS", [0.0]),
    ("OPTIONS", "UDP", NON_INVITE_TIMES), ("OPTIONS", "TCP", [0.0]), ("OPTIONS", "TLS", [0.0]),
], ids=["invite-udp-timer-a", "invite-tcp", "invite-tls", "options-udp-timer-e", "options-tcp",
        "options-tls"])
def test_client_request_retransmitted_only_on_udp(
    method: str, transport: str, times: list[float]
) -> None:
    """Over TCP/TLS a request goes out once (no Timer A or E); Timer B or F still ends it."""
    trace = StreamTrace(stream_endpoint())
    transaction = trace.endpoint.send_request(outgoing_request(method), Hop(*TRUNK, transport),
                                              0.0)
    trace.run_until(100.0)
    assert trace.sent_times(starts_with(f"{method} ".encode())) == times
    assert {(d.destination, d.local.transport) for _, d in trace.sent} == {(TRUNK, transport)}
    via = parse_request(trace.sent[0][1].data).top_via  # our Via names the transport
    assert (via.transport, via.parameter("rport") is not None) == (transport, transport == "UDP")
    assert trace.events == [(32.0, TransactionTimedOut(transaction))]
    assert trace.endpoint.transaction_count == 0
    assert trace.endpoint.get_timer() is None


def test_client_invite_failure_over_tcp_ends_at_once() -> None:
    """After a 486 over TCP the ACK goes once and Timer D is zero, so the transaction ends."""
    trace = StreamTrace(stream_endpoint())
    transaction = trace.endpoint.send_request(outgoing_request(), Hop(*TRUNK, "TCP"), 0.0)
    busy = response_to(trace.matching(is_invite)[0].data, 486)
    assert [type(event) for event in trace.receive(busy, TRUNK, at=0.7)] == [ResponseReceived]
    assert trace.endpoint.get_timer() == 0.7
    trace.run_until(0.7)
    assert transaction.is_terminated
    assert trace.endpoint.transaction_count == 0
    assert [(at, d.destination, d.local) for at, d in trace.sent if is_ack(d)] == [
        (0.7, TRUNK, TCP_LOCAL)]
    late = trace.receive(busy, TRUNK, at=1.0)
    assert late == [MessageDiscarded("Response matches no transaction", TRUNK)]
    assert trace.sent_times(is_ack) == [0.7]


def test_client_non_invite_final_over_tcp_ends_at_once() -> None:
    """After a 200 to OPTIONS over TCP, Timer K is zero: the transaction ends at once."""
    trace = StreamTrace(stream_endpoint())
    transaction = trace.endpoint.send_request(outgoing_request("OPTIONS"), Hop(*TRUNK, "TCP"),
                                              0.0)
    ok = response_to(trace.matching(is_options)[0].data, 200)
    assert [type(event) for event in trace.receive(ok, TRUNK, at=2.0)] == [ResponseReceived]
    trace.run_until(2.0)
    assert transaction.is_terminated
    assert trace.endpoint.transaction_count == 0
    assert trace.endpoint.get_timer() is None


def test_client_invite_2xx_over_tcp_keeps_timer_m() -> None:
    """A 2xx over TCP still moves the INVITE to Accepted for 64*T1 (Timer M is not zeroed)."""
    trace = StreamTrace(stream_endpoint())
    trace.endpoint.send_request(outgoing_request(), Hop(*TRUNK, "TCP"), 0.0)
    trace.receive(response_to(trace.matching(is_invite)[0].data, 200), TRUNK, at=1.0)
    assert trace.endpoint.get_timer() == 33.0
    trace.run_until(33.0)
    assert trace.endpoint.transaction_count == 0


# -- server transactions (§17.2) ---------------------------------------------------------------


@pytest.mark.parametrize("local", [TCP_LOCAL, TLS_LOCAL], ids=["tcp", "tls"])
def test_server_invite_failure_sent_once_then_timer_h(local: Local) -> None:
    """A 486 over TCP/TLS is sent once (no Timer G in Completed); Timer H still reports no ACK."""
    trace = StreamTrace(stream_endpoint(), local=local)
    transaction = server(trace, stream_request(transport=local.transport))
    answer(trace, transaction, 486, 1.0)
    trace.run_until(100.0)
    assert trace.sent_times(status_is(486)) == [1.0]
    assert events_of(trace) == [(0.0, RequestReceived), (33.0, AckTimedOut)]
    assert {(d.destination, d.local) for _, d in trace.sent} == {(PBX_CONNECTION, local)}
    assert trace.endpoint.transaction_count == 0


def test_server_invite_ack_for_failure_ends_at_once() -> None:
    """The ACK for a 486 over TCP is absorbed and Timer I is zero: the transaction ends."""
    trace = StreamTrace(stream_endpoint())
    transaction = server(trace, stream_request())
    answer(trace, transaction, 486, 1.0)
    assert trace.receive(stream_request("ACK", to_tag="sg-tag"), at=3.0) == []
    assert trace.endpoint.get_timer() == 3.0
    trace.run_until(3.0)
    assert transaction.is_terminated
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(status_is(486)) == [1.0]
    assert events_of(trace) == [(0.0, RequestReceived)]


def test_server_invite_2xx_still_retransmitted_until_the_ack() -> None:
    """A 2xx over TCP is resent on Timer G in Accepted until its ACK (§13.3.1.4), then Timer L."""
    trace = StreamTrace(stream_endpoint())
    transaction = server(trace, stream_request())
    answer(trace, transaction, 200, 1.0)
    trace.run_until(9.0)
    assert trace.sent_times(status_is(200)) == [1.0, 1.5, 2.5, 4.5, 8.5]
    ack = stream_request("ACK", branch="z9hG4bKpbx-ack", to_tag="sg-tag")
    assert [type(event) for event in trace.receive(ack, at=9.0)] == [RequestReceived]
    trace.run_until(100.0)
    assert trace.sent_times(status_is(200)) == [1.0, 1.5, 2.5, 4.5, 8.5]
    assert all(d.destination == PBX_CONNECTION for _, d in trace.sent)
    assert events_of(trace) == [(0.0, RequestReceived), (9.0, RequestReceived)]
    assert trace.endpoint.transaction_count == 0


@pytest.mark.parametrize("status_code", [200, 404])
def test_server_non_invite_ends_with_its_final_response(status_code: int) -> None:
    """A non-INVITE over TCP ends right after its final response (Timer J = 0)."""
    trace = StreamTrace(stream_endpoint())
    transaction = server(trace, stream_request("OPTIONS"))
    answer(trace, transaction, status_code, 1.0)
    assert trace.endpoint.get_timer() == 1.0
    trace.run_until(1.0)
    assert transaction.is_terminated
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(status_is(status_code)) == [1.0]


# -- where responses go, and what a stream requires (§18.2.2, §18.3) ---------------------------


RESPONSE_ROUTES = {  # id: (local, Via sent-by, Via parameters, destination, received, rport)
    "tcp-via-port-differs": (TCP_LOCAL, "127.0.0.1:5070", "", PBX_CONNECTION, None, None),
    "tls": (TLS_LOCAL, "127.0.0.1:5070", "", PBX_CONNECTION, None, None),
    "tcp-host-name": (TCP_LOCAL, "pbx.example.com:5070", "", PBX_CONNECTION, "127.0.0.1", None),
    "tcp-other-host": (TCP_LOCAL, "192.0.2.1:5070", "", PBX_CONNECTION, "127.0.0.1", None),
    "tcp-rport": (TCP_LOCAL, "127.0.0.1:5070", ";rport", PBX_CONNECTION, "127.0.0.1", "40001"),
    "udp-via-port": (UDP_LOCAL, "127.0.0.1:5070", "", PBX_SENT_BY, None, None),
}


@pytest.mark.parametrize(("local", "sent_by", "parameters", "destination", "received", "rport"),
                         RESPONSE_ROUTES.values(), ids=RESPONSE_ROUTES.keys())
def test_responses_on_a_stream_go_back_on_the_connection(
    local: Local, sent_by: str, parameters: str, destination: tuple[str, int],
    received: str | None, rport: str | None,
) -> None:
    """The 100 and the final go to the connection's remote address; Via received is as on UDP."""
    endpoint = stream_endpoint()
    data = stream_request(transport=local.transport, sent_by=sent_by, via_parameters=parameters)
    [event] = endpoint.receive_datagram(data, PBX_CONNECTION, local, 0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    endpoint.respond(event.transaction, endpoint.make_response(event.transaction, 486, to_tag="t"),
                     0.1)
    sent = endpoint.datagrams_to_send()
    assert [(d.destination, d.local) for d in sent] == [(destination, local)] * 2
    for datagram in sent:
        via = parse_response(datagram.data).top_via
        assert via.sent_by == sent_by
        assert (via.parameter("received"), via.parameter("rport")) == (received, rport)


MISSING = "Missing Required Header: Content-Length"
STREAM_REJECTS = {  # id: (local, Content-Length written, framed as too large, status, reason)
    "tcp-missing": (TCP_LOCAL, None, False, 400, MISSING),
    "tls-missing": (TLS_LOCAL, None, False, 400, MISSING),
    "tcp-abc": (TCP_LOCAL, "abc", False, 400, "Bad Content-Length 'abc'"),
    "tcp-too-large": (TCP_LOCAL, "1000000", True, 513, "Message Too Large"),
    "tls-too-large": (TLS_LOCAL, "1000000", True, 513, "Message Too Large"),
}


@pytest.mark.parametrize(("local", "content_length", "too_large", "status_code", "reason"),
                         STREAM_REJECTS.values(), ids=STREAM_REJECTS.keys())
def test_stream_request_rejected_on_its_connection(
    local: Local, content_length: str | None, too_large: bool, status_code: int, reason: str
) -> None:
    """No usable Content-Length on a stream gets 400, a too-large head 513, on the connection."""
    endpoint = stream_endpoint()
    data = stream_request(transport=local.transport, content_length=content_length)
    events = endpoint.receive_datagram(data, PBX_CONNECTION, local, 0.0, too_large=too_large)
    assert events == [MessageDiscarded(reason, PBX_CONNECTION, status_code)]
    [datagram] = endpoint.datagrams_to_send()
    assert (datagram.destination, datagram.local) == (PBX_CONNECTION, local)
    response = parse_response(datagram.data)
    assert (response.status_code, response.reason) == (status_code, reason)
    assert endpoint.transaction_count == 0


def test_udp_request_may_omit_content_length() -> None:
    """The same request without Content-Length over UDP is accepted (§18.3 applies to streams)."""
    endpoint = stream_endpoint()
    events = endpoint.receive_datagram(request(content_length=None), PBX_CONNECTION, UDP_LOCAL, 0.0)
    assert [type(event) for event in events] == [RequestReceived]


# -- connection aliases (RFC 5923 §5) ----------------------------------------------------------


def learn(endpoint: Endpoint, local: Local = TCP_LOCAL,
          source: tuple[str, int] = PBX_CONNECTION, sent_by: str = "127.0.0.1:5070") -> None:
    """A request from the PBX arrives on ``local`` from ``source``; its answers are dropped."""
    data = stream_request("OPTIONS", transport=local.transport, sent_by=sent_by,
                          branch=f"z9hG4bK{source[1]}")
    endpoint.receive_datagram(data, source, local, 0.0)
    endpoint.datagrams_to_send()


def sent_to(endpoint: Endpoint, hop: Hop) -> Datagram:
    """The datagram a new OPTIONS to ``hop`` becomes."""
    endpoint.send_request(outgoing_request("OPTIONS"), hop, 1.0)
    [datagram] = endpoint.datagrams_to_send()
    return datagram


V6_CONNECTION = ("::1", 40001)
ALIASES = {  # id: (local the PBX's request came on, its sent-by, hop we send to, destination)
    "tcp-alias": (TCP_LOCAL, "127.0.0.1:5070", Hop(*PBX_SENT_BY, "TCP"), PBX_CONNECTION),
    "tls-alias": (TLS_LOCAL, "127.0.0.1:5070", Hop(*PBX_SENT_BY, "TLS"), PBX_CONNECTION),
    "ipv6-alias": (TCP6_LOCAL, "[::1]:5070", Hop("::1", 5070, "TCP"), V6_CONNECTION),
    "other-host": (TCP_LOCAL, "192.0.2.1:5070", Hop("192.0.2.1", 5070, "TCP"), ("192.0.2.1", 5070)),
    "other-host-not-for-source": (TCP_LOCAL, "192.0.2.1:5070", Hop(*PBX_SENT_BY, "TCP"),
                                  PBX_SENT_BY),
    "host-name": (TCP_LOCAL, "pbx.example.com:5070", Hop(*PBX_SENT_BY, "TCP"), PBX_SENT_BY),
    "udp-never": (UDP_LOCAL, "127.0.0.1:5070", Hop(*PBX_SENT_BY, "UDP"), PBX_SENT_BY),
    "tcp-alias-not-for-udp": (TCP_LOCAL, "127.0.0.1:5070", Hop(*PBX_SENT_BY, "UDP"), PBX_SENT_BY),
    "tcp-alias-not-for-tls": (TCP_LOCAL, "127.0.0.1:5070", Hop(*PBX_SENT_BY, "TLS"), PBX_SENT_BY),
    "other-port": (TCP_LOCAL, "127.0.0.1:5070", Hop("127.0.0.1", 5071, "TCP"), ("127.0.0.1", 5071)),
}


@pytest.mark.parametrize(("local", "sent_by", "hop", "destination"), ALIASES.values(),
                         ids=ALIASES.keys())
def test_requests_to_a_sent_by_reuse_the_peer_connection(
    local: Local, sent_by: str, hop: Hop, destination: tuple[str, int]
) -> None:
    """After a TCP/TLS request, sends to its sent-by (same host and transport) use its connection."""
    endpoint = stream_endpoint()
    learn(endpoint, local, V6_CONNECTION if ":" in local.host else PBX_CONNECTION, sent_by)
    datagram = sent_to(endpoint, hop)
    assert (datagram.destination, datagram.local.transport) == (destination, hop.transport)


def test_newer_connection_from_the_same_sent_by_replaces_the_alias() -> None:
    """When the PBX reconnects from another port, requests follow the newer connection."""
    endpoint = stream_endpoint()
    learn(endpoint)
    learn(endpoint, source=("127.0.0.1", 40002))
    assert sent_to(endpoint, Hop(*PBX_SENT_BY, "TCP")).destination == ("127.0.0.1", 40002)


@pytest.mark.parametrize(("transport", "remote", "destination"), [
    ("TCP", PBX_CONNECTION, PBX_SENT_BY), ("TLS", PBX_CONNECTION, PBX_CONNECTION),
    ("TCP", ("127.0.0.1", 40002), PBX_CONNECTION),
], ids=["closed-forgets", "other-transport-kept", "other-remote-kept"])
def test_connection_closed_forgets_its_aliases(
    transport: str, remote: tuple[str, int], destination: tuple[str, int]
) -> None:
    """connection_closed drops only the aliases of that transport's connection to that remote."""
    endpoint = stream_endpoint()
    learn(endpoint)
    endpoint.connection_closed(transport, remote)
    assert sent_to(endpoint, Hop(*PBX_SENT_BY, "TCP")).destination == destination


def test_what_was_meant_for_a_closed_connection_goes_to_the_sent_by() -> None:
    """After the PBX's connection closes, a response or request addressed to that connection
    goes to the PBX's sent-by (RFC 3261 §18.2.2), never to its client port; a new connection
    from that port takes the address back."""
    endpoint = stream_endpoint()
    data = stream_request("INVITE", transport="TCP", sent_by="127.0.0.1:5070",
                          branch="z9hG4bKclosed")
    [received] = endpoint.receive_datagram(data, PBX_CONNECTION, TCP_LOCAL, 0.0)
    assert [d.destination for d in endpoint.datagrams_to_send()] == [PBX_CONNECTION]  # 100
    endpoint.connection_closed("TCP", PBX_CONNECTION)
    assert isinstance(received, RequestReceived) and received.transaction is not None
    endpoint.respond(received.transaction,
                     endpoint.make_response(received.transaction, 486, to_tag="t"), 1.0)
    assert [d.destination for d in endpoint.datagrams_to_send()] == [PBX_SENT_BY]
    learn(endpoint, source=PBX_CONNECTION)  # the same client port connects again
    assert sent_to(endpoint, Hop(*PBX_SENT_BY, "TCP")).destination == PBX_CONNECTION


def test_an_old_connection_closing_leaves_the_newer_ones_alias() -> None:
    """When the PBX has reconnected, the old connection's close does not take the alias the
    new connection holds."""
    endpoint = stream_endpoint()
    learn(endpoint)
    learn(endpoint, source=("127.0.0.1", 40002))
    endpoint.connection_closed("TCP", PBX_CONNECTION)
    assert sent_to(endpoint, Hop(*PBX_SENT_BY, "TCP")).destination == ("127.0.0.1", 40002)


def test_ack_and_resend_follow_the_hop_and_the_alias() -> None:
    """send_ack and resend with a TCP hop leave from the TCP local, on the PBX's connection."""
    endpoint = stream_endpoint()
    learn(endpoint)
    headers = Headers([("Max-Forwards", "70"), ("From", "<sip:200@sipguard.example.com>;tag=a"),
                       ("To", "<sip:pbx@127.0.0.1:5070>;tag=b"), ("Call-ID", "c"),
                       ("CSeq", "1 ACK")])
    ack = Request("ACK", parse_uri("sip:pbx@127.0.0.1:5070;transport=tcp"), headers)
    data = endpoint.send_ack(ack, Hop(*PBX_SENT_BY, "TCP"))
    assert endpoint.datagrams_to_send() == [Datagram(data, PBX_CONNECTION, TCP_LOCAL)]
    assert parse_request(data).top_via.transport == "TCP"
    endpoint.resend(data, Hop(*PBX_SENT_BY, "TCP"))
    assert endpoint.datagrams_to_send() == [Datagram(data, PBX_CONNECTION, TCP_LOCAL)]


# -- transport failures (§8.1.3.1, §17.1.4) -----------------------------------------------------


def test_transport_failed_ends_only_the_pending_transactions_on_that_connection() -> None:
    """Pending client transactions on (local, destination) end with TransactionTimedOut; others
    stay, and so does an INVITE that has had a provisional (its answer may come on a new
    connection, or the TU cancels it)."""
    endpoint = stream_endpoint()

    def send(hop: Hop) -> tuple[ClientTransaction, bytes]:
        transaction = endpoint.send_request(outgoing_request(), hop, 0.0)
        [datagram] = endpoint.datagrams_to_send()
        return transaction, datagram.data

    calling, _ = send(Hop(*TRUNK, "TCP"))
    ringing, ringing_bytes = send(Hop(*TRUNK, "TCP"))
    answered, answered_bytes = send(Hop(*TRUNK, "TCP"))
    survivors = [answered] + [send(hop)[0] for hop in (
        Hop(*OTHER_TRUNK, "TCP"), Hop(*TRUNK, "UDP"), Hop(*TRUNK, "TLS"))]
    endpoint.receive_datagram(response_to(ringing_bytes, 180), TRUNK, TCP_LOCAL, 0.5)
    endpoint.receive_datagram(response_to(answered_bytes, 200), TRUNK, TCP_LOCAL, 0.5)
    endpoint.datagrams_to_send()
    survivors.append(ringing)
    events = endpoint.transport_failed(TCP_LOCAL, TRUNK, 1.0, "connection refused")
    assert events == [TransactionTimedOut(calling, "connection refused")]
    assert calling.is_terminated
    assert not any(transaction.is_terminated for transaction in survivors)
    assert endpoint.transaction_count == len(survivors)
    assert endpoint.datagrams_to_send() == []  # nothing is sent for a broken connection
    assert endpoint.transport_failed(TCP_LOCAL, TRUNK, 2.0) == []  # reported once


def test_transport_failed_default_reason() -> None:
    """Without a reason, the event still says the connection failed (not a Timer B timeout)."""
    endpoint = stream_endpoint()
    transaction = endpoint.send_request(outgoing_request("OPTIONS"), Hop(*TRUNK, "TLS"), 0.0)
    assert endpoint.transport_failed(TLS_LOCAL, TRUNK, 0.1) == [
        TransactionTimedOut(transaction, "connection failed")]
    assert endpoint.transaction_count == 0
    assert endpoint.get_timer() is None


def test_transport_failed_on_an_aliased_connection_ends_its_transactions() -> None:
    """A request sent on the PBX's own connection (via its alias) ends when that connection fails."""
    endpoint = stream_endpoint()
    learn(endpoint)
    transaction = endpoint.send_request(outgoing_request(), Hop(*PBX_SENT_BY, "TCP"), 1.0)
    assert [d.destination for d in endpoint.datagrams_to_send()] == [PBX_CONNECTION]
    assert transaction.destination == PBX_SENT_BY  # the alias redirected only the datagram
    # What Service.stream_closed does when that connection ends: fail what waits on it
    # (through the alias), then forget the alias.
    events = endpoint.transport_failed(TCP_LOCAL, PBX_CONNECTION, 2.0, "connection reset")
    endpoint.connection_closed("TCP", PBX_CONNECTION)
    assert events == [TransactionTimedOut(transaction, "connection reset")]
    assert endpoint.transaction_count == 1  # only the PBX's OPTIONS server transaction


# -- Via, local choice, URIs and Contact -------------------------------------------------------

UDP6_LOCAL = Local("::1", 5060, "UDP")
VIAS = {
    "udp": (UDP_LOCAL, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport"),
    "tcp": (TCP_LOCAL, "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKx"),
    "tls": (TLS_LOCAL, "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKx"),
    "tcp-ipv6": (TCP6_LOCAL, "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKx"),
    "bare-is-udp": (("127.0.0.1", 5062), "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx;rport"),
}


@pytest.mark.parametrize(("local", "via"), VIAS.values(), ids=VIAS.keys())
def test_via_for(local: Local | tuple[str, int], via: str) -> None:
    """Our Via names the local's transport; rport only on UDP (RFC 3581)."""
    assert stream_endpoint().via_for(local, "z9hG4bKx") == via


V4_ALL = (UDP_LOCAL, TCP_LOCAL, TLS_LOCAL)
LOCAL_CHOICES = {  # id: (the endpoint's locals, destination, transport asked, local expected)
    "tcp-hop": (V4_ALL, Hop("192.0.2.1", 5070, "TCP"), None, TCP_LOCAL),
    "tls-hop": (V4_ALL, Hop("192.0.2.1", 5061, "TLS"), None, TLS_LOCAL),
    "bare-is-udp": ((TCP_LOCAL, UDP_LOCAL), ("192.0.2.1", 5060), None, UDP_LOCAL),
    "explicit-transport": ((UDP_LOCAL, TCP_LOCAL), ("192.0.2.1", 5060), "TCP", TCP_LOCAL),
    "tcp-ipv6": ((*V4_ALL, UDP6_LOCAL, TCP6_LOCAL), Hop("::1", 5070, "TCP"), None, TCP6_LOCAL),
    "udp-ipv6": ((TCP_LOCAL, UDP6_LOCAL, TCP6_LOCAL), Hop("::1", 5070, "UDP"), None, UDP6_LOCAL),
    "no-tcp6-same-family": ((UDP_LOCAL, UDP6_LOCAL), Hop("::1", 5070, "TCP"), None, UDP6_LOCAL),
    "no-family-first-local": ((TCP_LOCAL,), Hop("::1", 5070, "TCP"), None, TCP_LOCAL),
}


@pytest.mark.parametrize(("locals_", "destination", "transport", "expected"),
                         LOCAL_CHOICES.values(), ids=LOCAL_CHOICES.keys())
def test_local_for(
    locals_: tuple[Local, ...], destination: Hop | tuple[str, int], transport: str | None,
    expected: Local,
) -> None:
    """local_for picks the hop's transport in its address family, else another of that family."""
    assert stream_endpoint(*locals_).local_for(destination, transport) == expected


def test_local_for_never_trades_tls_for_cleartext() -> None:
    """Asked for TLS with no TLS address, local_for refuses rather than send in the clear."""
    endpoint = Endpoint([UDP_LOCAL, TCP_LOCAL])
    with pytest.raises(LocalProtocolError, match="no tls listen address"):
        endpoint.local_for(Hop("192.0.2.1", 5061, "TLS"))


URI_HOPS = {
    "plain-udp": ("sip:pbx@192.0.2.1", Hop("192.0.2.1", 5060, "UDP")),
    "port": ("sip:pbx@192.0.2.1:5070", Hop("192.0.2.1", 5070, "UDP")),
    "sips-5061": ("sips:pbx@192.0.2.1", Hop("192.0.2.1", 5061, "TLS")),
    "sips-port": ("sips:pbx@192.0.2.1:5071", Hop("192.0.2.1", 5071, "TLS")),
    "sips-wins": ("sips:pbx@192.0.2.1;transport=tcp", Hop("192.0.2.1", 5061, "TLS")),
    "tcp": ("sip:pbx@192.0.2.1;transport=tcp", Hop("192.0.2.1", 5060, "TCP")),
    "tcp-mixed-case": ("sip:pbx@192.0.2.1:5070;transport=Tcp", Hop("192.0.2.1", 5070, "TCP")),
    "tls-uppercase": ("sip:pbx@192.0.2.1;transport=TLS", Hop("192.0.2.1", 5061, "TLS")),
    "udp": ("sip:pbx@192.0.2.1;transport=udp", Hop("192.0.2.1", 5060, "UDP")),
    "unknown-is-udp": ("sip:pbx@192.0.2.1;transport=sctp", Hop("192.0.2.1", 5060, "UDP")),
    "ipv6": ("sip:pbx@[2001:db8::1]:5070;transport=tcp", Hop("2001:db8::1", 5070, "TCP")),
    "name-tls": ("sip:pbx.example.com;lr;transport=tls", Hop("pbx.example.com", 5061, "TLS")),
}


@pytest.mark.parametrize(("uri", "hop"), URI_HOPS.values(), ids=URI_HOPS.keys())
def test_uri_hop(uri: str, hop: Hop) -> None:
    """A URI's hop: sips is TLS on 5061, else ;transport= (any case), unknown is UDP."""
    parsed = parse_uri(uri)
    assert uri_hop(parsed) == hop
    assert uri_transport(parsed) == hop.transport


def test_as_local_and_as_hop() -> None:
    """A bare (host, port) means UDP; a Local or a Hop is kept as it is."""
    assert as_local(("127.0.0.1", 5060)) == UDP_LOCAL
    assert as_hop(("127.0.0.1", 5070)) == Hop("127.0.0.1", 5070, "UDP")
    assert as_local(TLS_LOCAL) is TLS_LOCAL
    hop = Hop("127.0.0.1", 5061, "TLS")
    assert as_hop(hop) is hop
    assert hop.address == ("127.0.0.1", 5061)


LOCALS = {  # id: (local, its text, reliable, URI parameter, our Contact)
    "udp": (UDP_LOCAL, "udp:127.0.0.1:5060", False, "", "<sip:sipguard@127.0.0.1:5060>"),
    "tcp": (TCP_LOCAL, "tcp:127.0.0.1:5060", True, ";transport=tcp",
            "<sip:sipguard@127.0.0.1:5060;transport=tcp>"),
    "tls": (TLS_LOCAL, "tls:127.0.0.1:5061", True, ";transport=tls",
            "<sip:sipguard@127.0.0.1:5061;transport=tls>"),
    "tcp-ipv6": (TCP6_LOCAL, "tcp:[::1]:5060", True, ";transport=tcp",
                 "<sip:sipguard@[::1]:5060;transport=tcp>"),
}


@pytest.mark.parametrize(("local", "text", "reliable", "parameter", "contact"), LOCALS.values(),
                         ids=LOCALS.keys())
def test_local_text_and_contact(
    local: Local, text: str, reliable: bool, parameter: str, contact: str
) -> None:
    """A local prints as transport:host:port, is reliable on TCP/TLS, and our Contact names it."""
    assert (str(local), local.reliable, transport_parameter(local.transport)) == (
        text, reliable, parameter)
    assert contact_for(local) == contact
    # In-dialog requests to that Contact come back over the same transport and address.
    assert uri_hop(parse_uri(contact[1:-1])) == Hop(local.host, local.port, local.transport)
