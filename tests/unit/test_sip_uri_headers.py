"""Tables for the SIP value parsers: grammar helpers, URIs, Via, addresses, CSeq and Headers."""

from __future__ import annotations

import pytest

from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.grammar import (
    format_parameters,
    get_parameter,
    has_parameter,
    is_token,
    parse_parameters,
    quote,
    remove_parameter,
    replace_parameter,
    split_commas,
    split_outside_quotes,
    unquote,
)
from sipguard.sip.headers import (
    Headers,
    NameAddress,
    canonical_name,
    display_name_text,
    parse_cseq,
    parse_name_address,
    parse_via,
)
from sipguard.sip.uri import Uri, parse_host_port, parse_uri

# -- grammar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a", ["a"]),
        ("  a  ", ["a"]),
        ("", []),
        ("a,b", ["a", "b"]),
        (" a , b ,c ", ["a", "b", "c"]),
        ("a,,b,", ["a", "b"]),
        ('"x, y" <sip:a>, <sip:b>', ['"x, y" <sip:a>', "<sip:b>"]),
        ('"say \\"a,b\\"" <sip:a>, b', ['"say \\"a,b\\"" <sip:a>', "b"]),
        ("<sip:a;p=1,2>;q=1, <sip:b>", ["<sip:a;p=1,2>;q=1", "<sip:b>"]),
    ],
)
def test_split_commas(text: str, parts: list[str]) -> None:
    """Commas split values except inside quoted strings and <...> (§7.3.1)."""
    assert split_commas(text) == parts


@pytest.mark.parametrize("text", ['"open, a', 'a, "b'])
def test_split_commas_unterminated_quote(text: str) -> None:
    """An unterminated quoted string is a RemoteProtocolError, not a silent split."""
    with pytest.raises(RemoteProtocolError):
        split_commas(text)


def test_split_outside_quotes() -> None:
    """A separator inside a quoted string does not split."""
    assert split_outside_quotes('a;b="x;y";c', ";") == ["a", 'b="x;y"', "c"]
    assert split_outside_quotes("a;b", ";") == ["a", "b"]
    with pytest.raises(RemoteProtocolError):
        split_outside_quotes('a;"b', ";")


@pytest.mark.parametrize(
    ("text", "parameters"),
    [
        ("", ()),
        ("a=1", (("a", "1"),)),
        ("lr", (("lr", None),)),
        ("a=1;lr;B=x", (("a", "1"), ("lr", None), ("B", "x"))),
        (" a = 1 ; b ", (("a", "1"), ("b", None))),
        ('n="x;y"', (("n", '"x;y"'),)),
        ("a=", (("a", ""),)),
    ],
)
def test_parse_parameters(text: str, parameters: tuple[tuple[str, str | None], ...]) -> None:
    """Parameters parse into ordered (name, value-or-None) pairs, whitespace trimmed."""
    assert parse_parameters(text) == parameters


@pytest.mark.parametrize("text", ["=x", "a b=1", "a@=1", "<x>"])
def test_parse_parameters_rejects_bad_names(text: str) -> None:
    """A parameter name that is not a token is rejected."""
    with pytest.raises(RemoteProtocolError):
        parse_parameters(text)


def test_parameter_helpers() -> None:
    """Lookups ignore case; replace keeps position; remove drops every spelling."""
    parameters = parse_parameters("Branch=z9hG4bK1;rport;received=192.0.2.9")
    assert get_parameter(parameters, "branch") == "z9hG4bK1"
    assert get_parameter(parameters, "RPORT") == ""
    assert get_parameter(parameters, "maddr") is None
    assert has_parameter(parameters, "rport")
    assert not has_parameter(parameters, "ttl")
    replaced = replace_parameter(parameters, "rport", "5070")
    assert replaced == (("Branch", "z9hG4bK1"), ("rport", "5070"), ("received", "192.0.2.9"))
    assert replace_parameter((), "lr", None) == (("lr", None),)
    assert remove_parameter(parameters, "BRANCH") == (("rport", None), ("received", "192.0.2.9"))
    assert format_parameters(replaced) == ";Branch=z9hG4bK1;rport=5070;received=192.0.2.9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INVITE", True),
        ("!interesting-Method0123456789_*+`.%indeed'~", True),
        ("", False),
        ("a b", False),
        ("a/b", False),
        ("a:b", False),
        ("caf\u00e9", False),
        ("a\n", False),
    ],
)
def test_is_token(text: str, expected: bool) -> None:
    """is_token accepts exactly RFC 3261's token characters."""
    assert is_token(text) is expected


