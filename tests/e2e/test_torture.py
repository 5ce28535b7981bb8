"""RFC 4475 and RFC 5118 torture messages end to end, and a trunk that answers oddly.

One sipguard for the module listens on udp:127.0.0.1, udp:[::1] and tcp:127.0.0.1; its
trunk is ``Trunk`` (torture_messages.py), a Python UDP socket that records every
datagram and answers each INVITE with 100 then 486 (so no dialog remains) unless the
dialled number asks for something odder. Each table case sends one raw message from a
fresh "PBX" socket (a peer: 127.0.0.1/32 and ::1/128), retransmits it per Timer A/E
until anything answers, ACKs a non-2xx final response to an INVITE, and checks:

- the final status sipguard gave, or that it gave nothing at all (``DROP``) where the
  RFC lets an element drop the message;
- whether the trunk saw a new INVITE (counted by Call-ID from the datagram mark taken
  just before the case: sipguard gives the trunk leg a new Call-ID);
- that sipguard logged no ``sip.internal_error`` and is still running;
- a case's own ``check`` where the RFC asks more (headers kept, bodies intact, ...).

The policy forwards every US number with no limits, so the allowed number can be dialled
by every case. Section numbers are RFC 4475's (§3.3.8 is multi01 and §3.3.9 mcl01 in the
RFC; some notes elsewhere call them §3.3.11 and §3.3.12) and RFC 5118's (§4.x).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import torture_messages as tm
from harness import SIPGUARD_START_TIMEOUT, Sipguard, sipguard_command, sipguard_config
from torture_messages import Ctx, Exchange, Reply, Trunk

from sipguard.schema import dump_yaml

pytestmark = pytest.mark.e2e

POLICY = """\
# Torture tests: every US number is forwarded, with no rate or concurrency limit.
accounts:
  - name: asterisk-1
    home_region: US
    time_zone: UTC
    may_dial: [domestic, international, premium]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
number_types:
  premium_rate: deny
  invalid: deny
