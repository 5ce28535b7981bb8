"""Dialog state of one B2BUA leg (RFC 3261 §12): creation, confirmation and in-dialog requests."""

from __future__ import annotations

import pytest

from sipguard.sip.dialog import Dialog, uri_address, with_tag, without_tag
from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.headers import NameAddress, parse_name_address
from sipguard.sip.uri import parse_uri
from tests.unit.sip_messages import (
    TRUNK,
    build,
    new_endpoint,
    parse_request,
    parse_response,
    request,
    request_headers,
)

LOCAL_CONTACT = "<sip:sipguard@192.0.2.10:5060>"


def incoming_invite(*extra: tuple[str, str], contact: str | None = None) -> bytes:
    """An INVITE from the PBX, with Record-Route and other extra headers."""
    options: dict[str, object] = {}
    if contact is not None:
        options["contact"] = contact
    return request(extra=extra, cseq=17, **options)  # type: ignore[arg-type]


def uac_dialog() -> Dialog:
    """The trunk leg as the controller creates it before the INVITE goes out."""
    target = parse_uri("sip:+15551234567@trunk.example.com")
    return Dialog(
        call_id="out-1@sipguard",
        local_tag="sg-1",
        remote_tag=None,
        local_address=parse_name_address("<sip:200@sipguard.example.com>"),
        remote_address=NameAddress(None, target, ()),
        local_cseq=0,
        remote_cseq=None,
        remote_target=target,
        local_contact=LOCAL_CONTACT,
    )


def response_with(status_code: int, *extra: tuple[str, str], to_tag: str | None = "tr-1") -> bytes:
    """A response from the trunk to the dialog's INVITE."""
    headers = request_headers(to_tag=to_tag, contact=None, call_id="out-1@sipguard")
    return build(f"SIP/2.0 {status_code} X", [*headers, *extra])


# -- UAS side (§12.1.1) ---------------------------------------------------------------------------


def test_for_incoming_takes_the_dialog_from_the_invite() -> None:
    """Tags, addresses, CSeq, remote target and route set come from the INVITE (§12.1.1)."""
    invite = parse_request(
        incoming_invite(
            ("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr;ftag=x>"),
            ("Record-Route", "<sip:p3.example.com;lr>"),
            contact="<sip:pbx@192.0.2.1:5070;transport=udp>",
        )
    )
    dialog = Dialog.for_incoming(invite, "sg-local", LOCAL_CONTACT)
    assert dialog.call_id == "call-1@pbx.example.com"
    assert dialog.local_tag == "sg-local"
    assert dialog.remote_tag == "pbx-tag-1"
    assert str(dialog.remote_target) == "sip:pbx@192.0.2.1:5070;transport=udp"
    assert dialog.route_set == [  # in order, parameters kept
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr;ftag=x>",
        "<sip:p3.example.com;lr>",
    ]
    assert dialog.remote_cseq == 17
    assert dialog.local_cseq == 1
    assert dialog.local_address.tag is None
    assert dialog.remote_address.tag is None
    assert str(dialog.remote_address.uri) == "sip:200@pbx.example.com"
    assert str(dialog.local_address.uri) == "sip:+15551234567@sipguard.example.com"
    assert dialog.local_contact == LOCAL_CONTACT


def test_for_incoming_without_record_route_has_no_route_set() -> None:
    """No Record-Route means an empty route set and requests go to the Contact."""
    dialog = Dialog.for_incoming(parse_request(incoming_invite()), "sg", LOCAL_CONTACT)
    assert dialog.route_set == []
    assert dialog.next_hop().address == ("192.0.2.1", 5070)


def test_for_incoming_needs_a_contact() -> None:
    """A dialog-creating request without Contact is refused (§8.1.1.8)."""
    invite = parse_request(request(contact=None))
    with pytest.raises(RemoteProtocolError):
        Dialog.for_incoming(invite, "sg", LOCAL_CONTACT)


@pytest.mark.parametrize(
    "record_route", ["<tel:+15551234567>", "<urn:x:y>", "<sip:p1.example.com;lr", "garbage <x"]
)
def test_for_incoming_refuses_a_broken_record_route(record_route: str) -> None:
    """A Record-Route that is not a SIP URI is refused when the dialog is made."""
    invite = parse_request(incoming_invite(("Record-Route", record_route)))
    with pytest.raises(RemoteProtocolError):
        Dialog.for_incoming(invite, "sg", LOCAL_CONTACT)


# -- UAC side (§12.1.2) -----------------------------------------------------------------------------


