"""Parser tables for sipguard.sip.message.parse_message: bytes in, fields or a status code out."""

from __future__ import annotations

import pytest

from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.headers import display_name_text
from sipguard.sip.message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MessageParseError,
    Request,
    Response,
    parse_message,
)
from tests.unit.sip_messages import (
    build,
    parse_request,
    parse_response,
    request,
    request_headers,
)

START = "INVITE sip:+15551234567@sipguard.example.com SIP/2.0"


def raw(*lines: str, body: bytes = b"", line_end: bytes = b"\r\n") -> bytes:
    """A datagram written line by line, exactly as given, then a blank line and the body."""
    return line_end.join(line.encode("utf-8") for line in lines) + line_end * 2 + body


def parse_error(data: bytes, **options: object) -> MessageParseError:
    """The MessageParseError that parsing ``data`` must raise."""
    with pytest.raises(MessageParseError) as caught:
        parse_message(data, **options)  # type: ignore[arg-type]
    return caught.value


MANDATORY = [
    "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKpbx-1",
    "Max-Forwards: 70",
    "From: <sip:200@pbx.example.com>;tag=f1",
    "To: <sip:+15551234567@sipguard.example.com>",
    "Call-ID: call-1",
    "CSeq: 1 INVITE",
]


# -- header names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ("k: 100rel", "Supported", "100rel"),
        ("c: application/sdp", "Content-Type", "application/sdp"),
        ("m: <sip:pbx@192.0.2.1>", "Contact", "<sip:pbx@192.0.2.1>"),
        ("s: lunch", "Subject", "lunch"),
        ("e: gzip", "Content-Encoding", "gzip"),
        ("o: refer", "Event", "refer"),
        ("r: <sip:bob@example.com>", "Refer-To", "<sip:bob@example.com>"),
        ("b: <sip:alice@example.com>", "Referred-By", "<sip:alice@example.com>"),
        ("u: talk", "Allow-Events", "talk"),
        ("x: 1800", "Session-Expires", "1800"),
        ("K: timer", "Supported", "timer"),
        ("SUPPORTED: timer", "Supported", "timer"),
        ("sUpPoRtEd: timer", "Supported", "timer"),
        ('www-authenticate: Digest realm="x"', "WWW-Authenticate", 'Digest realm="x"'),
        ("p-asserted-identity: <sip:200@pbx>", "P-Asserted-Identity", "<sip:200@pbx>"),
        ("x-my-custom-header: 1", "X-My-Custom-Header", "1"),
        ("Subject \t: spaced colon", "Subject", "spaced colon"),
        ("Subject:no-space", "Subject", "no-space"),
        ("Subject:   trailing space   ", "Subject", "trailing space"),
        ("Subject:", "Subject", ""),
    ],
)
def test_header_names_are_expanded_and_canonical(line: str, name: str, value: str) -> None:
    """A compact or oddly cased header name is stored under its canonical spelling (§7.3.3)."""
    message = parse_message(raw(START, *MANDATORY, line))
    assert message.headers.get_all(name) == [value]
    assert (name, value) in list(message.headers)


def test_lookups_ignore_case() -> None:
    """Headers can be looked up by any spelling, including the compact form."""
    message = parse_message(raw(START, *MANDATORY, "Subject: hi"))
    assert message.headers.get("subject") == "hi"
    assert message.headers.get("s") == "hi"
    assert message.headers.get("SUBJECT") == "hi"
    assert "s" in message.headers
    assert "Priority" not in message.headers


def test_message_written_only_in_compact_forms() -> None:
    """Every mandatory header may arrive in its compact form (v, f, t, i, l, m)."""
    message = parse_request(
        raw(
            START,
            "v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKc1",
            "f: <sip:200@pbx.example.com>;tag=ff",
            "t: <sip:bob@example.com>",
            "i: compact-call",
            "CSeq: 7 INVITE",
            "m: <sip:pbx@192.0.2.1:5070>",
            "c: application/sdp",
            "l: 4",
            body=b"v=0\n",
        )
    )
    assert message.top_via.branch == "z9hG4bKc1"
    assert message.from_tag == "ff"
    assert str(message.to_address.uri) == "sip:bob@example.com"
    assert message.call_id == "compact-call"
    assert message.cseq.number == 7
    assert message.contact is not None and message.contact.uri.host == "192.0.2.1"
    assert message.headers.get("Content-Type") == "application/sdp"
    assert message.body == b"v=0\n"


@pytest.mark.parametrize(
    "line",
    ["Bad Header: x", "Sub@ject: x", "NoColonHere", ": empty name", "Sub ject: x"],
)
def test_malformed_header_line_is_400(line: str) -> None:
    """A header line whose name is not a token, or that has no colon, is a 400."""
    error = parse_error(raw(START, *MANDATORY, line))
    assert error.status_code == 400
    assert "Malformed header line" in error.reason
    assert isinstance(error, RemoteProtocolError)


# -- repeated headers and comma-separated values -----------------------------------------------


VIA_A = "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKa"
VIA_B = "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKb;received=192.0.2.50"
VIA_C = "SIP/2.0/UDP [2001:db8::7]:5062;branch=z9hG4bKc"


@pytest.mark.parametrize(
    "via_lines",
    [
        [f"Via: {VIA_A}", f"Via: {VIA_B}", f"Via: {VIA_C}"],
        [f"Via: {VIA_A}, {VIA_B}, {VIA_C}"],
        [f"Via: {VIA_A},{VIA_B}", f"v: {VIA_C}"],
        [f"Via: {VIA_A} ,\r\n {VIA_B}", f"Via: {VIA_C}"],
    ],
)
def test_via_values_in_order_however_written(via_lines: list[str]) -> None:
    """Vias on separate lines, on one comma-separated line or both give the same list (§7.3.1)."""
    message = parse_message(raw(START, *via_lines, *MANDATORY[1:]))
    assert [via.branch for via in message.vias] == ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]
    assert [via.transport for via in message.vias] == ["UDP", "TCP", "UDP"]
    assert message.vias[1].parameter("received") == "192.0.2.50"
    assert message.top_via.branch == "z9hG4bKa"