"""

DROP = None  # "no answer at all" in an expectation
WINDOW = 3.0  # seconds a case waits for its final response (it usually comes in ms)
DROP_WINDOW = 2.0  # seconds a case that may be dropped waits (Timer A resends at 0.5, 1.5)
SETTLE = 0.2  # seconds to wait after the answer before counting the trunk's INVITEs
RING_TIMEOUT = 3.0  # sipguard's ring_timeout: a trunk that never answers costs this much

# Numbers whose trunk answer is odd (item 3); every other number gets 100 then 486.
UTF8_OK = "12125551200"
EMPTY_REASON = "12125551486"  # "SIP/2.0 100 " then "SIP/2.0 486 "
NO_REASON = "12125551487"  # "SIP/2.0 486" with no space
BIGCODE = "12125551301"  # RFC 4475 §3.1.2.19
ABSURD_RETRY = "12125551503"
SCALARLG = "12125551504"  # RFC 4475 §3.1.2.5
BCAST = "12125551255"  # RFC 4475 §3.3.10
TRUNK_SDP = (b"v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
             b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def _tag() -> str:
    return f"carrier{time.monotonic_ns() % 10**9}"


def _ok_utf8(trunk: Trunk, request: Reply) -> list[bytes]:
    return [tm.response(request, "SIP/2.0 100 Trying"),
            tm.response(request, "SIP/2.0 200 Très bien ✓", f"Contact: {trunk.contact}",
                        body=TRUNK_SDP, to_tag=_tag())]


def _empty_reason(trunk: Trunk, request: Reply) -> list[bytes]:
    return [tm.response(request, "SIP/2.0 100 "),  # RFC 4475 §3.1.1.13 noreason
            tm.response(request, "SIP/2.0 486 ", to_tag=_tag())]


def _no_reason(trunk: Trunk, request: Reply) -> list[bytes]:
    return [tm.response(request, "SIP/2.0 100 Trying"),
            tm.response(request, "SIP/2.0 486", to_tag=_tag())]


def _bigcode(trunk: Trunk, request: Reply) -> list[bytes]:
    # No 100 first: sipguard's INVITE stays in Calling and keeps resending it.
    return [tm.response(request, "SIP/2.0 4294967301 better not break the receiver",
                        to_tag=_tag())]


def _absurd_retry(trunk: Trunk, request: Reply) -> list[bytes]:
    return [tm.response(request, "SIP/2.0 100 Trying"),
            tm.response(request, "SIP/2.0 503 Service Unavailable",
                        "Retry-After: 99999999999999999999", to_tag=_tag())]


def _scalarlg(trunk: Trunk, request: Reply) -> list[bytes]:
    return [tm.response(request, "SIP/2.0 503 Service Unavailable",
                        "Retry-After: 18446744073709551616000",
                        'Warning: 4711 carrier "Still thinking"',
                        cseq=f"{2**75} INVITE", to_tag=_tag())]


def _bcast(trunk: Trunk, request: Reply) -> list[bytes]:
    return [tm.response(request, "SIP/2.0 200 OK", f"Contact: {trunk.contact}",
                        body=TRUNK_SDP, to_tag=_tag(),
                        extra_vias=("SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK-bcast1",))]


BEHAVIOURS = {UTF8_OK: _ok_utf8, EMPTY_REASON: _empty_reason, NO_REASON: _no_reason,
              BIGCODE: _bigcode, ABSURD_RETRY: _absurd_retry, SCALARLG: _scalarlg,
              BCAST: _bcast}


# --------------------------------------------------------------------------- the lab


@dataclass
class Lab:
    """The sipguard under test, its trunk and its listen addresses."""

    sipguard: Sipguard
    trunk: Trunk
    udp4: tuple[str, int]
    udp6: tuple[str, int]
    tcp4: tuple[str, int]

    def describe(self) -> str:
        return self.sipguard.describe()


def _listen(started: dict[str, Any], scheme: str, ipv6: bool) -> tuple[str, int]:
    for listen in started.get("listen", []):
        kind, _, rest = str(listen).partition(":")
        host, _, port = rest.rpartition(":")
        if kind == scheme and host.startswith("[") == ipv6:
            return host.strip("[]"), int(port)
    raise AssertionError(f"no {scheme} {'IPv6' if ipv6 else 'IPv4'} address in {started}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One sipguard (UDP v4 and v6, TCP) for the whole module, with its Python trunk."""
    trunk = Trunk(BEHAVIOURS)
    directory: Path = tmp_path_factory.mktemp("torture")
    (directory / "policy.yaml").write_text(POLICY)
    config = sipguard_config(
        trunk.uri, listen=["udp:127.0.0.1:0", "udp:[::1]:0", "tcp:127.0.0.1:0"],
        peers=["127.0.0.1/32", "::1/128"], sip={"t1": 0.1, "ring_timeout": RING_TIMEOUT})
    config_path = directory / "sipguard.yaml"
    config_path.write_text(dump_yaml(config))
    config_path.chmod(0o600)  # may hold secrets: sipguard will not start on a file others can read
    service = Sipguard(sipguard_command(), config_path, directory / "stderr.log")
    try:
        started = service.wait_for("service.started", timeout=SIPGUARD_START_TIMEOUT)[0]
        yield Lab(service, trunk, _listen(started, "udp", False), _listen(started, "udp", True),
                  _listen(started, "tcp", False))
    finally:
        stopped = service.stop()
        trunk.stop()
    assert stopped, f"sipguard did not stop on SIGTERM:\n{service.describe()}"


# --------------------------------------------------------------------------- one case


@dataclass(frozen=True)
class Outcome:
    """What a case produced: the exchange, the trunk's new INVITEs, the context."""

    exchange: Exchange
    invites: list[Reply]
    ctx: Ctx


Check = Callable[[Outcome], None]