def test_confirm_takes_tag_target_and_reversed_route_set() -> None:
    """The UAC takes the To tag, the Contact and the Record-Route in reverse order (§12.1.2)."""
    dialog = uac_dialog()
    response = parse_response(
        response_with(
            200,
            ("Record-Route", "<sip:near.example.com;lr>, <sip:middle.example.com;lr>"),
            ("Record-Route", "<sip:far.example.com;lr>"),
            ("Contact", "<sip:gw@198.51.100.7:5080>"),
        )
    )
    dialog.confirm(response)
    assert dialog.remote_tag == "tr-1"
    assert str(dialog.remote_target) == "sip:gw@198.51.100.7:5080"
    assert dialog.route_set == [
        "<sip:far.example.com;lr>",
        "<sip:middle.example.com;lr>",
        "<sip:near.example.com;lr>",
    ]
    assert dialog.next_hop().address == ("far.example.com", 5060)


def test_confirm_keeps_the_route_set_of_the_first_response() -> None:
    """Once the remote tag is known, later responses refresh only the target (§12.2.1.2)."""
    dialog = uac_dialog()
    dialog.confirm(
        parse_response(
            response_with(180, ("Record-Route", "<sip:p1;lr>"), ("Contact", "<sip:a@192.0.2.7>"))
        )
    )
    dialog.confirm(parse_response(response_with(183, ("Contact", "<sip:b@192.0.2.8>"))))
    assert dialog.route_set == ["<sip:p1;lr>"]
    assert str(dialog.remote_target) == "sip:b@192.0.2.8"
    assert dialog.remote_tag == "tr-1"


def test_2xx_recomputes_the_route_set_of_an_early_dialog() -> None:
    """A 2xx that confirms an early dialog sets the route set from its own Record-Route."""
    dialog = uac_dialog()
    dialog.confirm(parse_response(response_with(180, ("Record-Route", "<sip:early;lr>"))))
    dialog.confirm(
        parse_response(
            response_with(200, ("Record-Route", "<sip:p1;lr>"), ("Record-Route", "<sip:p2;lr>"))
        )
    )
    assert dialog.route_set == ["<sip:p2;lr>", "<sip:p1;lr>"]


def test_confirm_refuses_a_broken_record_route() -> None:
    """A response whose Record-Route is not a SIP URI cannot confirm the dialog."""
    dialog = uac_dialog()
    with pytest.raises(RemoteProtocolError):
        dialog.confirm(parse_response(response_with(200, ("Record-Route", "<tel:+1555>"))))


def test_refresh_target() -> None:
    """A SIP Contact replaces the remote target; None or a non-SIP URI leaves it alone (§12.2)."""
    dialog = uac_dialog()
    dialog.refresh_target(parse_name_address("<sip:new@192.0.2.99:5090>"))
    assert str(dialog.remote_target) == "sip:new@192.0.2.99:5090"
    dialog.refresh_target(None)
    dialog.refresh_target(parse_name_address("<tel:+15551234567>"))
    assert str(dialog.remote_target) == "sip:new@192.0.2.99:5090"
    assert dialog.next_hop().address == ("192.0.2.99", 5090)


# -- in-dialog requests (§12.2.1.1) -----------------------------------------------------------------


def _confirmed() -> Dialog:
    dialog = uac_dialog()
    dialog.confirm(
        parse_response(
            response_with(
                200,
                ("Record-Route", "<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"),
                ("Contact", "<sip:gw@198.51.100.7:5080;transport=udp>"),
            )
        )
    )
    return dialog


def test_create_request_fills_the_dialog_fields() -> None:
    """An in-dialog BYE has the remote target, route set, tags, Call-ID and next CSeq."""
    dialog = _confirmed()
    dialog.local_cseq = 1  # the INVITE used 1
    bye = dialog.create_request("BYE")
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:gw@198.51.100.7:5080;transport=udp"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.from_address.tag == "sg-1"
    assert str(bye.from_address.uri) == "sip:200@sipguard.example.com"
    assert bye.to_address.tag == "tr-1"
    assert str(bye.to_address.uri) == "sip:+15551234567@trunk.example.com"
    assert bye.call_id == "out-1@sipguard"
    assert (bye.cseq.number, bye.cseq.method) == (2, "BYE")
    assert bye.headers.get("Max-Forwards") == "70"
    assert "Contact" not in bye.headers  # BYE is not a target refresh