@pytest.mark.parametrize(
    ("lines", "name", "values"),
    [
        (
            ["Route: <sip:p1.example.com;lr>", "Route: <sip:p2.example.com;lr>, <sip:p3;lr>"],
            "Route",
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3;lr>"],
        ),
        (
            ['Contact: "Smith, John" <sip:j@h.example.com>, <sip:k@h.example.com>;q=0.5'],
            "Contact",
            ['"Smith, John" <sip:j@h.example.com>', "<sip:k@h.example.com>;q=0.5"],
        ),
        (
            ['Contact: "say \\"hi, there\\"" <sip:j@h>;q=1'],
            "Contact",
            ['"say \\"hi, there\\"" <sip:j@h>;q=1'],
        ),
        (
            ["Record-Route: <sip:p1;lr;x=a,b>"],  # a comma inside <...> separates nothing
            "Record-Route",
            ["<sip:p1;lr;x=a,b>"],
        ),
        (["Supported: 100rel, timer", "k: replaces"], "Supported", ["100rel", "timer", "replaces"]),
        (["Allow: INVITE,ACK , BYE"], "Allow", ["INVITE", "ACK", "BYE"]),
        (  # Date is not a list header: its comma separates nothing
            ["Date: Sat, 13 Nov 2010 23:29:00 GMT"],
            "Date",
            ["Sat, 13 Nov 2010 23:29:00 GMT"],
        ),
        (
            ['WWW-Authenticate: Digest realm="a", nonce="b", algorithm=MD5'],
            "WWW-Authenticate",
            ['Digest realm="a", nonce="b", algorithm=MD5'],
        ),
        (["Supported: , ,"], "Supported", []),
    ],
)
def test_list_values(lines: list[str], name: str, values: list[str]) -> None:
    """values() splits list headers on commas outside quotes and <...>, and no others."""
    message = parse_message(raw(START, *MANDATORY, *lines))
    assert message.headers.values(name) == values


def test_get_all_keeps_each_line() -> None:
    """get_all() returns each header line as it arrived, commas and all."""
    message = parse_message(
        raw(START, *MANDATORY, "Route: <sip:a;lr>, <sip:b;lr>", "Route: <sip:c>")
    )
    assert message.headers.get_all("Route") == ["<sip:a;lr>, <sip:b;lr>", "<sip:c>"]
    assert message.headers.get("Route") == "<sip:a;lr>, <sip:b;lr>"


# -- line folding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "name", "value"),
    [
        (["Subject: first", " second"], "Subject", "first second"),
        (["Subject: first", "\tsecond"], "Subject", "first second"),
        (["Subject: first", "   second", "\t \tthird"], "Subject", "first second third"),
        (["Subject:", "  only on the next line"], "Subject", "only on the next line"),
        (["X-Long: a;", " b=1;", " c"], "X-Long", "a; b=1; c"),
    ],
)
def test_continuation_lines_are_unfolded(lines: list[str], name: str, value: str) -> None:
    """A line starting with SP or HTAB continues the previous header (§7.3.1)."""
    message = parse_message(raw(START, *MANDATORY, *lines))
    assert message.headers.get(name) == value


def test_folded_mandatory_headers_parse() -> None:
    """Folding inside To, From and CSeq still yields their structured values."""
    message = parse_request(
        raw(
            START,
            "Via: SIP/2.0/UDP 192.0.2.1:5070",
            " ;branch=z9hG4bKfold",
            "Max-Forwards: 70",
            "From: <sip:200@pbx.example.com>",
            "  ;tag=folded-from",
            "To:",
            " <sip:bob@example.com>",
            "Call-ID: fold-1",
            "CSeq: 12",
            "\tINVITE",
        )
    )
    assert message.top_via.branch == "z9hG4bKfold"
    assert message.from_tag == "folded-from"
    assert message.to_address.uri.user == "bob"
    assert (message.cseq.number, message.cseq.method) == (12, "INVITE")


def test_continuation_before_any_header_is_400() -> None:
    """A continuation line right after the start line has nothing to continue."""
    error = parse_error(raw(START, "  orphan", *MANDATORY))
    assert error.status_code == 400
    assert "Continuation" in error.reason


# -- quoted strings, name-addr and addr-spec ------------------------------------------------------


@pytest.mark.parametrize(
    ("from_value", "display", "user", "uri_parameters", "tag"),
    [
        ('"J. \\"Q\\" Public" <sip:jq@example.com>;tag=1', 'J. "Q" Public', "jq", (), "1"),
        ('"back\\\\slash" <sip:b@example.com>;tag=2', "back\\slash", "b", (), "2"),
        ('"semi;colon=1" <sip:s@example.com>;tag=3', "semi;colon=1", "s", (), "3"),
        ('"<sip:fake@evil>" <sip:real@example.com>;tag=4', "<sip:fake@evil>", "real", (), "4"),
        ('"" <sip:empty@example.com>;tag=5', "", "empty", (), "5"),
        ("Reception <sip:r@example.com>;tag=6", "Reception", "r", (), "6"),
        ("Two Words <sip:tw@example.com>;tag=7", "Two Words", "tw", (), "7"),
        ("caller<sip:nospace@example.com>;tag=8", "caller", "nospace", (), "8"),
        ("<sip:u@example.com;transport=udp>;tag=9", None, "u", (("transport", "udp"),), "9"),
        # addr-spec: everything after the URI belongs to the header (§20.10)
        ("sip:a@example.com;tag=10", None, "a", (), "10"),
        ("sip:a@example.com;transport=tcp;tag=11", None, "a", (), "11"),
        ("sip:a@example.com ; tag = 12", None, "a", (), "12"),
        ("  <sip:a@example.com>  ;  tag=13", None, "a", (), "13"),
        ('"caf\u00e9" <sip:u@example.com>;tag=14', "caf\u00e9", "u", (), "14"),
    ],
)
def test_from_forms(
    from_value: str,
    display: str | None,
    user: str,
    uri_parameters: tuple[tuple[str, str | None], ...],
    tag: str,
) -> None:
    """From in name-addr or addr-spec form gives display name, URI, URI params and tag."""
    headers = request_headers()
    headers[2] = ("From", from_value)
    message = parse_message(build(START, headers))
    address = message.from_address
    assert display_name_text(address) == display
    assert address.uri.user == user
    assert address.uri.parameters == uri_parameters
    assert message.from_tag == tag


