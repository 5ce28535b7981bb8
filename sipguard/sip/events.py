"""What the endpoint hands the transaction user: datagrams to send and events (a request
or response that arrived, a transaction that timed out, a CANCEL, an ACK that never
came, a message thrown away or answered with an error)."""

from __future__ import annotations

from dataclasses import dataclass

from sipguard.sip.message import Request, Response
from sipguard.sip.transaction import ClientTransaction, ServerTransaction
from sipguard.sip.transport import Address, Local


@dataclass(frozen=True, slots=True)
class Datagram:
    """Bytes to send from the socket bound to ``local`` to ``destination``.

    On TCP and TLS, ``destination`` is the remote address of the connection
    to send on; the service opens one when there is none.
    """

    data: bytes
    destination: Address
    local: Local


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. ``transaction`` is None for ACK (no transaction)."""

    request: Request
    transaction: ServerTransaction | None
    source: Address


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response to a request the TU sent."""

    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """No final response came before Timer B or F (RFC 3261 §17.1.1.2, §17.1.2.2), or,
    with ``transport_error``, the connection it went on failed (§8.1.3.1)."""

    transaction: ClientTransaction
    transport_error: str | None = None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched an INVITE still waiting for its final response (§9.2).

    The endpoint has already answered the CANCEL with 200; the TU should
    answer the INVITE with 487.
    """

    invite_transaction: ServerTransaction
    cancel: Request


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """A final response we sent to an INVITE was never acknowledged."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class MessageDiscarded:
    """A datagram that was dropped, or answered with an error, and why."""

    reason: str
    source: Address
    status_code: int | None = None


Event = (
    RequestReceived
    | ResponseReceived
    | TransactionTimedOut
    | CancelReceived
    | AckTimedOut
    | MessageDiscarded
)