@pytest.mark.parametrize(
    ("quoted", "text"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        ('"a\\"b"', 'a"b'),
        ('"back\\\\slash"', "back\\slash"),
        ('"\\x"', "x"),
        ("unquoted", "unquoted"),
    ],
)
def test_unquote(quoted: str, text: str) -> None:
    """unquote removes the quotes and resolves quoted-pairs (§25.1)."""
    assert unquote(quoted) == text


@pytest.mark.parametrize("text", ["", "plain", 'a"b', "back\\slash", '\\"', "caf\u00e9"])
def test_quote_round_trip(text: str) -> None:
    """quote then unquote gives the text back."""
    assert unquote(quote(text)) == text


# -- URIs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (
            "sip:alice@example.com",
            {"scheme": "sip", "user": "alice", "host": "example.com", "port": None},
        ),
        (
            "sips:alice:secret@example.com:5061",
            {"scheme": "sips", "user": "alice", "password": "secret", "port": 5061},
        ),
        ("SIP:Alice@Example.COM", {"scheme": "sip", "user": "Alice", "host": "example.com"}),
        ("sip:example.com", {"user": None, "host": "example.com"}),
        ("sip:192.0.2.4:5080", {"user": None, "host": "192.0.2.4", "port": 5080}),
        (
            "sip:bob@[2001:db8::10]:5070",
            {"host": "[2001:db8::10]", "port": 5070, "host_for_socket": "2001:db8::10"},
        ),
        ("sip:[::1]", {"host": "[::1]", "port": None, "host_for_socket": "::1"}),
        ("sip:[::ffff:192.0.2.1]", {"host": "[::ffff:192.0.2.1]"}),
        (
            "sip:bob@example.com;transport=udp;lr;maddr=239.255.255.1",
            {"parameters": (("transport", "udp"), ("lr", None), ("maddr", "239.255.255.1"))},
        ),
        (
            "sip:bob@example.com?subject=hi&priority=urgent",
            {"headers": "subject=hi&priority=urgent", "parameters": ()},
        ),
        (
            "sip:bob@example.com;lr?Route=%3Csip:x%3E",
            {"parameters": (("lr", None),), "headers": "Route=%3Csip:x%3E"},
        ),
        ("sip:%2B15551234567@gw", {"user": "%2B15551234567", "unescaped_user": "+15551234567"}),
        ("sip:al%69ce@gw", {"user": "al%69ce", "unescaped_user": "alice"}),
        ("sip:a%20b@gw", {"unescaped_user": "a b"}),
        (
            "sip:user;par=u%40example.net@example.com",
            {"user": "user;par=u%40example.net", "host": "example.com", "parameters": ()},
        ),
        ("sip:+1-555;phone-context=x@gw", {"user": "+1-555;phone-context=x"}),
        (
            "tel:+1-201-555-0123;phone-context=example.com",
            {
                "scheme": "tel",
                "user": "+1-201-555-0123",
                "host": "",
                "parameters": (("phone-context", "example.com"),),
            },
        ),
        ("tel:%2B1555", {"user": "%2B1555", "unescaped_user": "+1555"}),
        ("urn:service:sos", {"scheme": "urn", "opaque": "service:sos", "user": None}),
        ("http://example.com/x", {"scheme": "http", "opaque": "//example.com/x"}),
        # RFC 3986 §3.1: digits, '+', '-' and '.' after the first letter (RFC 4475 novelsc).
        ("soap.beep://192.0.2.103:3002", {"scheme": "soap.beep", "opaque": "//192.0.2.103:3002"}),
        ("s1p:bob@example.com", {"scheme": "s1p", "opaque": "bob@example.com"}),
    ],
)
def test_parse_uri(text: str, fields: dict[str, object]) -> None:
    """parse_uri splits sip, sips and tel URIs into fields and keeps other schemes opaque."""
    uri = parse_uri(text)
    for name, value in fields.items():
        assert getattr(uri, name) == value, name
    assert str(uri) == text  # the original text is kept for forwarding
    assert uri.is_sip is (uri.scheme in ("sip", "sips"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip",
        "example.com",
        ":bob@example.com",
        "1sip:bob@example.com",
        "s_p:bob@example.com",
        "sip:",
        "sip:@example.com",
        "sip:bob@",
        "sip:b<o>b@example.com",
        "sip:b ob@example.com",
        'sip:b"ob@example.com',
        "sip:a@b@example.com",
        "sip:bob@exa mple.com",
        "sip:bob@exa_mple.com",
        "sip:bob@example.com:",
        "sip:bob@example.com:port",
        "sip:bob@example.com:65536",
        "sip:bob@example.com:123456",
        "sip:bob@example.com:\u0665",
        "sip:bob@example.com:5060:5060",
        "sip:bob@[2001:db8::1",
        "sip:bob@[2001:db8::1]x",
        "sip:bob@[not-ipv6]",
        "sip:bob@[]",
        "sip:bob@example.com;=x",
        "tel:",
        "tel:;x=1",
        "urn:",
        "urn:a b",
        "urn:<x>",
    ],
)
def test_parse_uri_rejects(text: str) -> None:
    """Malformed URIs are a RemoteProtocolError with status 400."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_uri(text)
    assert caught.value.status_code == 400


def test_question_mark_in_user() -> None:
    """``?`` is a user-unreserved character: ``sip:a?b@example.com`` has user ``a?b``."""
    uri = parse_uri("sip:a?b@example.com")
    assert (uri.user, uri.host, uri.headers) == ("a?b", "example.com", "")


def test_uri_parameter_lookup_ignores_case() -> None:
    """URI parameter names compare without regard to case (§19.1.4)."""
    uri = parse_uri("sip:bob@example.com;Transport=UDP;LR")
    assert uri.parameter("transport") == "UDP"
    assert uri.parameter("lr") == ""
    assert uri.parameter("maddr") is None


@pytest.mark.parametrize(
    ("uri", "text"),
    [
        (Uri(scheme="sip", user="bob", host="example.com"), "sip:bob@example.com"),
        (
            Uri(scheme="sips", user="a", password="p", host="h", port=5061),
            "sips:a:p@h:5061",
        ),
        (Uri(scheme="sip", host="[2001:db8::1]", port=5060), "sip:[2001:db8::1]:5060"),
        (
            Uri(scheme="sip", host="h", parameters=(("lr", None), ("transport", "udp"))),
            "sip:h;lr;transport=udp",
        ),
        (Uri(scheme="sip", user="b", host="h", headers="x=1"), "sip:b@h?x=1"),
        (Uri(scheme="tel", user="+1555", parameters=(("ext", "7"),)), "tel:+1555;ext=7"),
        (Uri(scheme="urn", opaque="service:sos"), "urn:service:sos"),
    ],
)
def test_uri_serialises_from_fields(uri: Uri, text: str) -> None:
    """A URI built from fields serialises in RFC 3261 §19.1.1 order and parses back equal."""
    assert str(uri) == text
    assert parse_uri(text) == uri


def test_with_changes_drops_the_cached_text() -> None:
    """with_changes rebuilds the text from fields, so the change shows on the wire."""
    uri = parse_uri("SIP:Bob@Example.com:5070;Transport=udp")
    changed = uri.with_changes(user="carol", port=None)
    assert str(uri) == "SIP:Bob@Example.com:5070;Transport=udp"
    assert str(changed) == "sip:carol@example.com;Transport=udp"
    assert changed == parse_uri(str(changed))


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("example.com", "example.com", None),
        ("EXAMPLE.com:5060", "example.com", 5060),
        ("192.0.2.1:0", "192.0.2.1", 0),
        ("192.0.2.1:65535", "192.0.2.1", 65535),
        ("[2001:db8::1]", "[2001:db8::1]", None),
        ("[2001:DB8::1]:5061", "[2001:db8::1]", 5061),
    ],
)
def test_parse_host_port(text: str, host: str, port: int | None) -> None:
    """host[:port] with names, IPv4 and bracketed IPv6 references (§25.1 hostport)."""
    assert parse_host_port(text) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "", "a b", "host:", "host:-1", "host:65536", "[::1", "[::1]5060", "[g::1]", "::1",
        "[0:0:::ffff:127.0.0.1]",  # RFC 5118 ipv6-bug-abnf-3-colons: ':::' is no IPv6 address
        "[2001:db8::1::2]",  # two '::'
        "[1:2:3:4:5:6:7:8:9]",  # nine groups
    ],
)  # fmt: skip
def test_parse_host_port_rejects(text: str) -> None:
    """A malformed hostport is a RemoteProtocolError (a bare IPv6 needs brackets)."""
    with pytest.raises(RemoteProtocolError):
        parse_host_port(text)


# -- Via --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "transport", "host", "port", "branch", "sent_by"),
    [
        (
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK776",
            "UDP",
            "192.0.2.1",
            5070,
            "z9hG4bK776",
            "192.0.2.1:5070",
        ),
        ("SIP/2.0/udp pbx.example.com", "UDP", "pbx.example.com", None, None, "pbx.example.com"),
        (
            "sip/2.0/TLS PBX.Example.com:5061;branch=z9hG4bKa",
            "TLS",
            "pbx.example.com",
            5061,
            "z9hG4bKa",
            "pbx.example.com:5061",
        ),
        (
            "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK6",
            "UDP",
            "[2001:db8::9]",
            5060,
            "z9hG4bK6",
            "[2001:db8::9]:5060",
        ),
        ("SIP/2.0/UDP [2001:db8::9]", "UDP", "[2001:db8::9]", None, None, "[2001:db8::9]"),
        (
            "  SIP/2.0/UDP   192.0.2.1 ; branch = z9hG4bKsp ; rport  ",
            "UDP",
            "192.0.2.1",
            None,
            "z9hG4bKsp",
            "192.0.2.1",
        ),
        ("SIP/2.0/SCTP h;branch=1", "SCTP", "h", None, "1", "h"),
    ],
)
def test_parse_via(
    text: str, transport: str, host: str, port: int | None, branch: str | None, sent_by: str
) -> None:
    """A Via value gives transport, sent-by host and port, and its parameters (§20.42)."""
    via = parse_via(text)
    assert (via.transport, via.host, via.port, via.branch) == (transport, host, port, branch)
    assert via.sent_by == sent_by
    assert parse_via(str(via)) == via


def test_via_parameters() -> None:
    """Via parameters (rport, received, maddr) are read without regard to case."""
    via = parse_via("SIP/2.0/UDP 192.0.2.1;BRANCH=z9hG4bKx;rport;Received=198.51.100.1")
    assert via.branch == "z9hG4bKx"
    assert via.parameter("rport") == ""
    assert via.parameter("received") == "198.51.100.1"
    assert via.parameter("maddr") is None


@pytest.mark.parametrize(
    ("text", "status_code"),
    [
        ("SIP/2.0/UDP", 400),
        ("", 400),
        ("SIP/2.0 192.0.2.1", 400),
        ("SIP/2.0/UDP/X 192.0.2.1", 400),
        ("HTTP/2.0/UDP 192.0.2.1", 400),
        ("SIP/2.0/U@P 192.0.2.1", 400),
        ("SIP/2.0/UDP 192.0.2.1:99999", 400),
        ("SIP/2.0/UDP [2001:db8::1;branch=z9hG4bK", 400),
        ("SIP/2.0/UDP bad_host", 400),
        ("SIP/2.0/UDP h;=1", 400),
        ("SIP/3.0/UDP 192.0.2.1", 505),
        ("SIP/1.0/UDP 192.0.2.1", 505),
    ],
)
def test_parse_via_rejects(text: str, status_code: int) -> None:
    """A malformed Via is a 400; a Via of another SIP version is a 505."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_via(text)
    assert caught.value.status_code == status_code


