"""UDP listeners: an asyncio-dgram socket with a bounded receive queue.

Received datagrams wait in a bounded queue: when it is full, new ones are
dropped and counted rather than letting memory grow without limit under a
flood.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from asyncio_dgram.aio import DatagramServer
from asyncio_dgram.aio import Protocol as DgramProtocol

from sipguard.sip import UDP, Local


class BoundedProtocol(DgramProtocol):
    """asyncio-dgram's protocol with a cap on datagrams waiting to be read."""

    def __init__(self, queue: asyncio.Queue[Any], errors: asyncio.Queue[Any],
                 drained: asyncio.Event, limit: int) -> None:
        super().__init__(queue, errors, drained)
        self._queue = queue
        self._limit = limit
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._queue.qsize() >= self._limit:
            self.dropped += 1
            return
        self._queue.put_nowait((data, addr))


class UdpListener:
    """One bound UDP socket: the asyncio-dgram stream, its queue and transport."""

    def __init__(self, stream: DatagramServer, transport: asyncio.DatagramTransport,
                 queue: asyncio.Queue[Any], protocol: BoundedProtocol, local: Local) -> None:
        self.stream = stream
        self.transport = transport
        self.queue = queue
        self.protocol = protocol
        self.local = local


RECEIVE_BUFFER = 4 * 1024 * 1024  # bytes: a burst of a few thousand datagrams
SO_RCVBUFFORCE = 33  # Linux's <asm-generic/socket.h>; Python's socket module lacks the name


def _grow_receive_buffer(sock: socket.socket, size: int) -> None:
    """A large receive buffer, so a burst (a flood from a stranger) overflows it later.

    SO_RCVBUF is capped at net.core.rmem_max (208 KiB on a stock kernel); with
    CAP_NET_ADMIN, SO_RCVBUFFORCE is not. The kernel doubles what it is given.
    """
    forced = (SO_RCVBUFFORCE,) if sys.platform.startswith("linux") else ()
    for option in (*forced, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:  # SO_RCVBUFFORCE without the capability: EPERM
            continue


async def bind_udp(host: str, port: int, limit: int) -> UdpListener:
    """Bind one UDP listen address with a bounded receive queue."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    _grow_receive_buffer(sock, RECEIVE_BUFFER)
    sock.bind((host, port))
    sock.setblocking(False)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    errors: asyncio.Queue[Any] = asyncio.Queue()
    drained = asyncio.Event()
    protocol = BoundedProtocol(queue, errors, drained, limit)
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    # asyncio-dgram's stub names the transport parameter DatagramProtocol by mistake.
    stream = DatagramServer(transport, queue, errors, drained)  # type: ignore[arg-type]
    bound = sock.getsockname()
    return UdpListener(stream, transport, queue, protocol, Local(bound[0], bound[1], UDP))
