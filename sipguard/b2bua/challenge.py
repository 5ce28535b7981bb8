"""The PIN challenge: a call the policy marks ``pin`` goes to the IVR first.

Theory of operation
-------------------
The PBX's INVITE goes to the IVR (a pjsua2 UAS on loopback) as a third leg,
with the PBX's SDP offer; the IVR's answer goes back to the PBX, so the PBX
talks to the IVR, which plays a prompt and collects the PIN (RFC 4733 or
SIP INFO digits, relayed to it like any in-dialog request).

The service reports what the IVR collected (:meth:`pin_entered`); the
controller asks for it to be checked (a ``CheckPin`` command) and hears the
outcome (:meth:`pin_checked`). A wrong PIN may be tried again a few times;
then, or for a locked or missing PIN, the IVR plays a refusal and hangs up,
and its BYE ends the call.

A correct PIN places the trunk leg with the PBX's original offer. The
trunk's SDP (from early media, then from its answer) is given to the PBX in
a re-INVITE whose o= line continues the one the PBX got from the IVR
(RFC 3264 §8), so media flows straight between the PBX and the carrier.
When the PBX has accepted the answered trunk's SDP the IVR leg is hung up
and the call goes on as a plain PBX-trunk call.
"""

from __future__ import annotations

from sipguard.b2bua.calls import (
    Body,
    Bridge,
    Call,
    CallState,
    CheckPin,
    ClientContext,
    Command,
    InstructIvr,
    LogEvent,
    PinPhase,
    RelayKind,
    Side,
    contact_for,
)
from sipguard.b2bua.legs import ControllerBase, IvrLink
from sipguard.sip import (
    ClientTransaction,
    Dialog,
    NameAddress,
    Request,
    Response,
    Uri,
    origin_of,
    quote,
    with_origin,
    without_tag,
)

REFUSAL_GRACE = 20.0  # seconds the IVR gets to play the refusal and hang up
BRIDGE_RETRY_WAIT = 1.0  # seconds before a bridging re-INVITE refused with 491 is retried
BRIDGE_RETRIES = 3
IVR_BUSY = (480, 486, 503)  # an IVR answering these is tried no more for that call
PIN_OUTCOMES = ("accepted", "wrong", "locked", "no_pin", "store_unavailable")