@pytest.mark.parametrize(
    "text", ["SIP / 2.0 / UDP 192.0.2.2;branch=z9hG4bK1", "SIP  /   2.0 /UDP    192.0.2.2"]
)
def test_parse_via_with_spaces_around_slashes(text: str) -> None:
    """``SIP / 2.0 / UDP host`` is a valid Via sent-protocol."""
    via = parse_via(text)
    assert (via.transport, via.host) == ("UDP", "192.0.2.2")


# -- name-addr and addr-spec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "display", "uri", "parameters"),
    [
        ("<sip:a@h>", None, "sip:a@h", ()),
        ("sip:a@h", None, "sip:a@h", ()),
        ("sip:a@h;tag=1;x", None, "sip:a@h", (("tag", "1"), ("x", None))),
        ("<sip:a@h;lr>;tag=1", None, "sip:a@h;lr", (("tag", "1"),)),
        ('"Alice" <sip:a@h>', '"Alice"', "sip:a@h", ()),
        ("Alice Smith <sip:a@h>", "Alice Smith", "sip:a@h", ()),
        ('"A \\"q\\"" <sip:a@h>;q=0.5', '"A \\"q\\""', "sip:a@h", (("q", "0.5"),)),
        ('"<sip:x@y>;tag=evil" <sip:a@h>', '"<sip:x@y>;tag=evil"', "sip:a@h", ()),
        ("<tel:+1555;phone-context=x>;tag=t", None, "tel:+1555;phone-context=x", (("tag", "t"),)),
        ("<urn:service:sos>", None, "urn:service:sos", ()),
        ("<sip:a@[2001:db8::1]:5070>", None, "sip:a@[2001:db8::1]:5070", ()),
    ],
)
def test_parse_name_address(
    text: str, display: str | None, uri: str, parameters: tuple[tuple[str, str | None], ...]
) -> None:
    """name-addr and addr-spec give display name, URI and header parameters (§20.10)."""
    address = parse_name_address(text)
    assert address.display_name == display
    assert str(address.uri) == uri
    assert address.parameters == parameters
    assert parse_name_address(str(address)) == address


