"""RFC 3261 §17 transactions on a virtual clock: exact datagrams at exact times.

Every scenario drives an Endpoint through :class:`Trace`, which fires each
timer exactly at its deadline and checks on every step that get_timer()
equals the earliest deadline of any live transaction. Default timers:
T1 = 0.5 s, T2 = 4 s, T4 = 5 s, 64*T1 = 32 s, Timer D = 32 s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sipguard.sip.errors import LocalProtocolError
from sipguard.sip.events import (
    AckTimedOut,
    CancelReceived,
    Datagram,
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from sipguard.sip.transaction import ClientTransaction, ServerTransaction
from sipguard.sip.transaction_table import (
    CLIENT_INVITE,
    CLIENT_NON_INVITE,
    SERVER_INVITE,
    SERVER_NON_INVITE,
    Action,
    Input,
    State,
    TimerSettings,
)
from tests.unit.sip_messages import (
    PBX,
    TRUNK,
    Trace,
    new_endpoint,
    outgoing_request,
    parse_request,
    parse_response,
    request,
    response_to,
    starts_with,
)

INVITE_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A: T1, 2T1, 4T1, ... (§17.1.1.2)
NON_INVITE_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # Timer E ≤ T2

is_invite = starts_with(b"INVITE ")
is_ack = starts_with(b"ACK ")
is_cancel = starts_with(b"CANCEL ")
is_options = starts_with(b"OPTIONS ")


def status_is(code: int) -> Callable[[Datagram], bool]:
    """A predicate: the datagram is a response with this status code."""
    return starts_with(f"SIP/2.0 {code} ".encode())


def events_of(trace: Trace) -> list[tuple[float, type]]:
    """(time, event class) for every event so far."""
    return [(at, type(event)) for at, event in trace.events]


def client(trace: Trace, method: str = "INVITE", **options: object) -> ClientTransaction:
    """Send a request from sipguard to the trunk at the trace's current time."""
    request_ = outgoing_request(method, **options)  # type: ignore[arg-type]
    return trace.endpoint.send_request(request_, TRUNK, trace.now)


def first_sent(trace: Trace, predicate: Callable[[Datagram], bool]) -> bytes:
    """The bytes of the first datagram matching ``predicate``."""
    return trace.matching(predicate)[0].data


def server(trace: Trace, data: bytes, at: float | None = None) -> ServerTransaction:
    """Feed a new request from the PBX and return its server transaction."""
    events = trace.receive(data, PBX, at)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, RequestReceived)
    assert event.transaction is not None
    return event.transaction


# -- client INVITE (§17.1.1) ---------------------------------------------------------------------


def test_timer_a_then_timer_b() -> None:
    """Without an answer the INVITE goes out at 0, T1, 3T1, 7T1… and Timer B ends it at 64*T1."""
    trace = Trace(new_endpoint())
    transaction = client(trace)
    assert trace.endpoint.get_timer() == 0.5
    trace.run_until(100.0)
    assert trace.sent_times(is_invite) == INVITE_TIMES
    assert all(datagram.destination == TRUNK for _, datagram in trace.sent)
    assert len({datagram.data for _, datagram in trace.sent}) == 1  # identical retransmissions
    assert trace.events == [(32.0, TransactionTimedOut(transaction))]
    assert trace.endpoint.transaction_count == 0
    assert trace.endpoint.get_timer() is None


def test_timers_follow_the_settings() -> None:
    """T1 comes from TimerSettings: T1 = 0.25 halves every time and Timer B is 16 s."""
    trace = Trace(new_endpoint(settings=TimerSettings(t1=0.25, t2=2.0, t4=2.5, timer_d=10.0)))
    client(trace)
    trace.run_until(100.0)
    assert trace.sent_times(is_invite) == [0.0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75]
    assert events_of(trace) == [(16.0, TransactionTimedOut)]