class ChallengeFlow(ControllerBase):
    """The IVR leg, the PIN outcome, and the re-INVITE that bridges PBX and trunk."""

    # -- the service's side ---------------------------------------------------------

    def pin_entered(self, ivr_call_id: str, outcome: str, digits: str,
                    now: float) -> list[Command]:
        """The IVR finished a round on one of its legs: digits entered, a timeout, a hangup."""
        self._clock = now
        call = self._by_ivr_call.get(ivr_call_id)
        if (call is None or call.pin is not PinPhase.COLLECTING
                or call.state is not CallState.CHALLENGE):
            return []
        if outcome == "hangup":
            return []  # the BYE (or CANCEL) that ended the leg ends the call
        if outcome != "entered":
            return self._refuse_pin(call, "timeout", now)
        call.pin_attempts += 1
        if not digits:  # '#' alone: another try if there is one, nothing to check
            if call.pin_attempts < self.pin_attempts:
                return [InstructIvr(ivr_call_id, "retry")]
            return self._refuse_pin(call, "no_digits", now)
        call.pin = PinPhase.CHECKING
        return [CheckPin(call.key, call.attempt.account, call.attempt.extension, digits)]

    def pin_checked(self, call_key: int, outcome: str, now: float) -> list[Command]:
        """The outcome of a ``CheckPin``: accepted, wrong, locked, no_pin, store_unavailable."""
        self._clock = now
        call = self._calls.get(call_key)
        if (call is None or call.pin is not PinPhase.CHECKING or call.ivr is None
                or call.state is not CallState.CHALLENGE):
            return []  # the call ended (or is ending) while the PIN was checked
        if outcome == "wrong" and call.pin_attempts < self.pin_attempts:
            call.pin = PinPhase.COLLECTING
            return [InstructIvr(call.ivr.call_id, "retry"), LogEvent("call.pin_wrong", "info", {
                **call.log_fields(), "attempt": call.pin_attempts,
                "attempts_left": self.pin_attempts - call.pin_attempts})]
        if outcome != "accepted":
            return self._refuse_pin(call, outcome if outcome in PIN_OUTCOMES else "wrong", now)
        call.pin = PinPhase.ACCEPTED
        call.pin_outcome = "accepted"
        commands: list[Command] = [
            InstructIvr(call.ivr.call_id, "accept"),
            LogEvent("call.pin_accepted", "info", {**call.log_fields(),
                                                   "attempt": call.pin_attempts})]
        if not self.trunks:
            commands.extend(self._end_call(call, now, "sipguard", "no trunk configured"))
            return commands
        commands.extend(self._place_trunk_call(call, self.trunks[0], now,
                                               body=call.caller_sdp or Body(b"", "")))
        return commands

    def set_ivrs(self, links: list[IvrLink], now: float) -> list[Command]:
        """The IVRs changed (a worker died or came back). Calls still collecting a PIN
        at an IVR that is gone are ended: nothing would ever answer them."""
        self._clock = now
        self.ivrs = list(links)
        alive = {link.address for link in links}
        commands: list[Command] = []
        for call in list(self._calls.values()):
            if (call.ivr_link is not None and call.ivr_link not in alive
                    and call.pin in (PinPhase.COLLECTING, PinPhase.CHECKING, PinPhase.REFUSED)
                    and call.state is CallState.CHALLENGE):
                call.pin_outcome = call.pin_outcome or "ivr_failed"
                call.ivr_ended = True  # nobody is there to BYE
                self._release_ivr(call)
                if call.pbx_invite.final_status is None:
                    commands.extend(self._pin_service_unavailable(call, now,
                                                                  "the PIN IVR stopped"))
                else:
                    commands.extend(self._end_call(call, now, "sipguard",
                                                   "the PIN IVR stopped"))
        for address in [address for address in self._ivr_load if address not in alive]:
            if not any(call.ivr_link == address for call in self._calls.values()):
                del self._ivr_load[address]
        return commands

    def _refuse_pin(self, call: Call, outcome: str, now: float) -> list[Command]:
        assert call.ivr is not None
        call.pin = PinPhase.REFUSED
        call.pin_outcome = outcome
        # The IVR plays the refusal and hangs up; if it never does, we do.
        self._set_deadline(call, now + REFUSAL_GRACE)
        return [InstructIvr(call.ivr.call_id, "refuse"), LogEvent("call.pin_refused", "info", {
            **call.log_fields(), "attempts": call.pin_attempts})]

    # -- the IVR leg ------------------------------------------------------------------

    def _start_challenge(self, call: Call, now: float) -> list[Command]:
        """Send the PBX's INVITE to the least busy IVR (403 when every one is full)."""
        free = [link for link in self.ivrs
                if self._ivr_load.get(link.address, 0) < link.capacity
                and link.address not in call.ivrs_tried]
        if not free:
            return self._pin_service_unavailable(call, now, "every PIN IVR is busy")
        ivr = min(free, key=lambda link: self._ivr_load.get(link.address, 0))
        self._ivr_load[ivr.address] = self._ivr_load.get(ivr.address, 0) + 1
        call.ivr_link = ivr.address
        call.ivrs_tried.add(ivr.address)
        invite = call.pbx_invite.request
        call.original_invite = invite
        content_type = invite.headers.get("Content-Type") or "application/sdp"
        if invite.body:
            call.caller_sdp = Body(invite.body, content_type)
        host, port = ivr.address
        target = Uri(scheme="sip", user="pin", host=f"[{host}]" if ":" in host else host,
                     port=port)
        dialog = Dialog(
            call_id=f"{self._token(20)}@sipguard-ivr",
            local_tag=self._token(10),
            remote_tag=None,
            local_address=without_tag(invite.from_address),
            remote_address=NameAddress(None, target, ()),
            local_cseq=0,
            remote_cseq=None,
            remote_target=target,
            local_contact=contact_for(self.endpoint.local_for(ivr.address)),
        )
        request = dialog.create_request("INVITE")
        request.headers.add(ivr.header, ivr.token)
        if invite.body:
            request.headers.add("Content-Type", content_type)
            request.body = invite.body
        call.ivr = dialog
        call.state = CallState.CHALLENGE
        call.pin = PinPhase.COLLECTING
        self._by_dialog[(Side.IVR, dialog.call_id, dialog.local_tag)] = call
        self._by_ivr_call[dialog.call_id] = call
        transaction = self.endpoint.send_request(request, ivr.address, now)
        call.ivr_invite = transaction
        self._track(transaction, ClientContext(call, RelayKind.IVR_INVITE, Side.IVR))
        self._set_deadline(call, now + self.challenge_timeout)
        return [LogEvent("call.challenged", "info", {**call.log_fields(),
                                                     "ivr_call_id": dialog.call_id})]

    def _on_ivr_invite_response(self, call: Call, response: Response,
                                now: float) -> list[Command]:
        ivr = call.ivr
        assert ivr is not None
        status = response.status_code
        if status == 100:
            return []
        if status < 200:
            ivr.take_provisional(response)
            if call.cancelled:
                self._try_cancel(call, Side.IVR, now)
            elif call.pbx_invite.final_status is None:
                self._relay_to_pbx(call, response, now)
            return []
        if status < 300:
            return self._on_ivr_answer(call, response, now)
        if call.pbx_invite.final_status is None:
            if status in IVR_BUSY and not call.cancelled:
                # Full (its last caller may still be leaving): another IVR may have room.
                self._forget_ivr_leg(call)
                return self._start_challenge(call, now)
            return self._pin_service_unavailable(call, now, f"the PIN IVR answered {status}")
        self._finish_when_settled(call)
        return []

    def _forget_ivr_leg(self, call: Call) -> None:
        """Drop an IVR leg that failed before it was answered."""
        self._release_ivr(call)
        if call.ivr is not None:
            self._by_dialog.pop((Side.IVR, call.ivr.call_id, call.ivr.local_tag), None)
            self._by_ivr_call.pop(call.ivr.call_id, None)
        if call.ivr_invite is not None:
            self._contexts.pop(call.ivr_invite, None)
        call.ivr = None
        call.ivr_invite = None

    def _pin_service_unavailable(self, call: Call, now: float, detail: str) -> list[Command]:
        """Fail closed: a call that needs a PIN never goes out without one, and a 403
        (not a 5xx) keeps the PBX from trying another route."""
        reason = "PIN service unavailable"
        call.pin_outcome = "ivr_unavailable"
        self._respond(call.pbx_invite, 403, now, to_tag=call.pbx.local_tag, headers=[
            ("Reason", f"SIP;cause=403;text={quote(reason)}"),
            ("Warning", f"399 sipguard {quote(reason)}")])
        self._finish(call)
        return [LogEvent("call.rejected", "warning", {
            **call.log_fields(), "status": 403, "reason": reason, "detail": detail})]

    def _on_ivr_answer(self, call: Call, response: Response, now: float) -> list[Command]:
        ivr = call.ivr
        assert ivr is not None
        if call.ivr_answered:
            if call.ivr_ack is not None:  # the 2xx retransmitted
                self.endpoint.resend(call.ivr_ack, ivr.next_hop())
            return []
        ivr.take_answer(response)
        call.ivr_answered = True
        if call.cancelled or call.pbx_invite.final_status is not None:
            # The answer crossed our CANCEL: ACK it, then BYE.
            call.begin_ending(self._clock)
            if not self._send_bye(call, Side.IVR, now):
                self._finish(call)
            return []
        call.bridge = Bridge(origin=origin_of(response.body))
        if call.caller_sdp is not None:
            self._ack_ivr(call)  # the offer was in the INVITE: the ACK has no body to wait for
        self._relay_to_pbx(call, response, now)
        return []

    # -- the trunk leg and the bridge -------------------------------------------------

    def _on_challenged_trunk_response(self, call: Call, response: Response,
                                      now: float) -> list[Command]:
        """The trunk's answers to the INVITE placed after a correct PIN."""
        trunk, bridge = call.trunk, call.bridge
        assert trunk is not None and bridge is not None
        status = response.status_code
        if status == 100:
            return []
        if status < 200:
            trunk.take_provisional(response)
            if call.state is CallState.ENDING:
                self._try_cancel_trunk(call, now)
                return []
            call.state = CallState.EARLY
            if response.body:  # early media: the PBX hears it straight from the trunk
                bridge.wanted = response.body
                return self._sync_bridge(call, now)
            return []
        if status < 300:
            if call.trunk_ack is not None:
                self.endpoint.resend(call.trunk_ack, trunk.next_hop())
                return []
            trunk.take_answer(response)
            call.trunk_answered = True
            self._ack_trunk(call)  # our INVITE carried the offer: nothing to wait for
            if call.state is CallState.ENDING:
                self._send_bye(call, Side.TRUNK, now)
                return []
            call.state = CallState.CONFIRMED
            call.answered_at = now
            bridge.answered = True
            if response.body:
                bridge.wanted = response.body
            self._set_deadline(call, now + self._longest(call))
            commands: list[Command] = [LogEvent("call.answered", "info", {
                **call.log_fields(), "status": status, "trunk": call.trunk_name})]
            commands.extend(self._sync_bridge(call, now))
            return commands
        if self._retry_with_credentials(call, response, now):
            return []
        if call.state is CallState.ENDING:
            self._finish_when_settled(call)  # our CANCEL was answered
            return []
        commands = [LogEvent("call.failed", "info", {
            **call.log_fields(), "status": status, "trunk": call.trunk_name,
            "reason": response.reason})]
        commands.extend(self._end_call(call, now, "trunk", f"trunk answered {status}"))
        return commands

    def _sync_bridge(self, call: Call, now: float) -> list[Command]:
        """Give the PBX the trunk's latest SDP; once it has the answer, drop the IVR."""
        bridge = call.bridge
        if (bridge is None or bridge.reinvite is not None or bridge.done
                or bridge.retry_at is not None):
            return []
        if call.state is CallState.ENDING:
            return []
        if bridge.wanted and bridge.wanted != bridge.sent:
            body = bridge.wanted
            if bridge.origin is not None:
                bridge.origin = bridge.origin.next_version()
                body = with_origin(body, bridge.origin)
            request = call.pbx.create_request("INVITE")
            request.headers.add("Content-Type", "application/sdp")
            request.body = body
            bridge.pending = bridge.wanted
            bridge.reinvite = self.endpoint.send_request(request, call.pbx.next_hop(), now)
            self._track(bridge.reinvite, ClientContext(call, RelayKind.BRIDGE, Side.PBX))
            return [LogEvent("call.bridging", "info", {
                **call.log_fields(), "trunk_answered": bridge.answered})]
        if not bridge.answered:
            return []
        bridge.done = True
        call.state = CallState.CONFIRMED
        self._send_bye(call, Side.IVR, now)
        return [LogEvent("call.bridged", "info", {**call.log_fields(),
                                                  "trunk": call.trunk_name})]

    def _on_bridge_response(self, call: Call, transaction: ClientTransaction,
                            response: Response, now: float) -> list[Command]:
        bridge = call.bridge
        assert bridge is not None
        status = response.status_code
        if status < 200:
            return []
        if status < 300:
            if transaction is bridge.acked:
                if bridge.ack is not None:  # the 2xx retransmitted
                    self.endpoint.resend(bridge.ack, call.pbx.next_hop())
                return []
            call.pbx.refresh_target(response.contact)
            ack = call.pbx.create_request("ACK", cseq=transaction.cseq_number)
            bridge.ack = self.endpoint.send_ack(ack, call.pbx.next_hop())
            bridge.acked = transaction
            if transaction is bridge.reinvite:
                bridge.sent = bridge.pending
                bridge.reinvite = None
            return self._sync_bridge(call, now)
        if transaction is not bridge.reinvite or call.state is CallState.ENDING:
            return []
        bridge.reinvite = None
        if status == 491 and bridge.retries < BRIDGE_RETRIES:
            # Glare with a re-INVITE of the PBX's own (RFC 3261 §14.1): the Call-ID is
            # the PBX's, so we wait up to 2 s and try again.
            bridge.retries += 1
            self._set_bridge_retry(call, now + BRIDGE_RETRY_WAIT)
            return [LogEvent("call.bridging_retried", "info", {
                **call.log_fields(), "status": status, "retry": bridge.retries})]
        return self._end_call(call, now, "sipguard",
                              f"the PBX refused the trunk's media ({status})")

    def _on_bridge_timeout(self, call: Call, now: float) -> list[Command]:
        if call.state is CallState.ENDING:
            return []
        return self._end_call(call, now, "sipguard", "the PBX did not answer the re-INVITE")

    def _challenge_deadline(self, call: Call, now: float) -> list[Command]:
        """A challenged call's deadline: the PIN took too long, or the trunk rang too long."""
        if call.state is CallState.CHALLENGE:
            reason = ("the IVR did not hang up after the refusal" if call.pin is PinPhase.REFUSED
                      else f"no PIN within {self.challenge_timeout:g} s")
            if call.pin_outcome is None:
                call.pin_outcome = "timeout"
            if call.pbx_invite.final_status is None:
                self._respond(call.pbx_invite, 408, now, to_tag=call.pbx.local_tag)
                call.cancelled = True
                self._try_cancel(call, Side.IVR, now)
                return [LogEvent("call.failed", "info", {**call.log_fields(), "status": 408,
                                                         "reason": reason})]
            return self._end_call(call, now, "sipguard", reason)
        return self._end_call(call, now, "sipguard",
                              f"no answer within {self.ring_timeout:g} s")

    # -- relaying -----------------------------------------------------------------------

    def _for_pbx(self, call: Call, body: bytes) -> bytes:
        """SDP going to a bridged PBX keeps the o= line the PBX knows (RFC 3264 §8)."""
        bridge = call.bridge
        if bridge is None or bridge.origin is None or not body or origin_of(body) is None:
            return body
        bridge.origin = bridge.origin.next_version()
        return with_origin(body, bridge.origin)


def dtmf_relay_body(request: Request) -> bytes | None:
    """An INFO with application/dtmf (one digit) as application/dtmf-relay, else None."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/dtmf":
        return None
    digit = request.body.strip()[:1].decode("ascii", "replace")
    if digit not in "0123456789*#ABCDabcd" or not digit:
        return None
    return f"Signal={digit}\r\nDuration=160\r\n".encode()