def test_name_address_helpers() -> None:
    """tag, parameter() and display_name_text read the parsed address."""
    address = parse_name_address('"Front \\"Desk\\"" <sip:100@pbx>;TAG=abc;expires=60')
    assert address.tag == "abc"
    assert address.parameter("Expires") == "60"
    assert display_name_text(address) == 'Front "Desk"'
    assert display_name_text(parse_name_address("<sip:a@h>")) is None


def test_name_address_serialises_addr_spec_with_brackets() -> None:
    """An addr-spec is written back as a name-addr, so its parameters stay header parameters."""
    address = parse_name_address("sip:a@h;tag=9")
    assert str(address) == "<sip:a@h>;tag=9"
    built = NameAddress(None, Uri(scheme="sip", user="b", host="h", parameters=(("lr", None),)), ())
    assert str(built) == "<sip:b@h;lr>"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"unterminated <sip:a@h>',
        '"quoted" sip:a@h',
        "<sip:a@h",
        "<sip:a@h> trailing",
        "sip:a@h trailing",
        "<>",
        "<sip:>",
        "<sip:a@h>;=x",
    ],
)
def test_parse_name_address_rejects(text: str) -> None:
    """Addresses that are neither name-addr nor addr-spec are rejected."""
    with pytest.raises(RemoteProtocolError):
        parse_name_address(text)


