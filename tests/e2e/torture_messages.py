"""RFC 4475 and RFC 5118 torture messages, rewritten for a live sipguard on loopback.

Every message here is written from the RFCs' descriptions of what each case contains
(odd folding, escapes, overlarge scalars, broken start lines, IPv6 references, ...), not
copied from their archives: hosts that the RFCs write as example.com or 192.0.2.x are
the two ends of the test instead, so that every Via, Contact, From, To and Request-URI
names something alive on loopback:

- ``Ctx.me``: the socket the "PBX" sends from (127.0.0.1 or [::1], a kernel-chosen port);
- ``Ctx.sg``: sipguard's own address on the transport in use.

Where a case's point survives in an INVITE to an allowed number (so that "did the trunk
see it?" means something), the builder dials ``Ctx.number``.

The module also holds what the torture test needs on the wire: a minimal reply parser,
the PBX side of one UDP or TCP exchange, and ``Trunk``, a Python UDP trunk that records
every datagram and answers each INVITE the way its dialled number asks.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ALLOWED = "12125551234"  # a New York number the test policy forwards
CRLF = "\r\n"


def host_port(host: str, port: int) -> str:
    """``host:port`` with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Ctx:
    """Where one torture message goes and comes from."""

    local: tuple[str, int]  # the PBX socket (host without brackets)
    target: tuple[str, int]  # sipguard on this transport
    transport: str = "UDP"  # what the top Via says: UDP or TCP
    sg_udp4: tuple[str, int] = ("127.0.0.1", 5060)  # sipguard's IPv4 UDP address
    number: str = ALLOWED
    uid: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def me(self) -> str:
        return host_port(*self.local)

    @property
    def sg(self) -> str:
        return host_port(*self.target)

    @property
    def loopback(self) -> str:
        """The PBX's host, bracketed if IPv6 (for SDP and lower Vias)."""
        return self.me.rpartition(":")[0]

    def branch(self, name: str = "") -> str:
        return f"z9hG4bK-{name}{self.uid}"

    def via(self, name: str = "", transport: str | None = None) -> str:
        return f"SIP/2.0/{transport or self.transport} {self.me};branch={self.branch(name)}"

    def tag(self, name: str = "t") -> str:
        return f"{name}{self.uid}"

    def call_id(self, name: str) -> str:
        return f"{name}.{self.uid}"

    def contact(self, user: str = "2001") -> str:
        return f"<sip:{user}@{self.me}>"


def message(start: str, *headers: str, body: bytes = b"") -> bytes:
    """A start line, header lines (folded lines are separate items) and a body."""
    head = CRLF.join((start, *headers)) + CRLF + CRLF
    return head.encode("utf-8", "surrogateescape") + body


def sdp(c: Ctx, *, family: str | None = None, address: str | None = None) -> bytes:
    """A small audio offer on loopback (nobody listens: media never flows here)."""
    ipv6 = family == "IP6" or (family is None and ":" in c.local[0])
    net = family or ("IP6" if ipv6 else "IP4")
    host = address or ("::1" if ipv6 else "127.0.0.1")
    lines = ["v=0", f"o=torture {int(c.uid, 16)} 1 IN {net} {host}", "s=-",
             f"c=IN {net} {host}", "t=0 0", "m=audio 49170 RTP/AVP 0 8",
             "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000"]
    return (CRLF.join(lines) + CRLF).encode()


def invite(c: Ctx, *headers: str, uri: str | None = None, body: bytes | None = None,
           name: str = "inv", content_length: str | None = None) -> bytes:
    """A plain INVITE to the allowed number with ``headers`` added (the torture part)."""
    content = sdp(c) if body is None else body
    length = str(len(content)) if content_length is None else content_length
    return message(
        f"INVITE {uri or f'sip:{c.number}@{c.sg}'} SIP/2.0",
        f"Via: {c.via(name)}", "Max-Forwards: 70",
        f"From: <sip:2001@{c.me}>;tag={c.tag()}", f"To: <sip:{c.number}@{c.sg}>",
        f"Call-ID: {c.call_id(name)}", "CSeq: 1 INVITE", f"Contact: {c.contact()}",
        *headers, "Content-Type: application/sdp", f"Content-Length: {length}", body=content)


def options(c: Ctx, *headers: str, uri: str | None = None, name: str = "opt",
            start: str | None = None) -> bytes:
    """An OPTIONS to sipguard with ``headers`` added."""
    return message(
        start or f"OPTIONS {uri or f'sip:{c.sg}'} SIP/2.0",
        f"Via: {c.via(name)}", "Max-Forwards: 70",
        f"From: <sip:2001@{c.me}>;tag={c.tag()}", f"To: <sip:{c.sg}>",
        f"Call-ID: {c.call_id(name)}", "CSeq: 10 OPTIONS", *headers, "Content-Length: 0")


# --------------------------------------------------------------------------- RFC 4475 §3.1.1


def wsinv(c: Ctx, to_tag: bool = True) -> bytes:
    """§3.1.1.1: folding everywhere, LWS around every separator, odd name case, compact
    and long forms mixed, escaped quotes in a display name, an empty Subject, unknown
    headers (one whose value is not generic-param), a valueless URI and header parameter,
    leading zeros in Max-Forwards and CSeq. The RFC's To carries a tag (a re-INVITE of
    no dialog, so 481); ``to_tag=False`` makes it a new call."""
    body = sdp(c)
    to = f" sip:{c.number}@{c.sg};unknownparam ;   tag    = 8827x{c.uid}" if to_tag else \
        f" sip:{c.number}@{c.sg};unknownparam"
    return message(
        f"INVITE sip:{c.number}@{c.sg};unknownparam SIP/2.0",
        "TO :", to,
        f'from   : "Tortuous \\\\ \\"Caller\\""       <sip:2001@{c.me}>',
        "  ;", f"  tag = ws{c.uid}",
        "MaX-fOrWaRdS: 0069",
        f"Call-ID: {c.call_id('wsinv')}",
        f"Content-Length   : {len(body)}",
        "cseq: 0007", "  INVITE",
        "Via  : SIP  /   2.0", " /UDP", f"    {c.me};branch=wsinv390{c.uid}",
        "s :",
        "NewFangledHeader:   newfangled value", " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;,;;,,;",
        "Content-Type: application/sdp",
        "Route:", f" <sip:{c.sg};lr;unknownwith=value;unknown-no-value>",
        f"v:  SIP  / 2.0  / TCP     {c.me}   ;",
        f"  branch  =   {c.branch('ws2')}  ,",
        f" SIP  /    2.0   / UDP  {c.me}   ; branch=",
        f" {c.branch('ws3')}",
        f'm:"Folded \\"contact\\"" <sip:2001@{c.me}> ; newparam =',
        "      newvalue ;", "  secondparam ; q = 0.33",
        body=body)


