"""Sans-IO SIP (RFC 3261 and friends): messages parsed lazily from bytes and written back,
URIs, headers, transactions with their timers (§17), dialogs (§12), digest
authentication (RFC 7616/8760), SDP origin lines, stream framing, and the endpoint that
turns datagrams into events.

Owns: the protocol. Fed bytes, an address and ``now``; hands back events, datagrams to
send and the next timer deadline. May import: the standard library only (no sockets,
clock, asyncio or logging), nothing of sipguard's above it.
"""

from sipguard.sip.dialog import Dialog, uri_address, without_tag
from sipguard.sip.digest import (
    ALGORITHMS,
    Challenge,
    NonceFactory,
    ReplayGuard,
    authorization,
    best_challenge,
    challenge,
    parse_credentials,
    verify,
)
from sipguard.sip.endpoint import Endpoint
from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.events import (
    AckTimedOut,
    CancelReceived,
    Datagram,
    Event,
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from sipguard.sip.framing import FrameKind, StreamFramer
from sipguard.sip.grammar import quote
from sipguard.sip.headers import Headers, NameAddress, parse_name_address
from sipguard.sip.message import DEFAULT_MAX_MESSAGE_SIZE, Message, Request, Response, parse_message
from sipguard.sip.sdp import SdpOrigin, origin_of, with_origin
from sipguard.sip.transaction import ClientTransaction, ServerTransaction
from sipguard.sip.transaction_table import TimerSettings
from sipguard.sip.transport import (
    TLS,
    UDP,
    Address,
    Hop,
    Local,
    as_local,
    transport_parameter,
    uri_hop,
)
from sipguard.sip.uri import Uri, parse_uri

__all__ = [
    "ALGORITHMS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "TLS",
    "UDP",
    "AckTimedOut",
    "Address",
    "CancelReceived",
    "Challenge",
    "ClientTransaction",
    "Datagram",
    "Dialog",
    "Endpoint",
    "Event",
    "FrameKind",
    "Headers",
    "Hop",
    "Local",
    "Message",
    "MessageDiscarded",
    "NameAddress",
    "NonceFactory",
    "RemoteProtocolError",
    "ReplayGuard",
    "Request",
    "RequestReceived",
    "Response",
    "ResponseReceived",
    "SdpOrigin",
    "ServerTransaction",
    "StreamFramer",
    "TimerSettings",
    "TransactionTimedOut",
    "Uri",
    "as_local",
    "authorization",
    "best_challenge",
    "challenge",
    "origin_of",
    "parse_credentials",
    "parse_message",
    "parse_name_address",
    "parse_uri",
    "quote",
    "transport_parameter",
    "uri_address",
    "uri_hop",
    "verify",
    "with_origin",
    "without_tag",
]
