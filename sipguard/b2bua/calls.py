"""The records the B2BUA controller keeps per call, and the commands it emits.

A :class:`Call` pairs the PBX leg (we are its UAS) with the trunk leg (we
are its UAC). Commands are what the controller asks of the service:
screen an attempt, write a log line. They are plain frozen dataclasses so
that controller traces can be compared in tests.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from sipguard.policy import CallAttempt, Decision
from sipguard.sip import (
    Address,
    ClientTransaction,
    Dialog,
    Headers,
    Hop,
    Local,
    Message,
    NameAddress,
    RemoteProtocolError,
    Request,
    Response,
    SdpOrigin,
    ServerTransaction,
    Uri,
    as_local,
    parse_name_address,
    parse_uri,
    transport_parameter,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Peer:
    """A PBX allowed to send calls, known by its source networks (and, when it has
    ``auth``, by digest authentication on every INVITE)."""

    name: str
    networks: tuple[Network, ...]
    auth: PeerAuth | None = None

    def matches(self, host: str) -> bool:
        """Whether a source address belongs to this peer."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class PeerAuth:
    """A peer's (or a trunk's) digest credentials: the password, or instead of it the
    HA1 hashes ``H(username:realm:password)`` by realm and algorithm (RFC 7616 §3.4.2),
    so that the configuration need not hold the password itself."""

    username: str
    password: str | None = field(default=None, repr=False)
    # Accept a digest-uri without the user part (some UAs, SIPp among them, send the
    # registrar-style URI); by default it must name the Request-URI, user included.
    relaxed_uri: bool = False
    ha1: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)  # realm, alg, hex

    def ha1_for(self, realm: str, algorithm: str) -> str | None:
        """The stored HA1 for ``realm`` and ``algorithm`` (None when there is none)."""
        return next((digest for stored_realm, stored_algorithm, digest in self.ha1
                     if stored_realm == realm and stored_algorithm == algorithm), None)

    def supports(self, realm: str, algorithm: str) -> bool:
        """Whether these credentials can answer (or check) ``realm`` with ``algorithm``."""
        return self.password is not None or self.ha1_for(realm, algorithm) is not None

    def secret(self, realm: str, algorithm: str) -> dict[str, str]:
        """``{"password": ...}`` or ``{"ha1": ...}`` for the digest functions ({} when
        neither can answer this realm and algorithm)."""
        if self.password is not None:
            return {"password": self.password}
        ha1 = self.ha1_for(realm, algorithm)
        return {"ha1": ha1} if ha1 is not None else {}


@dataclass(frozen=True, slots=True)
class Trunk:
    """Where allowed calls go."""

    name: str
    uri: Uri
    address: Hop  # host, port and the transport the URI names
    auth: PeerAuth | None = None  # credentials for the carrier's 401/407
    register: bool = False  # REGISTER with the carrier (with auth), refreshed before expiry
    tls_name: str | None = None  # the name the carrier's TLS certificate is for (SNI too)


class Side(enum.Enum):
    """Which leg of a call."""

    PBX = "pbx"
    TRUNK = "trunk"
    IVR = "ivr"  # the PIN IVR, while a challenged call collects its PIN

    @property
    def other(self) -> Side:
        """The opposite leg of a PBX-trunk call."""
        return Side.TRUNK if self is Side.PBX else Side.PBX


class CallState(enum.Enum):
    """Where a call is in its life."""

    SCREENING = "screening"
    CHALLENGE = "challenge"  # the PBX leg is with the IVR, which collects the PIN
    CALLING = "calling"
    EARLY = "early"
    CONFIRMED = "confirmed"
    ENDING = "ending"


class RelayKind(enum.Enum):
    """Why the controller sent a client request."""

    INITIAL_INVITE = "initial INVITE to the trunk"
    IN_DIALOG = "in-dialog request relayed from the other leg"
    BYE = "BYE ending a leg"
    CANCEL = "CANCEL of the trunk INVITE"
    IVR_INVITE = "INVITE to the PIN IVR"
    BRIDGE = "re-INVITE moving the PBX's media to the trunk"