@dataclass(frozen=True)
class Case:
    """One row of the table."""

    id: str
    build: Callable[[Ctx], bytes]
    expected: frozenset[int | None]  # acceptable final statuses; DROP: no answer at all
    trunk_sees: bool | None  # None: either, as long as a 486 means it did
    transport: str = "udp"  # udp (IPv4), udp6 ([::1]) or tcp (IPv4)
    check: Check | None = None


def case(id_: str, build: Callable[[Ctx], bytes], expected: int | set[int | None] | None,
         trunk_sees: bool | None, transport: str = "udp", check: Check | None = None) -> Any:
    allowed = frozenset(expected) if isinstance(expected, set) else frozenset({expected})
    return pytest.param(Case(id_, build, allowed, trunk_sees, transport, check), id=id_)


def run(lab: Lab, row: Case) -> Outcome:
    """Send one torture message from a fresh PBX socket and see what came of it."""
    window = DROP_WINDOW if DROP in row.expected else WINDOW
    mark = lab.trunk.mark()
    if row.transport == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.connect(lab.tcp4)
        ctx = Ctx(sock.getsockname()[:2], lab.tcp4, "TCP", sg_udp4=lab.udp4)
        with sock:
            exchange = tm.tcp_exchange(sock, row.build(ctx), window)
    else:
        ipv6 = row.transport == "udp6"
        target = lab.udp6 if ipv6 else lab.udp4
        with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET,
                           socket.SOCK_DGRAM) as sock:
            sock.bind(("::1" if ipv6 else "127.0.0.1", 0))
            ctx = Ctx(sock.getsockname()[:2], target, "UDP", sg_udp4=lab.udp4)
            exchange = tm.udp_exchange(sock, row.build(ctx), target, window)
    if row.trunk_sees:
        lab.trunk.wait_for("INVITE", mark, timeout=2.0)
    else:
        time.sleep(SETTLE)
    return Outcome(exchange, lab.trunk.new_invites(mark), ctx)


# --------------------------------------------------------------------------- checks


def allow_listed(outcome: Outcome) -> None:
    """A 405 or 501 lists the methods sipguard takes (RFC 3261 §8.2.1, RFC 4475 §3.1.1.2)."""
    final = outcome.exchange.final
    assert final is not None and "INVITE" in (final.header("allow") or ""), final


def vias_echoed(count: int) -> Check:
    """The response carries every Via of the request, in order (RFC 3261 §8.2.6.2)."""
    def check(outcome: Outcome) -> None:
        final = outcome.exchange.final
        assert final is not None and len(final.via_values()) == count, final
    return check


def body_intact(content_type: str | None = None) -> Check:
    """The trunk got the PBX's body byte for byte, and its Content-Type."""
    def check(outcome: Outcome) -> None:
        sent = Reply.parse(outcome.exchange.request)
        (trunk_invite,) = outcome.invites
        assert trunk_invite.body == sent.body
        wanted = content_type or sent.header("content-type")
        assert trunk_invite.header("content-type") == wanted, trunk_invite.fields
    return check


def cseq_register(outcome: Outcome) -> None:
    """dblreq: the answer is for the REGISTER; nothing answered the trailing INVITE."""
    assert [reply.cseq_method for reply in outcome.exchange.replies] == ["REGISTER"]


def unsupported_listed(outcome: Outcome) -> None:
    """A 420 names the Require option tags in Unsupported (RFC 3261 §8.2.2.3)."""
    final = outcome.exchange.final
    assert final is not None
    listed = {item.strip() for item in (final.header("unsupported") or "").split(",")}
    assert {"noOneSupportsThis", "norThisOne"} <= listed, final.fields


def dialled_unescaped(number: str) -> Check:
    """The trunk's Request-URI user means ``number`` once unescaped."""
    def check(outcome: Outcome) -> None:
        (trunk_invite,) = outcome.invites
        user = trunk_invite.uri.partition(":")[2].partition("@")[0]
        assert unquote(user) == number, trunk_invite.start
    return check


