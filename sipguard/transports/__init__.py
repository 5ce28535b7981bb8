"""The transports the service receives and sends SIP on: UDP sockets, and TCP and
TLS connections (asyncio streams) framed by ``sipguard.sip.framing``."""

from sipguard.transports.stream import StreamSettings, StreamTransport
from sipguard.transports.tls import TlsSettings, client_context, server_context
from sipguard.transports.udp import BoundedProtocol, UdpListener, bind_udp

__all__ = [
    "BoundedProtocol",
    "StreamSettings",
    "StreamTransport",
    "TlsSettings",
    "UdpListener",
    "bind_udp",
    "client_context",
    "server_context",
]
