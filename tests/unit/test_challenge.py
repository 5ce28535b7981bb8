"""Controller traces of the PIN challenge on a virtual clock.

The PBX, the IVR and the trunk are hand-made datagrams; the service's part
(the IVR's results, the PIN check) is played by calling ``pin_entered`` and
``pin_checked`` as the service would.
"""

from __future__ import annotations

from pathlib import Path

from sipguard.b2bua.calls import CheckPin, InstructIvr
from sipguard.b2bua.controller import IvrLink
from sipguard.policy.loader import load_policy
from sipguard.sip.message import Request, Response
from sipguard.sip.sdp import origin_of
from tests.unit.b2bua_harness import (
    IVR,
    IVR_TOKEN,
    PBX,
    TRUNK,
    Harness,
    Sent,
    invite,
    only,
    response_to,
)

PIN_POLICY = Path(__file__).resolve().parents[1] / "policies" / "pin.yaml"
IVR_SDP = (b"v=0\r\no=ivr 500 700 IN IP4 127.0.0.5\r\ns=ivr\r\nc=IN IP4 127.0.0.5\r\n"
           b"t=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\n")
TRUNK_SDP = (b"v=0\r\no=carrier 9 9 IN IP4 127.0.0.2\r\ns=c\r\nc=IN IP4 127.0.0.2\r\n"
             b"t=0 0\r\nm=audio 7000 RTP/AVP 0\r\n")
TRUNK_SDP_2 = TRUNK_SDP.replace(b"7000", b"7002")
CANCEL = (
    "CANCEL sip:12125551234@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-i1;rport\r\nMax-Forwards: 70\r\n"
    "From: <sip:201@127.0.0.1>;tag=pbxtag\r\nTo: <sip:12125551234@127.0.0.1>\r\n"
    "Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
).encode()


def _harness() -> Harness:
    return Harness(policy=load_policy(PIN_POLICY), ivr=True)


def _one(sent: list[Sent], destination: tuple[str, int], method: str | None = None,
         status: int | None = None) -> Request | Response:
    found = [m for m in only(sent, destination)
             if (method is not None and isinstance(m, Request) and m.method == method)
             or (status is not None and isinstance(m, Response) and m.status_code == status)]
    assert len(found) == 1, [str(m).split("\r\n")[0] for m in only(sent, destination)]
    return found[0]


