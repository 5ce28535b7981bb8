"""An in-memory harness for controller traces: sipguard's endpoint and
controller on a virtual clock, with the PBX and the trunk played by hand-made
datagrams. No sockets, no sleeping."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sipguard.b2bua.calls import Command, LogEvent, Peer, PeerAuth, ScreenAttempt, Trunk
from sipguard.b2bua.controller import Controller, IvrLink
from sipguard.b2bua.peer_auth import Authenticator
from sipguard.policy import CallAttempt, Decision, Policy, evaluate
from sipguard.policy.loader import load_policy
from sipguard.sip.endpoint import Endpoint
from sipguard.sip.events import Datagram
from sipguard.sip.message import MessageParseError, Request, Response, parse_message
from sipguard.sip.transaction_table import TimerSettings
from sipguard.sip.transport import Local
from sipguard.sip.uri import parse_uri

BASIC_POLICY = Path(__file__).resolve().parents[1] / "policies" / "basic.yaml"
SIPGUARD = Local("127.0.0.1", 5060)
PBX = ("127.0.0.1", 5070)
TRUNK = ("127.0.0.2", 5080)
STRANGER = ("127.0.0.9", 5090)
IVR = ("127.0.0.5", 5100)
IVR_TOKEN = "ivr-secret"
PBX_PASSWORD = "correct horse battery"


def _counter_tokens() -> Callable[[int], str]:
    counter = itertools.count(1)
    return lambda length: f"t{next(counter):0{max(length - 1, 1)}d}"[:max(length, 2)]


@dataclass
class Sent:
    """One datagram sipguard sent, parsed."""

    message: Request | Response
    destination: tuple[str, int]


@dataclass
class Harness:
    """sipguard's sans-IO parts wired as the service wires them."""

    policy: Policy = field(default_factory=lambda: load_policy(BASIC_POLICY))
    settings: TimerSettings = field(default_factory=TimerSettings)
    now: float = 1000.0
    strict: bool = True
    ivr: bool = False  # a PIN IVR at IVR (commands for it land in ``commands``)
    auth: bool = False  # the PBX peer authenticates (user "pbx", password PBX_PASSWORD)

    def __post_init__(self) -> None:
        self.endpoint = Endpoint([SIPGUARD], self.settings, token=_counter_tokens())
        peer = Peer("asterisk-1", (ipaddress.ip_network("127.0.0.1/32"),),
                    PeerAuth("pbx", PBX_PASSWORD) if self.auth else None)
        trunk_uri = parse_uri(f"sip:{TRUNK[0]}:{TRUNK[1]}")
        self.controller = Controller(
            self.endpoint, [peer], [Trunk("carrier", trunk_uri, TRUNK)],
            ivrs=[IvrLink(IVR, IVR_TOKEN, capacity=2)] if self.ivr else (),
            authenticator=Authenticator("sipguard", b"k" * 32, self.endpoint.new_token))
        self.logs: list[LogEvent] = []
        self.commands: list[Command] = []  # CheckPin and InstructIvr
        self.unparsed: list[bytes] = []
        self.attempts: list[CallAttempt] = []

    def screen(self, attempt: CallAttempt) -> Decision:
        self.attempts.append(attempt)
        return evaluate(self.policy, attempt)

    def _run(self, commands: list[Command]) -> None:
        pending = list(commands)
        while pending:
            command = pending.pop(0)
            if isinstance(command, ScreenAttempt):
                pending.extend(self.controller.screened(
                    command.call_key, self.screen(command.attempt), self.now))
            elif isinstance(command, LogEvent):
                self.logs.append(command)
            else:
                self.commands.append(command)

    def _collect(self) -> list[Sent]:
        out: list[Sent] = []
        for datagram in self.endpoint.datagrams_to_send():
            assert isinstance(datagram, Datagram)
            try:
                message = parse_message(datagram.data)
            except MessageParseError:
                # An error response echoes the broken headers it answers (RFC 3261
                # §8.2.6.2); such a datagram is kept raw.
                if self.strict:
                    raise
                self.unparsed.append(datagram.data)
                continue
            out.append(Sent(message, datagram.destination))
        return out

    def feed(self, data: bytes | Request | Response, source: tuple[str, int]) -> list[Sent]:
        """Deliver one datagram from ``source``; return what sipguard sent."""
        raw = data if isinstance(data, bytes) else data.to_bytes()
        for event in self.endpoint.receive_datagram(raw, source, SIPGUARD, self.now):
            self._run(self.controller.handle(event, self.now))
        return self._collect()

    def advance(self, seconds: float) -> list[Sent]:
        """Move the virtual clock, firing timers on the way."""
        target = self.now + seconds
        sent: list[Sent] = []
        while True:
            deadlines = [when for when in (self.endpoint.get_timer(), self.controller.get_timer())
                         if when is not None]
            if not deadlines or min(deadlines) > target:
                break
            self.now = max(self.now, min(deadlines))
            for event in self.endpoint.handle_timer(self.now):
                self._run(self.controller.handle(event, self.now))
            self._run(self.controller.handle_timer(self.now))
            sent.extend(self._collect())
        self.now = target
        return sent

    def run(self, commands: list[Command]) -> list[Sent]:
        """Carry out commands the test got from the controller; return what was sent."""
        self._run(commands)
        return self._collect()

    def events(self, name: str) -> list[LogEvent]:
        return [log for log in self.logs if log.event == name]


def invite(number: str = "12125551234", call_id: str = "call-1", branch: str = "z9hG4bK-i1",
           source: tuple[str, int] = PBX, cseq: int = 1, max_forwards: int = 70,
           extra: str = "") -> bytes:
    host, port = source
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    head = (
        f"INVITE sip:{number}@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: \"Ext 201\" <sip:201@{host}>;tag=pbxtag\r\n"
        f"To: <sip:{number}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        f"Contact: <sip:201@{host}:{port}>\r\n"
        f"P-Asserted-Identity: <sip:201@{host}>\r\n"
        f"X-Internal-Secret: drop-me\r\n"
        f"{extra}"
        f"Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def response_to(request: Request, status: int, reason: str, to_tag: str | None = "trunktag",
                contact: str | None = "<sip:carrier@127.0.0.2:5080>", body: bytes = b"",
                extra: list[tuple[str, str]] | None = None) -> Response:
    """The response the far end (trunk or PBX) gives to a request sipguard sent it."""
    from sipguard.sip.headers import Headers

    headers = Headers()
    for via in request.headers.get_all("Via"):
        headers.add("Via", via)
    headers.add("From", request.headers.get("From") or "")
    to_value = request.headers.get("To") or ""
    if to_tag and request.to_tag is None and status > 100:
        to_value += f";tag={to_tag}"
    headers.add("To", to_value)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", str(request.cseq))
    if contact and status > 100 and request.method in ("INVITE", "UPDATE"):
        headers.add("Contact", contact)
    for name, value in extra or []:
        headers.add(name, value)
    if body:
        headers.add("Content-Type", "application/sdp")
    return Response(status, reason, headers, body)


def only(sent: list[Sent], destination: tuple[str, int]) -> list[Request | Response]:
    return [item.message for item in sent if item.destination == destination]