# Method, user and password made of every non-alphanumeric character their rules allow.
ODD_METHOD = "!odd-Method_0123456789*+`.%'~"
ODD_USER = "2_odd.user~(surely!)&isn't+it$/mad?,/;;*"
ODD_PASSWORD = "&pass=1,odd!*pa$wo~rd_.(isn't-it)"


def intmeth(c: Ctx) -> bytes:
    """§3.1.1.2: a token method with every non-alpha token character (% is no escape
    there), a Request-URI whose user and password use the unusual but legal characters,
    a branch of token characters, quoted-pairs of control characters (NUL among them)
    in To, a multi-token display name and a UTF-8 parameter in From, a Call-ID of word
    characters, an extension header with token punctuation and a UTF-8 value."""
    return message(
        f"{ODD_METHOD} sip:{ODD_USER}:{ODD_PASSWORD}@{c.sg} SIP/2.0",
        f"Via: SIP/2.0/{c.transport} {c.me};branch=z9hG4bK-.!%77*_+`'~{c.uid}",
        f'To: "Ctl BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f end" <sip:{ODD_USER}@{c.sg}>',
        f"From: first~` second'+_ third*%!.- <sip:plain@{c.me}>"
        f";oddParam~'+*_!.-%=\"проверка\";tag=~odd'+`*%!-.{c.uid}",
        f"Call-ID: intmeth.{c.uid}%QQ-!.*_+'@w`~)(><:\\/\"][?}}{{",
        f"CSeq: 139122 {ODD_METHOD}",
        "Max-Forwards: 255",
        "extensionHeader-!.%*+_`'~:\ufeff测试电报",
        "Content-Length: 0")


def esc01(c: Ctx) -> bytes:
    """§3.1.1.3: %-escapes where SIP-URIs allow them: the dialled user (``%2B1%32...``
    is +12125551234), escaped From/To users, escaped Contact parameter names and a value
    whose ``%25%34%31`` must not be unescaped twice."""
    body = sdp(c)
    return message(
        f"INVITE sip:%2B1%3212555%31234@{c.sg} SIP/2.0",
        f"To: sip:%2B%31212555%31234@{c.sg}",
        f"From: <sip:I%20have%20spaces@{c.me}>;tag={c.tag()}",
        "Max-Forwards: 87",
        f"i: {c.call_id('esc01')}",
        "CSeq: 234234 INVITE",
        f"Via: {c.via('esc01')}",
        "C: application/sdp",
        "Contact:", f"  <sip:cal%6Cer@{c.me};%6C%72;n%61me=v%61lue%25%34%31>",
        f"Content-Length: {len(body)}",
        body=body)