def test_late_timer_call_fires_everything_due() -> None:
    """handle_timer long after several deadlines fires them in one call, ending at Timer B."""
    endpoint = new_endpoint()
    transaction = endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    endpoint.datagrams_to_send()
    events = endpoint.handle_timer(50.0)
    assert events == [TransactionTimedOut(transaction)]
    assert len(endpoint.datagrams_to_send()) <= 1
    assert endpoint.transaction_count == 0
    assert endpoint.get_timer() is None


@pytest.mark.parametrize("status_code", [100, 180, 183])
def test_provisional_stops_retransmission_and_timer_b(status_code: int) -> None:
    """A 1xx moves the INVITE to Proceeding: no more retransmissions and no Timer B (§17.1.1.2)."""
    trace = Trace(new_endpoint())
    transaction = client(trace)
    trace.run_until(1.0)
    trace.receive(response_to(first_sent(trace, is_invite), status_code), TRUNK)
    trace.run_until(500.0)
    assert trace.sent_times(is_invite) == [0.0, 0.5]
    assert [type(event) for _, event in trace.events] == [ResponseReceived]
    assert trace.endpoint.get_timer() is None
    assert trace.endpoint.transaction_count == 1  # the TU's own timer ends a call that rings
    assert transaction.has_provisional


def test_failure_is_acknowledged_per_17_1_1_3() -> None:
    """A 486 gets an ACK with the INVITE's branch, Request-URI and Route, and the 486's To."""
    trace = Trace(new_endpoint())
    routes = ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    transaction = client(trace, routes=routes)
    invite_bytes = first_sent(trace, is_invite)
    busy = response_to(invite_bytes, 486, to_tag="busy-tag")
    events = trace.receive(busy, TRUNK, at=0.7)
    assert [type(event) for event in events] == [ResponseReceived]
    [(at, ack_datagram)] = [(at, d) for at, d in trace.sent if is_ack(d)]
    assert at == 0.7
    assert ack_datagram.destination == TRUNK
    invite = parse_request(invite_bytes)
    ack = parse_request(ack_datagram.data)
    assert ack.method == "ACK"
    assert str(ack.uri) == str(invite.uri)
    assert ack.headers.get_all("Via") == [invite.headers.values("Via")[0]]
    assert ack.top_via.branch == invite.top_via.branch == transaction.key[0]
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.headers.get("To") == parse_response(busy).headers.get("To")
    assert ack.to_tag == "busy-tag"
    assert ack.call_id == invite.call_id
    assert (ack.cseq.number, ack.cseq.method) == (invite.cseq.number, "ACK")
    assert ack.headers.values("Route") == routes
    assert ack.body == b""


def test_retransmitted_failure_gets_the_ack_again_then_timer_d() -> None:
    """Each 486 retransmission is ACKed again, silently; Timer D (32 s) then ends it (§17.1.1.2)."""
    trace = Trace(new_endpoint())
    client(trace)
    busy = response_to(first_sent(trace, is_invite), 486)
    trace.receive(busy, TRUNK, at=0.7)
    assert trace.receive(busy, TRUNK, at=2.0) == []
    assert trace.receive(busy, TRUNK, at=9.0) == []
    acks = [d.data for _, d in trace.sent if is_ack(d)]
    assert trace.sent_times(is_ack) == [0.7, 2.0, 9.0]
    assert len(set(acks)) == 1
    trace.run_until(32.69)
    assert trace.endpoint.transaction_count == 1
    trace.run_until(32.7)
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(is_invite) == [0.0, 0.5]  # retransmission stopped at the 486
    assert events_of(trace) == [(0.7, ResponseReceived)]
    late = trace.receive(busy, TRUNK, at=40.0)
    assert late == [MessageDiscarded("Response matches no transaction", TRUNK)]