def _from_pbx(method: str, ok: Response, branch: str, cseq: int, body: bytes = b"",
              content_type: str = "") -> bytes:
    head = (
        f"{method} sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:201@127.0.0.1>;tag=pbxtag\r\n"
        f"To: <sip:12125551234@127.0.0.1>;tag={ok.to_tag}\r\n"
        f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:201@127.0.0.1:5070>\r\n"
        + (f"Content-Type: {content_type}\r\n" if content_type else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _from_ivr(method: str, ivr_invite: Request, branch: str, cseq: int) -> bytes:
    return (
        f"{method} sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {IVR[0]}:{IVR[1]};branch={branch}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:pin@{IVR[0]}>;tag=ivrtag\r\nTo: {ivr_invite.headers.get('From')}\r\n"
        f"Call-ID: {ivr_invite.call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _challenged(harness: Harness) -> tuple[Request, Response]:
    """A PIN call answered by the IVR and ACKed by the PBX: (IVR INVITE, PBX's 200)."""
    sent = harness.feed(invite(), PBX)
    assert only(sent, TRUNK) == []
    ivr_invite = _one(sent, IVR, method="INVITE")
    assert isinstance(ivr_invite, Request)
    sent = harness.feed(response_to(ivr_invite, 200, "OK", to_tag="ivrtag",
                                    contact=f"<sip:pin@{IVR[0]}:{IVR[1]}>", body=IVR_SDP), IVR)
    ok = _one(sent, PBX, status=200)
    assert isinstance(ok, Response)
    ack = _one(sent, IVR, method="ACK")  # the offer was in the INVITE: no need to wait
    assert isinstance(ack, Request) and ack.body == b""
    sent = harness.feed(_from_pbx("ACK", ok, "z9hG4bK-ack1", 1), PBX)
    assert sent == []  # the IVR has its ACK already
    return ivr_invite, ok


def _enter(harness: Harness, ivr_invite: Request, digits: str, outcome: str) -> list[Sent]:
    """The IVR reports ``digits``; the service's check answers ``outcome``."""
    commands = harness.controller.pin_entered(ivr_invite.call_id, "entered", digits, harness.now)
    assert len(commands) == 1
    check = commands[0]
    assert isinstance(check, CheckPin) and check.digits == digits
    assert check.account == "asterisk-1" and check.extension == "201"
    assert digits not in repr(check)  # a CheckPin never shows its digits
    return harness.run(harness.controller.pin_checked(check.call_key, outcome, harness.now))


def test_pin_call_goes_to_the_ivr_with_the_callers_offer_and_token():
    harness = _harness()
    sent = harness.feed(invite(), PBX)
    ivr_invite = _one(sent, IVR, method="INVITE")
    assert isinstance(ivr_invite, Request)
    assert ivr_invite.headers.get("X-Sipguard-Ivr-Token") == IVR_TOKEN
    assert ivr_invite.body == invite().split(b"\r\n\r\n", 1)[1]
    assert ivr_invite.call_id != "call-1"
    assert ivr_invite.uri.host == IVR[0] and ivr_invite.uri.port == IVR[1]
    assert "X-Internal-Secret" not in ivr_invite.headers
    assert [log.event for log in harness.logs][-1] == "call.challenged"
    assert harness.controller.calls_by_state() == {"challenge": 1}


def test_right_pin_places_the_trunk_and_bridges_media_with_a_reinvite():
    harness = _harness()
    ivr_invite, ok = _challenged(harness)
    assert ok.body == IVR_SDP and ok.contact is not None and ok.contact.uri.user == "sipguard"

    sent = _enter(harness, ivr_invite, "246810", "accepted")
    assert InstructIvr(ivr_invite.call_id, "accept") in harness.commands
    trunk_invite = _one(sent, TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    assert trunk_invite.body == invite().split(b"\r\n\r\n", 1)[1]  # the caller's own offer
    assert trunk_invite.headers.get("Content-Type") == "application/sdp"

    # Early media: the PBX is re-INVITEd with the trunk's SDP under the IVR's o= line.
    sent = harness.feed(response_to(trunk_invite, 183, "Session Progress", body=TRUNK_SDP), TRUNK)
    reinvite = _one(sent, PBX, method="INVITE")
    assert isinstance(reinvite, Request)
    assert reinvite.call_id == "call-1" and reinvite.to_tag == "pbxtag"
    assert reinvite.from_tag == ok.to_tag
    assert reinvite.cseq.number == 2
    origin = origin_of(reinvite.body)
    assert origin is not None and (origin.username, origin.session_id, origin.version) == (
        "ivr", "500", 701)
    assert b"m=audio 7000" in reinvite.body and b"c=IN IP4 127.0.0.2" in reinvite.body
    sent = harness.feed(response_to(reinvite, 200, "OK", to_tag=None,
                                    contact="<sip:201@127.0.0.1:5070>",
                                    body=invite().split(b"\r\n\r\n", 1)[1]), PBX)
    pbx_ack = _one(sent, PBX, method="ACK")
    assert isinstance(pbx_ack, Request) and pbx_ack.cseq.number == 2
    assert only(sent, IVR) == []  # the trunk has not answered yet: the IVR keeps the call

    # The answer has the same SDP: no second re-INVITE; the IVR leg is hung up.
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=TRUNK_SDP), TRUNK)
    assert isinstance(_one(sent, TRUNK, method="ACK"), Request)
    ivr_bye = _one(sent, IVR, method="BYE")
    assert isinstance(ivr_bye, Request) and ivr_bye.call_id == ivr_invite.call_id
    assert [m for m in only(sent, PBX) if isinstance(m, Request)] == []
    assert harness.controller.calls_by_state() == {"confirmed": 1}
    events = [log.event for log in harness.logs]
    assert events.index("call.pin_accepted") < events.index("call.answered") < events.index(
        "call.bridged")
    harness.feed(response_to(ivr_bye, 200, "OK", to_tag=None), IVR)

    # From now on it is a plain call: the PBX's BYE goes to the trunk, not the IVR.
    sent = harness.feed(_from_pbx("BYE", ok, "z9hG4bK-bye", 3), PBX)
    trunk_bye = _one(sent, TRUNK, method="BYE")
    assert only(sent, IVR) == []
    assert isinstance(trunk_bye, Request)
    harness.feed(response_to(trunk_bye, 200, "OK"), TRUNK)
    assert harness.controller.live_calls == 0 and harness.controller.dialog_count == 0
    finished = harness.controller.take_finished()
    assert len(finished) == 1 and finished[0][1] >= 0.0


def test_an_answer_with_new_sdp_gets_a_second_reinvite_before_the_ivr_leaves():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    first = _one(harness.feed(response_to(trunk_invite, 183, "Progress", body=TRUNK_SDP), TRUNK),
                 PBX, method="INVITE")
    assert isinstance(first, Request)
    # The answer comes while the first re-INVITE is still out: nothing is sent yet.
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=TRUNK_SDP_2), TRUNK)
    assert [m for m in only(sent, PBX) if isinstance(m, Request)] == []
    assert only(sent, IVR) == []
    sent = harness.feed(response_to(first, 200, "OK", to_tag=None, body=b"v=0\r\n",
                                    contact="<sip:201@127.0.0.1:5070>"), PBX)
    second = _one(sent, PBX, method="INVITE")
    assert isinstance(second, Request) and b"m=audio 7002" in second.body
    origin = origin_of(second.body)
    assert origin is not None and origin.version == 702
    sent = harness.feed(response_to(second, 200, "OK", to_tag=None, body=b"v=0\r\n",
                                    contact="<sip:201@127.0.0.1:5070>"), PBX)
    assert isinstance(_one(sent, IVR, method="BYE"), Request)
    # A retransmitted 2xx of the re-INVITE is ACKed again, nothing more.
    again = harness.feed(response_to(second, 200, "OK", to_tag=None, body=b"v=0\r\n",
                                    contact="<sip:201@127.0.0.1:5070>"), PBX)
    assert [m.method for m in only(again, PBX) if isinstance(m, Request)] == ["ACK"]