def accept_kept(outcome: Outcome) -> None:
    """sdp01: the trunk learns that the PBX cannot take SDP in the answer."""
    (trunk_invite,) = outcome.invites
    assert trunk_invite.header("accept") == "text/nobodyKnowsThis", trunk_invite.fields


def from_well_formed(outcome: Outcome) -> None:
    """A forwarded From has a display name that is a token list or a quoted string
    (RFC 4475 §3.1.2.15: a proxy must not propagate the error)."""
    for trunk_invite in outcome.invites:
        value = trunk_invite.header("from") or ""
        name = value.partition("<")[0].strip()
        quoted = len(name) >= 2 and name[0] == name[-1] == '"'
        assert not name or quoted or all(
            part and set(part) <= set(TOKEN_CHARS) for part in name.split()), value


TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"


# --------------------------------------------------------------------------- the table
#
# Expectations follow the RFCs' text. Where an RFC lets an element choose, the comment
# says what was chosen and why: a B2BUA that screens calls for fraud forwards what is
# well formed (bodies and extension headers it does not understand are the trunk's
# business), refuses what it would have to guess at (a malformed start line, Request-URI
# or header that decides routing), and is an endpoint for everything but the INVITEs it
# forwards (OPTIONS 200, REGISTER/MESSAGE out of a call 405, unknown methods 501).

