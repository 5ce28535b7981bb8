"""The sans-IO SIP endpoint: datagrams and time in, events and datagrams out.

The endpoint owns the transaction layer. The service feeds it
``receive_datagram(data, source, local, now)`` and ``handle_timer(now)``;
the transaction user (the B2BUA controller) reads the returned events and
calls :meth:`Endpoint.send_request`, :meth:`Endpoint.respond`,
:meth:`Endpoint.cancel` and :meth:`Endpoint.send_ack`. Whatever must go on
the wire collects in :meth:`Endpoint.datagrams_to_send`, and
:meth:`Endpoint.get_timer` says when ``handle_timer`` is due next.

Each local address has a transport (:class:`Local`). On TCP and TLS the
service frames the stream (``sip/framing.py``) and feeds whole messages
here; responses go back to the connection's remote address (§18.2.2), and
requests to a peer's sent-by address go back on the connection that peer
opened (an RFC 5923 alias, learned from the top Via of its requests), so
the service finds the connection to use from the remote address alone.

Nothing raises out of ``receive_datagram``: a message that cannot be
parsed becomes a :class:`MessageDiscarded` event and, when it is a request
with a usable top Via, a 4xx/5xx answer (RFC 3261 §8.2, §21.4).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Callable, Sequence

from sipguard.sip.errors import LocalProtocolError, RemoteProtocolError
from sipguard.sip.events import (
    AckTimedOut,
    CancelReceived,
    Datagram,
    Event,
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from sipguard.sip.grammar import replace_parameter
from sipguard.sip.headers import Headers, Via, parse_via
from sipguard.sip.message import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MessageParseError,
    Request,
    Response,
    parse_message,
    reason_phrase,
)
from sipguard.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    Transaction,
    hop_by_hop_request,
)
from sipguard.sip.transaction_table import Action, TimerSettings
from sipguard.sip.transport import (
    TLS,
    UDP,
    Address,
    Hop,
    Local,
    as_hop,
    as_local,
    default_port_for,
)

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


def new_token(length: int = 10) -> str:
    """A random token for tags, branches and Call-IDs."""
    return secrets.token_hex(length // 2 + 1)[:length]


def default_port(via: Via) -> int:
    """The port a Via's sent-by means when none is written (RFC 3261 §18.2.2)."""
    return via.port if via.port is not None else default_port_for(via.transport)


MAX_ALIASES = 4096  # connection aliases kept (each a PBX's sent-by on one connection)


def unbracket(host: str) -> str:
    """A host without IPv6 brackets."""
    return host[1:-1] if host.startswith("[") else host


