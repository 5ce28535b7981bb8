"""What a B2BUA leg needs of a dialog (RFC 3261 §12): tags, route set,
remote target and the CSeq numbers in each direction.

A :class:`Dialog` builds the in-dialog requests of its leg; the
controller never writes From, To, Call-ID, CSeq or Route by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.grammar import remove_parameter, replace_parameter
from sipguard.sip.headers import Headers, NameAddress, parse_name_address
from sipguard.sip.message import Request, Response
from sipguard.sip.transport import Address, Hop, uri_hop
from sipguard.sip.uri import Uri


def without_tag(address: NameAddress) -> NameAddress:
    """The address with its tag parameter removed."""
    parameters = remove_parameter(address.parameters, "tag")
    return NameAddress(address.display_name, address.uri, parameters)


def with_tag(address: NameAddress, tag: str | None) -> str:
    """The address as header text, with ``tag`` when given."""
    if tag is None:
        return str(address)
    return str(NameAddress(address.display_name, address.uri,
                           replace_parameter(address.parameters, "tag", tag)))


def uri_address(uri: Uri) -> Address:
    """Host and port to send to for a SIP URI (no DNS SRV: a literal or a name)."""
    return uri_hop(uri).address


@dataclass(slots=True)
class Dialog:
    """One leg's dialog state. ``remote_tag`` is None until the far end sends one."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_address: NameAddress
    remote_address: NameAddress
    local_cseq: int
    remote_cseq: int | None
    remote_target: Uri
    local_contact: str
    route_set: list[str] = field(default_factory=list)

    @classmethod
    def for_incoming(cls, request: Request, local_tag: str, local_contact: str,
                     local_cseq: int = 1) -> Dialog:
        """The UAS side of a dialog created by ``request`` (RFC 3261 §12.1.1)."""
        contact = request.contact
        if contact is None:
            raise RemoteProtocolError("Missing Contact in a dialog-creating request")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag,
            local_address=without_tag(request.to_address),
            remote_address=without_tag(request.from_address),
            local_cseq=local_cseq,
            remote_cseq=request.cseq.number,
            remote_target=contact.uri,
            local_contact=local_contact,
            route_set=checked_routes(request.headers.values("Record-Route")),
        )

    def confirm(self, response: Response) -> None:
        """Take the far end's tag, target and route set from a response (§12.1.2).

        The route set is taken from the first response that creates the
        dialog and not changed after; the target is refreshed every time.
        """
        first = self.remote_tag is None
        if first:
            self.remote_tag = response.to_tag
        if first or 200 <= response.status_code < 300:
            # §13.2.2.4: the 2xx that confirms an early dialog recomputes the route set.
            self.route_set = checked_routes(reversed(response.headers.values("Record-Route")))
        self.refresh_target(response.contact)

    def take_provisional(self, response: Response) -> None:
        """A 1xx of our INVITE: the first with a tag makes the dialog early."""
        if response.to_tag and self.remote_tag is None:
            self.confirm(response)

    def take_answer(self, response: Response) -> None:
        """The 2xx of our INVITE confirms the dialog; a 2xx from another fork than the
        early dialog's takes its tag (RFC 3261 §13.2.2.4)."""
        if self.remote_tag != response.to_tag:
            self.remote_tag = None
        self.confirm(response)

    def refresh_target(self, contact: NameAddress | None) -> None:
        """A target refresh request or response changed the remote target (§12.2)."""
        if contact is not None and contact.uri.is_sip:
            self.remote_target = contact.uri

    def next_hop(self) -> Hop:
        """Where requests of this dialog go: the first route, else the target (§8.1.2),
        over the transport that URI names."""
        if self.route_set:
            return uri_hop(parse_name_address(self.route_set[0]).uri)
        return uri_hop(self.remote_target)

    def _strict_first_route(self) -> Uri | None:
        """The first route's URI when it is a strict router (no ``lr``), else None."""
        if not self.route_set:
            return None
        uri = parse_name_address(self.route_set[0]).uri
        return None if uri.parameter("lr") is not None else uri

    def create_request(self, method: str, cseq: int | None = None,
                       max_forwards: int = 70) -> Request:
        """An in-dialog request (RFC 3261 §12.2.1.1). CSeq advances unless given."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        headers = Headers()
        request_uri = self.remote_target
        strict = self._strict_first_route()
        if strict is not None:
            # §12.2.1.1: a strict router takes the Request-URI; the remote target
            # goes last in the Route header.
            request_uri = strict.with_changes(headers="")
            for route in self.route_set[1:]:
                headers.add("Route", route)
            headers.add("Route", f"<{self.remote_target}>")
        else:
            for route in self.route_set:
                headers.add("Route", route)
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", with_tag(self.local_address, self.local_tag))
        headers.add("To", with_tag(self.remote_address, self.remote_tag))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in TARGET_REFRESH_METHODS:
            headers.add("Contact", self.local_contact)
        return Request(method, request_uri, headers)


def checked_routes(values: Iterable[str]) -> list[str]:
    """Route set entries, each parsed once so a broken one is refused up front."""
    routes = list(values)
    for route in routes:
        address = parse_name_address(route)
        if not address.uri.is_sip or not address.uri.host:
            raise RemoteProtocolError(f"Bad Record-Route {route!r}")
    return routes


# Requests that carry a Contact and refresh the remote target (RFC 3261 §12.2, RFC 3311).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