TABLE = [
    # -- RFC 4475 §3.1.1 valid messages: a normal answer, never 400.
    # wsinv as written has a To tag: a re-INVITE of no dialog, 481 (a misparsed tag would
    # start a call); without the tag it is a new call to the allowed number.
    case("3.1.1.1 wsinv", tm.wsinv, 481, False),
    case("3.1.1.1 wsinv (no To tag)", lambda c: tm.wsinv(c, to_tag=False), 486, True,
         check=body_intact()),
    # An unknown method: an endpoint answers 501 with Allow (a known one gets 405).
    case("3.1.1.2 intmeth", tm.intmeth, 501, False, check=allow_listed),
    case("3.1.1.3 esc01", tm.esc01, 486, True, check=dialled_unescaped("+12125551234")),
    case("3.1.1.4 escnull", tm.escnull, 405, False, check=allow_listed),
    # The escaped NUL must not end the number: 12125551234<NUL>19005550100 is no number.
    case("3.1.1.4 escnull (INVITE)", tm.escnull_invite, 403, False),
    # IN%56ITE is not INVITE: 501, and above all not a call.
    case("3.1.1.5 esc02", tm.esc02, 501, False, check=allow_listed),
    case("3.1.1.6 lwsdisp", tm.lwsdisp, 200, False),
    case("3.1.1.6 lwsdisp (INVITE)", tm.lwsdisp_invite, 486, True, check=from_well_formed),
    case("3.1.1.7 longreq", tm.longreq, 486, True, check=vias_echoed(34)),
    case("3.1.1.8 dblreq", tm.dblreq, 405, False, check=cseq_register),
    case("3.1.1.9 semiuri", tm.semiuri, 200, False),
    case("3.1.1.9 semiuri (INVITE)", tm.semiuri_invite, 486, True),
    case("3.1.1.10 transports", tm.transports, 200, False, check=vias_echoed(6)),
    # MESSAGE outside a call is not relayed: 405.
    case("3.1.1.11 mpart01", tm.mpart01, 405, False, check=allow_listed),
    case("3.1.1.11 mpart01 (INVITE)", tm.mpart01_invite, 486, True,
         check=body_intact(f"multipart/mixed;boundary={tm.BOUNDARY}")),
    # 3.1.1.12 unreason and 3.1.1.13 noreason are responses: see the trunk tests below.
    #
    # -- RFC 4475 §3.1.2 invalid messages: 400 (or the RFC's code), never the trunk.
    # The Via itself is broken, and responses go where the Via says: 400 ("should") or
    # silence are both taken; with only the Contact broken, 400.
    case("3.1.2.1 badinv01", tm.badinv01, {400, DROP}, False),
    case("3.1.2.1 badinv01 (Contact only)", tm.badinv01_contact, 400, False),
    case("3.1.2.2 clerr", tm.clerr, 400, False),
    # On a stream a longer Content-Length means "wait for more": no answer, no call.
    case("3.1.2.2 clerr (TCP)", tm.clerr, DROP, False, transport="tcp"),
    case("3.1.2.3 ncl", tm.ncl, 400, False),
    # On TCP the framing is lost: an error answer, or the connection closed.
    case("3.1.2.3 ncl (TCP)", tm.ncl, {400, DROP}, False, transport="tcp"),
    case("3.1.2.4 scalar02", tm.scalar02, 400, False),
    case("3.1.2.4 scalar02 (INVITE)", tm.scalar02_invite, 400, False),
    # 3.1.2.5 scalarlg is a response: see the trunk tests.
    case("3.1.2.6 quotbal", tm.quotbal, 400, False),
    case("3.1.2.7 ltgtruri", tm.ltgtruri, 400, False),
    case("3.1.2.8 lwsruri", tm.lwsruri, 400, False),
    # lwsstart/trws: the RFC allows rejecting or ignoring the extra spaces; a fraud screen
    # does not guess at a start line: 400 for the INVITEs. The OPTIONS may go either way.
    case("3.1.2.9 lwsstart", tm.lwsstart, 400, False),
    case("3.1.2.10 trws", tm.trws, {200, 400}, False),
    case("3.1.2.10 trws (INVITE)", tm.trws_invite, 400, False),
    case("3.1.2.11 escruri", tm.escruri, 400, False),
    # Date plays no part in sipguard's processing: ignore it and place the call.
    case("3.1.2.12 baddate", tm.baddate, 486, True),
    # A REGISTER is 405 here whatever its Contact; 400 is as good.
    case("3.1.2.13 regbadct", tm.regbadct, {400, 405}, False),
    case("3.1.2.14 badaspec", tm.badaspec, {200, 400}, False),
    case("3.1.2.15 baddn", tm.baddn, {200, 400}, False),
    # Reject, or forward with the display name repaired (never propagate it).
    case("3.1.2.15 baddn (INVITE)", tm.baddn_invite, {400, 486}, None, check=from_well_formed),
    # As in the RFC the Via says SIP/7.0 too; the sent-by is still usable: 505.
    case("3.1.2.16 badvers", tm.badvers, 505, False),
    case("3.1.2.16 badvers (SIP/2.0 Via)", lambda c: tm.badvers(c, "2.0"), 505, False),
    case("3.1.2.17 mismatch01", tm.mismatch01, 400, False),
    # 501 preferred, 400 acceptable (RFC 4475's words).
    case("3.1.2.18 mismatch02", tm.mismatch02, {400, 501}, False),
    # 3.1.2.19 bigcode is a response: see the trunk tests.
    #
    # -- RFC 4475 §3.2 transaction layer
    # 400, or fall back to RFC 2543 matching and answer.
    case("3.2.1 badbranch", tm.badbranch, {200, 400}, False),
    #
    # -- RFC 4475 §3.3 application layer
    # Ideally 400; a response without From, To and Call-ID would itself be malformed.
    case("3.3.1 insuf", tm.insuf, {400, DROP}, False),
    case("3.3.2 unkscm", tm.unkscm, 416, False),
    case("3.3.2 unkscm (INVITE)", tm.unkscm_invite, 416, False),
    # A well-formed request: never 400; sipguard takes no soap.beep URI: 416.
    case("3.3.3 novelsc", tm.novelsc, 416, False),
    # Not a registrar: 405; the registrar answers (400, 416) are as good.
    case("3.3.4 unksm2", tm.unksm2, {400, 405, 416}, False),
    case("3.3.5 bext01", tm.bext01, 420, False, check=unsupported_listed),
    case("3.3.5 bext01 (INVITE)", tm.bext01_invite, 420, False, check=unsupported_listed),
    # A proxy forwards an unknown body type; sipguard relays bodies untouched, so the
    # trunk (the endpoint) decides on 415.
    case("3.3.6 invut", tm.invut, 486, True, check=body_intact()),
    # "Endpoints choosing not to act as registrars ... 405 Method Not Allowed".
    case("3.3.7 regaut01", tm.regaut01, 405, False),
    case("3.3.8 multi01", tm.multi01, 400, False),
    case("3.3.9 mcl01", tm.mcl01, 400, False),
    case("3.3.9 mcl01 (INVITE, TCP)", tm.mcl01_invite, {400, DROP}, False, transport="tcp"),
    # 3.3.10 bcast is a response: see the trunk tests.
    # An endpoint answers OPTIONS as if Max-Forwards were positive; a proxy may 483.
    case("3.3.11 zeromf", tm.zeromf, {200, 483}, False),
    # An INVITE sipguard would forward has no hop left: 483, not forwarded.
    case("3.3.11 zeromf (INVITE)", tm.zeromf_invite, 483, False),
    case("3.3.12 cparam01", lambda c: tm.cparam(c, brackets=False), 405, False),
    case("3.3.13 cparam02", lambda c: tm.cparam(c, brackets=True), 405, False),
    case("3.3.14 regescrt", tm.regescrt, 405, False),
    case("3.3.15 sdp01", tm.sdp01, 486, True, check=accept_kept),
    #
    # -- RFC 4475 §3.4 backward compatibility: accepting RFC 2543 syntax is optional.
    # Without a Contact sipguard cannot reach the PBX in the dialog: 400 or a call both do;
    # with one, the branchless Via, tagless From and missing Content-Length are fine.
    case("3.4.1 inv2543", tm.inv2543, {400, 486}, None),
    case("3.4.1 inv2543 (with Contact)", lambda c: tm.inv2543(c, contact=True), 486, True),
    #
    # -- RFC 5118 over udp:[::1]
    case("5118 4.1 ipv6-good", tm.ipv6_good, 405, False, "udp6"),
    case("5118 4.2 ipv6-bad", tm.ipv6_bad, 400, False, "udp6"),
    case("5118 4.2 ipv6-bad (INVITE)", lambda c: tm.ipv6_bad(c, "INVITE"), 400, False, "udp6"),
    case("5118 4.3 port-ambiguous", tm.port_ambiguous, 405, False, "udp6"),
    case("5118 4.4 port-unambiguous", lambda c: tm.port_ambiguous(c, port=True), 405, False,
         "udp6"),
    case("5118 4.5 via-received-param-with-delim", tm.via_received_delim, 481, False, "udp6"),
    case("5118 4.5 via-received-param-no-delim", tm.via_received_no_delim, 200, False, "udp6"),
    case("5118 4.6 ipv6-in-sdp", tm.ipv6_in_sdp, 486, True, "udp6", check=body_intact()),
    case("5118 4.7 mult-ip-in-header", tm.mult_ip_in_header, 481, False, "udp6"),
    case("5118 4.8 mult-ip-in-sdp", tm.mult_ip_in_sdp, 486, True, "udp6", check=body_intact()),
    case("5118 4.9 ipv4-mapped-ipv6", tm.ipv4_mapped, 486, True, "udp6", check=body_intact()),
    case("5118 4.10 ipv6-correct-abnf-2-colons", lambda c: tm.ipv6_abnf(c, 2), 200, False,
         "udp6"),
    case("5118 4.10 ipv6-bug-abnf-3-colons", lambda c: tm.ipv6_abnf(c, 3), 400, False, "udp6"),
]


