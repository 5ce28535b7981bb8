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

Calls the policy marks ``pin`` take a detour through the PIN IVR first
(sipguard.b2bua.challenge); the call table, deadlines and single-leg acts are
in sipguard.b2bua.legs.
"""

from __future__ import annotations

import heapq

from sipguard.b2bua.calls import (
    REQUEST_HEADERS_PASSED,
    Body,
    Call,
    CallState,
    ClientContext,
    Command,
    LogEvent,
    Peer,
    RelayKind,
    ScreenAttempt,
    Side,
    SourceFailure,
    contact_for,
    copy_headers,
    decremented,
    dialled_of,
    extension_of,
    format_address,
    passed_headers,
    screened_fields,
    user_of,
)
from sipguard.b2bua.challenge import ChallengeFlow, dtmf_relay_body
from sipguard.b2bua.legs import IvrLink
from sipguard.policy import CallAttempt, Decision, Verdict
from sipguard.sip import (
    AckTimedOut,
    CancelReceived,
    ClientTransaction,
    Dialog,
    Event,
    MessageDiscarded,
    RemoteProtocolError,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    ServerTransaction,
    TransactionTimedOut,
    quote,
    uri_address,
)

ALLOWED_METHODS = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, REFER, MESSAGE"
# Every method a registered SIP extension defines (RFC 3261, 3262, 3265, 3311, 3428,
# 3515, 3903, 6086, 6665): anything else is a method sipguard does not implement.
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"})


class Controller(ChallengeFlow):
    """Pairs PBX legs with trunk legs (RFC 3261 B2BUA) without I/O."""

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
            return self._on_timeout(event.transaction, now, event.transport_error)
        if isinstance(event, CancelReceived):
            return self._on_cancel(event.invite_transaction, now)
        if isinstance(event, AckTimedOut):
            return self._on_ack_timeout(event.transaction, now)
        if isinstance(event, MessageDiscarded):
            return [LogEvent("sip.message_discarded", "info", {
                "reason": event.reason, "source": format_address(event.source),
                "status": event.status_code,
            }), SourceFailure(event.source[0], "malformed message")]
        return []

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
        if decision.verdict is Verdict.CHALLENGE and self.ivrs:
            commands.extend(self._start_challenge(call, now))
            return commands
        if decision.verdict is not Verdict.FORWARD:
            # Without an IVR a call that needs a PIN is refused, which fails closed.
            # The Reason carries the short public category, never the policy's
            # internals (RFC 3326).
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
            if decision.verdict is Verdict.REJECT:  # (peers that are never banned are skipped)
                commands.append(SourceFailure(call.attempt.source, f"denied: {category}"))
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

    def handle_timer(self, now: float) -> list[Command]:
        """Fire due controller timers: endless ringing and over-long calls are ended."""
        self._clock = now
        commands: list[Command] = list(self.registrations.handle_timer(now))
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, key = heapq.heappop(self._deadlines)
            call = self._calls.get(key)
            if call is None:
                continue
            if call.bridge is not None and call.bridge.retry_at == deadline:
                call.bridge.retry_at = None
                commands.extend(self._sync_bridge(call, now))
                continue
            if call.deadline != deadline:
                continue
            call.deadline = None
            if call.state is CallState.CONFIRMED:
                # A call with no media through us cannot tell that a side vanished;
                # the longest call allowed (a duration limit, or the configured
                # longest call) ends it with BYE on both legs.
                reason = f"longest call ({self._longest(call):g} s) reached"
                commands.extend(self._end_call(call, now, "sipguard", reason))
            elif call.ivr is not None:
                commands.extend(self._challenge_deadline(call, now))
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
            # The same answer whatever the request names: nothing to enumerate.
            self._respond(transaction, 403, now, to_tag=self._token(10))
            return [LogEvent("call.rejected" if request.method == "INVITE" else
                             "sip.request_refused", "info", {
                "method": request.method, "source": format_address(source),
                "call_id": request.call_id, "status": 403, "reason": "unknown source"}),
                SourceFailure(source[0], f"{request.method} from an address that is no peer")]
        if request.method == "OPTIONS":
            self._respond(transaction, 200, now, to_tag=self._token(10), headers=[
                ("Allow", ALLOWED_METHODS), ("Accept", "application/sdp"),
                ("Supported", "100rel, timer, replaces")])
            return []
        if request.method != "INVITE":
            # RFC 3261 §8.2.1: a method we know but do not take here gets 405 with
            # Allow; one we do not recognise at all, 501 (RFC 4475 §3.1.1.2).
            status = 405 if request.method in KNOWN_METHODS else 501
            self._respond(transaction, status, now, to_tag=self._token(10),
                          headers=[("Allow", ALLOWED_METHODS)])
            return [LogEvent("sip.request_refused", "info", {
                "method": request.method, "source": format_address(source),
                "call_id": request.call_id, "status": status,
                "reason": "only INVITE starts a call" if status == 405
                else "method not implemented"})]
        if peer is not None and peer.auth is not None:
            return self._authenticate(request, transaction, now)
        if peer is None:
            # The trunk may ping us, but calls from it (inbound) are not ours to place.
            self._respond(transaction, 403, now, to_tag=self._token(10))
            return [LogEvent("call.rejected", "info", {
                "source": format_address(source), "call_id": request.call_id,
                "status": 403, "reason": "not a peer (a trunk address)"})]
        return self._new_call(request, transaction, peer, now)

    def _authenticate(self, request: Request, transaction: ServerTransaction,
                      now: float) -> list[Command]:
        """An INVITE from a peer known by its credentials: a call, or a 401 challenge."""
        host = transaction.source[0]
        if self.authenticator is None:
            self._respond(transaction, 403, now, to_tag=self._token(10))
            return [LogEvent("call.rejected", "error", {
                "call_id": request.call_id, "status": 403,
                "reason": "a peer has credentials but authentication is off"})]
        outcome = self.authenticator.check(
            request, [peer for peer in self.peers if peer.matches(host)], now)
        if outcome.peer is not None:
            return self._new_call(request, transaction, outcome.peer, now)
        self._respond(transaction, 401, now, to_tag=self._token(10),
                      headers=[("WWW-Authenticate", value) for value in outcome.challenges])
        if outcome.failure is None:
            return []  # the usual first round: the INVITE comes again with credentials
        return [LogEvent("sip.auth_failed", "warning", {
            "call_id": request.call_id, "source": format_address(transaction.source),
            "username": outcome.username, "reason": outcome.failure}),
            SourceFailure(host, f"authentication failed: {outcome.failure}")]

    def _new_call(
        self, request: Request, transaction: ServerTransaction, peer: Peer, now: float
    ) -> list[Command]:
        local_tag = self._token(10)
        if self.draining:
            self._respond(transaction, 503, now, to_tag=local_tag, headers=[("Retry-After", "5")])
            return [LogEvent("call.rejected", "info", {
                "call_id": request.call_id, "status": 503, "reason": "shutting down"})]
        try:
            pbx = Dialog.for_incoming(request, local_tag, contact_for(
                transaction.local, secure=request.uri.scheme == "sips"))
        except RemoteProtocolError as error:
            self._respond(transaction, 400, now, reason=error.reason, to_tag=local_tag)
            return [LogEvent("sip.request_refused", "info", {
                "call_id": request.call_id, "status": 400, "reason": error.reason})]
        extension, extension_source = extension_of(request, self.extension_header)
        attempt = CallAttempt(
            call_id=request.call_id,
            account=peer.name,
            source=transaction.source[0],
            caller=user_of(request.from_address),
            dialled=dialled_of(request.uri),
            extension=extension,
            extension_source=extension_source,
        )
        call = Call(next(self._keys), transaction, pbx, attempt, peer, started_at=now)
        self._calls[call.key] = call
        self._by_invite[transaction] = call
        self._by_dialog[(Side.PBX, pbx.call_id, local_tag)] = call
        return [ScreenAttempt(call.key, attempt)]

    def _on_ack(self, ack: Request, now: float) -> list[Command]:
        found = self._find_dialog(ack)
        if found is None:
            return []
        call, side = found
        if side is Side.PBX and ack.cseq.number == call.pbx_invite.cseq_number:
            if call.ivr is not None:
                if call.caller_sdp is None and ack.body:
                    # A late offer: the PBX's answer to the IVR describes its media,
                    # and is what the trunk will be offered.
                    call.caller_sdp = Body(ack.body, ack.headers.get("Content-Type")
                                           or "application/sdp")
                self._ack_ivr(call, ack)
            else:
                self._ack_trunk(call, ack)
            return []
        relayed = call.ack_map.pop((side, ack.cseq.number), None)
        if relayed is None:
            return []
        # The leg the INVITE went to, even if the call was bridged meanwhile.
        target, other_cseq = relayed
        other = call.dialog(target)
        if other is not None and other.remote_tag is not None:
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
            host = transaction.source[0]
            if self._peer_for(host) is None and host not in self._trunk_hosts:
                return [SourceFailure(host, f"{request.method} in no dialog from no peer")]
            return []
        call, side = found
        dialog = call.dialog(side)
        partner = call.partner(side)
        other = None if partner is None else call.dialog(partner)
        assert dialog is not None
        if dialog.remote_cseq is not None and request.cseq.number < dialog.remote_cseq:
            self._respond(transaction, 500, now, reason="CSeq Out of Order")
            return []
        dialog.remote_cseq = request.cseq.number
        if request.method == "BYE":
            return self._on_bye(call, side, transaction, now)
        if (other is None or partner is None or other.remote_tag is None
                or call.state is CallState.ENDING):
            self._respond(transaction, 481 if call.state is CallState.ENDING else 491, now)
            return []
        if (request.method == "INVITE" and call.bridge is not None
                and call.bridge.reinvite is not None):
            self._respond(transaction, 491, now)  # glare with our bridging re-INVITE
            return []
        if request.method in ("INVITE", "UPDATE"):
            dialog.refresh_target(request.contact)
        relayed = other.create_request(request.method, max_forwards=decremented(request))
        copy_headers(request, relayed.headers, REQUEST_HEADERS_PASSED)
        if request.method == "PRACK":
            self._rewrite_rack(call, side, relayed)
        relayed.body = request.body
        if partner is Side.PBX:
            relayed.body = self._for_pbx(call, request.body)
        elif partner is Side.IVR and request.method == "INFO":
            dtmf = dtmf_relay_body(request)
            if dtmf is not None:  # the IVR reads dtmf-relay; application/dtmf is translated
                relayed.headers.set("Content-Type", "application/dtmf-relay")
                relayed.body = dtmf
        client = self.endpoint.send_request(relayed, other.next_hop(), now)
        self._track(client, ClientContext(call, RelayKind.IN_DIALOG, partner, transaction,
                                          asking=side))
        if request.method == "INVITE":
            call.ack_map[(side, request.cseq.number)] = (partner, relayed.cseq.number)
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
        if side is Side.IVR:
            call.ivr_ended = True
            self._release_ivr(call)
            if call.pin is not None and call.pin.value == "accepted":
                return []  # the IVR left while the trunk is being called: the call goes on
        if call.state is CallState.ENDING or (side is Side.IVR and call.bridged):
            return []
        call.begin_ending(self._clock)
        call.ended_by = side.value
        commands: list[Command] = [LogEvent("call.ended", "info", {
            **call.log_fields(), "ended_by": side.value, "status": 200,
            "reason": f"BYE from {side.value}"})]
        if not self._hang_up_legs(call, now, spare=side):
            self._finish(call)
        return commands

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
        if call.ivr_invite is not None:
            self._try_cancel(call, Side.IVR, now)
        elif call.trunk_invite is not None:
            self._try_cancel_trunk(call, now)
        else:
            self._finish(call)
        return commands

    def _on_timeout(self, transaction: ClientTransaction, now: float,
                    transport_error: str | None = None) -> list[Command]:
        """No final response: 408 to the PBX, or 503 when the connection failed
        (RFC 3261 §8.1.3.1: a transport error is treated as a 503)."""
        context = self._contexts.pop(transaction, None)
        if context is None:
            return list(self.registrations.on_timeout(transaction, now))
        call = context.call
        if context.kind is RelayKind.BRIDGE:
            return self._on_bridge_timeout(call, now)
        if context.kind is RelayKind.INITIAL_INVITE and call.ivr is not None:
            if call.state is CallState.ENDING:
                self._finish_when_settled(call)
                return []
            return self._end_call(call, now, "sipguard",
                                  "trunk did not answer (Timer B)" if transport_error is None
                                  else f"trunk unreachable: {transport_error}")
        if context.kind in (RelayKind.INITIAL_INVITE, RelayKind.IVR_INVITE):
            commands: list[Command] = []
            if call.pbx_invite.final_status is None:
                status = 408 if transport_error is None else 503
                self._respond(call.pbx_invite, status, now, to_tag=call.pbx.local_tag)
                reason = (f"{context.side.value} did not answer (Timer B)"
                          if transport_error is None
                          else f"{context.side.value} unreachable: {transport_error}")
                commands.append(LogEvent("call.failed", "warning", {
                    **call.log_fields(), "status": status, "trunk": call.trunk_name,
                    "reason": reason}))
            self._finish(call)
            return commands
        if context.kind is RelayKind.IN_DIALOG and context.server is not None:
            if context.server.final_status is None:
                self._respond(context.server, 408, now)
        elif context.kind is RelayKind.BYE and call.state is CallState.ENDING:
            self._finish_when_settled(call)
        return []

    def _on_ack_timeout(self, transaction: ServerTransaction, now: float) -> list[Command]:
        call = self._by_invite.get(transaction)
        if call is None or call.state not in (CallState.CONFIRMED, CallState.CHALLENGE):
            return []
        call.begin_ending(self._clock)
        if not self._hang_up_legs(call, now):
            self._finish(call)
        return [LogEvent("call.ended", "warning", {
            **call.log_fields(), "ended_by": "sipguard", "reason": "no ACK from pbx"})]

    # -- responses -------------------------------------------------------------------

    def _on_response(
        self, response: Response, transaction: ClientTransaction, now: float
    ) -> list[Command]:
        context = self._contexts.get(transaction)
        if context is None:
            if self.registrations.owns(transaction):
                return list(self.registrations.on_response(transaction, response, now))
            return []
        if context.kind is RelayKind.INITIAL_INVITE:
            if context.call.ivr is not None:
                return self._on_challenged_trunk_response(context.call, response, now)
            return self._on_trunk_invite_response(context.call, response, now)
        if context.kind is RelayKind.IVR_INVITE:
            return self._on_ivr_invite_response(context.call, response, now)
        if context.kind is RelayKind.BRIDGE:
            return self._on_bridge_response(context.call, transaction, response, now)
        if response.status_code >= 200 and not transaction.is_invite:
            del self._contexts[transaction]
        if context.kind is RelayKind.IN_DIALOG and context.server is not None:
            self._relay_response(context, response, now)
        elif (context.kind is RelayKind.BYE and response.status_code >= 200
              and context.call.state is CallState.ENDING):
            # (Not the BYE that drops the IVR from a bridged call.)
            self._finish_when_settled(context.call)
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
        asking = call.dialog(context.asking)
        headers = passed_headers(response)
        if server.method in ("INVITE", "UPDATE") and asking is not None:
            headers.append(("Contact", asking.local_contact))
        self.endpoint.respond(server, self.endpoint.make_response(
            server, response.status_code, response.reason, headers=headers,
            body=self._for_pbx(call, response.body) if context.asking is Side.PBX
            else response.body), now)

    def _on_trunk_invite_response(
        self, call: Call, response: Response, now: float
    ) -> list[Command]:
        status = response.status_code
        trunk = call.trunk
        assert trunk is not None
        if status == 100:
            return []
        if status < 200:
            trunk.take_provisional(response)
            if call.cancelled:
                self._try_cancel_trunk(call, now)
                return []
            if call.pbx_invite.final_status is None:
                call.state = CallState.EARLY
                self._relay_to_pbx(call, response, now)
            return []
        if status < 300:
            return self._on_trunk_answer(call, response, now)
        if self._retry_with_credentials(call, response, now):
            return []
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
        trunk.take_answer(response)
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
                if call.ivr_invite is not None:
                    self._try_cancel(call, Side.IVR, now)
                elif call.trunk_invite is not None:
                    self._try_cancel_trunk(call, now)
                else:
                    self._finish(call)
                continue
            commands.extend(self._end_call(call, now, "sipguard", "service stopping"))
        return commands

    def abandon_all(self, now: float) -> list[Command]:
        """Forget the calls still live when the service stops (their BYEs or CANCELs
        went unanswered): each is finished, so that it is recorded, ended by sipguard."""
        commands: list[Command] = []
        for call in list(self._calls.values()):
            call.begin_ending(now)
            call.ended_by = call.ended_by or "sipguard"
            commands.append(LogEvent("call.ended", "warning", {
                **call.log_fields(), "ended_by": call.ended_by,
                "reason": "service stopped before the far end answered its BYE or CANCEL"}))
            self._finish(call)
        return commands


__all__ = ["Controller", "IvrLink", "uri_address"]