def escnull(c: Ctx) -> bytes:
    """§3.1.1.4: a REGISTER whose To/From users hold escaped NULs and two Contacts,
    ``%00`` and ``%00%00``, that must stay distinct."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0",
        f"To: sip:null-%00-null@{c.sg}",
        f"From: sip:null-%00-null@{c.sg};tag={c.tag()}",
        "Max-Forwards: 70",
        f"Call-ID: {c.call_id('escnull')}",
        "CSeq: 14398234 REGISTER",
        f"Via: {c.via('escnull')}",
        f"Contact: <sip:%00@{c.me}>",
        f"Contact: <sip:%00%00@{c.me}>",
        "L:0")


def escnull_invite(c: Ctx) -> bytes:
    """§3.1.1.4's warning applied to the dialled number: an escaped NUL must not end the
    user part early (``12125551234%00`` followed by a premium number is no number)."""
    return invite(c, uri=f"sip:{c.number}%0019005550100@{c.sg}", name="escnull")


def esc02(c: Ctx) -> bytes:
    """§3.1.1.5: % where it is no escape: the method ``IN%56ITE`` is unknown (not
    INVITE), the display names are literally ``%Q%41``, and ``C%6Fntact`` is an unknown
    header, so there are two Contacts, not three."""
    return message(
        f"IN%56ITE sip:{c.number}@{c.sg} SIP/2.0",
        f'To: "%Q%41" <sip:{c.number}@{c.sg}>',
        f'From: "%Q%41" <sip:2001@{c.me}>;tag={c.tag()}',
        f"Call-ID: {c.call_id('esc02')}",
        f"Via: SIP/2.0/{c.transport} {c.me};branch=z9hG4bK209%fz{c.uid}",
        "CSeq: 29344 IN%56ITE",
        "Max-Forwards: 70",
        f"Contact: <sip:alias1@{c.me}>",
        f"C%6Fntact: <sip:alias2@{c.me}>",
        f"Contact: <sip:alias3@{c.me}>",
        "l: 0")


def lwsdisp(c: Ctx) -> bytes:
    """§3.1.1.6: no LWS between a token display name and ``<`` (to be accepted)."""
    return options(c, name="lwsdisp").replace(
        f"From: <sip:2001@{c.me}>".encode(), f"From: caller<sip:2001@{c.me}>".encode())


def lwsdisp_invite(c: Ctx) -> bytes:
    """§3.1.1.6 in an INVITE: the call goes through with a well-formed From."""
    return invite(c, name="lwsdisp").replace(
        f"From: <sip:2001@{c.me}>".encode(), f"From: caller<sip:2001@{c.me}>".encode())


def longreq(c: Ctx) -> bytes:
    """§3.1.1.7: very long values: a long To display name and URI parameters, a long
    From tag and parameters, a long Call-ID, a long unknown header with a parameter, 34
    Vias whose names are spelled every way (compact, odd case, space before the colon),
    and a long Contact user."""
    body = sdp(c)
    long_user = "amazinglylongcallername" * 5
    spellings = ["v", "V", "Via", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ",
                 "v ", "V  ", "v  ", "Via ", "Via  "]
    vias = [f"Via: SIP/2.0/{c.transport} {c.me};branch={c.branch('long' * 40)}"]
    for index in range(33):
        name = spellings[index % len(spellings)]
        vias.append(f"{name}: SIP/2.0/TCP {c.me};branch={c.branch(f'hop{index}-')}")
    return message(
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0",
        f'To: "I have a user name of {"extreme" * 10} proportion"<sip:{c.number}@{c.sg}'
        f';unknownparam1=very{"long" * 20}value;longparamname{"name" * 25}=shortvalue'
        f';very{"long" * 25}ParameterNameWithNoValue>',
        f"F: sip:{long_user}@{c.me};tag={'1298' * 40}{c.uid}"
        f";unknownheaderparamname{'name' * 20}=unknownheaderparamvalue{'value' * 15}"
        f";unknownValuelessparamname{'paramname' * 10}",
        f"Call-ID: longreq.one{'really' * 20}longcallid{c.uid}",
        "CSeq: 3882340 INVITE",
        f"Unknown-{'Long' * 20}-Name: unknown-{'long' * 20}-value; "
        f"unknown-{'long' * 20}-parameter-name = unknown-{'long' * 20}-parameter-value",
        *vias,
        "Max-Forwards: 70",
        f"Contact: <sip:{long_user}@{c.me}>",
        "Content-Type: application/sdp",
        f"l: {len(body)}",
        body=body)


def dblreq(c: Ctx) -> bytes:
    """§3.1.1.8: a REGISTER with Content-Length 0, then bytes that look like an INVITE to
    the allowed number in the same datagram: noise to be ignored (RFC 3261 §18.3)."""
    body = sdp(c)
    register = message(
        f"REGISTER sip:{c.sg} SIP/2.0",
        f"To: sip:2001@{c.sg}",
        f"From: sip:2001@{c.sg};tag={c.tag()}",
        "Max-Forwards: 8",
        f"I: {c.call_id('dblreq')}",
        f"Contact: sip:2001@{c.me}",
        "CSeq: 8 REGISTER",
        f"Via: {c.via('dblreq1')}",
        "Content-Length: 0")
    trailing = message(
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0",
        f"t: sip:{c.number}@{c.sg}",
        f"From: sip:2001@{c.me};tag={c.tag('x')}",
        "Max-Forwards: 8",
        f"Call-ID: {c.call_id('dblreq2')}",
        "CSeq: 8 INVITE",
        f"Via: {c.via('dblreq2')}",
        f"Contact: {c.contact()}",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
        body=body)
    return register + trailing


def semiuri(c: Ctx) -> bytes:
    """§3.1.1.9: a Request-URI user with a ``;par=`` holding an escaped @: the user is
    ``user;par=u@127.0.0.1``, not a user with a URI parameter (and a folded Accept)."""
    return options(
        c, "Accept: application/sdp, application/pkcs7-mime,",
        "        multipart/mixed, multipart/signed,",
        "        message/sip, message/sipfrag",
        uri=f"sip:user;par=u%40127.0.0.1@{c.sg}", name="semiuri")


def semiuri_invite(c: Ctx) -> bytes:
    """§3.1.1.9 in an INVITE: the dialled user ``12125551234;par=u%40...`` is a number
    with a parameter inside the user part (screened as 12125551234)."""
    return invite(c, uri=f"sip:{c.number};par=u%40127.0.0.1@{c.sg}", name="semiuri")


def transports(c: Ctx) -> bytes:
    """§3.1.1.10: Vias over every transport token (SCTP, TLS, TLS-SCTP, an unknown one);
    each later value is as good as if it said UDP."""
    return options(
        c, *(f"Via: SIP/2.0/{name} {c.me};branch={c.branch(name.lower())}"
             for name in ("SCTP", "TLS", "TLS-SCTP", "UNKNOWN", "TCP")),
        "Accept: application/sdp", name="transports")


BOUNDARY = "7a9cbec02ceef655"
BINARY = bytes(range(256)) + b"\x00\r\n\x00\xff--7a9cbec0 not the boundary\x00"


def multipart(first_type: str, first: bytes) -> bytes:
    """Two MIME parts: ``first`` and a binary part full of NULs, CRs and LFs."""
    return (f"--{BOUNDARY}\r\nContent-Type: {first_type}\r\n\r\n".encode() + first
            + f"\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
              f"Content-Transfer-Encoding: binary\r\n\r\n".encode() + BINARY
            + f"\r\n--{BOUNDARY}--\r\n".encode())


def mpart01(c: Ctx) -> bytes:
    """§3.1.1.11: a MESSAGE with two body parts, the second binary with NULs: framed by
    Content-Length, never by looking at the bytes."""
    body = multipart("text/plain", b"Hello")
    return message(
        f"MESSAGE sip:{c.number}@{c.sg} SIP/2.0",
        f"Via: {c.via('mpart01')};rport", "Max-Forwards: 70",
        f"Contact: {c.contact()}", f"To: <sip:{c.number}@{c.sg}>",
        f"From: <sip:2001@{c.me}>;tag={c.tag()}", f"Call-ID: {c.call_id('mpart01')}",
        "CSeq: 1 MESSAGE", "Content-Transfer-Encoding: binary",
        f"Content-Type: multipart/mixed;boundary={BOUNDARY}",
        "Date: Sat, 15 Oct 2005 04:44:56 GMT", f"Content-Length: {len(body)}", body=body)


def mpart01_invite(c: Ctx) -> bytes:
    """§3.1.1.11 in an INVITE: an SDP part and a binary part, to reach the trunk intact."""
    body = multipart("application/sdp", sdp(c))
    return invite(c, body=body, name="mpart01").replace(
        b"Content-Type: application/sdp\r\nContent-Length",
        f"Content-Type: multipart/mixed;boundary={BOUNDARY}\r\nContent-Length".encode())


# --------------------------------------------------------------------------- RFC 4475 §3.1.2


def badinv01(c: Ctx) -> bytes:
    """§3.1.2.1: semicolons and commas with no parameters in the Via and the Contact."""
    return invite(c, name="badinv01").replace(
        f"Via: {c.via('badinv01')}".encode(), f"Via: SIP/2.0/{c.transport} {c.me};;,;,,".encode()
    ).replace(f"Contact: {c.contact()}".encode(), f'Contact: "Joe" {c.contact()};;;;'.encode())


def badinv01_contact(c: Ctx) -> bytes:
    """§3.1.2.1 with a usable Via: only the Contact has the empty parameters."""
    return invite(c, name="badinv01c").replace(
        f"Contact: {c.contact()}".encode(), f'Contact: "Joe" {c.contact()};;;;'.encode())


def clerr(c: Ctx) -> bytes:
    """§3.1.2.2: Content-Length (9999) larger than the body."""
    return invite(c, content_length="9999", name="clerr")


def ncl(c: Ctx) -> bytes:
    """§3.1.2.3: a negative Content-Length."""
    return invite(c, content_length="-999", name="ncl")


BIG = str(2**70)  # far beyond 2**32-1


def scalar02(c: Ctx) -> bytes:
    """§3.1.2.4: a REGISTER with CSeq > 2**32-1, Max-Forwards > 255, a 100-digit Expires
    and a huge Contact expires (400 for the CSeq)."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0",
        f"Via: {c.via('scalar02')}",
        f"To: <sip:2001@{c.sg}>", f"From: <sip:2001@{c.sg}>;tag={c.tag()}",
        f"CSeq: {BIG} REGISTER", f"Call-ID: {c.call_id('scalar02')}",
        "Max-Forwards: 300", "Expires: 1" + "0" * 100,
        f"Contact: <sip:2001@{c.me}>", "  ;expires=280297596632815", "Content-Length: 0")


