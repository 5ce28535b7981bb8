"""SIP over TCP and TLS: listeners and connections on asyncio streams (RFC 3261 §18.3).

Each connection has a reader task that frames what arrives
(``sipguard.sip.framing``) and hands every message to the service's
:class:`StreamHandler`, which feeds the same sans-IO endpoint the UDP
listeners feed. Sending names only the remote address: the connection to it
is used when there is one (the endpoint already maps a PBX's sent-by to the
connection it opened), else a new one is opened, with what is sent meanwhile
queued (boundedly) until it is up.

What holds on streams as it does on UDP:

- a banned or blocklisted source is refused when it connects, before a byte
  is read or a TLS handshake is spent on it, and a connection whose source is
  banned later is closed at its next message;
- at most ``max_connections`` connections in all and
  ``max_connections_per_source`` from one address; more are closed at once;
- a connection silent for ``idle_timeout`` seconds is closed, and so is one
  whose TLS handshake takes longer than ``handshake_timeout``;
- the maximum message size bounds what one connection buffers; a message
  too large is answered 513 and its body skipped unread; a stream whose
  framing is lost is answered 400 where it can be and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from sipguard.sip import TLS, Address, FrameKind, Local, StreamFramer

READ_SIZE = 65536
PONG = b"\r\n"  # RFC 5626 §3.5.1: the answer to a double-CRLF keep-alive
PONG_INTERVAL = 1.0  # seconds: keep-alives come every 30 s or more; faster ones are ignored


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Limits on TCP and TLS connections (the ``transport`` section)."""

    idle_timeout: float = 300.0  # seconds a connection may stay silent
    max_connections: int = 1024  # per listener, inbound and outbound together
    max_connections_per_source: int = 32  # inbound, from one address
    connect_timeout: float = 5.0  # opening a connection (TLS handshake included)
    handshake_timeout: float = 5.0  # a client's TLS handshake on a listener
    max_pending: int = 64  # messages queued for a connection still being opened
    write_buffer_limit: int = 1 << 20  # bytes waiting on a peer that reads nothing


class StreamHandler(Protocol):
    """What the service does with a stream's events."""

    def stream_admit(self, host: str) -> bool:
        """Whether to take a connection from ``host`` (False: banned or blocklisted)."""
        ...

    def stream_message(self, data: bytes, source: Address, local: Local,
                       too_large: bool) -> bool:
        """One framed message; False closes the connection (its source was refused)."""
        ...

    def stream_closed(self, local: Local, remote: Address, reason: str) -> None:
        """A connection ended (or could not be opened): ``reason`` says why."""
        ...


class Connection:
    """One TCP or TLS connection and its framer."""

    __slots__ = ("framer", "inbound", "last_pong", "remote", "writer")

    def __init__(self, remote: Address, writer: asyncio.StreamWriter, max_size: int,
                 inbound: bool) -> None:
        self.remote = remote
        self.writer = writer
        self.framer = StreamFramer(max_size)
        self.inbound = inbound
        self.last_pong = float("-inf")


