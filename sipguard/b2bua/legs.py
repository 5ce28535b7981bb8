"""The machinery every call flow of the B2BUA controller shares.

:class:`ControllerBase` keeps the call table and the indexes that route
messages to calls, the controller's own deadlines, and the acts done on one
leg: answering the PBX, placing the trunk leg, ACK, BYE and CANCEL. The
flows built on it are the plain call (sipguard.b2bua.controller) and the PIN
challenge (sipguard.b2bua.challenge). Like them it does no I/O and reads no clock.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

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
    Side,
    Trunk,
    contact_for,
    copy_headers,
    passed_headers,
    user_of,
)
from sipguard.b2bua.peer_auth import Authenticator
from sipguard.b2bua.registration import Registrations
from sipguard.sip import (
    Address,
    ClientTransaction,
    Dialog,
    Endpoint,
    Hop,
    Message,
    NameAddress,
    Request,
    Response,
    ServerTransaction,
    Uri,
    authorization,
    best_challenge,
    without_tag,
)


@dataclass(frozen=True, slots=True)
class IvrLink:
    """Where the PIN IVR listens, and the token its INVITEs must carry."""

    address: Address
    token: str
    capacity: int = 4  # challenges it holds at once
    header: str = "X-Sipguard-Ivr-Token"


class FinishedCall(NamedTuple):
    """A call that is over: its key, how long it was answered (s), and the call itself
    (read for its record, then dropped)."""

    key: int
    answered: float
    call: Call


class ControllerBase:
    """The call table, deadlines and single-leg acts of the controller."""


    def __init__(
        self,
        endpoint: Endpoint,
        peers: list[Peer],
        trunks: list[Trunk],
        extension_header: str = "X-Sipguard-Extension",
        ring_timeout: float = 180.0,
        max_call_duration: float = 4 * 3600.0,
        ivrs: Sequence[IvrLink] = (),
        pin_attempts: int = 3,
        challenge_timeout: float = 120.0,
        authenticator: Authenticator | None = None,
        register_expires: int = 3600,
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
        self._finished: list[FinishedCall] = []
        self._clock = 0.0  # the latest `now` handed in, for the length of finished calls
        self.ring_timeout = ring_timeout
        self.max_call_duration = max_call_duration
        # Controller deadlines: (when, sequence, call key). Stale entries are skipped.
        self._deadlines: list[tuple[float, int, int]] = []
        self._deadline_sequence = itertools.count()
        # The PIN challenge: the IVRs (none: calls that need a PIN are refused) and
        # how many challenges each holds, wrong PINs allowed per call, and the
        # longest a challenge may take.
        self.ivrs = list(ivrs)
        self._ivr_load: dict[Address, int] = {}  # challenges each IVR holds, by its address
        self.pin_attempts = pin_attempts
        self.challenge_timeout = challenge_timeout
        # Digest authentication of the peers that have credentials.
        self.authenticator = authenticator
        # REGISTERs with the carriers that want them.
        self.registrations = Registrations(endpoint, self.trunks, register_expires, self._token)
        self._by_ivr_call: dict[str, Call] = {}

    # -- introspection -------------------------------------------------------

    @property
    def live_calls(self) -> int:
        """Calls not yet forgotten."""
        return len(self._calls)

    def answered_calls(self) -> list[Call]:
        """The live calls the trunk has answered."""
        return [call for call in self._calls.values()
                if call.trunk_answered and call.answered_at is not None]

    def calls_by_state(self) -> dict[str, int]:
        """How many live calls are in each state (for the stats line)."""
        return dict(collections.Counter(call.state.value for call in self._calls.values()))

    @property
    def dialog_count(self) -> int:
        """Dialogs (legs) the controller can still route requests to."""
        return len(self._by_dialog)

    def is_live(self, call_key: int) -> bool:
        """Whether the call is still known (not finished or cancelled)."""
        return call_key in self._calls

    def take_finished(self) -> list[FinishedCall]:
        """Calls that ended since the last call, with how long they were answered (s).

        The service releases their leases, charges their cost and records them.
        """
        finished, self._finished = self._finished, []
        return finished

    # -- deadlines ---------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due, or None."""
        registration = self.registrations.get_timer()
        while self._deadlines:
            deadline, _, key = self._deadlines[0]
            call = self._calls.get(key)
            if call is None or not _is_due_for(call, deadline):
                heapq.heappop(self._deadlines)
                continue
            return deadline if registration is None else min(deadline, registration)
        return registration

    def _longest(self, call: Call) -> float:
        if call.max_duration is None:
            return self.max_call_duration
        return min(self.max_call_duration, call.max_duration)

    def _set_deadline(self, call: Call, when: float) -> None:
        call.deadline = when
        heapq.heappush(self._deadlines, (when, next(self._deadline_sequence), call.key))

    def _set_bridge_retry(self, call: Call, when: float) -> None:
        """A bridging re-INVITE refused with 491 is tried again at ``when``."""
        assert call.bridge is not None
        call.bridge.retry_at = when
        heapq.heappush(self._deadlines, (when, next(self._deadline_sequence), call.key))

    # -- legs --------------------------------------------------------------------

    def _peer_for(self, host: str) -> Peer | None:
        for peer in self.peers:
            if peer.matches(host):
                return peer
        return None

    def _place_trunk_call(self, call: Call, trunk: Trunk, now: float,
                          body: Body | None = None) -> list[Command]:
        """The trunk leg: the PBX's INVITE (or ``body`` instead of its body) to the trunk."""
        invite = call.original_invite or call.pbx_invite.request
        destination = trunk.address
        local = self.endpoint.local_for(destination)
        dialled = invite.uri.user or user_of(invite.to_address)
        target = Uri(scheme=trunk.uri.scheme, user=dialled, host=trunk.uri.host,
                     port=trunk.uri.port, parameters=trunk.uri.parameters)
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
            local_contact=contact_for(local, secure=trunk.uri.scheme == "sips"),
        )
        call.trunk = trunk_dialog
        call.trunk_name = trunk.name
        call.trunk_offer = body
        call.state = CallState.CALLING
        self._by_dialog[(Side.TRUNK, trunk_dialog.call_id, trunk_dialog.local_tag)] = call
        self._send_trunk_invite(call, self._trunk_request(call, trunk_dialog, body),
                                destination, now)
        self._set_deadline(call, now + self.ring_timeout)
        return [LogEvent("call.forwarded", "info", {
            **call.log_fields(), "trunk": trunk.name, "trunk_call_id": trunk_dialog.call_id})]

    def _trunk_request(self, call: Call, dialog: Dialog, body: Body | None) -> Request:
        """The INVITE of the trunk leg (a new CSeq each time: a retry with credentials)."""
        invite = call.original_invite or call.pbx_invite.request
        max_forwards = invite.max_forwards
        request = dialog.create_request(
            "INVITE", max_forwards=69 if max_forwards is None else max_forwards - 1)
        copy_headers(invite, request.headers, REQUEST_HEADERS_PASSED)
        request.body = invite.body
        if body is not None:
            # The PBX's INVITE was answered by the IVR: nothing relays the trunk's
            # reliable provisionals to it, so the trunk leg does not offer 100rel.
            for name in ("Supported", "Require"):
                values = [item.strip() for value in request.headers.values(name)
                          for item in value.split(",")
                          if item.strip() and item.strip().lower() != "100rel"]
                request.headers.remove(name)
                if values:
                    request.headers.add(name, ", ".join(values))
            request.headers.remove("Content-Type")
            if body.content:
                request.headers.add("Content-Type", body.content_type)
            request.body = body.content
        return request

    def _send_trunk_invite(self, call: Call, request: Request, destination: Hop,
                           now: float) -> None:
        transaction = self.endpoint.send_request(request, destination, now)
        call.trunk_invite = transaction
        self._track(transaction, ClientContext(call, RelayKind.INITIAL_INVITE, Side.TRUNK))

    def _retry_with_credentials(self, call: Call, response: Response, now: float) -> bool:
        """Answer the trunk's 401/407 with the trunk's credentials (once). True if sent."""
        trunk = next((item for item in self.trunks if item.name == call.trunk_name), None)
        dialog = call.trunk
        if (trunk is None or trunk.auth is None or dialog is None or call.trunk_auth_tried
                or call.cancelled or call.state is CallState.ENDING
                or response.status_code not in (401, 407)):
            return False
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        auth = trunk.auth
        chosen = best_challenge(response.headers.values(header),
                                lambda offered: auth.supports(offered.realm, offered.algorithm))
        if chosen is None:
            return False
        call.trunk_auth_tried = True
        dialog.remote_tag = None  # a 401 makes no dialog (RFC 3261 §12.1)
        request = self._trunk_request(call, dialog, call.trunk_offer)
        value = authorization(chosen, "INVITE", str(request.uri), auth.username,
                              cnonce=self._token(16), nc=1,
                              **auth.secret(chosen.realm, chosen.algorithm))
        request.headers.add("Authorization" if response.status_code == 401
                            else "Proxy-Authorization", value)
        if call.trunk_invite is not None:
            self._contexts.pop(call.trunk_invite, None)
        self._send_trunk_invite(call, request, trunk.address, now)
        return True

    def _track(self, transaction: ClientTransaction, context: ClientContext) -> None:
        self._contexts[transaction] = context
        context.call.client_transactions.append(transaction)

    def _find_dialog(self, message: Message) -> tuple[Call, Side] | None:
        """The call and leg an in-dialog message belongs to (our tag is the To tag)."""
        to_tag = message.to_tag or ""
        for side in (Side.PBX, Side.TRUNK, Side.IVR):
            call = self._by_dialog.get((side, message.call_id, to_tag))
            if call is not None:
                return call, side
        return None

    def _ack_trunk(self, call: Call, ack_from_pbx: Request | None = None) -> None:
        """ACK the trunk's 2xx, with the PBX's ACK body when it has one (late offer)."""
        if call.trunk_ack is None:
            call.trunk_ack = self._ack_2xx(call.trunk, call.trunk_invite, ack_from_pbx)

    def _ack_ivr(self, call: Call, ack_from_pbx: Request | None = None) -> None:
        """ACK the IVR's 2xx (with the PBX's ACK body when the PBX made a late offer)."""
        if call.ivr_ack is None:
            call.ivr_ack = self._ack_2xx(call.ivr, call.ivr_invite, ack_from_pbx)

    def _ack_2xx(self, dialog: Dialog | None, invite: ClientTransaction | None,
                 ack_from_pbx: Request | None) -> bytes | None:
        """The ACK of a leg's INVITE 2xx, sent (RFC 3261 §13.2.2.4); None when none is due."""
        if dialog is None or invite is None:
            return None
        request = dialog.create_request("ACK", cseq=invite.cseq_number)
        if ack_from_pbx is not None:
            copy_headers(ack_from_pbx, request.headers, ("Content-Type", "Content-Disposition"))
            request.body = ack_from_pbx.body
        return self.endpoint.send_ack(request, dialog.next_hop())

    def _send_bye(self, call: Call, side: Side, now: float) -> bool:
        """BYE one leg; return False when that leg has no dialog to end."""
        dialog = call.dialog(side)
        if dialog is None or dialog.remote_tag is None:
            return False
        if side is Side.TRUNK and not call.trunk_answered:
            return False  # an unanswered INVITE is CANCELled, not BYEd
        if side is Side.IVR:
            if call.ivr_ended or not call.ivr_answered:
                return False
            call.ivr_ended = True
            self._release_ivr(call)
        if side is Side.TRUNK and call.trunk_answered and call.trunk_ack is None:
            # The PBX never ACKed, but the trunk's 2xx still needs one (RFC 3261
            # §13.2.2.4) before the BYE, or the trunk retransmits it and may
            # tear the call down on its own.
            self._ack_trunk(call)
        if side is Side.IVR and call.ivr_ack is None:
            self._ack_ivr(call)
        bye = dialog.create_request("BYE")
        client = self.endpoint.send_request(bye, dialog.next_hop(), now)
        self._track(client, ClientContext(call, RelayKind.BYE, side))
        return True

    def _try_cancel(self, call: Call, side: Side, now: float) -> None:
        """CANCEL the INVITE of the trunk or IVR leg (once it has had a provisional)."""
        invite = call.trunk_invite if side is Side.TRUNK else call.ivr_invite
        if invite is None or side in call.cancels_sent:
            return
        cancel = self.endpoint.cancel(invite, now)
        if cancel is not None:
            call.cancels_sent.add(side)
            self._track(cancel, ClientContext(call, RelayKind.CANCEL, side))
        # else: RFC 3261 §9.1 - wait for a provisional response, then CANCEL.

    def _try_cancel_trunk(self, call: Call, now: float) -> None:
        self._try_cancel(call, Side.TRUNK, now)

    def _end_call(self, call: Call, now: float, ended_by: str, reason: str) -> list[Command]:
        """End an answered call: BYE every leg with a dialog, CANCEL a trunk still ringing."""
        call.begin_ending(self._clock)
        call.ended_by = ended_by
        if not self._hang_up_legs(call, now):
            self._finish(call)
        return [LogEvent("call.ended", "info", {
            **call.log_fields(), "ended_by": ended_by, "reason": reason})]

    def _hang_up_legs(self, call: Call, now: float, *, spare: Side | None = None) -> bool:
        """BYE the legs (all but ``spare``); True when a BYE or CANCEL is under way."""
        under_way = False
        for side in (Side.PBX, Side.TRUNK, Side.IVR):
            if side is spare:
                continue
            invite = call.trunk_invite if side is Side.TRUNK else call.ivr_invite
            if side is not Side.PBX and invite is not None and invite.final_status is None:
                # Still ringing: CANCEL it; its final response (487) finishes the call.
                self._try_cancel(call, side, now)
                under_way = True
            elif self._send_bye(call, side, now):
                under_way = True
        return under_way

    def _relay_to_pbx(self, call: Call, response: Response, now: float) -> None:
        headers = passed_headers(response)
        if response.status_code < 300 and response.to_tag:
            headers.append(("Contact", call.pbx.local_contact))
        self._respond(call.pbx_invite, response.status_code, now, reason=response.reason,
                      to_tag=call.pbx.local_tag, headers=headers, body=response.body)

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

    def _release_ivr(self, call: Call) -> None:
        """The call no longer holds a place at its IVR."""
        if call.ivr_link is not None:
            self._ivr_load[call.ivr_link] = max(0, self._ivr_load.get(call.ivr_link, 0) - 1)
            call.ivr_link = None

    def _finish_when_settled(self, call: Call) -> None:
        """Finish an ending call unless an INVITE it sent still waits for its final
        response: a trunk that answers after our CANCEL must still get ACK and BYE."""
        for invite in (call.trunk_invite, call.ivr_invite):
            if invite is not None and invite.final_status is None and not invite.is_terminated:
                return
        self._finish(call)

    def _finish(self, call: Call) -> None:
        """Forget a call and everything that routes to it."""
        self._release_ivr(call)
        if self._calls.pop(call.key, None) is not None:
            ended = call.ended_at if call.ended_at is not None else self._clock
            answered = 0.0 if call.answered_at is None else max(0.0, ended - call.answered_at)
            self._finished.append(FinishedCall(call.key, answered, call))
        self._by_invite.pop(call.pbx_invite, None)
        self._by_dialog.pop((Side.PBX, call.pbx.call_id, call.pbx.local_tag), None)
        if call.trunk is not None:
            self._by_dialog.pop((Side.TRUNK, call.trunk.call_id, call.trunk.local_tag), None)
        if call.ivr is not None:
            self._by_dialog.pop((Side.IVR, call.ivr.call_id, call.ivr.local_tag), None)
            self._by_ivr_call.pop(call.ivr.call_id, None)
        for transaction in call.client_transactions:
            self._contexts.pop(transaction, None)
        call.client_transactions.clear()


def _is_due_for(call: Call, deadline: float) -> bool:
    """Whether a deadline in the heap is still wanted by the call (not superseded)."""
    return call.deadline == deadline or (call.bridge is not None
                                         and call.bridge.retry_at == deadline)