def scalar02_invite(c: Ctx) -> bytes:
    """§3.1.2.4 in an INVITE: CSeq > 2**32-1 and Max-Forwards 300."""
    return invite(c, name="scalar02").replace(
        b"CSeq: 1 INVITE", f"CSeq: {BIG} INVITE".encode()).replace(
        b"Max-Forwards: 70", b"Max-Forwards: 300")


def quotbal(c: Ctx) -> bytes:
    """§3.1.2.6: an unterminated quote in the To display name."""
    return invite(c, name="quotbal").replace(
        f"To: <sip:{c.number}@{c.sg}>".encode(),
        f'To: "Mr. J. User <sip:{c.number}@{c.sg}>'.encode())


def ltgtruri(c: Ctx) -> bytes:
    """§3.1.2.7: the Request-URI inside <> (and a Via without branch)."""
    return invite(c, uri=f"<sip:{c.number}@{c.sg}>", name="ltgtruri").replace(
        f"Via: {c.via('ltgtruri')}".encode(), f"Via: SIP/2.0/{c.transport} {c.me}".encode())


def lwsruri(c: Ctx) -> bytes:
    """§3.1.2.8: LWS inside the Request-URI (``;  lr``). Unlike the RFC's, the To has no
    tag, so a liberal parser would start a call: nothing but the URI decides."""
    return invite(c, uri=f"sip:{c.number}@{c.sg}; lr", name="lwsruri")


def lwsstart(c: Ctx) -> bytes:
    """§3.1.2.9: two spaces between the Request-Line's elements."""
    data = invite(c, name="lwsstart")
    return data.replace(f"INVITE sip:{c.number}@{c.sg} SIP/2.0".encode(),
                        f"INVITE  sip:{c.number}@{c.sg}  SIP/2.0".encode(), 1)


def trws(c: Ctx) -> bytes:
    """§3.1.2.10: spaces between SIP-Version and the CRLF of the Request-Line (OPTIONS)."""
    return options(c, "Accept: application/sdp", name="trws",
                   start=f"OPTIONS sip:remote-target@{c.sg} SIP/2.0  ")


