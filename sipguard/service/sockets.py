"""The service's sockets: UDP listeners, TCP and TLS transports, and sending on them.

:class:`Wire` binds every listen address of the settings, and sends what the
endpoint wants sent on the socket or stream connection of its local address. A
destination named by host (a Contact or Route with a name) is resolved once,
off the fast path, and remembered.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Coroutine
from typing import Any

from sipguard.config import Settings
from sipguard.sip import UDP, Address, Datagram, Local
from sipguard.transports import (
    StreamHandler,
    StreamTransport,
    UdpListener,
    bind_udp,
    client_context,
    server_context,
)

MAX_RESOLVED = 1024  # host names remembered


class Wire:
    """Every listen address, bound, and the way out through them."""

    def __init__(self, settings: Settings, handler: StreamHandler, log: Any) -> None:
        self.settings = settings
        self.handler = handler
        self.log = log
        self.listeners: list[UdpListener] = []
        self.streams: list[StreamTransport] = []
        self._by_local: dict[Local, UdpListener] = {}
        self._streams_by_local: dict[Local, StreamTransport] = {}
        # Host names seen in Contact/Route, resolved once (the service is restarted
        # or reloaded far more often than PBX host names change).
        self._resolved: dict[str, str] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def locals(self) -> list[Local]:
        """The bound addresses, UDP first (the endpoint prefers the first of a kind)."""
        return [*(listener.local for listener in self.listeners),
                *(stream.local for stream in self.streams)]

    async def bind(self) -> None:
        """Bind every listen address: UDP sockets, TCP and TLS listeners."""
        settings = self.settings
        tls = settings.tls
        wants_tls = any(address.transport == "tls" for address in settings.listen)
        server_tls = server_context(tls) if wants_tls else None
        client_tls = client_context(tls) if wants_tls else None
        server_names = {trunk.address.address: trunk.tls_name for trunk in settings.trunks
                        if trunk.tls_name}
        for address in settings.listen:
            if address.transport == "udp":
                self.listeners.append(
                    await bind_udp(address.host, address.port, settings.receive_queue))
                continue
            is_tls = address.transport == "tls"
            stream = StreamTransport(address.host, address.port, address.sip_transport,
                                     settings.streams, settings.max_message_size, self.handler,
                                     self.log, server_tls if is_tls else None,
                                     client_tls if is_tls else None, server_names)
            await stream.start()
            self.streams.append(stream)
        self._by_local = {listener.local: listener for listener in self.listeners}
        self._streams_by_local = {stream.local: stream for stream in self.streams}

    async def stop(self) -> None:
        """Close every socket and connection."""
        for listener in self.listeners:
            listener.transport.close()
        for stream in self.streams:
            await stream.stop()
        for task in list(self._tasks):
            task.cancel()

    def stats(self) -> dict[str, Any]:
        """Datagrams the full receive queues dropped, and each stream listener's counts."""
        return {"dropped_datagrams": sum(listener.protocol.dropped
                                         for listener in self.listeners),
                "streams": {str(stream.local): stream.stats() for stream in self.streams}}

    def send(self, datagrams: list[Datagram]) -> None:
        """Send what the endpoint wants sent."""
        for datagram in datagrams:
            host, port = datagram.destination
            if not _is_ip_literal(host):
                resolved = self._resolved.get(host)
                if resolved is None:
                    # A Contact or Route with a host name: resolve off the fast path.
                    self._spawn(self._resolve_and_send(datagram))
                    continue
                host = resolved
            self._send(datagram.local, datagram.data, (host, port))

    def _send(self, local: Local, data: bytes, destination: Address) -> None:
        if local.transport != UDP:
            stream = self._streams_by_local.get(local)
            if stream is not None:
                stream.send(data, destination)
                return
        listener = self._by_local.get(local) or self.listeners[0]
        try:
            listener.transport.sendto(data, destination)
        except (OSError, ValueError) as error:
            self.log.warning("transport.send_failed", error=str(error),
                             destination=str(Local(*destination)))

    async def _resolve_and_send(self, datagram: Datagram) -> None:
        loop = asyncio.get_running_loop()
        host, port = datagram.destination
        family = socket.AF_INET6 if ":" in datagram.local.host else socket.AF_INET
        try:
            answers = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as error:
            self.log.warning("transport.resolve_failed", host=host, error=str(error))
            return
        if not answers:
            self.log.warning("transport.resolve_failed", host=host, error="no address")
            return
        address = str(answers[0][4][0])
        if len(self._resolved) < MAX_RESOLVED:
            self._resolved[host] = address
        self._send(datagram.local, datagram.data, (address, port))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@functools.lru_cache(maxsize=4096)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
