"""RFC 3261 §17 transactions, driven by tables on a virtual clock.

Theory of operation
-------------------
A transaction is a small state machine. Everything that can happen to one
is an *input*: a response class arriving (``1xx``, ``2xx``, ``final``), the
request being retransmitted, the transaction user (TU) sending a response,
or one of the RFC timers firing. The tables (:mod:`sipguard.sip.transaction_table`)
map ``(state, input)`` to ``(next state, actions)``. Actions are the only side
effects: send or resend bytes, pass a message to the TU, start or stop a timer. An input with no row
for the current state is absorbed (retransmissions that arrive late, say);
an input that the TU causes in a state that does not allow it is a
:class:`LocalProtocolError`.

Nothing here reads a clock or touches a socket: ``now`` comes in with every
input, datagrams go out through the ``send`` callable the endpoint supplies,
and each transaction reports the earliest deadline of its running timers in
:attr:`Transaction.next_deadline`.

INVITE transactions follow RFC 6026: a 2xx moves them to ``ACCEPTED``
instead of terminating them, so that retransmitted 2xx responses (client
side) and retransmitted INVITEs (server side) are still matched; the server
transaction retransmits its 2xx until the ACK arrives (RFC 3261 §13.3.1.4).
"""

from __future__ import annotations

from collections.abc import Callable

from sipguard.sip.errors import LocalProtocolError
from sipguard.sip.headers import Headers
from sipguard.sip.message import Request, Response
from sipguard.sip.transaction_table import (
    CLIENT_INVITE,
    CLIENT_NON_INVITE,
    RETRANSMIT_TIMERS,
    SERVER_INVITE,
    SERVER_NON_INVITE,
    ZERO_WHEN_RELIABLE,
    A,
    Action,
    I,
    Input,
    S,
    Table,
    TimerSettings,
    response_input,
)
from sipguard.sip.transport import Address, Local
from sipguard.sip.uri import Uri

SendFunction = Callable[[bytes, Address, Local], None]


# Stands in for a request a transaction no longer needs, so that a call that
# lasts an hour does not keep its INVITE's text and parsed headers in memory.
RELEASED_REQUEST = Request("RELEASED", Uri(scheme="sip", host="released.invalid"), Headers())