def test_failure_after_provisional_is_acknowledged() -> None:
    """A 603 after a 180 (Proceeding → Completed) is ACKed and reaches the TU once."""
    trace = Trace(new_endpoint())
    client(trace)
    invite = first_sent(trace, is_invite)
    trace.receive(response_to(invite, 180), TRUNK, at=0.2)
    trace.receive(response_to(invite, 603), TRUNK, at=5.0)
    trace.receive(response_to(invite, 603), TRUNK, at=5.5)
    assert trace.sent_times(is_ack) == [5.0, 5.5]
    assert [
        parse_response(event.response.to_bytes()).status_code
        for _, event in trace.events
        if isinstance(event, ResponseReceived)
    ] == [180, 603]
    trace.run_until(37.0)
    assert trace.endpoint.transaction_count == 0


def test_success_is_not_acknowledged_by_the_transaction() -> None:
    """A 2xx goes to the TU, which ACKs it; retransmissions reach the TU too (RFC 6026)."""
    trace = Trace(new_endpoint())
    client(trace)
    ok = response_to(first_sent(trace, is_invite), 200)
    trace.receive(ok, TRUNK, at=0.3)
    trace.receive(ok, TRUNK, at=1.0)
    assert trace.sent_times(is_ack) == []
    assert events_of(trace) == [(0.3, ResponseReceived), (1.0, ResponseReceived)]
    trace.run_until(32.29)
    assert trace.endpoint.transaction_count == 1  # Timer M keeps it for 2xx retransmissions
    trace.run_until(32.3)
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(is_invite) == [0.0]


def test_cancel_is_refused_before_a_provisional_response() -> None:
    """Endpoint.cancel returns None until a 1xx arrives (§9.1)."""
    trace = Trace(new_endpoint())
    transaction = client(trace)
    assert trace.endpoint.cancel(transaction, 0.1) is None
    assert trace.take()[1:] == []  # nothing but the INVITE itself


def test_cancel_builds_the_request_per_9_1() -> None:
    """A CANCEL copies the INVITE's Request-URI, top Via, Route, From, To, Call-ID and CSeq number."""
    trace = Trace(new_endpoint())
    routes = ["<sip:edge1.example.com;lr>"]
    invite_transaction = client(trace, routes=routes)
    invite_bytes = first_sent(trace, is_invite)
    trace.receive(response_to(invite_bytes, 180), TRUNK, at=0.2)
    trace.run_until(0.3)
    cancel_transaction = trace.endpoint.cancel(invite_transaction, 0.3)
    assert cancel_transaction is not None
    cancel_bytes = first_sent(trace, is_cancel)
    invite, cancel = parse_request(invite_bytes), parse_request(cancel_bytes)
    assert str(cancel.uri) == str(invite.uri)
    assert cancel.headers.get_all("Via") == [invite.headers.values("Via")[0]]
    assert cancel.headers.get("From") == invite.headers.get("From")
    assert cancel.headers.get("To") == invite.headers.get("To")  # no tag from the 180
    assert cancel.call_id == invite.call_id
    assert (cancel.cseq.number, cancel.cseq.method) == (invite.cseq.number, "CANCEL")
    assert cancel.headers.values("Route") == routes
    assert cancel_transaction.key == (invite_transaction.key[0], "CANCEL")
    # The CANCEL is a non-INVITE transaction: Timer E until its 200.
    trace.run_until(2.0)
    assert trace.sent_times(is_cancel) == [0.3, 0.8, 1.8]
    events = trace.receive(response_to(cancel_bytes, 200), TRUNK, at=2.0)
    assert [(type(event), getattr(event, "transaction", None)) for event in events] == [
        (ResponseReceived, cancel_transaction)
    ]
    trace.receive(response_to(invite_bytes, 487), TRUNK, at=2.1)
    assert trace.sent_times(is_ack) == [2.1]
    assert trace.endpoint.cancel(invite_transaction, 2.2) is None  # final response came
    trace.run_until(100.0)
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(is_cancel) == [0.3, 0.8, 1.8]


# -- client non-INVITE (§17.1.2) ----------------------------------------------------------------------