class StreamTransport:
    """One TCP or TLS listen address and every connection made to it or from it."""

    def __init__(self, host: str, port: int, transport: str, settings: StreamSettings,
                 max_message_size: int, handler: StreamHandler, log: Any,
                 server_ssl: ssl.SSLContext | None = None,
                 client_ssl: ssl.SSLContext | None = None,
                 server_names: dict[Address, str] | None = None) -> None:
        if transport == TLS and (server_ssl is None or client_ssl is None):
            raise ValueError("a TLS transport needs its server and client contexts")
        self.local = Local(host, port, transport)
        self.settings = settings
        self.max_message_size = max_message_size
        self.handler = handler
        self.log = log
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._server_names = server_names or {}
        self._listener: socket.socket | None = None
        self._connections: dict[Address, Connection] = {}
        self._pending: dict[Address, list[bytes]] = {}
        # Inbound connections per source (an IPv6 source is its /64), handshakes included.
        self._per_source: Counter[str] = Counter()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused: Counter[str] = Counter()  # connections refused or closed, by reason

    @property
    def is_tls(self) -> bool:
        """Whether this transport speaks TLS."""
        return self.local.transport == TLS

    async def start(self) -> Local:
        """Listen; return the bound address (port 0 takes a free one).

        Connections are accepted one by one (not by asyncio.start_server) so that a
        refused source is closed before its TLS handshake, and TLS starts on a socket
        nothing has read from yet.
        """
        family = socket.AF_INET6 if ":" in self.local.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind((self.local.host, self.local.port))
            listener.listen(512)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        bound = listener.getsockname()
        self.local = Local(bound[0], bound[1], self.local.transport)
        self._spawn(self._accept_loop(listener))
        return self.local

    async def stop(self) -> None:
        """Stop listening and close every connection (nothing is sent or opened after)."""
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        for connection in list(self._connections.values()):
            connection.writer.close()
        for _ in range(3):  # a closing connection's handler may have spawned more
            tasks = list(self._tasks)
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=2.0)

    def stats(self) -> dict[str, Any]:
        """Open connections and what was refused (for the stats line)."""
        inbound = sum(1 for connection in self._connections.values() if connection.inbound)
        return {"connections": len(self._connections), "inbound": inbound,
                "connecting": len(self._pending), "refused": dict(self.refused)}

    # -- sending ---------------------------------------------------------------------

    def send(self, data: bytes, destination: Address) -> None:
        """Send on the connection to ``destination``, opening one when there is none."""
        if self._stopping:
            return
        connection = self._connections.get(destination)
        if connection is not None:
            self._write(connection, data)
            return
        pending = self._pending.get(destination)
        if pending is not None:
            if len(pending) < self.settings.max_pending:
                pending.append(data)
            return
        if self._connection_count() >= self.settings.max_connections:
            self.refused["max_connections"] += 1
            # Not from inside the caller's pump: the failure is reported on the next turn.
            asyncio.get_running_loop().call_soon(
                self.handler.stream_closed, self.local, destination, "too many connections")
            return
        self._pending[destination] = [data]
        self._spawn(self._connect(destination))

    def _write(self, connection: Connection, data: bytes) -> None:
        """Write, unless the peer has stopped reading (then the connection goes)."""
        transport = connection.writer.transport
        if transport.get_write_buffer_size() > self.settings.write_buffer_limit:
            self.log.warning("transport.stream_stuck", local=str(self.local),
                             remote=_address_text(connection.remote))
            self.refused["stuck"] += 1
            transport.abort()
            return
        connection.writer.write(data)

    def _connection_count(self) -> int:
        """Connections open, being opened, and inbound ones still in their TLS handshake."""
        outbound = sum(1 for connection in self._connections.values() if not connection.inbound)
        return outbound + len(self._pending) + sum(self._per_source.values())

    async def _connect(self, destination: Address) -> None:
        host, port = destination
        settings = self.settings
        tls = self._client_ssl if self.is_tls else None
        try:
            async with asyncio.timeout(settings.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, local_addr=(self.local.host, 0),
                    server_hostname=self._server_names.get(destination, host) if tls else None,
                    ssl_handshake_timeout=settings.connect_timeout if tls else None)
        except Exception as error:  # OSError, TimeoutError, SSLError, or anything unforeseen
            self._pending.pop(destination, None)
            reason = str(error) or type(error).__name__
            self.log.warning("transport.connect_failed", local=str(self.local),
                             remote=_address_text(destination), error=reason)
            self.handler.stream_closed(self.local, destination, reason)
            return
        connection = Connection(destination, writer, self.max_message_size, inbound=False)
        self._connections[destination] = connection
        for data in self._pending.pop(destination, []):
            writer.write(data)
        self.log.debug("transport.connected", local=str(self.local),
                       remote=_address_text(destination))
        await self._serve(connection, reader)

    # -- receiving -------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                accepted, peer = await loop.sock_accept(listener)
            except OSError as error:  # out of file descriptors, say: wait and go on
                self.log.warning("transport.accept_failed", local=str(self.local),
                                 error=str(error))
                await asyncio.sleep(0.1)
                continue
            remote: Address = (str(peer[0]), int(peer[1]))
            source = _source_key(remote[0])
            refusal = None
            if not self.handler.stream_admit(remote[0]):
                refusal = "refused source"
            elif self._connection_count() >= self.settings.max_connections:
                refusal = "max_connections"
            elif self._per_source[source] >= self.settings.max_connections_per_source:
                refusal = "max_connections_per_source"
            if refusal is not None:
                self.refused[refusal] += 1
                accepted.close()
                continue
            self._per_source[source] += 1
            self._spawn(self._accepted(accepted, remote, source))

    async def _accepted(self, accepted: socket.socket, remote: Address, source: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            reader = asyncio.StreamReader(limit=2 * READ_SIZE)
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                async with asyncio.timeout(self.settings.handshake_timeout):
                    transport, _ = await loop.connect_accepted_socket(
                        lambda: protocol, accepted, ssl=self._server_ssl,
                        ssl_handshake_timeout=(self.settings.handshake_timeout
                                               if self._server_ssl is not None else None))
            except (OSError, TimeoutError, ssl.SSLError) as error:
                self.refused["tls_handshake"] += 1
                self.log.info("transport.tls_refused", local=str(self.local),
                              remote=_address_text(remote),
                              error=str(error) or type(error).__name__)
                accepted.close()
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            connection = Connection(remote, writer, self.max_message_size, inbound=True)
            previous = self._connections.get(remote)
            if previous is not None:  # the same address and port again: the old one is dead
                previous.writer.transport.abort()
            self._connections[remote] = connection
            await self._serve(connection, reader)
        finally:
            self._per_source[source] -= 1
            if self._per_source[source] <= 0:
                del self._per_source[source]

    async def _serve(self, connection: Connection, reader: asyncio.StreamReader) -> None:
        """Read, frame and hand over messages until the connection ends."""
        reason = "closed by the peer"
        local, remote, framer = self.local, connection.remote, connection.framer
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.idle_timeout):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    reason = "idle"
                    self.refused["idle"] += 1
                    break
                if not data:
                    break
                keep = True
                for frame in framer.feed(data):
                    if frame.kind is FrameKind.PING:
                        now = asyncio.get_running_loop().time()
                        if now - connection.last_pong >= PONG_INTERVAL:
                            connection.last_pong = now
                            self._write(connection, PONG)
                        continue
                    keep = self.handler.stream_message(
                        frame.data, remote, local, frame.kind is FrameKind.TOO_LARGE)
                    if not keep:
                        break
                if not keep:
                    reason = "source refused"
                    self.refused["source refused"] += 1
                    break
                if framer.error is not None:
                    reason = framer.error
                    self.refused["framing"] += 1
                    self.log.info("transport.framing_lost", local=str(local),
                                  remote=_address_text(remote), error=framer.error)
                    break
        except (OSError, ssl.SSLError) as error:
            reason = str(error) or type(error).__name__
        finally:
            current = self._connections.get(remote) is connection
            if current:
                del self._connections[remote]
            connection.writer.close()  # what was written is still flushed
            if current:  # else a newer connection from the same address owns its state
                with contextlib.suppress(Exception):
                    self.handler.stream_closed(local, remote, reason)

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _source_key(host: str) -> str:
    """Who a connection limit counts: the address, or for IPv6 its /64 (one host's share)."""
    if ":" not in host:
        return host
    try:
        return str(ipaddress.ip_network(f"{host.split('%', 1)[0]}/64", strict=False))
    except ValueError:
        return host


def _address_text(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