class Transaction:
    """What client and server transactions share: state, timers and sending.

    ``call_id`` and ``cseq_number`` outlive the request itself, which is
    released once the transaction can no longer need it.
    """

    __slots__ = ("_interval", "_send", "_timers", "call_id", "cseq_number", "is_invite", "key",
                 "local", "method", "reliable", "request", "scheduled", "settings", "state",
                 "table")

    table: Table
    is_client: bool

    def __init__(
        self,
        key: tuple[str, ...],
        request: Request,
        local: Local,
        settings: TimerSettings,
        send: SendFunction,
    ) -> None:
        self.key = key
        self.request = request
        self.method = request.method
        self.call_id = request.call_id
        self.cseq_number = request.cseq.number
        self.local = local
        self.reliable = local.reliable
        self.settings = settings
        self.state = S.TERMINATED
        self._send = send
        self._timers: dict[Input, float] = {}
        self._interval = settings.t1
        self.is_invite = request.method == "INVITE"
        # The deadline of this transaction's entry in the endpoint's timer heap.
        self.scheduled: float | None = None

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline among running timers, or None."""
        return min(self._timers.values()) if self._timers else None

    @property
    def is_terminated(self) -> bool:
        """Whether the transaction has ended."""
        return self.state is S.TERMINATED

    def fire_timers(self, now: float) -> list[tuple[Action, Response | None]]:
        """Fire every timer due at ``now``; return what the TU must hear of."""
        due = sorted(
            (deadline, timer) for timer, deadline in self._timers.items() if deadline <= now
        )
        reports: list[tuple[Action, Response | None]] = []
        for _, timer in due:
            if timer in self._timers and not self.is_terminated:
                del self._timers[timer]
                reports.extend(self._apply(timer, None, now))
        return reports

    def _apply(
        self, event: Input, response: Response | None, now: float
    ) -> list[tuple[Action, Response | None]]:
        row = self.table.get((self.state, event))
        if row is None:
            return []  # absorbed: no row means nothing to do in this state
        self.state, actions = row
        reports: list[tuple[Action, Response | None]] = []
        for action in actions:
            report = self._perform(action, event, response, now)
            if report:
                reports.append((action, response))
        if self.state is S.TERMINATED:
            self._timers.clear()
        return reports

    def _perform(
        self, action: Action, event: Input, response: Response | None, now: float
    ) -> bool:
        """Carry out one action; return True when the TU must be told."""
        raise NotImplementedError

    def _start(self, timer: Input, delay: float, now: float) -> None:
        if self.reliable:
            if timer is I.TIMER_A or timer is I.TIMER_E or (
                    timer is I.TIMER_G and self.state is S.COMPLETED):
                # No retransmissions on TCP/TLS; a 2xx is still resent until its ACK
                # (Timer G in Accepted), since a hop further on may be UDP (§13.3.1.4).
                return
            if timer in ZERO_WHEN_RELIABLE:
                delay = 0.0
        self._timers[timer] = now + delay

    def _stop_retransmitting(self) -> None:
        for timer in RETRANSMIT_TIMERS:
            self._timers.pop(timer, None)


class ClientTransaction(Transaction):
    """A request we sent and the responses it gets (RFC 3261 §17.1)."""

    __slots__ = ("_ack_bytes", "destination", "final_status", "has_provisional", "request_bytes")
    is_client = True

    def __init__(
        self,
        key: tuple[str, ...],
        request: Request,
        destination: Address,
        local: Local,
        settings: TimerSettings,
        send: SendFunction,
    ) -> None:
        super().__init__(key, request, local, settings, send)
        self.destination = destination
        self.table = CLIENT_INVITE if self.is_invite else CLIENT_NON_INVITE
        self.request_bytes = request.to_bytes()
        self.has_provisional = False
        self.final_status: int | None = None
        self._ack_bytes: bytes | None = None

    def start(self, now: float) -> None:
        """Send the request and start Timers A/B or E/F."""
        self._send(self.request_bytes, self.destination, self.local)
        if self.is_invite:
            self.state = S.CALLING
            self._start(I.TIMER_A, self.settings.t1, now)
            self._start(I.TIMER_B, self.settings.timeout, now)
        else:
            self.state = S.TRYING
            self._start(I.TIMER_E, self.settings.t1, now)
            self._start(I.TIMER_F, self.settings.timeout, now)

    def cancelled(self, now: float) -> None:
        """A CANCEL went out for this INVITE: give the far end 64*T1 to answer it.

        RFC 3261 §9.1: without a final response by then, the transaction is
        considered cancelled and destroyed (reported as a timeout).
        """
        if self.state is S.PROCEEDING:
            self._start(I.TIMER_B, self.settings.timeout, now)

    def transport_failed(self) -> None:
        """The connection the request went on failed: the transaction ends (§17.1.4)."""
        self.state = S.TERMINATED
        self._timers.clear()
        self.request_bytes = b""

    def receive_response(self, response: Response, now: float) -> bool:
        """Feed a matching response; return True when the TU should see it."""
        if response.status_code < 200:
            self.has_provisional = True
        elif self.final_status is None:
            self.final_status = response.status_code
        reports = self._apply(response_input(response.status_code), response, now)
        if self.state not in (S.CALLING, S.TRYING, S.PROCEEDING):
            # No more retransmissions of the request, and the ACK (if any) is built.
            self.request_bytes = b""
            self.request = RELEASED_REQUEST
        return any(action is A.PASS_TO_TU for action, _ in reports)

    def _perform(
        self, action: Action, event: Input, response: Response | None, now: float
    ) -> bool:
        settings = self.settings
        if action is A.PASS_TO_TU:
            if event is I.PROVISIONAL and self.is_invite:
                # §17.1.1.2: Timer B only guards the Calling state; the TU's
                # own timer covers a call that rings for ever.
                self._timers.pop(I.TIMER_B, None)
            elif event is I.PROVISIONAL:
                self._interval = settings.t2  # §17.1.2.2: in Proceeding, every T2
            return True
        if action is A.REPORT_TIMEOUT:
            return True
        if action is A.RESEND_REQUEST:
            self._send(self.request_bytes, self.destination, self.local)
        elif action is A.BACK_OFF:
            # Timer A doubles without bound (§17.1.1.2); Timer E is capped at T2 (§17.1.2.2).
            self._interval = self._interval * 2 if self.is_invite else min(
                self._interval * 2, settings.t2
            )
            self._start(event, self._interval, now)
        elif action is A.STOP_RETRANSMITTING:
            self._stop_retransmitting()
            if not self.is_invite:
                self._timers.pop(I.TIMER_F, None)
            else:
                self._timers.pop(I.TIMER_B, None)
        elif action is A.SEND_ACK:
            if self._ack_bytes is None and response is not None:
                self._ack_bytes = build_ack_for_failure(self.request, response).to_bytes()
            if self._ack_bytes is not None:
                self._send(self._ack_bytes, self.destination, self.local)
        elif action is A.START_TIMER_D:
            self._timers.pop(I.TIMER_B, None)
            self._start(I.TIMER_D, settings.timer_d, now)
        elif action is A.START_TIMER_K:
            self._start(I.TIMER_K, settings.t4, now)
        elif action is A.START_TIMER_M:
            self._timers.pop(I.TIMER_B, None)
            self._start(I.TIMER_M, settings.timeout, now)
        return False


class ServerTransaction(Transaction):
    """A request we received and the responses we give (RFC 3261 §17.2)."""

    __slots__ = ("_last_response_bytes", "accepted_key", "acknowledged", "final_status",
                 "last_status", "no_ack_reported", "response_destination", "source")
    is_client = False

    def __init__(
        self,
        key: tuple[str, ...],
        request: Request,
        source: Address,
        response_destination: Address,
        local: Local,
        settings: TimerSettings,
        send: SendFunction,
    ) -> None:
        super().__init__(key, request, local, settings, send)
        self.source = source
        self.response_destination = response_destination
        self.table = SERVER_INVITE if self.is_invite else SERVER_NON_INVITE
        self.state = S.PROCEEDING if self.is_invite else S.TRYING
        self.last_status: int | None = None
        self.final_status: int | None = None
        self._last_response_bytes: bytes | None = None
        self.acknowledged = False
        self.no_ack_reported = False
        # (Call-ID, CSeq number, To tag) under which the endpoint matches the
        # ACK for a 2xx, which arrives with a branch of its own.
        self.accepted_key: tuple[str, int, str] | None = None

    def respond(self, response: Response, now: float) -> None:
        """Send a response from the TU."""
        if self.final_status is not None:
            raise LocalProtocolError(
                f"{self.method} transaction already answered {self.final_status}"
            )
        row = self.table.get((self.state, response_input(response.status_code)))
        if row is None:
            raise LocalProtocolError(f"cannot send {response.status_code} in {self.state.value}")
        self.last_status = response.status_code
        if response.status_code >= 200:
            self.final_status = response.status_code
            self.request = RELEASED_REQUEST  # no more responses will be built from it
        self._last_response_bytes = response.to_bytes()
        self._apply(response_input(response.status_code), response, now)

    def receive_retransmission(self, now: float) -> None:
        """The request arrived again: resend the last response if the table says so."""
        self._apply(I.REQUEST_AGAIN, None, now)

    def receive_ack(self, now: float) -> bool:
        """An ACK matched this INVITE transaction; return True the first time."""
        first = not self.acknowledged
        self.acknowledged = True
        self._apply(I.ACK, None, now)
        self._last_response_bytes = None  # nothing is resent after the ACK
        return first

    def _perform(
        self, action: Action, event: Input, response: Response | None, now: float
    ) -> bool:
        settings = self.settings
        if action is A.REPORT_NO_ACK:
            return True
        if action is A.SEND_RESPONSE or action is A.RESEND_RESPONSE:
            if self._last_response_bytes is not None:
                self._send(self._last_response_bytes, self.response_destination, self.local)
        elif action is A.BACK_OFF:
            self._interval = min(self._interval * 2, settings.t2)  # §17.2.1: capped at T2
            self._start(event, self._interval, now)
        elif action is A.STOP_RETRANSMITTING:
            self._stop_retransmitting()
            self._timers.pop(I.TIMER_H, None)
        elif action is A.START_TIMER_G_H:
            self._interval = settings.t1
            self._start(I.TIMER_G, settings.t1, now)
            self._start(I.TIMER_H, settings.timeout, now)
        elif action is A.START_TIMER_I:
            self._start(I.TIMER_I, settings.t4, now)
        elif action is A.START_TIMER_J:
            self._start(I.TIMER_J, settings.timeout, now)
        elif action is A.START_TIMER_L:
            # RFC 3261 §13.3.1.4: the 2xx is retransmitted (T1 doubling, capped at
            # T2) until the ACK comes; RFC 6026 Timer L bounds the whole wait.
            self._interval = settings.t1
            self._start(I.TIMER_G, settings.t1, now)
            self._start(I.TIMER_L, settings.timeout, now)
        return False

    def fire_timers(self, now: float) -> list[tuple[Action, Response | None]]:
        """Fire due timers; a 2xx never acknowledged is reported when Timer L fires."""
        reports = super().fire_timers(now)
        if (
            self.is_terminated
            and self.is_invite
            and not self.acknowledged
            and not self.no_ack_reported
            and self.final_status is not None
            and self.final_status < 300
        ):
            self.no_ack_reported = True
            reports.append((A.REPORT_NO_ACK, None))
        return reports


def hop_by_hop_request(invite: Request, method: str, to_value: str) -> Request:
    """An ACK or CANCEL for ``invite`` in the same transaction (§17.1.1.3, §9.1).

    Both keep the INVITE's Request-URI, top Via (so its branch), Route set,
    From, Call-ID and CSeq number; they differ only in the method and To.
    """
    headers = Headers()
    headers.add("Via", invite.headers.values("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", to_value)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} {method}")
    return Request(method, invite.uri, headers)


def build_ack_for_failure(request: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx–6xx (RFC 3261 §17.1.1.3).

    Its To is the response's, with the tag the far end chose.
    """
    return hop_by_hop_request(request, "ACK", response.headers.get("To") or "")