def test_dtmf_info_reaches_the_ivr_and_application_dtmf_is_translated():
    harness = _harness()
    _, ok = _challenged(harness)
    sent = harness.feed(_from_pbx("INFO", ok, "z9hG4bK-info1", 2, b"5",
                                  "application/dtmf"), PBX)
    info = _one(sent, IVR, method="INFO")
    assert isinstance(info, Request)
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    sent = harness.feed(response_to(info, 200, "OK", to_tag=None), IVR)
    assert isinstance(_one(sent, PBX, status=200), Response)
    relay = b"Signal=7\r\nDuration=100\r\n"
    sent = harness.feed(_from_pbx("INFO", ok, "z9hG4bK-info2", 3, relay,
                                  "application/dtmf-relay"), PBX)
    info = _one(sent, IVR, method="INFO")
    assert isinstance(info, Request) and info.body == relay


def test_wrong_pins_are_retried_then_refused_and_the_ivr_hangs_up():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    for attempt in (1, 2):
        assert _enter(harness, ivr_invite, "111111", "wrong") == []
        assert harness.commands[-1] == InstructIvr(ivr_invite.call_id, "retry")
        assert harness.events("call.pin_wrong")[-1].fields["attempt"] == attempt
    assert _enter(harness, ivr_invite, "111111", "wrong") == []
    assert harness.commands[-1] == InstructIvr(ivr_invite.call_id, "refuse")
    refused = harness.events("call.pin_refused")
    assert len(refused) == 1 and refused[0].fields["pin"] == "wrong"
    # A late result from the IVR changes nothing.
    assert harness.controller.pin_entered(ivr_invite.call_id, "entered", "1", harness.now) == []
    sent = harness.feed(_from_ivr("BYE", ivr_invite, "z9hG4bK-ivrbye", 5), IVR)
    assert isinstance(_one(sent, IVR, status=200), Response)
    pbx_bye = _one(sent, PBX, method="BYE")
    assert only(sent, TRUNK) == []
    assert isinstance(pbx_bye, Request)
    harness.feed(response_to(pbx_bye, 200, "OK", to_tag=None), PBX)
    assert harness.controller.live_calls == 0
    assert all(log.fields.get("to") != "111111" for log in harness.logs)


def test_locked_pin_is_refused_at_once():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    assert _enter(harness, ivr_invite, "246810", "locked") == []
    assert harness.commands[-1] == InstructIvr(ivr_invite.call_id, "refuse")
    assert harness.events("call.pin_refused")[0].fields["pin"] == "locked"


def test_no_digits_before_the_ivr_timeout_is_refused():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    harness.run(harness.controller.pin_entered(ivr_invite.call_id, "timeout", "", harness.now))
    assert harness.commands == [InstructIvr(ivr_invite.call_id, "refuse")]
    assert harness.events("call.pin_refused")[0].fields["pin"] == "timeout"


