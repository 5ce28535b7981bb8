"""RFC 3261 §17's transaction state machines as tables: the timers' settings, the states,
the inputs (responses by class, retransmissions, the TU's answers, timers) and the actions,
and for each of the four kinds of transaction the map ``(state, input) -> (next state,
actions)``. :mod:`sipguard.sip.transaction` runs them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """RFC 3261 timer values in seconds (Table 4).

    They are the values for UDP; on a reliable transport a transaction does
    not retransmit and Timers D, I, J and K are zero (see Transaction._start).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L and M."""
        return 64 * self.t1


class State(enum.Enum):
    """Transaction states of RFC 3261 §17 and RFC 6026."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Input(enum.Enum):
    """What can happen to a transaction."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST_AGAIN = "request retransmitted"
    ACK = "ACK"
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"


class Action(enum.Enum):
    """Side effects named in the tables."""

    PASS_TO_TU = "pass the response to the TU"
    SEND_ACK = "send ACK for a non-2xx final response"
    RESEND_REQUEST = "retransmit the request"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "resend the last response"
    REPORT_TIMEOUT = "tell the TU that no final response came"
    REPORT_NO_ACK = "tell the TU that no ACK came"
    STOP_RETRANSMITTING = "stop retransmission timers"
    START_TIMER_D = "start Timer D"
    START_TIMER_K = "start Timer K"
    START_TIMER_J = "start Timer J"
    START_TIMER_G_H = "start Timers G and H"
    START_TIMER_I = "start Timer I"
    START_TIMER_L = "start Timer L (and 2xx retransmission on G)"
    START_TIMER_M = "start Timer M"
    BACK_OFF = "double the retransmission interval"


S = State
I = Input  # noqa: E741 - a one-letter alias keeps the tables readable
A = Action

Table = dict[tuple[State, Input], tuple[State, tuple[Action, ...]]]

# RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2: on a reliable transport these
# timers wait for nothing (the transport delivers or reports a failure).
ZERO_WHEN_RELIABLE = frozenset({Input.TIMER_D, Input.TIMER_I, Input.TIMER_J, Input.TIMER_K})

# RFC 3261 §17.1.1 (Figure 5) with RFC 6026's Accepted state.
CLIENT_INVITE: Table = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (A.RESEND_REQUEST, A.BACK_OFF)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.CALLING, I.PROVISIONAL): (S.PROCEEDING, (A.STOP_RETRANSMITTING, A.PASS_TO_TU)),
    (S.CALLING, I.SUCCESS): (S.ACCEPTED, (A.STOP_RETRANSMITTING, A.PASS_TO_TU, A.START_TIMER_M)),
    (S.CALLING, I.FAILURE): (
        S.COMPLETED,
        (A.STOP_RETRANSMITTING, A.SEND_ACK, A.PASS_TO_TU, A.START_TIMER_D),
    ),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_TO_TU,)),
    # Only after a CANCEL (RFC 3261 §9.1): no final response 64*T1 later ends it.
    (S.PROCEEDING, I.TIMER_B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.PASS_TO_TU, A.START_TIMER_M)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_ACK, A.PASS_TO_TU, A.START_TIMER_D)),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, (A.SEND_ACK,)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, ()),
    (S.ACCEPTED, I.SUCCESS): (S.ACCEPTED, (A.PASS_TO_TU,)),
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, ()),
}

# RFC 3261 §17.1.2 (Figure 6).
CLIENT_NON_INVITE: Table = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (A.RESEND_REQUEST, A.BACK_OFF)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_TO_TU,)),
    (S.TRYING, I.SUCCESS): (S.COMPLETED, (A.STOP_RETRANSMITTING, A.PASS_TO_TU, A.START_TIMER_K)),
    (S.TRYING, I.FAILURE): (S.COMPLETED, (A.STOP_RETRANSMITTING, A.PASS_TO_TU, A.START_TIMER_K)),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (A.RESEND_REQUEST, A.BACK_OFF)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS_TO_TU,)),
    (S.PROCEEDING, I.SUCCESS): (
        S.COMPLETED,
        (A.STOP_RETRANSMITTING, A.PASS_TO_TU, A.START_TIMER_K),
    ),
    (S.PROCEEDING, I.FAILURE): (
        S.COMPLETED,
        (A.STOP_RETRANSMITTING, A.PASS_TO_TU, A.START_TIMER_K),
    ),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, ()),
}

# RFC 3261 §17.2.1 (Figure 7) with RFC 6026's Accepted state. Response inputs
# here are the TU's responses.
SERVER_INVITE: Table = {
    (S.PROCEEDING, I.REQUEST_AGAIN): (S.PROCEEDING, (A.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.SEND_RESPONSE, A.START_TIMER_L)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_G_H)),
    (S.COMPLETED, I.REQUEST_AGAIN): (S.COMPLETED, (A.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (A.RESEND_RESPONSE, A.BACK_OFF)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (A.REPORT_NO_ACK,)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, (A.STOP_RETRANSMITTING, A.START_TIMER_I)),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, ()),
    (S.ACCEPTED, I.TIMER_G): (S.ACCEPTED, (A.RESEND_RESPONSE, A.BACK_OFF)),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (A.STOP_RETRANSMITTING,)),
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, ()),
}

# RFC 3261 §17.2.2 (Figure 8).
SERVER_NON_INVITE: Table = {
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.TRYING, I.SUCCESS): (S.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (S.TRYING, I.FAILURE): (S.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (S.PROCEEDING, I.REQUEST_AGAIN): (S.PROCEEDING, (A.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.SUCCESS): (S.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.SEND_RESPONSE, A.START_TIMER_J)),
    (S.COMPLETED, I.REQUEST_AGAIN): (S.COMPLETED, (A.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, ()),
}

# Which timers retransmit (and are stopped by STOP_RETRANSMITTING).
RETRANSMIT_TIMERS = (I.TIMER_A, I.TIMER_E, I.TIMER_G)


def response_input(status_code: int) -> Input:
    """The table input for a response of this status code."""
    if status_code < 200:
        return I.PROVISIONAL
    if status_code < 300:
        return I.SUCCESS
    return I.FAILURE
