"""The B2BUA call controller: SIP events in, SIP actions and commands out.

Theory of operation
-------------------
The controller is the transaction user of one :class:`Endpoint`. The
service hands it every endpoint event with ``now``; it answers by calling
the endpoint (responses, new client transactions, ACKs, CANCELs) and by
returning commands for work it does not do itself: screening an attempt
and writing log lines. It never reads a clock and does no I/O.

An INVITE from a configured PBX peer without a To tag starts a call: the
PBX leg's dialog is created, a ``ScreenAttempt`` goes out, and when the
service reports the decision (:meth:`Controller.screened`) the call is
rejected with 403 or forwarded as a new INVITE on a new trunk leg (new
Call-ID, tags, Via and Contact; body and an allowlist of headers copied).
Responses, in-dialog requests, CANCEL and ACK for 2xx are then relayed
between the two legs. BYE is answered at once and repeated on the other
leg; the call is forgotten when that BYE is answered or times out.
"""

from __future__ import annotations

import collections
import heapq
import itertools

from sipguard.calls import (
    REQUEST_HEADERS_PASSED,
    Call,
    CallState,
    ClientContext,
    Command,
    LogEvent,
    Peer,
    RelayKind,
    ScreenAttempt,
    Side,
    Trunk,
    contact_for,
    copy_headers,
    decremented,
    extension_of,
    format_address,
    passed_headers,
    screened_fields,
    user_of,
)
from sipguard.policy import CallAttempt, Decision, Verdict
from sipguard.sip.dialog import Dialog, uri_address, without_tag
from sipguard.sip.endpoint import (
    AckTimedOut,
    CancelReceived,
    Endpoint,
    Event,
    MessageDiscarded,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from sipguard.sip.errors import RemoteProtocolError
from sipguard.sip.grammar import quote
from sipguard.sip.headers import NameAddress
from sipguard.sip.message import Message, Request, Response
from sipguard.sip.transaction import ClientTransaction, ServerTransaction
from sipguard.sip.uri import Uri

ALLOWED_METHODS = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, REFER, MESSAGE"


class Controller:
    """Pairs PBX legs with trunk legs (RFC 3261 B2BUA) without I/O."""

    def __init__(
        self,
        endpoint: Endpoint,
        peers: list[Peer],
        trunks: list[Trunk],
        extension_header: str = "X-Sipguard-Extension",
        ring_timeout: float = 180.0,
        max_call_duration: float = 4 * 3600.0,
    ) -> None:
        self.endpoint = endpoint
        self.peers = list(peers)
        self.trunks = list(trunks)
        self.extension_header = extension_header
        self._token = endpoint.new_token
        self._keys = itertools.count(1)
        self._calls: dict[int, Call] = {}
        self._by_dialog: dict[tuple[Side, str, str], Call] = {}
        self._by_invite: dict[ServerTransaction, Call] = {}
        self._contexts: dict[ClientTransaction, ClientContext] = {}
        self._trunk_hosts = {trunk.address[0] for trunk in trunks}
        self.draining = False
        self._finished: list[tuple[int, float]] = []
        self._clock = 0.0  # the latest `now` handed in, for the length of finished calls
        self.ring_timeout = ring_timeout
        self.max_call_duration = max_call_duration
        # Controller deadlines: (when, sequence, call key). Stale entries are skipped.
        self._deadlines: list[tuple[float, int, int]] = []
        self._deadline_sequence = itertools.count()

    # -- introspection -------------------------------------------------------

    @property
    def live_calls(self) -> int:
        """Calls not yet forgotten."""
        return len(self._calls)

    def calls_by_state(self) -> dict[str, int]:
        """How many live calls are in each state (for the stats line)."""
        return dict(collections.Counter(call.state.value for call in self._calls.values()))

    @property
    def dialog_count(self) -> int:
        """Dialogs (legs) the controller can still route requests to."""
        return len(self._by_dialog)

    # -- input -----------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        """React to one endpoint event."""
        self._clock = now
        if isinstance(event, RequestReceived):
            try:
                return self._on_request(event, now)
            except RemoteProtocolError as error:
                # A header parsed only now (Contact, Record-Route…) is malformed.
                if event.transaction is not None:
                    self._respond(event.transaction, 400, now, reason=error.reason,
                                  to_tag=self._token(10))
                return [LogEvent("sip.request_refused", "info", {
                    "call_id": event.request.call_id, "status": 400, "reason": error.reason})]
        if isinstance(event, ResponseReceived):
            try:
                return self._on_response(event.response, event.transaction, now)
            except RemoteProtocolError as error:
                return [LogEvent("sip.message_discarded", "info", {
                    "reason": error.reason, "call_id": event.response.call_id})]
        if isinstance(event, TransactionTimedOut):
            return self._on_timeout(event.transaction, now)
        if isinstance(event, CancelReceived):
            return self._on_cancel(event.invite_transaction, now)
        if isinstance(event, AckTimedOut):
            return self._on_ack_timeout(event.transaction, now)
        if isinstance(event, MessageDiscarded):
            return [LogEvent("sip.message_discarded", "info", {
                "reason": event.reason, "source": format_address(event.source),
                "status": event.status_code,
            })]
        return []

    def is_live(self, call_key: int) -> bool:
        """Whether the call is still known (not finished or cancelled)."""
        return call_key in self._calls

    def take_finished(self) -> list[tuple[int, float]]:
        """Calls that ended since the last call, with how long they were answered (s).

        The service releases their leases and charges their cost.
        """
        finished, self._finished = self._finished, []
        return finished

    def screened(self, call_key: int, decision: Decision, now: float,
                 max_duration: float | None = None) -> list[Command]:
        """The screening result for a call the controller asked about.

        ``max_duration`` is the longest the call may last once answered (a
        duration limit); the configured longest call applies when it is None.
        """
        self._clock = now
        call = self._calls.get(call_key)
        if call is None or call.state is not CallState.SCREENING:
            return []  # cancelled while screening
        call.max_duration = max_duration
        call.verdict = decision.verdict.value
        commands: list[Command] = [
            LogEvent("call.screened", "info", screened_fields(call, decision))]
        if decision.verdict is not Verdict.FORWARD:
            # PIN challenges arrive with the IVR; until then a call that needs a PIN
            # is refused, which fails closed. The Reason carries the short public
            # category, never the policy's internals (RFC 3326).
            category = (decision.category if decision.verdict is Verdict.REJECT
                        else "PIN required but no PIN service is available")
            self._respond(call.pbx_invite, 403, now, to_tag=call.pbx.local_tag, headers=[
                ("Reason", f"SIP;cause=403;text={quote(category)}"),
                ("Warning", f"399 sipguard {quote(category)}"),
            ])
            commands.append(LogEvent("call.rejected", "info", {
                **call.log_fields(), "category": category, "rule": decision.rule,
                "reason": decision.reason, "status": 403,
                "policy_version": decision.policy_version}))
            self._finish(call)
            return commands
        if not self.trunks:
            self._respond(call.pbx_invite, 503, now, to_tag=call.pbx.local_tag)
            commands.append(LogEvent("call.failed", "warning", {
                **call.log_fields(), "status": 503, "reason": "no trunk configured"}))
            self._finish(call)
            return commands
        commands.extend(self._place_trunk_call(call, self.trunks[0], now))
        return commands

    # -- timers ------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due, or None."""
        while self._deadlines:
            deadline, _, key = self._deadlines[0]
            call = self._calls.get(key)
            if call is None or call.deadline != deadline:
                heapq.heappop(self._deadlines)
                continue
            return deadline
        return None

    def _longest(self, call: Call) -> float:
        if call.max_duration is None:
            return self.max_call_duration
        return min(self.max_call_duration, call.max_duration)

    def _set_deadline(self, call: Call, when: float) -> None:
        call.deadline = when
        heapq.heappush(self._deadlines, (when, next(self._deadline_sequence), call.key))

    def handle_timer(self, now: float) -> list[Command]:
        """Fire due controller timers: endless ringing and over-long calls are ended."""
        self._clock = now
        commands: list[Command] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, key = heapq.heappop(self._deadlines)
            call = self._calls.get(key)
            if call is None or call.deadline != deadline:
                continue
            call.deadline = None
            if call.state is CallState.CONFIRMED:
                # A call with no media through us cannot tell that a side vanished;
                # the longest call allowed (a duration limit, or the configured
                # longest call) ends it with BYE on both legs.
                reason = f"longest call ({self._longest(call):g} s) reached"
                commands.extend(self._end_call(call, now, "sipguard", reason))
            elif call.pbx_invite.final_status is None and not call.cancelled:
                # Like a proxy's Timer C (RFC 3261 §16.6): give up on endless ringing.
                self._respond(call.pbx_invite, 408, now, to_tag=call.pbx.local_tag)
                call.cancelled = True
                self._try_cancel_trunk(call, now)
                commands.append(LogEvent("call.failed", "info", {
                    **call.log_fields(), "status": 408, "trunk": call.trunk_name,
                    "reason": f"no answer within {self.ring_timeout:g} s"}))
        return commands

    # -- requests ----------------------------------------------------------------

    def _on_request(self, event: RequestReceived, now: float) -> list[Command]:
        request, transaction, source = event.request, event.transaction, event.source
        if transaction is None:
            return self._on_ack(request, now)
        if request.max_forwards == 0:
            self._respond(transaction, 483, now, to_tag=self._token(10))
            return [LogEvent("sip.too_many_hops", "info", {
                "method": request.method, "source": format_address(source)})]
        if request.to_tag is not None:
            return self._on_in_dialog_request(request, transaction, now)
        peer = self._peer_for(source[0])
        if peer is None and source[0] not in self._trunk_hosts:
            self._respond(transaction, 403, now, to_tag=self._token(10))
            return [LogEvent("call.rejected" if request.method == "INVITE" else
                             "sip.request_refused", "info", {
                "method": request.method, "source": format_address(source),
                "call_id": request.call_id, "status": 403, "reason": "unknown source"})]
        if request.method == "OPTIONS":
            self._respond(transaction, 200, now, to_tag=self._token(10), headers=[
                ("Allow", ALLOWED_METHODS), ("Accept", "application/sdp"),
                ("Supported", "100rel, timer, replaces")])
            return []
        if request.method != "INVITE":
            self._respond(transaction, 405, now, to_tag=self._token(10),
                          headers=[("Allow", ALLOWED_METHODS)])
            return [LogEvent("sip.request_refused", "info", {
                "method": request.method, "source": format_address(source),
                "call_id": request.call_id, "status": 405,
                "reason": "only INVITE starts a call"})]
        if peer is None:
            # The trunk may ping us, but calls from it (inbound) are not ours to place.
            self._respond(transaction, 403, now, to_tag=self._token(10))
            return [LogEvent("call.rejected", "info", {
                "source": format_address(source), "call_id": request.call_id,
                "status": 403, "reason": "not a peer (a trunk address)"})]
        return self._new_call(request, transaction, peer, now)

    def _peer_for(self, host: str) -> Peer | None:
        for peer in self.peers:
            if peer.matches(host):
                return peer
        return None

    def _new_call(
        self, request: Request, transaction: ServerTransaction, peer: Peer, now: float
    ) -> list[Command]:
        local_tag = self._token(10)
        if self.draining:
            self._respond(transaction, 503, now, to_tag=local_tag, headers=[("Retry-After", "5")])
            return [LogEvent("call.rejected", "info", {
                "call_id": request.call_id, "status": 503, "reason": "shutting down"})]
        try:
            pbx = Dialog.for_incoming(request, local_tag, contact_for(transaction.local))
        except RemoteProtocolError as error:
            self._respond(transaction, 400, now, reason=error.reason, to_tag=local_tag)
            return [LogEvent("sip.request_refused", "info", {
                "call_id": request.call_id, "status": 400, "reason": error.reason})]
        attempt = CallAttempt(
            call_id=request.call_id,
            account=peer.name,
            source=transaction.source[0],
            caller=user_of(request.from_address),
            # The Request-URI is authoritative, never the To header (RFC 3261 §8.2.2.1):
            # a URI without a user part screens as an empty, undialable number.
            dialled=request.uri.unescaped_user or "",
            extension=extension_of(request, self.extension_header),
        )
        call = Call(next(self._keys), transaction, pbx, attempt, peer)
        self._calls[call.key] = call
        self._by_invite[transaction] = call
        self._by_dialog[(Side.PBX, pbx.call_id, local_tag)] = call
        return [ScreenAttempt(call.key, attempt)]

    def _place_trunk_call(self, call: Call, trunk: Trunk, now: float) -> list[Command]:
        invite = call.pbx_invite.request
        destination = trunk.address
        local = self.endpoint.local_for(destination)
        dialled = invite.uri.user or user_of(invite.to_address)
        target = Uri(scheme="sip", user=dialled, host=trunk.uri.host, port=trunk.uri.port,
                     parameters=trunk.uri.parameters)
        to_address = NameAddress(None, target, ())
        from_address = without_tag(invite.from_address)
        trunk_dialog = Dialog(
            call_id=f"{self._token(20)}@sipguard",
            local_tag=self._token(10),
            remote_tag=None,
            local_address=from_address,
            remote_address=to_address,
            local_cseq=0,
            remote_cseq=None,
            remote_target=target,
            local_contact=contact_for(local),
        )
        max_forwards = invite.max_forwards
        request = trunk_dialog.create_request(
            "INVITE", max_forwards=69 if max_forwards is None else max_forwards - 1)
        copy_headers(invite, request.headers, REQUEST_HEADERS_PASSED)
        request.body = invite.body
        call.trunk = trunk_dialog
        call.trunk_name = trunk.name
        call.state = CallState.CALLING
        self._by_dialog[(Side.TRUNK, trunk_dialog.call_id, trunk_dialog.local_tag)] = call
        transaction = self.endpoint.send_request(request, destination, now)
        call.trunk_invite = transaction
        self._set_deadline(call, now + self.ring_timeout)
        self._track(transaction, ClientContext(call, RelayKind.INITIAL_INVITE, Side.TRUNK))
        return [LogEvent("call.forwarded", "info", {
            **call.log_fields(), "trunk": trunk.name, "trunk_call_id": trunk_dialog.call_id})]

    def _track(self, transaction: ClientTransaction, context: ClientContext) -> None:
        self._contexts[transaction] = context
        context.call.client_transactions.append(transaction)

    def _find_dialog(self, message: Message) -> tuple[Call, Side] | None:
        """The call and leg an in-dialog message belongs to (our tag is the To tag)."""
        to_tag = message.to_tag or ""
        for side in (Side.PBX, Side.TRUNK):
            call = self._by_dialog.get((side, message.call_id, to_tag))
            if call is not None:
                return call, side
        return None

    def _ack_trunk(self, call: Call, ack_from_pbx: Request | None = None) -> None:
        """ACK the trunk's 2xx, with the PBX's ACK body when it has one (late offer)."""
        trunk = call.trunk
        if trunk is None or call.trunk_invite is None or call.trunk_ack is not None:
            return
        request = trunk.create_request("ACK", cseq=call.trunk_invite.cseq_number)
        if ack_from_pbx is not None:
            copy_headers(ack_from_pbx, request.headers, ("Content-Type", "Content-Disposition"))
            request.body = ack_from_pbx.body
        call.trunk_ack = self.endpoint.send_ack(request, trunk.next_hop())

    def _on_ack(self, ack: Request, now: float) -> list[Command]:
        found = self._find_dialog(ack)
        if found is None:
            return []
        call, side = found
        other = call.dialog(side.other)
        if other is None or other.remote_tag is None:
            return []
        if side is Side.PBX and ack.cseq.number == call.pbx_invite.cseq_number:
            self._ack_trunk(call, ack)
            return []
        other_cseq = call.ack_map.pop((side, ack.cseq.number), None)
        if other_cseq is not None:
            request = other.create_request("ACK", cseq=other_cseq)
            copy_headers(ack, request.headers, ("Content-Type", "Content-Disposition"))
            request.body = ack.body
            self.endpoint.send_ack(request, other.next_hop())
        return []

    def _on_in_dialog_request(
        self, request: Request, transaction: ServerTransaction, now: float
    ) -> list[Command]:
        found = self._find_dialog(request)
        if found is None:
            self._respond(transaction, 481, now)
            return []
        call, side = found
        dialog = call.dialog(side)
        other = call.dialog(side.other)
        assert dialog is not None
        if dialog.remote_cseq is not None and request.cseq.number < dialog.remote_cseq:
            self._respond(transaction, 500, now, reason="CSeq Out of Order")
            return []
        dialog.remote_cseq = request.cseq.number
        if request.method == "BYE":
            return self._on_bye(call, side, transaction, now)
        if other is None or other.remote_tag is None or call.state is CallState.ENDING:
            self._respond(transaction, 481 if call.state is CallState.ENDING else 491, now)
            return []
        if request.method in ("INVITE", "UPDATE"):
            dialog.refresh_target(request.contact)
        relayed = other.create_request(request.method, max_forwards=decremented(request))
        copy_headers(request, relayed.headers, REQUEST_HEADERS_PASSED)
        if request.method == "PRACK":
            self._rewrite_rack(call, side, relayed)
        relayed.body = request.body
        client = self.endpoint.send_request(relayed, other.next_hop(), now)
        self._track(client, ClientContext(call, RelayKind.IN_DIALOG, side.other, transaction))
        if request.method == "INVITE":
            call.ack_map[(side, request.cseq.number)] = relayed.cseq.number
        return []

    def _rewrite_rack(self, call: Call, side: Side, relayed: Request) -> None:
        """RFC 3262 §7.2: RAck names the INVITE's CSeq, which differs per leg."""
        value = relayed.headers.get("RAck")
        if value is None or call.trunk_invite is None:
            return
        parts = value.split()
        if len(parts) != 3:
            return
        invite_cseq = (call.trunk_invite.cseq_number if side is Side.PBX
                       else call.pbx_invite.cseq_number)
        relayed.headers.set("RAck", f"{parts[0]} {invite_cseq} {parts[2]}")

    def _on_bye(
        self, call: Call, side: Side, transaction: ServerTransaction, now: float
    ) -> list[Command]:
        self._respond(transaction, 200, now)
        if call.state is CallState.ENDING:
            return []
        call.begin_ending(self._clock)
        call.ended_by = side.value
        commands: list[Command] = [LogEvent("call.ended", "info", {
            **call.log_fields(), "ended_by": side.value, "status": 200,
            "reason": f"BYE from {side.value}"})]
        if not self._send_bye(call, side.other, now):
            self._finish(call)
        return commands

    def _send_bye(self, call: Call, side: Side, now: float) -> bool:
        """BYE one leg; return False when that leg has no dialog to end."""
        dialog = call.dialog(side)
        if dialog is None or dialog.remote_tag is None:
            return False
        if side is Side.TRUNK and call.trunk_answered and call.trunk_ack is None:
            # The PBX never ACKed, but the trunk's 2xx still needs one (RFC 3261
            # §13.2.2.4) before the BYE, or the trunk retransmits it and may
            # tear the call down on its own.
            self._ack_trunk(call)
        bye = dialog.create_request("BYE")
        client = self.endpoint.send_request(bye, dialog.next_hop(), now)
        self._track(client, ClientContext(call, RelayKind.BYE, side))
        return True

    # -- CANCEL and timeouts -------------------------------------------------------

    def _on_cancel(self, invite: ServerTransaction, now: float) -> list[Command]:
        call = self._by_invite.get(invite)
        if call is None:
            self._respond(invite, 487, now, to_tag=self._token(10))
            return []
        self._respond(invite, 487, now, to_tag=call.pbx.local_tag)
        call.cancelled = True
        commands: list[Command] = [LogEvent("call.ended", "info", {
            **call.log_fields(), "ended_by": "pbx", "status": 487, "reason": "CANCEL from pbx"})]
        if call.trunk_invite is None:
            self._finish(call)
            return commands
        self._try_cancel_trunk(call, now)
        return commands

    def _try_cancel_trunk(self, call: Call, now: float) -> None:
        if call.cancel_sent or call.trunk_invite is None:
            return
        cancel = self.endpoint.cancel(call.trunk_invite, now)
        if cancel is not None:
            call.cancel_sent = True
            self._track(cancel, ClientContext(call, RelayKind.CANCEL, Side.TRUNK))
        # else: RFC 3261 §9.1 - wait for a provisional response, then CANCEL.

    def _on_timeout(self, transaction: ClientTransaction, now: float) -> list[Command]:
        context = self._contexts.pop(transaction, None)
        if context is None:
            return []
        call = context.call
        if context.kind is RelayKind.INITIAL_INVITE:
            commands: list[Command] = []
            if call.pbx_invite.final_status is None:
                self._respond(call.pbx_invite, 408, now, to_tag=call.pbx.local_tag)
                commands.append(LogEvent("call.failed", "warning", {
                    **call.log_fields(), "status": 408, "trunk": call.trunk_name,
                    "reason": "trunk did not answer (Timer B)"}))
            self._finish(call)
            return commands
        if context.kind is RelayKind.IN_DIALOG and context.server is not None:
            if context.server.final_status is None:
                self._respond(context.server, 408, now)
        elif context.kind is RelayKind.BYE:
            self._finish(call)
        return []

    def _on_ack_timeout(self, transaction: ServerTransaction, now: float) -> list[Command]:
        call = self._by_invite.get(transaction)
        if call is None or call.state is not CallState.CONFIRMED:
            return []
        call.begin_ending(self._clock)
        self._send_bye(call, Side.PBX, now)
        if not self._send_bye(call, Side.TRUNK, now):
            self._finish(call)
        return [LogEvent("call.ended", "warning", {
            **call.log_fields(), "ended_by": "sipguard", "reason": "no ACK from pbx"})]

    # -- responses -------------------------------------------------------------------

    def _on_response(
        self, response: Response, transaction: ClientTransaction, now: float
    ) -> list[Command]:
        context = self._contexts.get(transaction)
        if context is None:
            return []
        if context.kind is RelayKind.INITIAL_INVITE:
            return self._on_trunk_invite_response(context.call, response, now)
        if response.status_code >= 200 and not transaction.is_invite:
            del self._contexts[transaction]
        if context.kind is RelayKind.IN_DIALOG and context.server is not None:
            self._relay_response(context, response, now)
        elif context.kind is RelayKind.BYE and response.status_code >= 200:
            self._finish(context.call)
        return []

    def _relay_response(self, context: ClientContext, response: Response, now: float) -> None:
        server = context.server
        if server is None or response.status_code == 100 or server.final_status is not None:
            return
        call = context.call
        responding = call.dialog(context.side)
        if (responding is not None and 200 <= response.status_code < 300
                and server.method in ("INVITE", "UPDATE")):
            responding.refresh_target(response.contact)
        asking = call.dialog(context.side.other)
        headers = passed_headers(response)
        if server.method in ("INVITE", "UPDATE") and asking is not None:
            headers.append(("Contact", asking.local_contact))
        self.endpoint.respond(server, self.endpoint.make_response(
            server, response.status_code, response.reason, headers=headers,
            body=response.body), now)

    def _on_trunk_invite_response(
        self, call: Call, response: Response, now: float
    ) -> list[Command]:
        status = response.status_code
        trunk = call.trunk
        assert trunk is not None
        if status == 100:
            return []
        if status < 200:
            if response.to_tag and trunk.remote_tag is None:
                trunk.confirm(response)
            if call.cancelled:
                self._try_cancel_trunk(call, now)
                return []
            if call.pbx_invite.final_status is None:
                call.state = CallState.EARLY
                self._relay_to_pbx(call, response, now)
            return []
        if status < 300:
            return self._on_trunk_answer(call, response, now)
        commands: list[Command] = []
        if call.pbx_invite.final_status is None:
            self._relay_to_pbx(call, response, now)
            commands.append(LogEvent("call.failed", "info", {
                **call.log_fields(), "status": status, "trunk": call.trunk_name,
                "reason": response.reason}))
        self._finish(call)
        return commands

    def _on_trunk_answer(self, call: Call, response: Response, now: float) -> list[Command]:
        trunk = call.trunk
        assert trunk is not None and call.trunk_invite is not None
        if call.trunk_ack is not None:
            self.endpoint.resend(call.trunk_ack, trunk.next_hop())  # 2xx retransmitted
            return []
        if call.state is CallState.CONFIRMED:
            return []  # waiting for the PBX's ACK
        if trunk.remote_tag is None or trunk.remote_tag != response.to_tag:
            trunk.remote_tag = None
        trunk.confirm(response)
        call.trunk_answered = True
        if call.cancelled or call.pbx_invite.final_status is not None:
            # The answer crossed our CANCEL (RFC 3261 §9.1): ACK it, then BYE.
            call.begin_ending(self._clock)
            self._send_bye(call, Side.TRUNK, now)
            return []
        call.state = CallState.CONFIRMED
        call.answered_at = now
        self._set_deadline(call, now + self._longest(call))
        self._relay_to_pbx(call, response, now)
        return [LogEvent("call.answered", "info", {
            **call.log_fields(), "status": response.status_code, "trunk": call.trunk_name})]

    def _relay_to_pbx(self, call: Call, response: Response, now: float) -> None:
        headers = passed_headers(response)
        if response.status_code < 300 and response.to_tag:
            headers.append(("Contact", call.pbx.local_contact))
        self._respond(call.pbx_invite, response.status_code, now, reason=response.reason,
                      to_tag=call.pbx.local_tag, headers=headers, body=response.body)

    # -- shutdown ---------------------------------------------------------------------

    def hang_up_all(self, now: float) -> list[Command]:
        """End every call: BYE on confirmed legs, CANCEL and 503 on the rest."""
        commands: list[Command] = []
        for call in list(self._calls.values()):
            if call.state is CallState.ENDING:
                continue
            if call.pbx_invite.final_status is None:
                self._respond(call.pbx_invite, 503, now, to_tag=call.pbx.local_tag)
                call.cancelled = True
                if call.trunk_invite is not None:
                    self._try_cancel_trunk(call, now)
                else:
                    self._finish(call)
                continue
            commands.extend(self._end_call(call, now, "sipguard", "service stopping"))
        return commands

    def _end_call(self, call: Call, now: float, ended_by: str, reason: str) -> list[Command]:
        """End an answered call with BYE on both legs."""
        call.begin_ending(self._clock)
        call.ended_by = ended_by
        sent_pbx = self._send_bye(call, Side.PBX, now)
        sent_trunk = self._send_bye(call, Side.TRUNK, now)
        if not (sent_pbx or sent_trunk):
            self._finish(call)
        return [LogEvent("call.ended", "info", {
            **call.log_fields(), "ended_by": ended_by, "reason": reason})]

    # -- helpers -------------------------------------------------------------------------

    def _respond(
        self,
        transaction: ServerTransaction,
        status: int,
        now: float,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        if transaction.final_status is not None:
            return
        response = self.endpoint.make_response(
            transaction, status, reason, to_tag=to_tag, headers=headers, body=body)
        self.endpoint.respond(transaction, response, now)

    def _finish(self, call: Call) -> None:
        """Forget a call and everything that routes to it."""
        if self._calls.pop(call.key, None) is not None:
            ended = call.ended_at if call.ended_at is not None else self._clock
            answered = 0.0 if call.answered_at is None else max(0.0, ended - call.answered_at)
            self._finished.append((call.key, answered))
        self._by_invite.pop(call.pbx_invite, None)
        self._by_dialog.pop((Side.PBX, call.pbx.call_id, call.pbx.local_tag), None)
        if call.trunk is not None:
            self._by_dialog.pop((Side.TRUNK, call.trunk.call_id, call.trunk.local_tag), None)
        for transaction in call.client_transactions:
            self._contexts.pop(transaction, None)
        call.client_transactions.clear()


__all__ = ["Controller", "uri_address"]
