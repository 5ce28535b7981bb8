"""Transports, local addresses and next hops (RFC 3261 §18, RFC 3263 §4.1).

Remote addresses stay plain ``(host, port)`` pairs. What differs by
transport is carried by the two small records here:

- a :class:`Local` is one address sipguard receives on, with its transport
  (``udp:127.0.0.1:5060`` and ``tcp:127.0.0.1:5060`` are two locals);
- a :class:`Hop` is where a request goes: host, port and the transport the
  URI asks for (``;transport=tcp``, or TLS for a ``sips:`` URI).

On a reliable transport (TCP, TLS) the transaction layer does not
retransmit and its wait timers are zero (RFC 3261 §17), responses go back
on the connection the request came in on (§18.2.2), and the service keeps
the connections; the sans-IO core only names the remote address.
"""

from __future__ import annotations

from typing import NamedTuple

from sipguard.sip.uri import Uri

UDP = "UDP"
TCP = "TCP"
TLS = "TLS"
TRANSPORTS = (UDP, TCP, TLS)
RELIABLE = frozenset({TCP, TLS})

Address = tuple[str, int]


class Local(NamedTuple):
    """An address sipguard receives on, and the transport it speaks there."""

    host: str
    port: int
    transport: str = UDP

    @property
    def reliable(self) -> bool:
        """Whether this transport delivers messages itself (no retransmissions)."""
        return self.transport in RELIABLE

    @property
    def address(self) -> Address:
        """Host and port without the transport."""
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"


class Hop(NamedTuple):
    """Where a request is sent: the remote address and the transport to use."""

    host: str
    port: int
    transport: str = UDP

    @property
    def address(self) -> Address:
        """Host and port without the transport."""
        return (self.host, self.port)


def as_local(local: Local | Address) -> Local:
    """A local address; a bare ``(host, port)`` means UDP."""
    if isinstance(local, Local):
        return local
    return Local(local[0], local[1])


def as_hop(destination: Hop | Address) -> Hop:
    """A next hop; a bare ``(host, port)`` means UDP."""
    if isinstance(destination, Hop):
        return destination
    return Hop(destination[0], destination[1])


def uri_transport(uri: Uri) -> str:
    """The transport a URI asks for (RFC 3263 §4.1 without DNS): ``sips`` is TLS,
    else its ``transport`` parameter, else UDP."""
    if uri.scheme == "sips":
        return TLS
    parameter = (uri.parameter("transport") or "").upper()
    return parameter if parameter in RELIABLE else UDP


def default_port_for(transport: str) -> int:
    """The port a URI or Via means when none is written (RFC 3261 §19.1.2, §18.2.2)."""
    return 5061 if transport == TLS else 5060


def uri_hop(uri: Uri) -> Hop:
    """Host, port and transport to send to for a SIP URI (a literal or a name; no SRV)."""
    transport = uri_transport(uri)
    port = uri.port if uri.port is not None else default_port_for(transport)
    return Hop(uri.host_for_socket, port, transport)


def transport_parameter(transport: str) -> str:
    """The URI parameter naming a transport in our Contact (nothing for UDP)."""
    return "" if transport == UDP else f";transport={transport.lower()}"