# -- CSeq -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number", "method"),
    [
        ("1 INVITE", 1, "INVITE"),
        ("  42   BYE  ", 42, "BYE"),
        ("0 ACK", 0, "ACK"),
        ("0009 INVITE", 9, "INVITE"),
        ("2147483647 OPTIONS", 2**31 - 1, "OPTIONS"),
        ("7 X-CUSTOM", 7, "X-CUSTOM"),
    ],
)
def test_parse_cseq(text: str, number: int, method: str) -> None:
    """CSeq gives a number below 2**31 and a method token (§20.16)."""
    cseq = parse_cseq(text)
    assert (cseq.number, cseq.method) == (number, method)
    assert parse_cseq(str(cseq)) == cseq


@pytest.mark.parametrize(
    "text",
    ["", "1", "INVITE", "1 INVITE 2", "x INVITE", "-1 INVITE", "2147483648 INVITE", "1 IN/VITE"],
)
def test_parse_cseq_rejects(text: str) -> None:
    """A malformed CSeq is rejected with 400."""
    with pytest.raises(RemoteProtocolError) as caught:
        parse_cseq(text)
    assert caught.value.status_code == 400


# -- Headers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("via", "Via"),
        ("V", "Via"),
        ("call-id", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("i", "Call-ID"),
        ("cseq", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("rack", "RAck"),
        ("x-foo-bar", "X-Foo-Bar"),
        ("X-FOO-BAR", "X-Foo-Bar"),
        ("mime-version", "MIME-Version"),
    ],
)
def test_canonical_name(name: str, canonical: str) -> None:
    """Compact forms expand and any spelling maps to one canonical name (§7.3.3)."""
    assert canonical_name(name) == canonical