def test_cseq_increments_and_ack_keeps_the_invite_number() -> None:
    """Each request takes the next CSeq; an ACK with an explicit cseq does not advance it."""
    dialog = _confirmed()
    invite = dialog.create_request("INVITE")
    assert invite.cseq.number == 1
    assert invite.headers.get("Contact") == LOCAL_CONTACT  # a target refresh carries Contact
    ack = dialog.create_request("ACK", cseq=invite.cseq.number)
    assert (ack.cseq.number, ack.cseq.method) == (1, "ACK")
    assert dialog.local_cseq == 1
    info = dialog.create_request("INFO")
    update = dialog.create_request("UPDATE", max_forwards=12)
    assert (info.cseq.number, update.cseq.number) == (2, 3)
    assert update.headers.get("Max-Forwards") == "12"
    assert "Contact" in update.headers


def test_request_before_the_remote_tag_has_no_to_tag() -> None:
    """Before any response the To header has no tag (the initial INVITE, §8.1.1.2)."""
    invite = uac_dialog().create_request("INVITE")
    assert invite.to_tag is None
    assert invite.from_tag == "sg-1"
    assert invite.headers.get_all("Route") == []


def test_in_dialog_request_goes_out_through_the_endpoint() -> None:
    """A dialog request gains a Via from the endpoint and parses back with the same fields."""
    dialog = _confirmed()
    endpoint = new_endpoint()
    endpoint.send_request(dialog.create_request("BYE"), dialog.next_hop(), 0.0)
    [datagram] = endpoint.datagrams_to_send()
    assert datagram.destination == ("p1.example.com", 5060)
    bye = parse_request(datagram.data)
    assert bye.to_tag == "tr-1"
    assert bye.from_tag == "sg-1"
    assert bye.headers.values("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.top_via.branch is not None


@pytest.mark.parametrize(
    ("routes", "target", "hop"),
    [
        ([], "sip:gw@198.51.100.7", ("198.51.100.7", 5060, "UDP")),
        ([], "sips:gw@198.51.100.7", ("198.51.100.7", 5061, "TLS")),
        ([], "sip:gw@[2001:db8::7]:5070", ("2001:db8::7", 5070, "UDP")),
        ([], "sip:gw@198.51.100.7;transport=TCP", ("198.51.100.7", 5060, "TCP")),
        ([], "sip:gw@198.51.100.7;transport=tls", ("198.51.100.7", 5061, "TLS")),
        ([], "sip:gw@198.51.100.7;transport=sctp", ("198.51.100.7", 5060, "UDP")),
        (["<sip:edge.example.com:5080;lr>"], "sip:gw@198.51.100.7",
         ("edge.example.com", 5080, "UDP")),
        (["<sip:[2001:db8::1];lr;transport=tcp>", "<sip:p2;lr>"], "sip:gw@h",
         ("2001:db8::1", 5060, "TCP")),
        (['"Edge" <sips:edge.example.com;lr>'], "sip:gw@h", ("edge.example.com", 5061, "TLS")),
    ],
)
def test_next_hop(routes: list[str], target: str, hop: tuple[str, int, str]) -> None:
    """Requests go to the first route, else to the remote target (§8.1.2, §12.2.1.1), over
    the transport that URI names (RFC 3263 §4.1: sips is TLS; an unknown one is UDP)."""
    dialog = uac_dialog()
    dialog.route_set = routes
    dialog.remote_target = parse_uri(target)
    assert dialog.next_hop() == hop
    if not routes:
        assert uri_address(parse_uri(target)) == hop[:2]


def test_strict_router_first_in_the_route_set() -> None:
    """With a strict router first, it becomes the Request-URI and the target goes last in Route."""
    dialog = _confirmed()
    dialog.route_set = ["<sip:strict.example.com>", "<sip:p2.example.com;lr>"]
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:strict.example.com"
    assert bye.headers.values("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:gw@198.51.100.7:5080;transport=udp>",
    ]


def test_tag_helpers() -> None:
    """with_tag sets or replaces a tag; without_tag removes it and keeps other parameters."""
    address = parse_name_address('"A" <sip:a@h>;tag=old;x=1')
    assert without_tag(address).parameters == (("x", "1"),)
    assert with_tag(address, "new") == '"A" <sip:a@h>;tag=new;x=1'
    assert with_tag(without_tag(address), "t") == '"A" <sip:a@h>;x=1;tag=t'
    assert with_tag(without_tag(address), None) == '"A" <sip:a@h>;x=1'


def test_dialog_request_serialises_and_parses() -> None:
    """A request made by a dialog is a valid message once a Via is added."""
    dialog = _confirmed()
    bye = dialog.create_request("BYE")
    bye.headers.prepend("Via", f"SIP/2.0/UDP {TRUNK[0]};branch=z9hG4bKx")
    again = parse_request(bye.to_bytes())
    assert list(again.headers)[:-1] == list(bye.headers)
    assert again.headers.get("Content-Length") == "0"