@pytest.mark.parametrize("row", TABLE)
def test_torture_message(lab: Lab, row: Case) -> None:
    """sipguard answers each torture message as its RFC says, and forwards only valid calls."""
    errors = len(lab.sipguard.events("sip.internal_error"))
    outcome = run(lab, row)
    exchange = outcome.exchange
    seen = [reply.start for reply in exchange.replies]
    context = (f"{row.id}: answers {seen}, trunk INVITEs {len(outcome.invites)}\n"
               f"sent:\n{exchange.request[:1500]!r}\n{lab.describe()}")
    assert exchange.status in row.expected, context
    if exchange.status is None:
        assert not exchange.replies, f"not dropped silently: {context}"
    forwarded = len(outcome.invites)
    if row.trunk_sees is None:
        assert forwarded == (1 if exchange.status == 486 else 0), context
    else:
        assert forwarded == (1 if row.trunk_sees else 0), context
    assert len(lab.sipguard.events("sip.internal_error")) == errors, context
    assert lab.sipguard.process.poll() is None, context
    if row.check is not None:
        row.check(outcome)


# --------------------------------------------------------------------------- odd trunks


@dataclass
class Call:
    """A call the test PBX placed: its socket, context, INVITE and what came back."""

    sock: socket.socket
    ctx: Ctx
    invite: bytes
    exchange: Exchange
    mark: int