def test_headers_add_get_and_membership() -> None:
    """add appends in order; get returns the first; membership ignores case and compact forms."""
    headers = Headers()
    headers.add("via", "first")
    headers.add("Subject", "s")
    headers.add("v", "second")
    assert list(headers) == [("Via", "first"), ("Subject", "s"), ("Via", "second")]
    assert len(headers) == 3
    assert headers.get("VIA") == "first"
    assert headers.get_all("Via") == ["first", "second"]
    assert headers.get("Route") is None
    assert "v" in headers
    assert "Route" not in headers
    assert 5 not in headers


def test_headers_prepend_and_pop_first_value() -> None:
    """prepend puts a Via on top; pop_first_value removes just the top value (§16.7, §18.1.2)."""
    headers = Headers()
    headers.add("Via", "b, c")
    headers.add("Via", "d")
    headers.prepend("Via", "a")
    assert headers.values("Via") == ["a", "b", "c", "d"]
    assert headers.pop_first_value("Via") == "a"
    assert headers.pop_first_value("Via") == "b"
    assert headers.get_all("Via") == ["c", "d"]
    assert headers.pop_first_value("Via") == "c"
    assert headers.pop_first_value("Via") == "d"
    assert headers.pop_first_value("Via") is None
    assert len(headers) == 0


def test_headers_set_and_remove() -> None:
    """set replaces every field of a name with one, in the first one's place; remove drops all."""
    headers = Headers([("Via", "v"), ("Contact", "a"), ("To", "t"), ("Contact", "b")])
    headers.set("m", "c")
    assert list(headers) == [("Via", "v"), ("Contact", "c"), ("To", "t")]
    headers.set("Subject", "new")
    assert list(headers)[-1] == ("Subject", "new")
    headers.remove("contact")
    assert "Contact" not in headers
    assert len(headers) == 3


def test_headers_copy_is_independent() -> None:
    """A copy can be changed without changing the original."""
    original = Headers([("Via", "a")])
    copy = original.copy()
    copy.add("Via", "b")
    copy.set("Via", "c")
    assert list(original) == [("Via", "a")]
    assert list(copy) == [("Via", "c")]


def test_values_of_non_list_header_are_not_split() -> None:
    """values() splits only list headers; others come back whole, stripped."""
    headers = Headers([("Date", " Sat, 13 Nov 2010 23:29:00 GMT "), ("Allow", "INVITE, BYE")])
    assert headers.values("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.values("Allow") == ["INVITE", "BYE"]