def test_the_ivr_not_hanging_up_after_a_refusal_ends_the_call():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    harness.run(harness.controller.pin_entered(ivr_invite.call_id, "timeout", "", harness.now))
    assert harness.advance(19.0) == []
    sent = harness.advance(1.1)
    assert isinstance(_one(sent, PBX, method="BYE"), Request)
    assert isinstance(_one(sent, IVR, method="BYE"), Request)
    assert harness.events("call.ended")[0].fields["reason"] == (
        "the IVR did not hang up after the refusal")


def test_cancel_before_the_ivr_answers_cancels_the_ivr_leg():
    harness = _harness()
    sent = harness.feed(invite(), PBX)
    ivr_invite = _one(sent, IVR, method="INVITE")
    assert isinstance(ivr_invite, Request)
    harness.feed(response_to(ivr_invite, 180, "Ringing", to_tag="ivrtag"), IVR)
    sent = harness.feed(CANCEL, PBX)
    assert isinstance(_one(sent, PBX, status=487), Response)
    cancel = _one(sent, IVR, method="CANCEL")
    assert isinstance(cancel, Request)
    harness.feed(response_to(cancel, 200, "OK", to_tag=None), IVR)
    sent = harness.feed(response_to(ivr_invite, 487, "Request Terminated", to_tag="ivrtag"), IVR)
    assert harness.controller.live_calls == 0
    assert only(sent, PBX) == []


def test_a_busy_ivr_fails_the_call_closed_with_403():
    harness = _harness()
    ivr_invite = _one(harness.feed(invite(), PBX), IVR, method="INVITE")
    assert isinstance(ivr_invite, Request)
    sent = harness.feed(response_to(ivr_invite, 486, "Busy Here", to_tag="ivrtag"), IVR)
    forbidden = _one(sent, PBX, status=403)
    assert isinstance(forbidden, Response)
    assert "PIN service unavailable" in (forbidden.headers.get("Reason") or "")
    assert only(sent, TRUNK) == []
    assert harness.controller.live_calls == 0


def test_trunk_refusal_after_the_pin_ends_the_call_on_every_leg():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    sent = harness.feed(response_to(trunk_invite, 486, "Busy Here"), TRUNK)
    assert isinstance(_one(sent, PBX, method="BYE"), Request)
    assert isinstance(_one(sent, IVR, method="BYE"), Request)
    assert harness.events("call.failed")[0].fields["status"] == 486


def test_caller_hangup_while_the_trunk_rings_cancels_it_and_hangs_up_the_ivr():
    harness = _harness()
    ivr_invite, ok = _challenged(harness)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    sent = harness.feed(_from_pbx("BYE", ok, "z9hG4bK-bye", 2), PBX)
    assert isinstance(_one(sent, PBX, status=200), Response)
    assert isinstance(_one(sent, TRUNK, method="CANCEL"), Request)
    assert isinstance(_one(sent, IVR, method="BYE"), Request)
    harness.feed(response_to(trunk_invite, 487, "Request Terminated"), TRUNK)
    assert harness.controller.live_calls == 0


def test_caller_hangup_during_the_prompt_hangs_up_the_ivr():
    harness = _harness()
    ivr_invite, ok = _challenged(harness)
    sent = harness.feed(_from_pbx("BYE", ok, "z9hG4bK-bye", 2), PBX)
    ivr_bye = _one(sent, IVR, method="BYE")
    assert isinstance(ivr_bye, Request)
    assert only(sent, TRUNK) == []
    harness.feed(response_to(ivr_bye, 200, "OK", to_tag=None), IVR)
    assert harness.controller.live_calls == 0
    assert harness.controller.pin_entered(ivr_invite.call_id, "hangup", "", harness.now) == []


def test_without_an_ivr_a_pin_call_is_refused():
    harness = Harness(policy=load_policy(PIN_POLICY))
    sent = harness.feed(invite(), PBX)
    forbidden = _one(sent, PBX, status=403)
    assert isinstance(forbidden, Response)
    assert "PIN required" in (forbidden.headers.get("Reason") or "")


def test_a_full_ivr_refuses_more_challenges_without_asking_it():
    harness = _harness()  # one IVR holding two challenges
    for number, branch in (("call-1", "z9hG4bK-a"), ("call-2", "z9hG4bK-b")):
        sent = harness.feed(invite(call_id=number, branch=branch), PBX)
        assert isinstance(_one(sent, IVR, method="INVITE"), Request)
    sent = harness.feed(invite(call_id="call-3", branch="z9hG4bK-c"), PBX)
    assert only(sent, IVR) == []
    forbidden = _one(sent, PBX, status=403)
    assert isinstance(forbidden, Response)
    assert "PIN service unavailable" in (forbidden.headers.get("Reason") or "")
    assert harness.events("call.rejected")[-1].fields["detail"] == "every PIN IVR is busy"