def trws_invite(c: Ctx) -> bytes:
    """§3.1.2.10 in an INVITE to the allowed number."""
    return invite(c, name="trws").replace(
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0\r\n".encode(),
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0  \r\n".encode(), 1)


def escruri(c: Ctx) -> bytes:
    """§3.1.2.11: escaped headers (a Route) in the Request-URI."""
    return invite(c, uri=f"sip:{c.number}@{c.sg}?Route=%3Csip:{c.sg}%3E", name="escruri")


def baddate(c: Ctx) -> bytes:
    """§3.1.2.12: a Date in EST, not GMT (harmless to an element that ignores Date)."""
    return invite(c, "Date: Fri, 01 Jan 2010 16:00:00 EST", name="baddate")


def regbadct(c: Ctx) -> bytes:
    """§3.1.2.13: a Contact URI with an escaped header but no <> around it."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0",
        f"To: sip:2001@{c.sg}", f"From: sip:2001@{c.sg};tag={c.tag()}", "Max-Forwards: 70",
        f"Call-ID: {c.call_id('regbadct')}", "CSeq: 1 REGISTER", f"Via: {c.via('regbadct')}",
        f"Contact: sip:2001@{c.me}?Route=%3Csip:{c.sg}%3E", "l: 0")


def badaspec(c: Ctx) -> bytes:
    """§3.1.2.14: spaces inside the To's <addr-spec> (a quoted display name with a comma
    in From)."""
    return message(
        f"OPTIONS sip:{c.sg} SIP/2.0",
        f"Via: {c.via('badaspec')}", "Max-Forwards: 70",
        f'From: "Curie, Marie" <sip:2001@{c.me}>;tag={c.tag()}',
        f'To: "Pierre, Curie" < sip:pierre@{c.sg} >',
        f"Call-ID: {c.call_id('badaspec')}", "Accept: application/sdp",
        "CSeq: 3923239 OPTIONS", "l: 0")


def baddn(c: Ctx) -> bytes:
    """§3.1.2.15: display names with non-token characters (commas) left unquoted."""
    return message(
        f"OPTIONS sip:{c.sg} SIP/2.0",
        f"Via:     {c.via('baddn')}", "Max-Forwards:      70",
        f"From:    Curie, Marie <sip:2001@{c.me}>;tag={c.tag()}",
        f"To:      Pierre, Curie <sip:pierre@{c.sg}>",
        f"Call-ID: {c.call_id('baddn')}", "Accept: application/sdp",
        "CSeq:    3923239 OPTIONS", "l: 0")


def baddn_invite(c: Ctx) -> bytes:
    """§3.1.2.15 in an INVITE: the unquoted ``Curie, Marie`` must not reach the trunk."""
    return invite(c, name="baddn").replace(
        f"From: <sip:2001@{c.me}>".encode(), f"From: Curie, Marie <sip:2001@{c.me}>".encode())


def badvers(c: Ctx, via_version: str = "7.0") -> bytes:
    """§3.1.2.16: SIP/7.0 in the Request-Line (and, as in the RFC, in the Via)."""
    return message(
        f"OPTIONS sip:{c.sg} SIP/7.0",
        f"Via:     SIP/{via_version}/{c.transport} {c.me};branch={c.branch('badvers')}",
        "Max-Forwards:     70",
        f"From:    A. Bell <sip:2001@{c.me}>;tag={c.tag()}",
        f"To:      T. Watson <sip:watson@{c.sg}>",
        f"Call-ID: {c.call_id('badvers')}", "CSeq:    1 OPTIONS", "l: 0")


def mismatch01(c: Ctx) -> bytes:
    """§3.1.2.17: OPTIONS in the Request-Line, INVITE in the CSeq."""
    return options(c, name="mismatch01").replace(b"CSeq: 10 OPTIONS", b"CSeq: 8 INVITE")


def mismatch02(c: Ctx) -> bytes:
    """§3.1.2.18: an unknown method with a CSeq that says INVITE (and an SDP body)."""
    body = sdp(c)
    return message(
        f"NEWMETHOD sip:{c.number}@{c.sg} SIP/2.0",
        f"To: sip:{c.number}@{c.sg}", f"From: sip:2001@{c.me};tag={c.tag()}",
        "Max-Forwards: 6", f"Call-ID: {c.call_id('mismatch02')}", "CSeq: 8 INVITE",
        f"Contact: {c.contact()}", f"Via: {c.via('mismatch02')}",
        "Content-Type: application/sdp", f"l: {len(body)}", body=body)


# --------------------------------------------------------------------------- RFC 4475 §3.2, §3.3, §3.4


def badbranch(c: Ctx) -> bytes:
    """§3.2.1: a branch that is the magic cookie alone (no transaction identifier)."""
    return options(c, "Accept: application/sdp", name="badbranch").replace(
        f";branch={c.branch('badbranch')}".encode(), b";branch=z9hG4bK")


def insuf(c: Ctx) -> bytes:
    """§3.3.1: no Call-ID, From, To or Max-Forwards."""
    body = sdp(c)
    return message(
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0", "CSeq: 193942 INVITE",
        f"Via: {c.via('insuf')}", "Content-Type: application/sdp", f"l: {len(body)}",
        body=body)


def unkscm(c: Ctx) -> bytes:
    """§3.3.2: an unknown scheme with opaque content as the Request-URI (the To is a SIP
    URI, which carries no routing)."""
    return options(c, uri="nobodyKnowsThisScheme:totallyopaquecontent", name="unkscm")


def unkscm_invite(c: Ctx) -> bytes:
    """§3.3.2 in an INVITE: the To names the allowed number, the Request-URI does not."""
    return invite(c, uri=f"nobodyKnowsThisScheme:{c.number}", name="unkscm")


def novelsc(c: Ctx) -> bytes:
    """§3.3.3: a registered but unusual scheme (``soap.beep``) as the Request-URI."""
    return options(c, uri=f"soap.beep://{c.sg}", name="novelsc")


def unksm2(c: Ctx) -> bytes:
    """§3.3.4: a REGISTER with unknown schemes in To (isbn), From (http) and Contact."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0",
        "To: isbn:0131103628", f"From: <http://127.0.0.1/>;tag={c.tag()}",
        f"Call-ID: {c.call_id('unksm2')}", "CSeq: 234902 REGISTER", "Max-Forwards: 70",
        f"Via: {c.via('unksm2')}", "Contact: <name:Ada_Lovelace>", "l: 0")


def bext01(c: Ctx) -> bytes:
    """§3.3.5: Require and Proxy-Require with option tags nothing supports."""
    return options(c, "Require: noOneSupportsThis, norThisOne",
                   "Proxy-Require: noProxySupportsThis, norThisOneEither", name="bext01")


def bext01_invite(c: Ctx) -> bytes:
    """§3.3.5 in an INVITE to the allowed number."""
    return invite(c, "Require: noOneSupportsThis, norThisOne",
                  "Proxy-Require: noProxySupportsThis", name="bext01")


INVUT_BODY = b'<media>\r\n <opus port="4000"/>\r\n</media>\r\n'


def invut(c: Ctx) -> bytes:
    """§3.3.6: an INVITE whose body is of an unknown type (application/unknownformat)."""
    return invite(c, body=INVUT_BODY, name="invut").replace(
        b"Content-Type: application/sdp", b"Content-Type: application/unknownformat")


def regaut01(c: Ctx) -> bytes:
    """§3.3.7: a REGISTER with an Authorization of an unknown scheme."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0",
        f"To: sip:2001@{c.sg}", f"From: sip:2001@{c.sg};tag={c.tag()}", "Max-Forwards: 8",
        f"Call-ID: {c.call_id('regaut01')}", "CSeq: 9338 REGISTER",
        f"Via: {c.via('regaut01')}", "Authorization: NoOneKnowsThisScheme opaque-data=here",
        "Content-Length:0")


def multi01(c: Ctx) -> bytes:
    """§3.3.8: two values each for CSeq, Call-ID, From, To, Max-Forwards (and Contact)."""
    body = sdp(c)
    return message(
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0",
        f"Contact: {c.contact()}", f"Via: {c.via('multi01')}", "Max-Forwards: 70",
        "CSeq: 5 INVITE", f"Call-ID: {c.call_id('multi01')}", "CSeq: 59 INVITE",
        f"Call-ID: {c.call_id('multi01b')}", f"From: sip:2001@{c.me};tag={c.tag()}",
        f"To: sip:{c.number}@{c.sg}", f"To: sip:other@{c.sg}",
        f"From: sip:2002@{c.me};tag={c.tag('b')}", "Content-Type: application/sdp",
        f"l: {len(body)}", f"Contact: {c.contact('2002')}", "Max-Forwards: 5", body=body)


MCL_BODY = b"No one can tell how many octets are supposed to be here.\r\n"


def mcl01(c: Ctx) -> bytes:
    """§3.3.9: two Content-Length values (13 and 5)."""
    return message(
        f"OPTIONS sip:{c.sg} SIP/2.0", f"Via: {c.via('mcl01')}", f"To: sip:{c.sg}",
        f"From: sip:2001@{c.me};tag={c.tag()}", f"Call-ID: {c.call_id('mcl01')}",
        "CSeq: 15932 OPTIONS", "Content-Length: 13", "Max-Forwards: 60",
        "Content-Length: 5", "Content-Type: text/plain", body=MCL_BODY)


def mcl01_invite(c: Ctx) -> bytes:
    """§3.3.9 in an INVITE (sent over TCP, where framing depends on it)."""
    return invite(c, "Content-Length: 5", name="mcl01", content_length="13", body=MCL_BODY)


def zeromf(c: Ctx) -> bytes:
    """§3.3.11: Max-Forwards 0 on an OPTIONS."""
    return options(c, name="zeromf").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")


def zeromf_invite(c: Ctx) -> bytes:
    """§3.3.11 on an INVITE sipguard would forward: no hops left."""
    return invite(c, name="zeromf").replace(b"Max-Forwards: 70", b"Max-Forwards: 0")


def cparam(c: Ctx, brackets: bool) -> bytes:
    """§3.3.12 (cparam01: no <>, so ``;unknownparam`` is a header parameter) and §3.3.13
    (cparam02: inside <>, a URI parameter)."""
    contact = f"<sip:+12125552222@{c.me};unknownparam>" if brackets else \
        f"sip:+12125552222@{c.me};unknownparam"
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0", f"Via: {c.via('cparam')}", "Max-Forwards: 70",
        f"From: sip:2001@{c.sg};tag={c.tag()}", f"To: sip:2001@{c.sg}",
        f"Call-ID: {c.call_id('cparam')}", "CSeq: 2 REGISTER", f"Contact: {contact}", "l: 0")


def regescrt(c: Ctx) -> bytes:
    """§3.3.14: a REGISTER whose Contact URI carries an escaped Route header."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0", f"To: sip:2001@{c.sg}",
        f"From: sip:2001@{c.sg};tag={c.tag()}", "Max-Forwards: 70",
        f"Call-ID: {c.call_id('regescrt')}", "CSeq: 14398234 REGISTER",
        f"Via: {c.via('regescrt')}", f"M: <sip:2001@{c.me}?Route=%3Csip:{c.sg}%3E>", "L:0")