@dataclass(slots=True)
class Call:
    """One call through the B2BUA."""

    key: int
    pbx_invite: ServerTransaction
    pbx: Dialog
    attempt: CallAttempt
    peer: Peer
    started_at: float = 0.0  # when the INVITE arrived (the loop's clock)
    state: CallState = CallState.SCREENING
    trunk: Dialog | None = None
    trunk_invite: ClientTransaction | None = None
    trunk_name: str = ""
    trunk_offer: Body | None = None  # the SDP the trunk leg offers, when not the PBX's
    trunk_auth_tried: bool = False  # the trunk's 401/407 was answered with credentials
    # The verdict only: the decision's trace is logged once, not kept for the call's life.
    verdict: str | None = None
    cancelled: bool = False
    trunk_ack: bytes | None = None
    trunk_answered: bool = False
    ended_by: str | None = None
    # When the controller next looks at this call (ring timeout, longest call).
    deadline: float | None = None
    max_duration: float | None = None  # from a duration limit, once screened
    answered_at: float | None = None
    ended_at: float | None = None  # when the teardown began (BYE sent or received)
    # The PIN challenge: the IVR leg, where the PIN stands, and the re-INVITE that
    # moves the PBX's media from the IVR to the trunk once the trunk answers.
    ivr: Dialog | None = None
    ivr_invite: ClientTransaction | None = None
    ivr_ack: bytes | None = None
    ivr_answered: bool = False
    ivr_ended: bool = False  # BYE sent to or received from the IVR
    ivr_link: Address | None = None  # the IVR that holds the call (until its leg ends)
    ivrs_tried: set[Address] = field(default_factory=set)
    pin: PinPhase | None = None
    pin_outcome: str | None = None  # accepted, wrong, locked, no_pin, timeout… (logs, CDRs)
    pin_attempts: int = 0
    caller_sdp: Body | None = None  # the PBX's offer, for the trunk leg
    # The PBX's INVITE, kept past its final response (the IVR's 200) for the trunk leg.
    original_invite: Request | None = None
    bridge: Bridge | None = None
    # ACK relay for INVITEs inside the dialog: (side the ACK comes from, its CSeq)
    # -> the leg we relayed the INVITE to and the CSeq it has there.
    ack_map: dict[tuple[Side, int], tuple[Side, int]] = field(default_factory=dict)
    client_transactions: list[ClientTransaction] = field(default_factory=list)
    cancels_sent: set[Side] = field(default_factory=set)  # legs whose INVITE we CANCELled

    def begin_ending(self, now: float) -> None:
        """The call is being torn down: its billed length stops now, not at the BYE's answer."""
        self.state = CallState.ENDING
        if self.ended_at is None:
            self.ended_at = now

    def dialog(self, side: Side) -> Dialog | None:
        """The dialog of one leg."""
        if side is Side.PBX:
            return self.pbx
        return self.trunk if side is Side.TRUNK else self.ivr

    @property
    def bridged(self) -> bool:
        """Whether the PBX leg is paired with the trunk (always so for unchallenged calls)."""
        return self.ivr is None or (self.bridge is not None and self.bridge.done)

    def partner(self, side: Side) -> Side | None:
        """The leg that requests from ``side`` are relayed to, None when there is none yet."""
        if side is Side.PBX:
            return Side.TRUNK if self.bridged else Side.IVR
        if side is Side.IVR:
            return None if self.bridged else Side.PBX
        return Side.PBX if self.bridged else None

    def log_fields(self) -> dict[str, Any]:
        """The fields every call.* log line carries."""
        fields: dict[str, Any] = {
            "call_id": self.attempt.call_id,
            "account": self.attempt.account,
            "from": self.attempt.caller,
            "to": self.attempt.dialled,
        }
        if self.attempt.extension:
            fields["extension"] = self.attempt.extension
        if self.verdict is not None:
            fields["decision"] = self.verdict
        if self.pin_outcome is not None:
            fields["pin"] = self.pin_outcome
        return fields


class PinPhase(enum.Enum):
    """Where a challenged call's PIN stands."""

    COLLECTING = "collecting"  # the IVR is collecting digits
    CHECKING = "checking"  # the service is checking what was entered
    ACCEPTED = "accepted"  # the trunk leg is being placed
    REFUSED = "refused"  # the IVR plays the refusal, then hangs up


@dataclass(frozen=True, slots=True)
class Body:
    """A message body with its Content-Type."""

    content: bytes
    content_type: str


@dataclass(slots=True)
class Bridge:
    """Moving a challenged call's PBX media from the IVR to the trunk (re-INVITE)."""

    origin: SdpOrigin | None  # the o= line the PBX last received from us (RFC 3264 §8)
    sent: bytes = b""  # the trunk SDP the PBX last accepted
    wanted: bytes = b""  # the trunk SDP the PBX should have
    pending: bytes = b""  # the trunk SDP in the re-INVITE in flight
    reinvite: ClientTransaction | None = None  # the re-INVITE in flight
    acked: ClientTransaction | None = None  # the last re-INVITE whose 2xx we ACKed
    ack: bytes | None = None  # that ACK, resent for retransmitted 2xx
    retry_at: float | None = None  # when a re-INVITE refused with 491 is tried again
    retries: int = 0
    answered: bool = False  # the trunk answered
    done: bool = False  # the PBX talks to the trunk; the IVR leg is being hung up


@dataclass(slots=True)
class ClientContext:
    """What a client transaction the controller started is for."""

    call: Call
    kind: RelayKind
    side: Side
    server: ServerTransaction | None = None
    asking: Side = Side.PBX  # the leg the relayed request came from


@dataclass(frozen=True, slots=True)
class ScreenAttempt:
    """Command: screen this attempt, then call ``Controller.screened``."""

    call_key: int
    attempt: CallAttempt


@dataclass(frozen=True, slots=True)
class LogEvent:
    """Command: write a structured log line."""

    event: str
    level: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckPin:
    """Command: check a PIN, then call ``Controller.pin_checked``. Never logged."""

    call_key: int
    account: str
    extension: str | None
    digits: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class InstructIvr:
    """Command: tell the IVR what to do next on one of its legs."""

    call_id: str  # the SIP Call-ID of the IVR leg
    action: Literal["accept", "retry", "refuse"]  # as sipguard.pin.ivr.port.IvrAction