def test_a_place_at_the_ivr_is_given_back_when_the_call_leaves_it():
    harness = _harness()
    ivr_invite, ok = _challenged(harness)
    harness.feed(_from_pbx("BYE", ok, "z9hG4bK-bye", 2), PBX)
    for number, branch in (("call-2", "z9hG4bK-b"), ("call-3", "z9hG4bK-c")):
        sent = harness.feed(invite(call_id=number, branch=branch), PBX)
        assert isinstance(_one(sent, IVR, method="INVITE"), Request), number
    assert ivr_invite.call_id


def test_a_late_offer_gives_the_trunk_the_pbx_answer_from_its_ack():
    harness = _harness()
    no_sdp = invite().split(b"Content-Type")[0] + b"Content-Length: 0\r\n\r\n"
    ivr_invite = _one(harness.feed(no_sdp, PBX), IVR, method="INVITE")
    assert isinstance(ivr_invite, Request) and ivr_invite.body == b""
    sent = harness.feed(response_to(ivr_invite, 200, "OK", to_tag="ivrtag",
                                    contact=f"<sip:pin@{IVR[0]}:{IVR[1]}>", body=IVR_SDP), IVR)
    ok = _one(sent, PBX, status=200)
    assert isinstance(ok, Response)
    assert only(sent, IVR) == []  # the ACK waits for the PBX's answer
    answer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    sent = harness.feed(_from_pbx("ACK", ok, "z9hG4bK-ack1", 1, answer, "application/sdp"), PBX)
    ack = _one(sent, IVR, method="ACK")
    assert isinstance(ack, Request) and ack.body == answer
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request) and trunk_invite.body == answer


def test_calls_at_an_ivr_that_stopped_are_ended_and_new_ones_go_elsewhere():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    other = IvrLink(("127.0.0.6", 5200), "other-token", capacity=2)
    sent = harness.run(harness.controller.set_ivrs([other], harness.now))
    assert isinstance(_one(sent, PBX, method="BYE"), Request)
    assert only(sent, IVR) == []  # nobody there to BYE
    assert harness.events("call.ended")[-1].fields["reason"] == "the PIN IVR stopped"
    sent = harness.feed(invite(call_id="call-2", branch="z9hG4bK-b"), PBX)
    moved = _one(sent, other.address, method="INVITE")
    assert isinstance(moved, Request)
    assert moved.headers.get("X-Sipguard-Ivr-Token") == "other-token"
    assert ivr_invite.call_id != moved.call_id


def test_with_no_ivr_running_a_challenge_gets_403():
    harness = _harness()
    harness.controller.set_ivrs([], harness.now)
    sent = harness.feed(invite(), PBX)
    forbidden = _one(sent, PBX, status=403)
    assert isinstance(forbidden, Response) and only(sent, IVR) == []
    assert "PIN required" in (forbidden.headers.get("Reason") or "")


def test_a_pin_checked_after_the_caller_hung_up_places_no_trunk_call():
    harness = _harness()
    ivr_invite, ok = _challenged(harness)
    commands = harness.controller.pin_entered(ivr_invite.call_id, "entered", "246810",
                                              harness.now)
    (check,) = commands
    assert isinstance(check, CheckPin)
    harness.feed(_from_pbx("BYE", ok, "z9hG4bK-bye", 2), PBX)  # while scrypt runs
    sent = harness.run(harness.controller.pin_checked(check.call_key, "accepted", harness.now))
    assert only(sent, TRUNK) == []
    assert InstructIvr(ivr_invite.call_id, "accept") not in harness.commands


def test_the_trunk_leg_of_a_pin_call_does_not_offer_100rel():
    harness = _harness()
    sent = harness.feed(invite(extra="Supported: 100rel, timer\r\nRequire: 100rel\r\n"), PBX)
    ivr_invite = _one(sent, IVR, method="INVITE")
    assert isinstance(ivr_invite, Request)
    harness.feed(response_to(ivr_invite, 200, "OK", to_tag="ivrtag",
                             contact=f"<sip:pin@{IVR[0]}:{IVR[1]}>", body=IVR_SDP), IVR)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    assert trunk_invite.headers.get("Supported") == "timer"
    assert "Require" not in trunk_invite.headers