def sdp01(c: Ctx) -> bytes:
    """§3.3.15: an INVITE whose Accept rules out SDP in the answer."""
    return invite(c, "Accept: text/nobodyKnowsThis", name="sdp01")


def inv2543(c: Ctx, contact: bool = False) -> bytes:
    """§3.4.1: RFC 2543 syntax: no branch, no From tag, no Max-Forwards, no
    Content-Length (UDP), no Contact, ``user=phone`` URIs and a Record-Route."""
    body = sdp(c)
    return message(
        f"INVITE sip:{c.number}@{c.sg} SIP/2.0",
        f"Via: SIP/2.0/{c.transport} {c.me}",
        f"From: <sip:+12125551111@{c.me};user=phone>",
        f"Record-Route: <sip:2001@{c.me};maddr=127.0.0.1>",
        f"To: sip:+{c.number}@{c.sg};user=phone",
        f"Call-ID: {c.call_id('inv2543')}", "CSeq: 56 INVITE",
        *([f"Contact: {c.contact()}"] if contact else []),
        "Content-Type: application/sdp", body=body)


# --------------------------------------------------------------------------- RFC 5118 (over [::1])


def ipv6_good(c: Ctx) -> bytes:
    """§4.1: IPv6 references in the Request-URI, the Via and the Contact."""
    return message(
        f"REGISTER sip:{c.sg} SIP/2.0", f"To: sip:2001@{c.sg}",
        f"From: sip:2001@{c.sg};tag={c.tag()}", f"Call-ID: {c.call_id('ipv6good')}",
        "Max-Forwards: 70", "CSeq: 9981 REGISTER", f"Via: {c.via('ipv6good')}",
        f'Contact: "Caller" <sip:caller@{c.me}>', "Content-Length: 0")


def ipv6_bad(c: Ctx, method: str = "REGISTER") -> bytes:
    """§4.2: an IPv6 address in the Request-URI without the mandatory brackets."""
    if method == "INVITE":
        return invite(c, uri=f"sip:{c.number}@0:0:0:0:0:0:0:1", name="ipv6bad")
    return ipv6_good(c).replace(f"REGISTER sip:{c.sg} SIP/2.0".encode(),
                                b"REGISTER sip:0:0:0:0:0:0:0:1 SIP/2.0")


def port_ambiguous(c: Ctx, port: bool = False) -> bytes:
    """§4.3: an IPv6 reference whose last group looks like a port but is inside the
    brackets (``[::ffff:7f00:1]`` is 127.0.0.1); §4.4 (``port=True``): the port outside."""
    uri = f"sip:{c.sg}" if port else "sip:[::ffff:7f00:1]"
    return ipv6_good(c).replace(f"REGISTER sip:{c.sg} SIP/2.0".encode(),
                                f"REGISTER {uri} SIP/2.0".encode())


def via_received_delim(c: Ctx) -> bytes:
    """§4.5: a BYE whose Via ``received`` holds a bracketed IPv6 address (the grammar
    wants none: accept both)."""
    return message(
        f"BYE sip:{c.sg} SIP/2.0", f"To: sip:{c.number}@{c.sg};tag=bd76ya{c.uid}",
        f"From: sip:2001@{c.me};tag={c.tag()}",
        f"Via: SIP/2.0/UDP {c.me};received=[::1];branch={c.branch('rcvd')}",
        f"Call-ID: {c.call_id('rcvd-delim')}", "Max-Forwards: 70", "CSeq: 321 BYE",
        "Content-Length: 0")


def via_received_no_delim(c: Ctx) -> bytes:
    """§4.5: an OPTIONS whose Via ``received`` is a bare IPv6 address."""
    return message(
        f"OPTIONS sip:{c.sg} SIP/2.0", f"To: sip:{c.sg}",
        f"From: sip:2001@{c.me};tag={c.tag()}",
        f"Via: SIP/2.0/UDP {c.me};received=::1;branch={c.branch('rcvd')}",
        f"Call-ID: {c.call_id('rcvd-nodelim')}", "Max-Forwards: 70",
        f'Contact: "Caller" <sip:caller@{c.me}>', "CSeq: 921 OPTIONS", "Content-Length: 0")


def ipv6_in_sdp(c: Ctx) -> bytes:
    """§4.6: an INVITE over IPv6 with an IPv6 SDP."""
    return invite(c, name="ipv6sdp")