def test_timer_e_caps_at_t2_then_timer_f() -> None:
    """A non-INVITE goes out at T1 doubling up to T2, then every T2; Timer F ends it at 64*T1."""
    trace = Trace(new_endpoint())
    transaction = client(trace, "OPTIONS")
    trace.run_until(100.0)
    assert trace.sent_times(is_options) == NON_INVITE_TIMES
    assert trace.events == [(32.0, TransactionTimedOut(transaction))]
    assert trace.endpoint.transaction_count == 0


def test_provisional_switches_timer_e_to_t2() -> None:
    """After a 1xx the request is resent every T2, and Timer F still applies (§17.1.2.2)."""
    trace = Trace(new_endpoint())
    client(trace, "OPTIONS")
    trace.run_until(1.0)
    trace.receive(response_to(first_sent(trace, is_options), 100), TRUNK)
    trace.run_until(100.0)
    times = [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert trace.sent_times(is_options) == times
    assert events_of(trace) == [(1.0, ResponseReceived), (32.0, TransactionTimedOut)]


@pytest.mark.parametrize("status_code", [200, 404])
def test_final_response_then_timer_k(status_code: int) -> None:
    """A final response stops retransmission; Timer K (T4) absorbs copies, then ends it."""
    trace = Trace(new_endpoint())
    client(trace, "OPTIONS")
    final = response_to(first_sent(trace, is_options), status_code)
    trace.receive(final, TRUNK, at=2.0)
    assert trace.receive(final, TRUNK, at=3.0) == []
    trace.run_until(6.99)
    assert trace.endpoint.transaction_count == 1
    trace.run_until(7.0)
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(is_options) == [0.0, 0.5, 1.5]
    assert events_of(trace) == [(2.0, ResponseReceived)]
    assert trace.sent_times(is_ack) == []  # non-INVITE finals are never ACKed


# -- server INVITE (§17.2.1) -----------------------------------------------------------------------------


def test_trying_at_once_and_retransmissions_answered_from_the_last_response() -> None:
    """The INVITE gets 100 at once; copies get the latest response and never reach the TU."""
    trace = Trace(new_endpoint())
    invite = request()
    transaction = server(trace, invite)
    assert trace.sent_times(status_is(100)) == [0.0]
    assert trace.receive(invite, at=0.5) == []
    assert trace.sent_times(status_is(100)) == [0.0, 0.5]
    _answer(trace, transaction, 180, 1.0)
    assert trace.receive(invite, at=1.5) == []
    assert trace.sent_times(status_is(180)) == [1.0, 1.5]
    assert all(datagram.destination == PBX for _, datagram in trace.sent)
    assert trace.endpoint.get_timer() is None  # no timers while Proceeding
    assert len(trace.events) == 1


def _answer(trace: Trace, transaction: ServerTransaction, status_code: int, at: float) -> None:
    trace.run_until(at)
    response = trace.endpoint.make_response(transaction, status_code, to_tag="sg-tag")
    trace.endpoint.respond(transaction, response, at)


def test_failure_retransmitted_on_timer_g_until_timer_h() -> None:
    """A 486 is resent at T1 doubling up to T2 until Timer H (64*T1) reports no ACK."""
    trace = Trace(new_endpoint())
    invite = request()
    transaction = server(trace, invite)
    _answer(trace, transaction, 486, 1.0)
    trace.receive(invite, at=2.0)  # a late INVITE copy is answered with the 486 too
    trace.run_until(100.0)
    times = [1.0, 1.5, 2.0, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert trace.sent_times(status_is(486)) == times
    assert events_of(trace) == [(0.0, RequestReceived), (33.0, AckTimedOut)]
    assert trace.events[1][1] == AckTimedOut(transaction)
    assert trace.endpoint.transaction_count == 0


def test_ack_for_failure_is_absorbed_then_timer_i() -> None:
    """The ACK for a 486 stops Timer G and never reaches the TU; Timer I (T4) then ends it."""
    trace = Trace(new_endpoint())
    invite = request()
    transaction = server(trace, invite)
    _answer(trace, transaction, 486, 1.0)
    ack = request("ACK", to_tag="sg-tag")  # same branch as the INVITE (§17.1.1.3)
    assert trace.receive(ack, at=3.0) == []
    assert trace.receive(ack, at=4.0) == []  # a copy of the ACK is absorbed as well
    assert trace.receive(invite, at=4.5) == []  # and so is a late INVITE copy
    trace.run_until(7.99)
    assert trace.endpoint.transaction_count == 1
    trace.run_until(8.0)
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(status_is(486)) == [1.0, 1.5, 2.5]
    assert events_of(trace) == [(0.0, RequestReceived)]


def test_success_retransmitted_until_the_ack() -> None:
    """A 2xx is resent on T1 doubling up to T2 until its ACK, which has a new branch (§13.3.1.4)."""
    trace = Trace(new_endpoint())
    transaction = server(trace, request())
    _answer(trace, transaction, 200, 1.0)
    trace.run_until(9.0)
    assert trace.sent_times(status_is(200)) == [1.0, 1.5, 2.5, 4.5, 8.5]
    ack = request("ACK", branch="z9hG4bKpbx-ack", to_tag="sg-tag")
    events = trace.receive(ack, at=9.0)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, RequestReceived)
    assert event.transaction is None  # an ACK for a 2xx is not part of any transaction
    assert event.request.method == "ACK"
    assert trace.receive(ack, at=9.5) == []  # delivered once
    trace.run_until(100.0)
    assert trace.sent_times(status_is(200)) == [1.0, 1.5, 2.5, 4.5, 8.5]
    assert events_of(trace) == [(0.0, RequestReceived), (9.0, RequestReceived)]
    assert trace.endpoint.transaction_count == 0


def test_success_without_ack_until_timer_l() -> None:
    """A 2xx that is never ACKed is resent until Timer L (64*T1) and reported as AckTimedOut."""
    trace = Trace(new_endpoint())
    transaction = server(trace, request())
    _answer(trace, transaction, 200, 1.0)
    trace.run_until(100.0)
    times = [1.0, 1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert trace.sent_times(status_is(200)) == times
    assert events_of(trace) == [(0.0, RequestReceived), (33.0, AckTimedOut)]
    assert trace.endpoint.transaction_count == 0


def test_invite_copy_after_success_does_not_reach_the_tu() -> None:
    """An INVITE retransmission in Accepted is absorbed (RFC 6026)."""
    trace = Trace(new_endpoint())
    invite = request()
    transaction = server(trace, invite)
    _answer(trace, transaction, 200, 1.0)
    assert trace.receive(invite, at=1.2) == []
    assert len(trace.events) == 1


def test_ack_with_another_to_tag_does_not_stop_the_2xx() -> None:
    """An ACK whose To tag is not our 2xx's does not match it (§17.2.3, §13.3.1.4)."""
    trace = Trace(new_endpoint())
    transaction = server(trace, request())
    _answer(trace, transaction, 200, 1.0)
    trace.receive(request("ACK", branch="z9hG4bKother", to_tag="someone-else"), at=2.0)
    trace.run_until(5.0)
    assert trace.sent_times(status_is(200)) == [1.0, 1.5, 2.5, 4.5]


def test_second_final_response_is_refused() -> None:
    """The TU cannot send a second final response on one transaction."""
    trace = Trace(new_endpoint())
    transaction = server(trace, request())
    second = trace.endpoint.make_response(transaction, 200, to_tag="sg-tag")
    _answer(trace, transaction, 486, 1.0)
    with pytest.raises(LocalProtocolError):
        trace.endpoint.respond(transaction, second, 1.1)
    assert trace.sent_times(status_is(200)) == []


def test_make_response_after_final_is_a_local_error() -> None:
    """Building a response for an answered transaction is our mistake: LocalProtocolError."""
    trace = Trace(new_endpoint())
    transaction = server(trace, request())
    _answer(trace, transaction, 486, 1.0)
    with pytest.raises(LocalProtocolError):
        trace.endpoint.make_response(transaction, 200)


# -- server non-INVITE (§17.2.2) ------------------------------------------------------------------------


def test_non_invite_answered_from_the_last_response_until_timer_j() -> None:
    """Copies are absorbed while Trying, answered with the final once sent; Timer J then ends it."""
    trace = Trace(new_endpoint())
    options = request("OPTIONS")
    transaction = server(trace, options)
    assert trace.take() == []  # no 100 for a non-INVITE
    assert trace.receive(options, at=0.5) == []
    assert trace.take() == []  # Trying absorbs copies (§17.2.2)
    _answer(trace, transaction, 200, 1.0)
    assert trace.receive(options, at=2.0) == []
    assert trace.receive(options, at=30.0) == []
    trace.run_until(32.99)
    assert trace.endpoint.transaction_count == 1
    trace.run_until(33.0)
    assert trace.endpoint.transaction_count == 0
    assert trace.sent_times(status_is(200)) == [1.0, 2.0, 30.0]
    assert events_of(trace) == [(0.0, RequestReceived)]


def test_non_invite_provisional_is_resent_for_copies() -> None:
    """After a 1xx (Proceeding) a copy of the request gets the 1xx again (§17.2.2)."""
    trace = Trace(new_endpoint())
    options = request("OPTIONS")
    transaction = server(trace, options)
    _answer(trace, transaction, 100, 0.2)
    trace.receive(options, at=0.6)
    assert trace.sent_times(status_is(100)) == [0.2, 0.6]
    _answer(trace, transaction, 404, 1.0)
    trace.receive(options, at=1.5)
    assert trace.sent_times(status_is(404)) == [1.0, 1.5]


# -- CANCEL (§9.2) -----------------------------------------------------------------------------------------


def test_cancel_matches_its_invite() -> None:
    """A CANCEL with the INVITE's branch gets 200 at once and a CancelReceived for the TU."""
    trace = Trace(new_endpoint())
    invite_transaction = server(trace, request())
    cancel = request("CANCEL")
    events = trace.receive(cancel, at=1.0)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, CancelReceived)
    assert event.invite_transaction is invite_transaction
    assert event.cancel.method == "CANCEL"
    [ok] = [d for at, d in trace.sent if at == 1.0]
    response = parse_response(ok.data)
    assert (response.status_code, str(response.cseq)) == (200, "1 CANCEL")
    assert ok.destination == PBX
    assert trace.receive(cancel, at=1.5) == []  # a CANCEL copy: 200 again, no second event
    assert trace.sent_times(starts_with(b"SIP/2.0 200 ")) == [1.0, 1.5]
    _answer(trace, invite_transaction, 487, 2.0)
    trace.receive(request("ACK", to_tag="sg-tag"), at=2.1)
    trace.run_until(100.0)
    assert trace.sent_times(status_is(487)) == [2.0]
    assert events_of(trace) == [(0.0, RequestReceived), (1.0, CancelReceived)]
    assert trace.endpoint.transaction_count == 0


@pytest.mark.parametrize("matched", [True, False])
def test_cancel_responses_carry_a_to_tag(matched: bool) -> None:
    """The 200 or 481 for a CANCEL is a final response, so it has a To tag (§8.2.6.2)."""
    trace = Trace(new_endpoint())
    if matched:
        server(trace, request())
    trace.receive(request("CANCEL"), at=1.0)
    [datagram] = [d for at, d in trace.sent if at == 1.0]
    assert parse_response(datagram.data).to_tag


@pytest.mark.parametrize(
    "cancel",
    [
        pytest.param(request("CANCEL"), id="no-invite"),
        pytest.param(request("CANCEL", branch="z9hG4bKunrelated"), id="other-branch"),
        pytest.param(request("CANCEL", sent_by="192.0.2.99:5070"), id="other-sent-by"),
    ],
)
def test_cancel_for_unknown_invite_is_481(cancel: bytes) -> None:
    """A CANCEL that matches no INVITE transaction gets 481 and no event (§9.2)."""
    trace = Trace(new_endpoint())
    if b"unrelated" in cancel or b"192.0.2.99" in cancel:
        server(trace, request())
    events = trace.receive(cancel, at=1.0)
    assert events == []
    [datagram] = [d for at, d in trace.sent if at == 1.0]
    response = parse_response(datagram.data)
    assert (response.status_code, response.reason) == (481, "Call/Transaction Does Not Exist")
    assert str(response.cseq) == "1 CANCEL"


def test_cancel_after_the_final_response_has_no_effect() -> None:
    """A CANCEL after the INVITE was answered gets 200 and no event (§9.2)."""
    trace = Trace(new_endpoint())
    invite_transaction = server(trace, request())
    _answer(trace, invite_transaction, 200, 1.0)
    events = trace.receive(request("CANCEL"), at=1.2)
    assert events == []
    [ok] = [d for at, d in trace.sent if at == 1.2 and b"CANCEL" in d.data]
    assert parse_response(ok.data).status_code == 200


# -- timers and bookkeeping across transactions ------------------------------------------------------------------


def test_get_timer_is_the_earliest_deadline_across_transactions() -> None:
    """With client and server transactions interleaved, get_timer() is always the earliest one."""
    trace = Trace(new_endpoint())
    client(trace)  # A at 0.5, B at 32
    trace.run_until(0.2)
    options = client(trace, "OPTIONS")  # E at 0.7, F at 32.2
    assert trace.endpoint.get_timer() == 0.5
    incoming = server(trace, request(), at=0.3)
    _answer(trace, incoming, 486, 0.4)  # G at 0.9, H at 32.4
    assert trace.endpoint.get_timer() == 0.5
    trace.run_until(0.5)
    assert trace.endpoint.get_timer() == 0.7
    trace.receive(response_to(first_sent(trace, is_options), 200), TRUNK, at=0.6)
    assert trace.endpoint.get_timer() == 0.9  # Timer E stopped; K at 5.6
    trace.run_until(200.0)
    assert trace.endpoint.transaction_count == 0
    assert trace.endpoint.get_timer() is None
    assert TransactionTimedOut(options) not in [event for _, event in trace.events]


def test_transactions_are_forgotten_after_a_whole_call() -> None:
    """After INVITE/200/ACK and BYE/200 in both directions, no transaction is left."""
    trace = Trace(new_endpoint())
    incoming = server(trace, request())
    _answer(trace, incoming, 200, 0.5)
    trace.receive(request("ACK", branch="z9hG4bKack", to_tag="sg-tag"), at=0.6)
    outgoing = client(trace)
    trace.receive(response_to(first_sent(trace, is_invite), 200), TRUNK, at=1.0)
    bye_in = server(trace, request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="sg-tag"), at=5.0)
    _answer(trace, bye_in, 200, 5.1)
    trace.run_until(5.2)
    client(trace, "BYE", cseq=2)
    trace.receive(response_to(first_sent(trace, starts_with(b"BYE ")), 200), TRUNK, at=5.3)
    assert trace.endpoint.transaction_count > 0
    trace.run_until(100.0)
    assert trace.endpoint.transaction_count == 0
    assert trace.endpoint.get_timer() is None
    assert not any(
        isinstance(event, TransactionTimedOut | AckTimedOut) for _, event in trace.events
    )
    assert outgoing.is_terminated