def test_addr_spec_parameters_go_to_the_header_not_the_uri() -> None:
    """In ``To: sip:bob@h;transport=tcp;tag=x`` both parameters are header parameters (§20.10)."""
    message = parse_message(request(replace={"To": "sip:bob@example.com;transport=tcp;tag=x"}))
    to = message.to_address
    assert to.uri.parameters == ()
    assert to.parameter("transport") == "tcp"
    assert message.to_tag == "x"
    assert str(to) == "<sip:bob@example.com>;transport=tcp;tag=x"


@pytest.mark.parametrize(
    "from_value",
    [
        '"unterminated <sip:a@example.com>;tag=1',
        '"quoted" sip:a@example.com;tag=1',
        "<sip:a@example.com;tag=1",
        "<sip:a@example.com> junk;tag=1",
        "sip:a@example.com junk",
        "<http//no-scheme>;tag=1",
        "<sip:a@example.com>;bad param=1",
        "<sip:a@[2001:db8::1>;tag=1",
    ],
)
def test_malformed_from_is_400(from_value: str) -> None:
    """A From that is neither a name-addr nor an addr-spec is a 400 (§8.1.1.3)."""
    error = parse_error(request(replace={"From": from_value}))
    assert error.status_code == 400
    assert error.is_request
    assert error.headers is not None and error.headers.get("From") == from_value


# -- Request-URIs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri_text", "scheme", "user", "host", "port", "parameter", "unescaped_user"),
    [
        ("sip:bob@example.com", "sip", "bob", "example.com", None, None, "bob"),
        ("SIP:Bob@EXAMPLE.COM:5070", "sip", "Bob", "example.com", 5070, None, "Bob"),
        ("sips:bob@example.com;transport=tcp", "sips", "bob", "example.com", None, "tcp", "bob"),
        (
            "sip:%2B1555@192.0.2.5;transport=udp",
            "sip",
            "%2B1555",
            "192.0.2.5",
            None,
            "udp",
            "+1555",
        ),
        (
            "sip:+1555;npdi@gw.example.com",
            "sip",
            "+1555;npdi",
            "gw.example.com",
            None,
            None,
            "+1555;npdi",
        ),
        ("sip:alice@[2001:db8::1]:5080", "sip", "alice", "[2001:db8::1]", 5080, None, "alice"),
        ("sip:[2001:DB8::1]", "sip", None, "[2001:db8::1]", None, None, None),
        (
            "tel:+1-201-555-0123;transport=x",
            "tel",
            "+1-201-555-0123",
            "",
            None,
            "x",
            "+1-201-555-0123",
        ),
    ],
)
def test_request_uri_fields(
    uri_text: str,
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    parameter: str | None,
    unescaped_user: str | None,
) -> None:
    """sip, sips and tel Request-URIs give scheme, user, host, port and parameters."""
    message = parse_request(request(uri=uri_text))
    uri = message.uri
    assert (uri.scheme, uri.user, uri.host, uri.port) == (scheme, user, host, port)
    assert uri.parameter("transport") == parameter
    assert uri.unescaped_user == unescaped_user
    assert str(uri) == uri_text  # forwarded byte for byte


@pytest.mark.parametrize(
    ("uri_text", "status_code"),
    [
        ("http://example.com/", 416),
        ("urn:service:sos", 416),
        ("mailto:bob@example.com", 416),
        ("im:bob@example.com", 416),
        ("soap.beep://192.0.2.103:3002", 416),  # RFC 4475 §3.3.3 novelsc
        ("<sip:bob@example.com>", 400),  # RFC 4475 §3.1.2.7 ltgtruri
        ("sip:bob@exa_mple.com", 400),
        ("sip:bob@example.com:99999", 400),
        ("sip:bob@[2001:db8::1", 400),
        ("sip:", 400),
        ("bob@example.com", 400),
        ("tel:", 400),
    ],
)
def test_bad_request_uri(uri_text: str, status_code: int) -> None:
    """A Request-URI of another scheme is a 416 (§8.2.2.1); a malformed one is a 400."""
    error = parse_error(request(uri=uri_text))
    assert error.status_code == status_code
    assert error.method == "INVITE"
    if status_code == 416:
        assert error.reason == "Unsupported URI Scheme"