def mult_ip_in_header(c: Ctx) -> bytes:
    """§4.7: a BYE with IPv6 and IPv4 Vias (one with an IPv4 ``received``) and an IPv6
    Contact."""
    return message(
        f"BYE sip:{c.number}@{c.sg} SIP/2.0",
        f"Via: SIP/2.0/UDP {c.me};branch={c.branch('mult')}",
        f"Via: SIP/2.0/UDP 127.0.0.1:{c.local[1]};branch={c.branch('mult4')}",
        f"Via: SIP/2.0/TCP {c.me};branch={c.branch('mult6')};received=127.0.0.1",
        f"Call-ID: {c.call_id('multip')}", "Max-Forwards: 70",
        f"To: sip:{c.number}@{c.sg};tag=32x1{c.uid}", f"From: sip:2001@{c.me};tag={c.tag()}",
        f"Contact: <sip:2001@{c.me}>", "CSeq: 711 BYE", "Content-Length: 0")


def mult_ip_in_sdp(c: Ctx) -> bytes:
    """§4.8: SDP with an IPv4 session address and IPv6 and IPv4 media addresses."""
    lines = ["v=0", f"o=torture {int(c.uid, 16)} 1 IN IP4 127.0.0.1", "s=-",
             "c=IN IP4 127.0.0.1", "t=0 0", "m=audio 49170 RTP/AVP 0", "c=IN IP6 ::1",
             "a=rtpmap:0 PCMU/8000", "m=video 51372 RTP/AVP 31", "c=IN IP4 127.0.0.1",
             "a=rtpmap:31 H261/90000"]
    return invite(c, body=(CRLF.join(lines) + CRLF).encode(), name="multsdp")


def ipv4_mapped(c: Ctx) -> bytes:
    """§4.9: IPv4-mapped IPv6 addresses (the Request-URI names sipguard's IPv4 address
    that way; the SDP offers ::ffff:127.0.0.1)."""
    mapped = f"[::ffff:127.0.0.1]:{c.sg_udp4[1]}"
    return invite(c, uri=f"sip:{c.number}@{mapped}",
                  body=sdp(c, family="IP6", address="::ffff:127.0.0.1"), name="mapped")


def ipv6_abnf(c: Ctx, colons: int) -> bytes:
    """§4.10: the RFC 3261 IPv6 ABNF bug: an IPv4-suffixed reference written with two
    colons (valid, 0:0::ffff:127.0.0.1) or three (invalid)."""
    return options(c, uri=f"sip:[0:0{':' * colons}ffff:127.0.0.1]", name=f"abnf{colons}")


# --------------------------------------------------------------------------- replies


COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
           "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
           "v": "via"}


@dataclass(frozen=True)
class Reply:
    """A SIP message as received: start line, header fields, body, raw bytes."""

    raw: bytes
    start: str
    fields: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> Reply:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        fields: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip()}")
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            fields.append((COMPACT.get(key, key), value.strip()))
        return cls(data, lines[0], tuple(fields), body)

    @property
    def is_response(self) -> bool:
        return self.start.upper().startswith("SIP/")

    @property
    def status(self) -> int:
        """The status code (0 when it is not a three-digit number)."""
        code = self.start.split(" ", 2)[1] if self.start.count(" ") else ""
        return int(code) if len(code) == 3 and code.isdigit() else 0

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def uri(self) -> str:
        parts = self.start.split(" ")
        return parts[1] if len(parts) > 1 else ""

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name.lower()), None)

    def headers(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name.lower()]

    @property
    def cseq_method(self) -> str:
        value = self.header("cseq") or ""
        return value.split()[-1] if value.split() else ""

    def via_values(self) -> list[str]:
        """Every Via value, split at commas (none of ours quote a comma)."""
        return [part.strip() for value in self.headers("via") for part in value.split(",")]


def ack_for(request: bytes, response: Reply) -> bytes:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the request's URI and
    top Via (as the response echoes it), the response's From, To, Call-ID, CSeq number."""
    words = request.split(b"\r\n", 1)[0].decode("utf-8", "replace").split()
    uri = words[1].strip("<>") if len(words) > 1 else "sip:invalid"
    top_via = response.via_values()[0] if response.via_values() else ""
    number = (response.header("cseq") or "1").split()[0]
    return message(f"ACK {uri} SIP/2.0", f"Via: {top_via}", "Max-Forwards: 70",
                   f"From: {response.header('from') or ''}", f"To: {response.header('to') or ''}",
                   f"Call-ID: {response.header('call-id') or ''}", f"CSeq: {number} ACK",
                   "Content-Length: 0")


def split_stream(buffer: bytearray) -> list[bytes]:
    """Whole messages cut from the front of a TCP buffer (framed by Content-Length)."""
    messages: list[bytes] = []
    while True:
        while buffer.startswith(b"\r\n"):
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return messages
        match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", bytes(buffer[:end]))
        length = int(match.group(1)) if match else 0
        if len(buffer) < end + 4 + length:
            return messages
        messages.append(bytes(buffer[:end + 4 + length]))
        del buffer[:end + 4 + length]


@dataclass
class Exchange:
    """What one torture request got back (``replies``: every response, in order)."""

    request: bytes
    replies: list[Reply] = field(default_factory=list)

    @property
    def method(self) -> str:
        """The request's CSeq method (what its own responses carry)."""
        return Reply.parse(self.request).cseq_method

    @property
    def final(self) -> Reply | None:
        """The first final response to this request (by CSeq method)."""
        return next((reply for reply in self.replies
                     if reply.status >= 200 and reply.cseq_method == self.method), None)

    @property
    def status(self) -> int | None:
        """The final status code, or None if no final response came."""
        final = self.final
        return None if final is None else final.status


def udp_exchange(sock: socket.socket, data: bytes, target: tuple[str, int],
                 window: float, t1: float = 0.5) -> Exchange:
    """Send ``data`` like a UAC over UDP (Timers A/E: resent at T1, 2*T1... until anything
    answers), collect replies until a final response or ``window`` seconds, ACK a non-2xx
    final response to an INVITE."""
    exchange = Exchange(data)
    deadline = time.monotonic() + window
    interval = t1
    sock.sendto(data, target)
    next_send = time.monotonic() + interval
    while time.monotonic() < deadline:
        wake = deadline if exchange.replies else min(next_send, deadline)
        sock.settimeout(max(0.01, wake - time.monotonic()))
        try:
            received = sock.recv(65536)
        except TimeoutError:
            if not exchange.replies and time.monotonic() >= next_send:
                sock.sendto(data, target)
                interval *= 2
                next_send = time.monotonic() + interval
            continue
        reply = Reply.parse(received)
        if not reply.is_response:
            continue
        exchange.replies.append(reply)
        final = exchange.final
        if final is not None:
            if final.status >= 300 and final.cseq_method == "INVITE":
                sock.sendto(ack_for(data, final), target)
            break
    return exchange