def test_datagrams_to_send_empties_the_outbox() -> None:
    """datagrams_to_send hands each datagram over once."""
    endpoint = new_endpoint()
    endpoint.send_request(outgoing_request(), TRUNK, 0.0)
    first = endpoint.datagrams_to_send()
    assert [type(datagram) for datagram in first] == [Datagram]
    assert endpoint.datagrams_to_send() == []


# -- the tables themselves -----------------------------------------------------------------------------------------

TABLES = {
    "client INVITE": CLIENT_INVITE,
    "client non-INVITE": CLIENT_NON_INVITE,
    "server INVITE": SERVER_INVITE,
    "server non-INVITE": SERVER_NON_INVITE,
}


@pytest.mark.parametrize("name", TABLES)
def test_terminated_is_final(name: str) -> None:
    """No row leads out of Terminated: a finished transaction stays finished."""
    assert not any(state is State.TERMINATED for state, _ in TABLES[name])


@pytest.mark.parametrize(
    ("name", "timers"),
    [
        ("client INVITE", {Input.TIMER_A, Input.TIMER_B, Input.TIMER_D, Input.TIMER_M}),
        ("client non-INVITE", {Input.TIMER_E, Input.TIMER_F, Input.TIMER_K}),
        ("server INVITE", {Input.TIMER_G, Input.TIMER_H, Input.TIMER_I, Input.TIMER_L}),
        ("server non-INVITE", {Input.TIMER_J}),
    ],
)
def test_each_table_uses_its_own_timers(name: str, timers: set[Input]) -> None:
    """Each transaction kind reacts to exactly the RFC 3261 timers of its figure."""
    used = {event for _, event in TABLES[name] if event.name.startswith("TIMER_")}
    assert used == timers