def test_an_ending_call_waits_for_the_trunk_invite_and_cancels_it_after_its_provisional():
    harness = _harness()
    ivr_invite, ok = _challenged(harness)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    sent = harness.feed(_from_pbx("BYE", ok, "z9hG4bK-bye", 2), PBX)
    assert [m for m in only(sent, TRUNK) if isinstance(m, Request)] == []  # nothing to CANCEL yet
    ivr_bye = _one(sent, IVR, method="BYE")
    assert isinstance(ivr_bye, Request)
    harness.feed(response_to(ivr_bye, 200, "OK", to_tag=None), IVR)
    assert harness.controller.live_calls == 1  # the trunk INVITE is still out
    sent = harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    cancel = _one(sent, TRUNK, method="CANCEL")
    assert isinstance(cancel, Request)
    # The answer crosses the CANCEL: it is ACKed and BYEd, then the call is finished.
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=TRUNK_SDP), TRUNK)
    assert isinstance(_one(sent, TRUNK, method="ACK"), Request)
    trunk_bye = _one(sent, TRUNK, method="BYE")
    assert isinstance(trunk_bye, Request)
    harness.feed(response_to(trunk_bye, 200, "OK"), TRUNK)
    assert harness.controller.live_calls == 0


def test_no_bye_goes_to_a_trunk_that_refused_after_ringing():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    sent = harness.feed(response_to(trunk_invite, 486, "Busy Here"), TRUNK)
    assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["ACK"]


def test_a_bridging_reinvite_refused_with_491_is_tried_again():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    trunk_invite = _one(_enter(harness, ivr_invite, "246810", "accepted"), TRUNK, method="INVITE")
    assert isinstance(trunk_invite, Request)
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=TRUNK_SDP), TRUNK)
    first = _one(sent, PBX, method="INVITE")
    assert isinstance(first, Request)
    sent = harness.feed(response_to(first, 491, "Request Pending", to_tag=None), PBX)
    assert [m for m in only(sent, PBX) if isinstance(m, Request) and m.method == "BYE"] == []
    assert harness.controller.live_calls == 1
    sent = harness.advance(1.05)
    second = _one(sent, PBX, method="INVITE")
    assert isinstance(second, Request) and second.cseq.number == first.cseq.number + 1
    assert b"m=audio 7000" in second.body
    sent = harness.feed(response_to(second, 200, "OK", to_tag=None, body=b"v=0\r\n",
                                    contact="<sip:201@127.0.0.1:5070>"), PBX)
    assert isinstance(_one(sent, IVR, method="BYE"), Request)
    assert harness.events("call.bridged")


def test_an_ivr_answering_486_sends_the_call_to_another_ivr():
    harness = _harness()
    other = IvrLink(("127.0.0.6", 5200), "other-token", capacity=2)
    harness.controller.set_ivrs([*harness.controller.ivrs, other], harness.now)
    first = _one(harness.feed(invite(), PBX), IVR, method="INVITE")
    assert isinstance(first, Request)
    sent = harness.feed(response_to(first, 486, "Busy Here", to_tag="ivrtag"), IVR)
    assert [m for m in only(sent, PBX) if isinstance(m, Response)] == []
    second = _one(sent, other.address, method="INVITE")
    assert isinstance(second, Request) and second.call_id != first.call_id
    assert second.headers.get("X-Sipguard-Ivr-Token") == "other-token"
    sent = harness.feed(response_to(second, 200, "OK", to_tag="ivr2",
                                    contact="<sip:pin@127.0.0.6:5200>", body=IVR_SDP),
                        other.address)
    assert isinstance(_one(sent, PBX, status=200), Response)
    # A retransmitted 486 from the first IVR changes nothing.
    assert only(harness.feed(response_to(first, 486, "Busy Here", to_tag="ivrtag"), IVR),
                PBX) == []


def test_a_hash_with_no_digits_is_another_try_not_a_check():
    harness = _harness()
    ivr_invite, _ = _challenged(harness)
    call_id = ivr_invite.call_id
    assert harness.controller.pin_entered(call_id, "entered", "", harness.now) == [
        InstructIvr(call_id, "retry")]
    assert harness.controller.pin_entered(call_id, "entered", "", harness.now) == [
        InstructIvr(call_id, "retry")]
    harness.run(harness.controller.pin_entered(call_id, "entered", "", harness.now))
    assert harness.commands[-1] == InstructIvr(call_id, "refuse")
    assert harness.events("call.pin_refused")[0].fields["pin"] == "no_digits"