class Endpoint:
    """SIP transaction layer over datagrams (RFC 3261 §17, §18) without I/O."""

    def __init__(
        self,
        local_addresses: Sequence[Local | Address],
        settings: TimerSettings | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        token: Callable[[int], str] = new_token,
        server_name: str = "sipguard",
    ) -> None:
        if not local_addresses:
            raise LocalProtocolError("an endpoint needs at least one local address")
        self.local_addresses = [as_local(local) for local in local_addresses]
        self.settings = settings or TimerSettings()
        self.max_message_size = max_message_size
        self.server_name = server_name
        self._token = token
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        self._client: dict[tuple[str, ...], ClientTransaction] = {}
        # ACKs for 2xx carry a new branch: match them by Call-ID, CSeq and To tag.
        self._accepted: dict[tuple[str, int, str], ServerTransaction] = {}
        self._timers: list[tuple[float, int, Transaction]] = []
        self._sequence = itertools.count()
        self._outbox: list[Datagram] = []
        # (transport, sent-by host, sent-by port) -> the remote address of the
        # connection that peer sends on (as RFC 5923 §5 does with ;alias: requests to it
        # reuse the connection), and the other way round.
        self._aliases: dict[tuple[str, str, int], Address] = {}
        self._sent_by: dict[tuple[str, str, int], Address] = {}
        # Connections that closed -> the sent-by their peer listens on: what was meant for
        # the connection goes there instead (RFC 3261 §18.2.2), never to a client's port.
        self._closed_flows: dict[tuple[str, str, int], Address] = {}

    # -- introspection -------------------------------------------------------

    @property
    def transaction_count(self) -> int:
        """Live client and server transactions."""
        return len(self._server) + len(self._client)

    def transactions_by_state(self) -> dict[str, int]:
        """How many live transactions are in each kind and state (for the stats line)."""
        counts: dict[str, int] = {}
        for transaction in [*self._server.values(), *self._client.values()]:
            side = "client" if transaction.is_client else "server"
            name = f"{side} {transaction.method} {transaction.state.value}"
            counts[name] = counts.get(name, 0) + 1
        return counts

    def local_for(self, destination: Hop | Address, transport: str | None = None) -> Local:
        """The local address requests to ``destination`` leave from: over ``transport``,
        else the hop's own (UDP for a bare address).

        The transport's own address of the right family first; without one, any
        address of that family (settings refuse a trunk whose transport has no
        listener, so this is a PBX's Contact asking for a transport we lack). TLS is
        never replaced by a cleartext transport: that is a LocalProtocolError.
        """
        if transport is None:
            transport = as_hop(destination).transport
        want_ipv6 = ":" in destination[0]
        fallback: Local | None = None
        for local in self.local_addresses:
            if (":" in local.host) == want_ipv6:
                if local.transport == transport:
                    return local
                if fallback is None:
                    fallback = local
        if transport == TLS:
            raise LocalProtocolError(f"no tls listen address to reach {destination[0]} from")
        return fallback or self.local_addresses[0]

    def connection_closed(self, transport: str, remote: Address) -> None:
        """A TCP/TLS connection ended: what was meant for it goes to its peer's sent-by."""
        sent_by = self._sent_by.pop((transport, *remote), None)
        if sent_by is None:
            return
        key = (transport, *sent_by)
        if self._aliases.get(key) == remote:
            del self._aliases[key]
        if len(self._closed_flows) >= MAX_ALIASES:
            del self._closed_flows[next(iter(self._closed_flows))]
        self._closed_flows[(transport, *remote)] = sent_by

    def transport_failed(self, local: Local, destination: Address, now: float,
                         reason: str = "connection failed") -> list[Event]:
        """A connection to ``destination`` could not be made or broke (RFC 3261 §8.1.3.1).

        Every client transaction waiting on it is ended at once and reported as
        a timeout, rather than after Timer B or F; an INVITE that has had a
        provisional response is left to its final response (the far end may send it
        on a new connection) or to the TU's CANCEL, so that a call the far end may
        still answer is never forgotten.
        """
        events: list[Event] = []
        aliases = self._aliases
        for transaction in list(self._client.values()):
            sent_to = transaction.destination
            if aliases and local.transport != UDP:  # sent on the connection a peer opened
                sent_to = aliases.get((local.transport, *sent_to), sent_to)
            if (transaction.local == local and sent_to == destination
                    and transaction.final_status is None and not transaction.is_terminated
                    and not (transaction.is_invite and transaction.has_provisional)):
                transaction.transport_failed()
                self._forget(transaction)
                events.append(TransactionTimedOut(transaction, reason))
        return events

    # -- output ----------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        """Take everything waiting to be sent."""
        outbox, self._outbox = self._outbox, []
        return outbox

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        while self._timers:
            deadline, _, transaction = self._timers[0]
            if transaction.is_terminated or transaction.scheduled != deadline:
                heapq.heappop(self._timers)  # superseded by an earlier entry, or ended
                continue
            next_deadline = transaction.next_deadline
            if next_deadline is None or next_deadline > deadline:
                # The timers stopped or moved later since this entry was pushed.
                heapq.heappop(self._timers)
                transaction.scheduled = None
                self._schedule(transaction)
                continue
            return deadline
        return None

    def _send(self, data: bytes, destination: Address, local: Local) -> None:
        if local.transport != UDP:
            key = (local.transport, *destination)
            if self._closed_flows:
                destination = self._closed_flows.get(key, destination)
            if self._aliases:
                destination = self._aliases.get((local.transport, *destination), destination)
        self._outbox.append(Datagram(data, destination, local))

    def _schedule(self, transaction: Transaction) -> None:
        """Make sure the heap holds an entry no later than the transaction's next deadline.

        One entry per transaction: a later deadline keeps the earlier entry,
        which is moved when it reaches the top of the heap (see get_timer).
        """
        deadline = transaction.next_deadline
        if deadline is None:
            return
        scheduled = transaction.scheduled
        if scheduled is not None and scheduled <= deadline:
            return
        transaction.scheduled = deadline
        heapq.heappush(self._timers, (deadline, next(self._sequence), transaction))

    # -- input -----------------------------------------------------------------

    def receive_datagram(
        self, data: bytes, source: Address, local: Local | Address, now: float,
        too_large: bool = False,
    ) -> list[Event]:
        """Feed one datagram, or one message framed from a stream; return the TU's events.

        ``too_large`` says ``data`` is only the header block of a stream message
        whose body was too large to keep: it is answered 513 (RFC 3261 §21.5.14).
        """
        local = as_local(local)
        if not data.strip(b"\r\n"):
            return []  # RFC 5626 §3.5.1 keep-alive
        try:
            message = parse_message(data, self.max_message_size, stream=local.reliable,
                                    too_large=too_large)
        except MessageParseError as error:
            return self._reject_unparseable(error, source, local)
        if isinstance(message, Request):
            try:
                return self._receive_request(message, source, local, now)
            except RemoteProtocolError as error:
                return [MessageDiscarded(error.reason, source)]
        return self._receive_response(message, source, now)

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``."""
        events: list[Event] = []
        while self._timers and self._timers[0][0] <= now:
            deadline, _, transaction = heapq.heappop(self._timers)
            if transaction.is_terminated or transaction.scheduled != deadline:
                continue
            transaction.scheduled = None
            for action, _ in transaction.fire_timers(now):
                if action is Action.REPORT_TIMEOUT and isinstance(transaction, ClientTransaction):
                    events.append(TransactionTimedOut(transaction))
                elif action is Action.REPORT_NO_ACK and isinstance(
                    transaction, ServerTransaction
                ):
                    events.append(AckTimedOut(transaction))
            if transaction.is_terminated:
                self._forget(transaction)
            else:
                self._schedule(transaction)
        return events

    def _forget(self, transaction: Transaction) -> None:
        if isinstance(transaction, ClientTransaction):
            if self._client.get(transaction.key) is transaction:
                del self._client[transaction.key]
        elif isinstance(transaction, ServerTransaction):
            if self._server.get(transaction.key) is transaction:
                del self._server[transaction.key]
            accepted_key = transaction.accepted_key
            if accepted_key is not None and self._accepted.get(accepted_key) is transaction:
                del self._accepted[accepted_key]

    def _reject_unparseable(
        self, error: MessageParseError, source: Address, local: Local
    ) -> list[Event]:
        headers = error.headers
        if not error.is_request or error.method == "ACK" or headers is None:
            return [MessageDiscarded(error.reason, source)]
        if not headers.values("Via"):
            return [MessageDiscarded(error.reason, source)]
        try:
            destination = self._response_destination(
                parse_via(headers.values("Via")[0]), source, local)
        except RemoteProtocolError as via_error:
            if via_error.status_code != 505:
                return [MessageDiscarded(error.reason, source)]  # no sent-by to answer
            # A Via of another SIP version (RFC 4475 §3.1.2.16 badvers: SIP/7.0 there
            # too): the 505 goes back where the request came from, as with rport.
            destination = source
        response_headers = Headers()
        for value in headers.get_all("Via"):
            response_headers.add("Via", value)
        for name in ("From", "To", "Call-ID", "CSeq"):
            field = headers.get(name)
            if field is None:
                return [MessageDiscarded(error.reason, source)]
            if name == "To" and ";tag=" not in field.replace(" ", "").lower():
                field = f"{field};tag={self._token(10)}"
            response_headers.add(name, field)
        for name, value in error.extra_headers:
            response_headers.add(name, value)
        response_headers.add("Server", self.server_name)
        reason = error.reason if error.status_code == 400 else reason_phrase(error.status_code)
        response = Response(error.status_code, reason, response_headers)
        self._send(response.to_bytes(), destination, local)
        return [MessageDiscarded(error.reason, source, error.status_code)]

    @staticmethod
    def _response_destination(via: Via, source: Address, local: Local) -> Address:
        """Where responses go (RFC 3261 §18.2.2, RFC 3581 §4)."""
        if local.reliable or via.parameter("rport") is not None:
            return source  # on a stream: back on the connection the request came in on
        # §18.2.1: the server adds received= whenever sent-by is not the source
        # address, and §18.2.2 sends there; either way that is the source host.
        return (source[0], default_port(via))

    @staticmethod
    def _server_key(request: Request, via: Via) -> tuple[str, ...]:
        """RFC 3261 §17.2.3: branch, sent-by and method (ACK matches INVITE)."""
        method = "INVITE" if request.method == "ACK" else request.method
        branch = via.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            # RFC 2543 peers: fall back to the fields that identify the request.
            branch = f"2543|{request.call_id}|{request.from_tag}|{request.cseq.number}"
        return (branch, via.sent_by, method)

    def _receive_request(
        self, request: Request, source: Address, local: Local, now: float
    ) -> list[Event]:
        via = request.top_via
        key = self._server_key(request, via)
        if local.reliable:
            self._learn_alias(via, source, local)
        if request.method == "ACK":
            return self._receive_ack(request, key, source, now)
        existing = self._server.get(key)
        if existing is not None:
            existing.receive_retransmission(now)
            self._schedule(existing)
            return []
        transaction = self._new_server_transaction(key, request, via, source, local)
        if request.method == "CANCEL":
            return self._receive_cancel(request, transaction, via, now)
        if request.method == "INVITE":
            # RFC 3261 §17.2.1: answer 100 at once so the PBX stops retransmitting.
            transaction.respond(self.make_response(transaction, 100), now)
            self._schedule(transaction)
        return [RequestReceived(request, transaction, source)]

    def _learn_alias(self, via: Via, source: Address, local: Local) -> None:
        """Requests to this peer's sent-by go back on its connection (as RFC 5923 §5).

        Only a sent-by naming the connection's own host is taken, so a peer cannot
        draw traffic meant for another address onto its connection. The newest
        connection naming a sent-by takes it (a PBX that reconnects is reached at
        once); another device sharing the PBX's address could take it too, but
        such a device is that peer already, since peers are known by address.
        """
        host, port = unbracket(via.host), default_port(via)
        if host != source[0] or port == source[1]:
            return
        key = (local.transport, host, port)
        current = self._aliases.get(key)
        self._closed_flows.pop((local.transport, *source), None)
        if current is not None:
            del self._aliases[key]  # re-inserted last: the busiest peers are evicted last
            if current != source:
                self._sent_by.pop((local.transport, *current), None)
        elif len(self._aliases) >= MAX_ALIASES:
            oldest = next(iter(self._aliases))
            self._sent_by.pop((oldest[0], *self._aliases.pop(oldest)), None)
        self._aliases[key] = source
        self._sent_by[(local.transport, *source)] = (host, port)

    def _new_server_transaction(
        self, key: tuple[str, ...], request: Request, via: Via, source: Address, local: Local
    ) -> ServerTransaction:
        transaction = ServerTransaction(
            key,
            request,
            source,
            self._response_destination(via, source, local),
            local,
            self.settings,
            self._send,
        )
        self._server[key] = transaction
        return transaction

    def _receive_ack(
        self, request: Request, key: tuple[str, ...], source: Address, now: float
    ) -> list[Event]:
        invite = self._server.get(key)
        if invite is not None and invite.final_status is not None and invite.final_status >= 300:
            invite.receive_ack(now)  # §17.2.1: ACK for a non-2xx is absorbed hop by hop
            self._schedule(invite)
            return []
        to_tag = request.to_tag or ""
        accepted = self._accepted.get((request.call_id, request.cseq.number, to_tag))
        if accepted is not None:
            first = accepted.receive_ack(now)
            self._schedule(accepted)
            if not first:
                return []  # a retransmitted ACK: the far end has it already
        return [RequestReceived(request, None, source)]

    def _receive_cancel(
        self, cancel: Request, transaction: ServerTransaction, via: Via, now: float
    ) -> list[Event]:
        invite_key = (transaction.key[0], transaction.key[1], "INVITE")
        invite = self._server.get(invite_key)
        if invite is None:
            transaction.respond(
                self.make_response(transaction, 481, to_tag=self._token(10)), now)
            self._schedule(transaction)
            return []
        transaction.respond(self.make_response(transaction, 200, to_tag=self._token(10)), now)
        self._schedule(transaction)
        if invite.final_status is not None:
            return []  # §9.2: the INVITE was answered already; CANCEL has no effect
        return [CancelReceived(invite, cancel)]

    def _receive_response(self, response: Response, source: Address, now: float) -> list[Event]:
        via = response.top_via
        branch = via.branch or ""
        transaction = self._client.get((branch, response.cseq.method))
        if transaction is None:
            return [MessageDiscarded("Response matches no transaction", source)]
        local = transaction.local
        if unbracket(via.host) != local.host or via.port != local.port:
            # §18.1.2: a response whose sent-by is not ours is silently discarded.
            return [MessageDiscarded("Response sent-by is not ours", source)]
        if len(response.headers.values("Via")) > 1:
            return [MessageDiscarded("Response with more than one Via", source)]  # §8.1.3.3
        if not transaction.receive_response(response, now):
            self._after_input(transaction)
            return []
        self._after_input(transaction)
        return [ResponseReceived(response, transaction)]

    def _after_input(self, transaction: Transaction) -> None:
        if transaction.is_terminated:
            self._forget(transaction)
        else:
            self._schedule(transaction)

    # -- TU actions -------------------------------------------------------------

    def make_response(
        self,
        transaction: ServerTransaction,
        status_code: int,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Response:
        """A response to the transaction's request (RFC 3261 §8.2.6.2)."""
        if transaction.final_status is not None:
            raise LocalProtocolError(
                f"{transaction.method} transaction already answered {transaction.final_status}")
        request = transaction.request
        response_headers = Headers()
        vias = request.headers.get_all("Via")
        top = request.top_via
        parameters = top.parameters
        source_host = transaction.source[0]
        has_rport = top.parameter("rport") is not None
        if unbracket(top.host) != source_host or has_rport:
            # §18.2.1, and RFC 3581 §4: with rport, received is always added.
            parameters = replace_parameter(parameters, "received", source_host)
        if has_rport:
            parameters = replace_parameter(parameters, "rport", str(transaction.source[1]))
        if parameters is not top.parameters:
            # RFC 3261 §18.2.1 and RFC 3581 §4: tell the client where the request came from.
            all_vias = request.headers.values("Via")
            response_headers.add("Via", str(Via(top.transport, top.host, top.port, parameters)))
            for value in all_vias[1:]:
                response_headers.add("Via", value)
        else:
            for value in vias:
                response_headers.add("Via", value)
        response_headers.add("From", request.headers.get("From") or "")
        to_value = request.headers.get("To") or ""
        if status_code != 100 and request.to_tag is None and to_tag:
            to_value = f"{to_value};tag={to_tag}"
        response_headers.add("To", to_value)
        response_headers.add("Call-ID", request.call_id)
        response_headers.add("CSeq", str(request.cseq))
        if status_code == 100 and "Timestamp" in request.headers:
            response_headers.add("Timestamp", request.headers.get("Timestamp") or "")
        for name, value in headers or ():
            response_headers.add(name, value)
        return Response(status_code, reason or reason_phrase(status_code), response_headers, body)

    def respond(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        """Send a response through a server transaction."""
        transaction.respond(response, now)
        if transaction.is_invite and 200 <= response.status_code < 300:
            to_tag = response.to_tag or ""
            key = (transaction.call_id, transaction.cseq_number, to_tag)
            transaction.accepted_key = key
            self._accepted[key] = transaction
        self._after_input(transaction)

    def new_token(self, length: int = 10) -> str:
        """A random token for tags and Call-IDs."""
        return self._token(length)

    def new_branch(self) -> str:
        """A fresh RFC 3261 branch."""
        return MAGIC_COOKIE + self._token(16)

    def via_for(self, local: Local | Address, branch: str) -> str:
        """Our Via value for a request sent from ``local``."""
        local = as_local(local)
        host = f"[{local.host}]" if ":" in local.host else local.host
        # RFC 3581 rport matters on UDP only: on a stream the answer comes on the connection.
        rport = ";rport" if local.transport == UDP else ""
        return f"SIP/2.0/{local.transport} {host}:{local.port};branch={branch}{rport}"

    def send_request(
        self, request: Request, destination: Hop | Address, now: float
    ) -> ClientTransaction:
        """Send a request (not ACK or CANCEL) through a new client transaction.

        The endpoint puts its own Via on top with a fresh branch.
        """
        if request.method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"{request.method} is not sent with send_request")
        hop = as_hop(destination)
        local = self.local_for(hop.address, hop.transport)
        branch = self.new_branch()
        request.headers.prepend("Via", self.via_for(local, branch))
        transaction = ClientTransaction(
            (branch, request.method), request, hop.address, local, self.settings, self._send
        )
        self._client[transaction.key] = transaction
        transaction.start(now)
        self._schedule(transaction)
        return transaction

    def cancel(self, invite: ClientTransaction, now: float) -> ClientTransaction | None:
        """CANCEL an INVITE that has had a provisional response (RFC 3261 §9.1).

        Returns None when cancelling is not allowed (no provisional response
        yet, or a final response already came): the TU tries again later or
        gives up.
        """
        if not invite.has_provisional or invite.final_status is not None:
            return None
        if invite.is_terminated:
            return None
        original = invite.request
        cancel = hop_by_hop_request(original, "CANCEL", original.headers.get("To") or "")
        transaction = ClientTransaction(
            (invite.key[0], "CANCEL"), cancel, invite.destination, invite.local,
            self.settings, self._send,
        )
        self._client[transaction.key] = transaction
        transaction.start(now)
        self._schedule(transaction)
        invite.cancelled(now)
        self._schedule(invite)
        return transaction

    def send_ack(self, request: Request, destination: Hop | Address) -> bytes:
        """Send an ACK for a 2xx outside any transaction (RFC 3261 §13.2.2.4).

        Returns the bytes so the TU can resend them when the 2xx is retransmitted.
        """
        hop = as_hop(destination)
        local = self.local_for(hop.address, hop.transport)
        request.headers.prepend("Via", self.via_for(local, self.new_branch()))
        data = request.to_bytes()
        self._send(data, hop.address, local)
        return data

    def resend(self, data: bytes, destination: Hop | Address) -> None:
        """Send bytes again (an ACK for a retransmitted 2xx)."""
        hop = as_hop(destination)
        self._send(data, hop.address, self.local_for(hop.address, hop.transport))