def tcp_exchange(sock: socket.socket, data: bytes, window: float) -> Exchange:
    """Send ``data`` on a connected TCP socket (no retransmissions on a stream), collect
    replies until a final response, the connection's end or ``window`` seconds."""
    exchange = Exchange(data)
    deadline = time.monotonic() + window
    buffer = bytearray()
    sock.sendall(data)
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break  # sipguard closed the connection
        buffer += chunk
        for raw in split_stream(buffer):
            reply = Reply.parse(raw)
            if reply.is_response:
                exchange.replies.append(reply)
        final = exchange.final
        if final is not None:
            if final.status >= 300 and final.cseq_method == "INVITE":
                sock.sendall(ack_for(data, final))
            break
    return exchange


# --------------------------------------------------------------------------- the trunk


def response(request: Reply, status_line: str, *headers: str, body: bytes = b"",
             to_tag: str | None = None, cseq: str | None = None,
             extra_vias: tuple[str, ...] = ()) -> bytes:
    """A response to ``request`` (its Vias, From, To with our tag, Call-ID, CSeq)."""
    to = request.header("to") or ""
    if to_tag and ";tag=" not in to:
        to = f"{to};tag={to_tag}"
    lines = [f"Via: {via}" for via in request.headers("via")]
    lines += [f"Via: {via}" for via in extra_vias]
    lines += [f"From: {request.header('from') or ''}", f"To: {to}",
              f"Call-ID: {request.header('call-id') or ''}",
              f"CSeq: {cseq or request.header('cseq') or ''}", "Server: torture-trunk",
              *headers]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return message(status_line, *lines, body=body)


Answer = Callable[["Trunk", Reply], list[bytes]]


@dataclass
class Received:
    """One datagram the trunk got."""

    at: float
    data: bytes
    source: tuple[str, int]

    @property
    def reply(self) -> Reply:
        return Reply.parse(self.data)


class Trunk:
    """A carrier on 127.0.0.1: records every datagram; answers each new INVITE with the
    responses its dialled number's behaviour gives (default 100 then 486), resends them
    for a retransmitted INVITE, answers CANCEL (200, then 487 if still unanswered), BYE
    and OPTIONS (200), and absorbs ACK."""

    def __init__(self, behaviours: dict[str, Answer] | None = None) -> None:
        self.behaviours = dict(behaviours or {})
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.received: list[Received] = []
        self._answers: dict[str, list[bytes]] = {}  # INVITE branch -> what we sent
        self._final: dict[str, bool] = {}  # INVITE branch -> answered finally
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="torture-trunk", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    @property
    def contact(self) -> str:
        return f"<sip:carrier@127.0.0.1:{self.port}>"

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.sock.close()

    # -- what it saw

    def requests(self, method: str, since: int = 0) -> list[Reply]:
        """Requests of ``method`` received from datagram number ``since`` on."""
        with self._lock:
            datagrams = self.received[since:]
        replies = [item.reply for item in datagrams]
        return [reply for reply in replies if not reply.is_response and reply.method == method]

    def mark(self) -> int:
        with self._lock:
            return len(self.received)

    def new_invites(self, since: int) -> list[Reply]:
        """Initial INVITEs (no To tag) since ``since``, one per Call-ID; a Call-ID seen
        before ``since`` is an earlier call's retransmission (Timer A runs until Timer B
        when the trunk never sent a provisional), not a new INVITE."""
        with self._lock:
            before = self.received[:since]
        earlier = {item.reply.header("call-id") for item in before}
        seen: dict[str, Reply] = {}
        for reply in self.requests("INVITE", since):
            call_id = reply.header("call-id") or ""
            if call_id not in earlier and ";tag=" not in (reply.header("to") or "").replace(
                    " ", ""):
                seen.setdefault(call_id, reply)
        return list(seen.values())

    def wait_for(self, method: str, since: int, count: int = 1,
                 timeout: float = 5.0, call_id: str | None = None) -> list[Reply]:
        deadline = time.monotonic() + timeout
        while True:
            found = [reply for reply in self.requests(method, since)
                     if call_id is None or reply.header("call-id") == call_id]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    # -- the loop

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stopping.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.received.append(Received(time.monotonic(), data, source[:2]))
            request = Reply.parse(data)
            if request.is_response:
                continue
            for out in self._answer(request):
                self.sock.sendto(out, source)

    def _answer(self, request: Reply) -> list[bytes]:
        vias = request.via_values()
        branch = vias[0].partition("branch=")[2].split(";")[0] if vias else ""
        if request.method == "INVITE":
            if branch in self._answers:
                return self._answers[branch][-1:]  # a retransmission: the last answer again
            user = request.uri.partition(":")[2].partition("@")[0]
            behaviour = self.behaviours.get(user, busy)
            answers = behaviour(self, request)
            self._answers[branch] = answers
            self._final[branch] = any(
                Reply.parse(answer).status >= 200 or not Reply.parse(answer).status
                for answer in answers)
            return answers
        if request.method == "CANCEL":
            out = [response(request, "SIP/2.0 200 OK", to_tag="trunk")]
            invite_request = next(
                (item for item in reversed(self.requests("INVITE"))
                 if branch and branch in ";".join(item.via_values()[:1])), None)
            if invite_request is not None and not self._final.get(branch, True):
                self._final[branch] = True
                out.append(response(invite_request, "SIP/2.0 487 Request Terminated",
                                    to_tag="trunk"))
            return out
        if request.method in ("BYE", "OPTIONS"):
            return [response(request, "SIP/2.0 200 OK", to_tag="trunk")]
        return []  # ACK (and anything else) is absorbed


def busy(trunk: Trunk, request: Reply) -> list[bytes]:
    """100 Trying, then 486 Busy Here (so that no dialog remains)."""
    return [response(request, "SIP/2.0 100 Trying"),
            response(request, "SIP/2.0 486 Busy Here", to_tag=f"busy{secrets.token_hex(3)}")]