@dataclass(frozen=True, slots=True)
class SourceFailure:
    """Command: count a failure against a source address (towards a ban)."""

    host: str
    reason: str  # not a peer, malformed, denied destination, no such dialog…


Command = ScreenAttempt | LogEvent | CheckPin | InstructIvr | SourceFailure


# Headers copied from the PBX's INVITE to the trunk's (everything else is
# dropped: Via, Route, Record-Route, Contact and the dialog headers are ours).
REQUEST_HEADERS_PASSED = (
    "Accept",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Call-Info",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Type",
    "Diversion",
    "Event",
    "History-Info",
    "Min-SE",
    "P-Asserted-Identity",
    "Priority",
    "Privacy",
    "RAck",
    "Reason",
    "Refer-To",
    "Referred-By",
    "Require",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
)

# Headers copied from a response on one leg to the response on the other.
RESPONSE_HEADERS_PASSED = (
    "Accept",
    "Allow",
    "Allow-Events",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Type",
    "Min-SE",
    "P-Asserted-Identity",
    "Privacy",
    "RSeq",
    "Reason",
    "Require",
    "Retry-After",
    "Session-Expires",
    "Supported",
    "Unsupported",
    "Warning",
)


def screened_fields(call: Call, decision: Decision) -> dict[str, Any]:
    """The fields of the call.screened log line: the decision and its trace."""
    number = decision.number
    return {**call.log_fields(), "extension_source": call.attempt.extension_source,
            "action": decision.action, "would": decision.would,
            "rule": decision.rule, "category": decision.category,
            "reason": decision.reason, "rules": list(decision.rule_ids),
            "e164": number.e164 if number else None,
            "region": number.region if number else None,
            "number_type": number.number_type.value if number else None,
            "class": decision.number_class, "risk": decision.risk_score,
            "policy_version": decision.policy_version,
            "trace": [f"{entry.rule}: {entry.detail}" for entry in decision.trace]}


def user_of(address: NameAddress) -> str:
    """The unescaped user part of an address (empty when it has none)."""
    return address.uri.unescaped_user or ""


def dialled_of(uri: Uri) -> str:
    """What a Request-URI dials: its unescaped user part (``sip:+19005550100@host;
    user=phone`` -> ``+19005550100``, ``tel:+1-900-555-0100`` -> ``+1-900-555-0100``);
    the Request-URI is authoritative, never the To header (RFC 3261 §8.2.2.1). A URI
    without a user part screens as an empty, undialable number."""
    return uri.unescaped_user or ""


def dialled_from_text(text: str) -> str:
    """What ``sipguard explain`` is asked about, read as the SIP path reads it: a sip:,
    sips: or tel: URI by :func:`dialled_of`, anything else as dialled digits."""
    scheme = text.partition(":")[0].lower()
    if scheme in ("sip", "sips", "tel"):
        try:
            return dialled_of(parse_uri(text.strip()))
        except RemoteProtocolError:
            return text
    return text


def format_address(address: Address) -> str:
    """host:port, with brackets around an IPv6 host."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def decremented(request: Request) -> int:
    """Max-Forwards for the request we send on the other leg."""
    value = request.max_forwards
    return 69 if value is None else max(value - 1, 0)


def copy_headers(source: Message, target: Headers, names: tuple[str, ...]) -> None:
    """Copy the allowlisted headers of one leg's message to the other's."""
    for name, value in source.headers:
        if name in names:
            target.add(name, value)


def passed_headers(response: Response) -> list[tuple[str, str]]:
    """The headers of a response that cross to the other leg."""
    return [(name, value) for name, value in response.headers if name in RESPONSE_HEADERS_PASSED]


def extension_of(request: Request, header: str) -> tuple[str | None, str]:
    """The extension that placed the call and where it was read: the configured header
    ("header"), then P-Asserted-Identity ("identity"), then the From user ("from")."""
    value = request.headers.get(header)
    if value and value.strip():
        return value.strip(), "header"
    asserted = request.headers.values("P-Asserted-Identity")
    if asserted:
        try:
            user = user_of(parse_name_address(asserted[0]))
        except RemoteProtocolError:
            user = ""
        if user:
            return user, "identity"
    return user_of(request.from_address) or None, "from"


def contact_for(local: Local | Address, secure: bool = False) -> str:
    """Our Contact for a leg whose messages leave from ``local`` (with its transport);
    ``secure`` for a dialog with a SIPS Request-URI, whose Contact must be SIPS too
    (RFC 3261 §8.1.1.8, §12.1.1)."""
    local = as_local(local)
    host = f"[{local.host}]" if ":" in local.host else local.host
    if secure and local.transport == "TLS":
        return f"<sips:sipguard@{host}:{local.port}>"
    return f"<sip:sipguard@{host}:{local.port}{transport_parameter(local.transport)}>"