@pytest.mark.parametrize(
    ("name", "state", "event", "next_state", "actions"),
    [
        ("client INVITE", State.CALLING, Input.TIMER_B, State.TERMINATED, {Action.REPORT_TIMEOUT}),
        ("client INVITE", State.COMPLETED, Input.FAILURE, State.COMPLETED, {Action.SEND_ACK}),
        ("client INVITE", State.PROCEEDING, Input.SUCCESS, State.ACCEPTED, {Action.PASS_TO_TU}),
        ("client non-INVITE", State.PROCEEDING, Input.TIMER_F, State.TERMINATED, None),
        ("server INVITE", State.COMPLETED, Input.ACK, State.CONFIRMED, None),
        ("server INVITE", State.COMPLETED, Input.TIMER_H, State.TERMINATED, None),
        ("server INVITE", State.CONFIRMED, Input.TIMER_I, State.TERMINATED, None),
        ("server non-INVITE", State.COMPLETED, Input.REQUEST_AGAIN, State.COMPLETED, None),
        ("server non-INVITE", State.COMPLETED, Input.TIMER_J, State.TERMINATED, None),
    ],
)
def test_rfc_rows(
    name: str, state: State, event: Input, next_state: State, actions: set[Action] | None
) -> None:
    """Key rows of RFC 3261 Figures 5–8 (with RFC 6026's Accepted) are in the tables."""
    row_state, row_actions = TABLES[name][(state, event)]
    assert row_state is next_state
    if actions is not None:
        assert actions <= set(row_actions)


@pytest.mark.parametrize(
    ("name", "state", "event"),
    [
        ("client INVITE", State.COMPLETED, Input.PROVISIONAL),
        ("client INVITE", State.COMPLETED, Input.SUCCESS),
        ("client non-INVITE", State.COMPLETED, Input.SUCCESS),
        ("server INVITE", State.CONFIRMED, Input.ACK),
        ("server INVITE", State.CONFIRMED, Input.REQUEST_AGAIN),
        ("server non-INVITE", State.TRYING, Input.REQUEST_AGAIN),
    ],
)
def test_late_inputs_are_absorbed(name: str, state: State, event: Input) -> None:
    """Late copies that RFC 3261 says to absorb have no row, so nothing happens."""
    assert (state, event) not in TABLES[name]