# -- start lines ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_line", "status_code", "reason"),
    [
        ("INVITE sip:bob@example.com SIP/3.0", 505, "Version Not Supported"),
        ("INVITE sip:bob@example.com SIP/7.0", 505, "Version Not Supported"),  # RFC 4475 badvers
        ("INVITE sip:bob@example.com SIP/2.1", 505, "Version Not Supported"),
        ("INVITE sip:bob@example.com HTTP/1.1", 400, "Malformed Request-Line"),
        ("INVITE  sip:bob@example.com SIP/2.0", 400, "Malformed Request-Line"),  # lwsstart
        ("INVITE sip:bob@example.com SIP/2.0  ", 400, "Malformed Request-Line"),  # trws
        ("INVITE sip:bob@example.com; lr SIP/2.0", 400, "Malformed Request-Line"),  # lwsruri
        ("INVITE sip:bob@example.com", 400, "Malformed Request-Line"),
        ("INVITE", 400, "Malformed Request-Line"),
        ("", 400, "Malformed Request-Line"),
    ],
)
def test_bad_request_line(start_line: str, status_code: int, reason: str) -> None:
    """A Request-Line with another version is a 505; other malformations are 400 (§7.1)."""
    headers = request_headers()
    error = parse_error(build(start_line, headers))
    assert (error.status_code, error.reason) == (status_code, reason)
    assert error.is_request


def test_bad_method_token_is_400() -> None:
    """A method that is not a token is a 400."""
    error = parse_error(build("INV(ITE sip:bob@example.com SIP/2.0", request_headers()))
    assert error.status_code == 400
    assert "Bad method" in error.reason


def test_lower_case_version_in_request_line_is_accepted() -> None:
    """The SIP-Version is case-insensitive (§7.1)."""
    message = parse_request(request(version="sip/2.0"))
    assert message.method == "INVITE"


def test_extension_method_with_token_characters() -> None:
    """Any token is a method, as RFC 4475 §3.1.1.2 (intmeth) exercises."""
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    message = parse_request(request(method=method, contact=None))
    assert message.method == method
    assert message.cseq.method == method


def test_escaped_method_is_taken_literally() -> None:
    """RFC 4475 §3.1.1.5 (esc02): %-escapes in a method are not decoded."""
    message = parse_request(request(method="RE%47IST%45R", contact=None))
    assert message.method == "RE%47IST%45R"


@pytest.mark.parametrize(
    ("status_line", "status_code", "reason"),
    [
        ("SIP/2.0 200 OK", 200, "OK"),
        ("SIP/2.0 183 Session Progress", 183, "Session Progress"),
        ("SIP/2.0 100 ", 100, ""),  # RFC 4475 §3.1.1.13 noreason
        ("SIP/2.0 100", 100, ""),
        ("SIP/2.0 699 Whatever You Like", 699, "Whatever You Like"),
        ("SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e", 200, "= 2**3 * 5**2 \u043d\u043e"),  # unreason
    ],
)
def test_status_lines(status_line: str, status_code: int, reason: str) -> None:
    """A status line gives the code and the reason phrase, which may be empty or UTF-8."""
    response = parse_response(build(status_line, request_headers()))
    assert (response.status_code, response.reason) == (status_code, reason)


@pytest.mark.parametrize(
    "status_line",
    [
        "SIP/2.0 4294967301 better not break the receiver",  # RFC 4475 §3.1.2.19 bigcode
        "SIP/2.0 99 Too Small",
        "SIP/2.0 700 Too Big",
        "SIP/2.0 20x OK",
        "SIP/2.0 OK",
        "SIP/3.0 200 OK",
        "SIP/2.0",
    ],
)
def test_bad_status_line(status_line: str) -> None:
    """A malformed status line is an error flagged as not being a request."""
    error = parse_error(build(status_line, request_headers()))
    assert not error.is_request
    assert error.status_code in (400, 505)


def test_lower_case_version_in_status_line_is_a_response() -> None:
    """``sip/2.0 200 OK`` is a response: the SIP-Version is case-insensitive (§7.1)."""
    message = parse_message(build("sip/2.0 200 OK", request_headers()))
    assert isinstance(message, Response)
    assert message.status_code == 200


# -- mandatory headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
@pytest.mark.parametrize("kind", ["request", "response"])
def test_missing_mandatory_header_is_400_naming_it(missing: str, kind: str) -> None:
    """A request or response without Via, From, To, Call-ID or CSeq is a 400 naming it (§8.1.1)."""
    headers = [(name, value) for name, value in request_headers() if name != missing]
    start = START if kind == "request" else "SIP/2.0 200 OK"
    error = parse_error(build(start, headers))
    assert error.status_code == 400
    assert error.reason == f"Missing Required Header: {missing}"
    assert error.is_request is (kind == "request")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CSeq", "INVITE 1"),
        ("CSeq", "1"),
        ("CSeq", "-1 INVITE"),
        ("CSeq", "2147483648 INVITE"),  # §8.1.1.5: below 2**31
        ("CSeq", "36893488147419103232 INVITE"),  # RFC 4475 §3.1.2.4 scalar02
        ("CSeq", "1 INVITE extra"),
        ("CSeq", "\u0661 INVITE"),  # an Arabic-Indic digit is not a DIGIT
        ("Call-ID", ""),
        ("Call-ID", "   "),
        ("Max-Forwards", "300"),  # RFC 4475 scalar02
        ("Max-Forwards", "-1"),
        ("Max-Forwards", "seventy"),
        ("Via", "SIP/2.0/UDP"),
        ("Via", "SIP/2.0 192.0.2.1"),
        ("Via", "SIP/2.0/UDP 192.0.2.1:70000;branch=z9hG4bKx"),
        ("Via", "SIP/2.0/UDP bad_host;branch=z9hG4bKx"),
        ("To", "<sip:bob@example.com"),
    ],
)
def test_malformed_mandatory_header_is_400(name: str, value: str) -> None:
    """A mandatory header that does not parse is a 400."""
    error = parse_error(request(replace={name: value}))
    assert error.status_code == 400


def test_max_forwards_zero_and_leading_zeros_are_accepted() -> None:
    """Max-Forwards is 1*DIGIT up to 255, so 0 and 0068 are fine (RFC 4475 wsinv)."""
    assert parse_request(request(replace={"Max-Forwards": "0"})).max_forwards == 0
    assert parse_request(request(replace={"Max-Forwards": "0068"})).max_forwards == 68