def place_call(lab: Lab, number: str, window: float = WINDOW) -> Call:
    """An INVITE to ``number`` from a fresh PBX socket (ACKing a non-2xx answer)."""
    mark = lab.trunk.mark()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    ctx = Ctx(sock.getsockname()[:2], lab.udp4, sg_udp4=lab.udp4, number=number)
    data = tm.invite(ctx, name="call")
    return Call(sock, ctx, data, tm.udp_exchange(sock, data, lab.udp4, window), mark)


def in_dialog(call: Call, method: str, cseq: int) -> bytes:
    """ACK or BYE in the PBX's dialog, to the Contact sipguard answered with."""
    final = call.exchange.final
    assert final is not None
    target = (final.header("contact") or "").strip().strip("<>")
    c = call.ctx
    return tm.message(
        f"{method} {target} SIP/2.0", f"Via: {c.via(f'{method.lower()}{cseq}')}",
        "Max-Forwards: 70", f"From: <sip:2001@{c.me}>;tag={c.tag()}",
        f"To: {final.header('to')}", f"Call-ID: {c.call_id('call')}",
        f"CSeq: {cseq} {method}", "Content-Length: 0")


def assert_alive(lab: Lab) -> None:
    """sipguard still runs and answers an OPTIONS with 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        ctx = Ctx(sock.getsockname()[:2], lab.udp4, sg_udp4=lab.udp4)
        exchange = tm.udp_exchange(sock, tm.options(ctx, name="alive"), lab.udp4, WINDOW)
    assert lab.sipguard.process.poll() is None, lab.describe()
    assert exchange.status == 200, ([r.start for r in exchange.replies], lab.describe())


def trunk_call_id(lab: Lab, call: Call) -> str:
    """The Call-ID of the trunk leg this call made."""
    invites = lab.trunk.new_invites(call.mark)
    assert len(invites) == 1, (len(invites), lab.describe())
    return invites[0].header("call-id") or ""


def test_trunk_200_with_utf8_reason(lab: Lab) -> None:
    """A 200 whose reason phrase is UTF-8 (RFC 4475 §3.1.1.12) gives a working call."""
    call = place_call(lab, UTF8_OK)
    with call.sock:
        final = call.exchange.final
        assert final is not None and final.status == 200, (
            [r.start for r in call.exchange.replies], lab.describe())
        status_line = final.raw.split(b"\r\n", 1)[0].decode("utf-8")  # not mangled
        assert status_line in ("SIP/2.0 200 Très bien ✓", "SIP/2.0 200 OK"), status_line
        trunk_leg = trunk_call_id(lab, call)
        call.sock.sendto(in_dialog(call, "ACK", 1), lab.udp4)
        acks = lab.trunk.wait_for("ACK", call.mark, call_id=trunk_leg)
        assert acks, f"the PBX's ACK never reached the trunk\n{lab.describe()}"
        bye = tm.udp_exchange(call.sock, in_dialog(call, "BYE", 2), lab.udp4, WINDOW)
        assert bye.status == 200, [r.start for r in bye.replies]
    byes = lab.trunk.wait_for("BYE", call.mark, call_id=trunk_leg)
    assert byes, f"the PBX's BYE never reached the trunk\n{lab.describe()}"


@pytest.mark.parametrize("number", [EMPTY_REASON, NO_REASON],
                         ids=["486 with a space and no reason", "486 with no space"])
def test_trunk_486_without_reason(lab: Lab, number: str) -> None:
    """A final response with an empty reason phrase (RFC 4475 §3.1.1.13) is relayed."""
    call = place_call(lab, number)
    with call.sock:
        assert call.exchange.status == 486, ([r.start for r in call.exchange.replies],
                                             lab.describe())
    trunk_leg = trunk_call_id(lab, call)
    assert lab.trunk.wait_for("ACK", call.mark, call_id=trunk_leg), (
        f"sipguard did not ACK the trunk's 486\n{lab.describe()}")


def odd_final(lab: Lab, number: str) -> Call:
    """A call whose trunk answer sipguard may discard: waits past the ring timeout."""
    errors = len(lab.sipguard.events("sip.internal_error"))
    call = place_call(lab, number, window=RING_TIMEOUT + 3.0)
    call.sock.close()
    assert len(lab.trunk.new_invites(call.mark)) == 1, lab.describe()
    codes = [reply.status for reply in call.exchange.replies]
    assert all(100 <= code <= 699 for code in codes), codes  # nothing odd passed on
    assert len(lab.sipguard.events("sip.internal_error")) == errors, lab.describe()
    return call


def test_trunk_status_code_4294967301(lab: Lab) -> None:
    """A 10-digit status code from the trunk (RFC 4475 §3.1.2.19) crashes nothing."""
    call = odd_final(lab, BIGCODE)
    status = call.exchange.status
    assert status is None or 400 <= status <= 699, [r.start for r in call.exchange.replies]
    assert_alive(lab)


def test_trunk_503_with_absurd_retry_after(lab: Lab) -> None:
    """A 503 with Retry-After: 99999999999999999999 reaches the PBX as a 5xx failure."""
    call = place_call(lab, ABSURD_RETRY)
    with call.sock:
        status = call.exchange.status
    assert status is not None and 500 <= status <= 599, (
        [r.start for r in call.exchange.replies], lab.describe())
    assert_alive(lab)


def test_trunk_overlarge_scalars_discarded(lab: Lab) -> None:
    """A response with CSeq > 2**32-1 (RFC 4475 §3.1.2.5) is discarded, not relayed."""
    call = odd_final(lab, SCALARLG)
    assert call.exchange.status in (None, 408), [r.start for r in call.exchange.replies]
    assert not any(b"Still thinking" in reply.raw for reply in call.exchange.replies)
    assert_alive(lab)


def test_trunk_200_with_broadcast_via(lab: Lab) -> None:
    """A 200 with a second, broadcast Via (RFC 4475 §3.3.10) is discarded (RFC 3261
    §8.1.3.3) or processed, and the broadcast address never reaches the PBX."""
    call = odd_final(lab, BCAST)
    status = call.exchange.status
    assert status in (None, 200, 408), [r.start for r in call.exchange.replies]
    assert not any(b"255.255.255.255" in reply.raw for reply in call.exchange.replies)
    if status == 200:  # processed: then the call must work like any other
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(call.ctx.local)
            call.sock = sock
            sock.sendto(in_dialog(call, "ACK", 1), lab.udp4)
            bye = tm.udp_exchange(sock, in_dialog(call, "BYE", 2), lab.udp4, WINDOW)
        assert bye.status == 200, [r.start for r in bye.replies]
    assert_alive(lab)
