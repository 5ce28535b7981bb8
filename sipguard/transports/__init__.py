"""The transports the service receives and sends SIP on: UDP sockets, and TCP and
TLS connections (asyncio streams) framed by ``sipguard.sip.framing``.

Owns: sockets, connections and TLS contexts. May import: ``sipguard.sip`` (framing and
addresses) only.
"""

from sipguard.transports.stream import StreamHandler, StreamSettings, StreamTransport
from sipguard.transports.tls import VERSIONS, TlsSettings, client_context, server_context
from sipguard.transports.udp import BoundedProtocol, UdpListener, bind_udp

__all__ = [
    "VERSIONS",
    "BoundedProtocol",
    "StreamHandler",
    "StreamSettings",
    "StreamTransport",
    "TlsSettings",
    "UdpListener",
    "bind_udp",
    "client_context",
    "server_context",
]