def test_highest_cseq_is_accepted() -> None:
    """CSeq 2**31 - 1 is the largest allowed sequence number (§8.1.1.5)."""
    message = parse_request(request(cseq=2**31 - 1))
    assert message.cseq.number == 2**31 - 1


@pytest.mark.parametrize(
    ("method", "cseq_method"),
    [
        ("OPTIONS", "INVITE"),  # RFC 4475 §3.1.2.17 mismatch01
        ("NEWMETHOD", "INVITE"),  # RFC 4475 §3.1.2.18 mismatch02
        ("INVITE", "invite"),  # methods are case-sensitive (§7.1)
        ("ACK", "INVITE"),
    ],
)
def test_cseq_method_mismatch_is_400(method: str, cseq_method: str) -> None:
    """A CSeq method that differs from the Request-Line method is a 400 (§8.1.1.5)."""
    error = parse_error(request(method=method, cseq_method=cseq_method))
    assert error.status_code == 400
    assert error.reason == "CSeq method does not match the Request-Line"
    assert error.method == method


def test_response_cseq_method_need_not_match_anything() -> None:
    """A response's CSeq method is whatever request it answers."""
    response = parse_response(build("SIP/2.0 200 OK", request_headers(cseq_method="BYE")))
    assert response.cseq.method == "BYE"


# -- Require ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("require", "unsupported"),
    [
        (["foo"], "foo"),
        (["100rel, foo, bar"], "foo, bar"),
        (["foo", "timer"], "foo"),
        (["nosuchextension"], "nosuchextension"),  # RFC 4475 bext01 style
    ],
)
def test_unsupported_require_is_420(require: list[str], unsupported: str) -> None:
    """A Require naming an extension we lack is a 420 listing it in Unsupported (§8.2.2.3)."""
    error = parse_error(request(extra=[("Require", value) for value in require]))
    assert (error.status_code, error.reason) == (420, "Bad Extension")
    assert error.extra_headers == (("Unsupported", unsupported),)


@pytest.mark.parametrize("require", ["100rel", "timer, replaces", "100REL"])
def test_supported_require_is_accepted(require: str) -> None:
    """Extensions sipguard relays may be required (option tags are case-insensitive)."""
    message = parse_request(request(extra=[("Require", require)]))
    assert message.headers.get("Require") == require


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_require_is_ignored_on_ack_and_cancel(method: str) -> None:
    """ACK and CANCEL are never rejected with a 420 (§8.2.2.3)."""
    message = parse_request(request(method=method, extra=[("Require", "foo")]))
    assert message.method == method


def test_require_on_a_response_is_not_checked() -> None:
    """Require in a response is not the parser's business."""
    response = parse_response(build("SIP/2.0 200 OK", [*request_headers(), ("Require", "foo")]))
    assert response.status_code == 200


# -- Content-Length and bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_length", "after_head", "body"),
    [
        (None, b"", b""),
        (None, b"rest of the datagram", b"rest of the datagram"),  # §18.3 on UDP
        ("0", b"", b""),
        ("5", b"hello", b"hello"),
        ("5", b"hello world", b"hello"),  # bytes beyond Content-Length are ignored (§18.3)
        ("0", b"trailing junk", b""),
        ("  5  ", b"hello", b"hello"),
        ("005", b"hello", b"hello"),
    ],
)
def test_content_length_frames_the_body(
    content_length: str | None, after_head: bytes, body: bytes
) -> None:
    """On UDP the body is Content-Length bytes, or the rest of the datagram without one."""
    message = parse_message(
        build(START, request_headers(), after_head, content_length=content_length)
    )
    assert message.body == body


def test_compact_content_length() -> None:
    """``l:`` frames the body like Content-Length."""
    message = parse_message(raw(START, *MANDATORY, "l: 3", body=b"abcdef"))
    assert message.body == b"abc"


@pytest.mark.parametrize(
    ("content_length", "after_head"),
    [
        ("9999", b"short"),  # RFC 4475 §3.1.2.2 clerr
        ("6", b"hello"),
        ("-999", b"hello"),  # RFC 4475 §3.1.2.3 ncl
        ("abc", b""),
        ("1.5", b"hello"),
        ("0x10", b"hello"),
        ("", b""),
        ("5 5", b"hello"),
        ("\u0665", b"hello"),  # a non-ASCII digit
        ("99999999999999999999999999", b"hello"),
    ],
)
def test_bad_content_length_is_400(content_length: str, after_head: bytes) -> None:
    """A Content-Length that is not a number, or larger than what arrived, is a 400 (§18.3)."""
    error = parse_error(build(START, request_headers(), after_head, content_length=content_length))
    assert error.status_code == 400
    assert "Content-Length" in error.reason


def test_stream_requires_content_length() -> None:
    """On a stream transport Content-Length is mandatory (§18.3, §20.14)."""
    error = parse_error(build(START, request_headers(), content_length=None), stream=True)
    assert error.status_code == 400
    assert "Content-Length" in error.reason


@pytest.mark.parametrize(
    "body",
    [
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
        b"\x00\x01\x02\xff\xfe\xfd",
        b"caf\xe9 not utf-8 \x80\x81",
        b"\r\n\r\n\r\n",  # a body that looks like blank lines
        b"INVITE sip:x SIP/2.0\r\n\r\n",  # a body that looks like a message
        bytes(range(256)),
    ],
)
def test_body_passes_through_byte_for_byte(body: bytes) -> None:
    """The body is never decoded or altered, in parsing or in serialising (§7.4)."""
    data = request(body=body, extra=[("Content-Type", "application/octet-stream")])
    message = parse_message(data)
    assert message.body == body
    assert message.to_bytes().endswith(b"\r\n\r\n" + body)
    assert parse_message(message.to_bytes()).body == body


def test_non_utf8_header_bytes_survive_a_round_trip() -> None:
    """A header value that is not UTF-8 comes back out as the same bytes."""
    data = request(extra=[("Subject", "caf\udce9 \udcff")])
    assert b"Subject: caf\xe9 \xff\r\n" in data
    message = parse_message(data)
    assert b"Subject: caf\xe9 \xff\r\n" in message.to_bytes()


# -- size limit -------------------------------------------------------------------------------------------------


def test_default_size_limit_is_64_kib() -> None:
    """The default limit is 64 KiB (a UDP datagram carries at most 65,507 bytes of payload)."""
    assert DEFAULT_MAX_MESSAGE_SIZE == 65536


def _message_of_size(size: int) -> bytes:
    head = request(content_length=None)
    return head + b"x" * (size - len(head))


@pytest.mark.parametrize(
    ("size", "max_size", "accepted"),
    [
        (65536, DEFAULT_MAX_MESSAGE_SIZE, True),
        (65537, DEFAULT_MAX_MESSAGE_SIZE, False),
        (200_000, DEFAULT_MAX_MESSAGE_SIZE, False),
        (1000, 1000, True),
        (1001, 1000, False),
        (1500, 4000, True),
    ],
)
def test_size_limit(size: int, max_size: int, accepted: bool) -> None:
    """A datagram over the limit is a 513 Message Too Large (§21.5.7)."""
    data = _message_of_size(size)
    assert len(data) == size
    if accepted:
        assert len(parse_message(data, max_size=max_size).body) > 0
    else:
        error = parse_error(data, max_size=max_size)
        assert (error.status_code, error.reason) == (513, "Message Too Large")
        assert error.headers is not None and error.headers.get("Call-ID") is not None


# -- line endings and round trips -----------------------------------------------------------------------------


def test_bare_lf_line_ends_are_tolerated() -> None:
    """A message with bare LF line ends parses like its CRLF twin."""
    crlf = request(body=b"v=0\r\n", extra=[("Subject", "a"), ("Subject", "b")])
    lf_headers = request_headers()
    lf = build(START, [*lf_headers, ("Subject", "a"), ("Subject", "b")], b"v=0\r\n", line_end=b"\n")
    first, second = parse_message(crlf), parse_message(lf)
    assert list(first.headers) == list(second.headers)
    assert first.body == second.body == b"v=0\r\n"


def test_mixed_line_ends_are_tolerated() -> None:
    """Some lines ending in CRLF and others in LF still parse, folding included."""
    data = (
        START.encode() + b"\r\n" + "\n".join(MANDATORY).encode() + b"\nSubject: one\r\n two\n\r\n"
    )
    message = parse_message(data)
    assert message.headers.get("Subject") == "one two"
    assert message.call_id == "call-1"


def test_missing_blank_line_means_no_body() -> None:
    """A datagram that ends after the headers without a blank line has an empty body."""
    data = (START + "\r\n" + "\r\n".join(MANDATORY) + "\r\n").encode()
    message = parse_message(data)
    assert message.body == b""
    assert message.cseq.method == "INVITE"


ROUND_TRIP_CASES = [
    request(),
    request(body=b"v=0\r\n", extra=[("Content-Type", "application/sdp")]),
    request(
        "BYE",
        "sips:bob@[2001:db8::1]:5061;transport=tls",
        to_tag="t",
        extra=[("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("Route", "<sip:p3;lr>")],
    ),
    request("OPTIONS", "tel:+15551234567;phone-context=example.com", contact=None),
    build("SIP/2.0 486 Busy Here", request_headers(to_tag="x"), b"\xff\x00"),
    raw(START, *MANDATORY, "s: compact", "Subject: one", " folded", body=b"x"),
    raw(START, *MANDATORY, "X-Empty-Then-Folded:", " value", body=b"y"),
]


@pytest.mark.parametrize("data", ROUND_TRIP_CASES)
def test_serialiser_round_trip(data: bytes) -> None:
    """parse → to_bytes → parse gives the same start line, headers and body."""
    first = parse_message(data)
    second = parse_message(first.to_bytes())
    assert type(first) is type(second)
    if isinstance(first, Request):
        assert isinstance(second, Request)
        assert (first.method, str(first.uri)) == (second.method, str(second.uri))
    else:
        assert isinstance(second, Response)
        assert (first.status_code, first.reason) == (second.status_code, second.reason)
    without_length = [field for field in first.headers if field[0] != "Content-Length"]
    assert [field for field in second.headers if field[0] != "Content-Length"] == without_length
    assert second.headers.get("Content-Length") == str(len(first.body))
    assert second.body == first.body
    assert second.to_bytes() == first.to_bytes()


def test_to_bytes_recomputes_content_length() -> None:
    """to_bytes writes one Content-Length, last, equal to the body's length."""
    message = parse_message(request(body=b"12345", content_length="3"))
    assert message.body == b"123"
    data = message.to_bytes()
    assert data.count(b"Content-Length") == 1
    assert data.endswith(b"Content-Length: 3\r\n\r\n123")


# -- RFC 4475 style torture messages ------------------------------------------------------------------------------


def test_tortuous_invite() -> None:
    """RFC 4475 §3.1.1.1 (wsinv) style: odd case, folding, escapes and spaces everywhere."""
    message = parse_request(
        raw(
            "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
            "TO :",
            " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
            "  ;",
            "  tag = 98asjd8",
            "MaX-fOrWaRdS: 0068",
            "Call-ID: wsinv.ndaksdj@192.0.2.1",
            "Content-Length   : 12",
            "cseq: 0009",
            "  INVITE",
            "Via  : SIP/2.0/UDP",
            "    192.0.2.2;branch=390skdjuw",
            "s :",
            "NewFangledHeader:   newfangled value",
            " continued newfangled value",
            "UnknownHeaderWithUnusualValue: ;;,,;;,;",
            "Content-Type: application/sdp",
            "Route:",
            " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
            "v:  SIP/2.0/TCP     spindle.example.com   ;",
            "  branch  =   z9hG4bK9ikj8  ,",
            " SIP/2.0/UDP  192.168.255.111   ; branch=",
            " z9hG4bK30239",
            'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
            "      newvalue ;",
            "  secondparam ; q = 0.33",
            body=b"v=0\r\ns=-\r\nxx",
        )
    )
    assert message.uri.parameter("unknownparam") == ""
    assert message.to_tag == "1918181833n"
    assert message.from_tag == "98asjd8"
    assert display_name_text(message.from_address) == 'J Rosenberg \\"'
    assert message.max_forwards == 68
    assert (message.cseq.number, message.cseq.method) == (9, "INVITE")
    assert [via.branch for via in message.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert [via.host for via in message.vias] == [
        "192.0.2.2",
        "spindle.example.com",
        "192.168.255.111",
    ]
    assert message.headers.get("Subject") == ""
    assert message.headers.get("Newfangledheader") == "newfangled value continued newfangled value"
    assert message.contact is not None
    assert display_name_text(message.contact) == 'Quoted string ""'
    assert message.contact.parameter("newparam") == "newvalue"
    assert message.contact.parameter("secondparam") == ""
    assert message.contact.parameter("q") == "0.33"
    assert message.body == b"v=0\r\ns=-\r\nxx"


def test_via_with_spaces_around_slashes() -> None:
    """RFC 4475 §3.1.1.1: ``Via: SIP  /   2.0 / UDP host`` is a valid Via."""
    message = parse_request(
        raw(
            START,
            "Via  : SIP  /   2.0",
            " /UDP",
            "    192.0.2.2;branch=390skdjuw",
            *MANDATORY[1:],
        )
    )
    assert message.top_via.transport == "UDP"
    assert message.top_via.host == "192.0.2.2"


def test_question_mark_in_user_part() -> None:
    """RFC 4475 §3.1.1.2 (intmeth): a user part may contain ``?``, ``;`` and ``/``."""
    uri = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com"
    message = parse_request(request(uri=uri))
    assert message.uri.host == "example.com"
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"


def test_escaped_uris() -> None:
    """RFC 4475 §3.1.1.3 (esc01): %-escapes stay in ``user`` and decode in unescaped_user."""
    message = parse_request(
        request(
            uri="sip:sips%3Auser%40example.com@example.net",
            replace={"To": "sip:sips%3Auser%40example.com@example.net"},
            extra=[("Contact", "<sip:cal%6Cer@192.168.0.2:5060;%6C%72;n%61me=v%61lue%25%34%31>")],
        )
    )
    assert message.uri.user == "sips%3Auser%40example.com"
    assert message.uri.unescaped_user == "sips:user@example.com"
    assert message.uri.host == "example.net"
    assert message.to_address.uri.unescaped_user == "sips:user@example.com"
    contacts = message.headers.values("Contact")
    assert "cal%6Cer" in contacts[-1]


def test_escaped_nul_in_user() -> None:
    """RFC 4475 §3.1.1.4 (escnull): ``%00`` in a user part decodes to NUL without harm."""
    message = parse_request(request(uri="sip:null-%00-null@example.com"))
    assert message.uri.unescaped_user == "null-\x00-null"
    assert b"null-%00-null" in message.to_bytes()


def test_semicolon_in_user_part() -> None:
    """RFC 4475 §3.1.1.9 (semiuri): ``sip:user;par=u%40example.net@example.com``."""
    message = parse_request(request("OPTIONS", uri="sip:user;par=u%40example.net@example.com"))
    assert message.uri.user == "user;par=u%40example.net"
    assert message.uri.host == "example.com"
    assert message.uri.parameters == ()


def test_unusual_transports_in_via() -> None:
    """RFC 4475 §3.1.1.10 (transports): any token is a Via transport."""
    message = parse_message(
        raw(
            "OPTIONS sip:user@example.com SIP/2.0",
            "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
            "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
            "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
            "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
            "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
            "To: <sip:user@example.com>",
            "From: <sip:caller@example.com>;tag=323",
            "Max-Forwards: 70",
            "Call-ID: transports.kijh4akdnaqjkwendsasfdj",
            "CSeq: 60 OPTIONS",
        )
    )
    assert [via.transport for via in message.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_two_requests_in_one_datagram() -> None:
    """RFC 4475 §3.1.1.8 (dblreq): bytes after Content-Length are ignored."""
    second = request("INFO", body=b"", call_id="second")
    message = parse_message(request("REGISTER", contact=None, content_length="0") + second)
    assert message.call_id == "call-1@pbx.example.com"
    assert message.body == b""


def test_extraneous_separators_do_not_break_the_parser() -> None:
    """RFC 4475 §3.1.2.1 (badinv01) does not crash the parser: it is a request or a 400."""
    data = raw(
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=134161461246",
        "Max-Forwards: 7",
        "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
        'Contact: "Joe" <sip:joe@example.org>;;;;',
    )
    try:
        message = parse_message(data)
    except MessageParseError as error:
        assert error.status_code == 400
    else:
        assert message.call_id == "badinv01.0ha0isndaksdjasdf3234nas"


def test_extraneous_separators_are_400() -> None:
    """RFC 4475 §3.1.2.1 (badinv01): empty Via parameters and values make a 400."""
    error = parse_error(request(replace={"Via": "SIP/2.0/UDP 192.0.2.15;;,;,,"}))
    assert error.status_code == 400


def test_unterminated_quote_in_display_name() -> None:
    """RFC 4475 §3.1.2.6 (quotbal): an unterminated quoted display name is a 400."""
    error = parse_error(
        request(replace={"From": '"Mr. J. User <sip:j.user@example.com>;tag=93334'})
    )
    assert error.status_code == 400


@pytest.mark.parametrize("header", ["From", "To"])
def test_an_unquoted_display_name_with_a_comma_is_400(header: str) -> None:
    """RFC 4475 §3.1.2.15 (baddn): a display name with non-token characters must be
    quoted; unquoted, the element answers 400 rather than forward a header that the
    next hop reads as two addresses."""
    value = "Curie, Marie <sip:m.curie@example.org>;tag=93810874"
    error = parse_error(request(replace={header: value}))
    assert error.status_code == 400 and "display name" in error.reason


@pytest.mark.parametrize(
    ("from_value", "display"),
    [
        ("Marie Curie <sip:m.curie@example.org>;tag=1", "Marie Curie"),
        ("J.-P. O'Hara_2 <sip:jp@example.org>;tag=1", "J.-P. O'Hara_2"),
        ("Jos\u00e9 M\u00fcller <sip:jm@example.org>;tag=1", "Jos\u00e9 M\u00fcller"),  # UTF-8
    ],
)
def test_unquoted_display_names_of_tokens_are_read(from_value: str, display: str) -> None:
    """Tokens separated by spaces are a valid unquoted display name (§25.1); letters beyond
    ASCII, which some phones send unquoted, are let through."""
    message = parse_message(request(replace={"From": from_value}))
    assert display_name_text(message.from_address) == display


@pytest.mark.parametrize(
    "to_value",
    [
        '"Watson, Thomas" < sip:t.watson@example.org >',  # RFC 4475 §3.1.2.14 badaspec
    ],
)
def test_lenient_on_questionable_addresses(to_value: str) -> None:
    """RFC 4475 lets a parser accept these or answer 400; either way it must not break."""
    try:
        message = parse_message(request(replace={"To": to_value}))
    except MessageParseError as error:
        assert error.status_code == 400
    else:
        assert message.to_address.uri.user == "t.watson"


# -- RFC 4475 cases the parser must refuse ---------------------------------------------------


def test_request_uri_with_escaped_headers_is_400() -> None:
    """RFC 4475 §3.1.2.11 (escruri): URI headers (here an escaped Route) are not allowed in
    a Request-URI (RFC 3261 §19.1.1), so the INVITE is refused, never forwarded."""
    data = raw(
        "INVITE sip:user@127.0.0.1?Route=%3Csip:127.0.0.1%3E SIP/2.0",
        *MANDATORY[:5],
        "CSeq: 1 INVITE",
    )
    error = parse_error(data)
    assert error.status_code == 400 and "Request-URI" in error.reason
    assert error.headers is not None and error.headers.get("Via")  # answerable


def test_escaped_characters_in_the_request_uri_host_are_400() -> None:
    """An escaped character is never valid in a host name (RFC 3261 §25.1 hostname)."""
    data = raw("INVITE sip:user@127.0.0%2E1 SIP/2.0", *MANDATORY)
    assert parse_error(data).status_code == 400


def test_user_part_may_hold_question_marks_and_equals() -> None:
    """A '?' and '=' in the user part (RFC 3261 user-unreserved) are not URI headers:
    sip:a?b=c;d@host has a user, and the host is host."""
    data = raw("INVITE sip:a?b=1,c;d@127.0.0.1 SIP/2.0", *MANDATORY)
    message = parse_request(data)
    assert (message.uri.user, message.uri.host, message.uri.headers) == (
        "a?b=1,c;d",
        "127.0.0.1",
        "",
    )


def test_unescaped_at_sign_in_uri_headers_leaves_no_user() -> None:
    """sip:host?Replaces=id@host (an '@' some agents leave unescaped in a header value)
    still parses with no userinfo, as it did before (a Refer-To, not a Request-URI)."""
    from sipguard.sip.uri import parse_uri

    uri = parse_uri("sip:127.0.0.1?Replaces=abc@127.0.0.2")
    assert (uri.user, uri.host, uri.headers) == (None, "127.0.0.1", "Replaces=abc@127.0.0.2")


@pytest.mark.parametrize("name", ["Call-ID", "CSeq", "From", "To", "Max-Forwards"])
def test_repeated_single_value_header_is_400(name: str) -> None:
    """RFC 4475 §3.3.8 (multi01): two values of a header that takes one (To, From,
    Call-ID, CSeq, Max-Forwards) cannot both be believed: 400, never forwarded."""
    extra = {
        "Call-ID": "Call-ID: call-2",
        "CSeq": "CSeq: 2 INVITE",
        "From": "From: <sip:201@127.0.0.1>;tag=f2",
        "To": "To: <sip:other@127.0.0.1>",
        "Max-Forwards": "Max-Forwards: 5",
    }[name]
    error = parse_error(raw(START, *MANDATORY, extra))
    assert error.status_code == 400 and name in error.reason
    assert error.headers is not None and error.headers.get("Via")  # answerable with 400


def test_repeated_header_in_compact_form_is_400() -> None:
    """A To and a compact t: are the same header twice."""
    error = parse_error(raw(START, *MANDATORY, "t: <sip:other@127.0.0.1>"))
    assert error.status_code == 400


def test_conflicting_content_lengths_are_400() -> None:
    """RFC 4475 §3.3.9 (mcl01): Content-Length 13 and 5 on one message: nobody can know
    where the body ends, so the request is refused with 400."""
    lines = [line.replace("INVITE", "OPTIONS") for line in MANDATORY]
    data = raw(
        "OPTIONS sip:user@127.0.0.1 SIP/2.0",
        *lines,
        "Content-Length: 13",
        "Content-Length: 5",
        "Content-Type: text/plain",
        body=b"There's no way to know how many octets are supposed to be here.",
    )
    error = parse_error(data)
    assert error.status_code == 400 and "Content-Length" in error.reason
