"""Controller traces on a virtual clock: the PBX and the trunk are hand-made datagrams."""

from __future__ import annotations

from sipguard.b2bua.calls import SourceFailure
from sipguard.sip.message import Request, Response
from tests.unit.b2bua_harness import (
    PBX,
    STRANGER,
    TRUNK,
    Harness,
    invite,
    only,
    response_to,
)

# The PBX's CANCEL of the INVITE that invite() builds (same branch, RFC 3261 §9.1).
CANCEL = (
    "CANCEL sip:12125551234@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-i1;rport\r\nMax-Forwards: 70\r\n"
    "From: <sip:201@127.0.0.1>;tag=pbxtag\r\nTo: <sip:12125551234@127.0.0.1>\r\n"
    "Call-ID: call-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
).encode()


def _trunk_invite(harness: Harness) -> tuple[Request, list]:
    sent = harness.feed(invite(), PBX)
    to_trunk = only(sent, TRUNK)
    assert len(to_trunk) == 1
    request = to_trunk[0]
    assert isinstance(request, Request)
    return request, sent


def _answered_call(harness: Harness) -> tuple[Request, Response]:
    """Set up a call answered by the trunk and acknowledged by the PBX."""
    trunk_invite, _ = _trunk_invite(harness)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=b"v=0\r\n"), TRUNK)
    (ok,) = only(sent, PBX)
    assert isinstance(ok, Response)
    ack = (
        f"ACK sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ack1\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:201@127.0.0.1>;tag=pbxtag\r\n"
        f"To: <sip:12125551234@127.0.0.1>;tag={ok.to_tag}\r\n"
        f"Call-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    sent = harness.feed(ack, PBX)
    (trunk_ack,) = only(sent, TRUNK)
    assert isinstance(trunk_ack, Request) and trunk_ack.method == "ACK"
    return trunk_invite, ok


def _in_dialog(method: str, ok: Response, branch: str, cseq: int, body: str = "",
               extra: str = "") -> bytes:
    return (
        f"{method} sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:201@127.0.0.1>;tag=pbxtag\r\n"
        f"To: <sip:12125551234@127.0.0.1>;tag={ok.to_tag}\r\n"
        f"Call-ID: call-1\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:201@127.0.0.1:5070>\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_forwarded_invite_is_a_new_leg_with_our_identity():
    """The trunk INVITE has a new Call-ID, From tag, Via and Contact, keeps SDP and PAI, drops the rest."""
    harness = Harness()
    trunk_invite, sent = _trunk_invite(harness)
    to_pbx = only(sent, PBX)
    assert [m.status_code for m in to_pbx if isinstance(m, Response)] == [100]
    original = invite()
    assert trunk_invite.call_id != "call-1"
    assert trunk_invite.from_tag not in (None, "pbxtag")
    assert trunk_invite.to_tag is None
    assert trunk_invite.max_forwards == 69
    assert len(trunk_invite.vias) == 1 and trunk_invite.top_via.host == "127.0.0.1"
    assert trunk_invite.top_via.port == 5060
    assert trunk_invite.contact is not None and trunk_invite.contact.uri.host == "127.0.0.1"
    assert trunk_invite.uri.user == "12125551234" and trunk_invite.uri.host == "127.0.0.2"
    assert trunk_invite.body == original.split(b"\r\n\r\n", 1)[1]
    assert trunk_invite.headers.get("P-Asserted-Identity") == "<sip:201@127.0.0.1>"
    assert "X-Internal-Secret" not in trunk_invite.headers
    assert harness.attempts[0].dialled == "12125551234"
    assert harness.attempts[0].account == "asterisk-1"


def test_full_call_with_bye_from_pbx_leaves_nothing_behind():
    """Ringing, answer, ACK and a BYE from the PBX are relayed and all state goes away."""
    harness = Harness()
    trunk_invite, ok = _answered_call(harness)
    assert ok.status_code == 200 and ok.body == b"v=0\r\n"
    assert ok.contact is not None and ok.contact.uri.user == "sipguard"
    assert harness.controller.live_calls == 1
    sent = harness.feed(_in_dialog("BYE", ok, "z9hG4bK-bye1", 2), PBX)
    bye_ok = only(sent, PBX)
    assert [m.status_code for m in bye_ok if isinstance(m, Response)] == [200]
    (trunk_bye,) = only(sent, TRUNK)
    assert isinstance(trunk_bye, Request) and trunk_bye.method == "BYE"
    assert trunk_bye.call_id == trunk_invite.call_id and trunk_bye.to_tag == "trunktag"
    assert trunk_bye.cseq.number == trunk_invite.cseq.number + 1
    harness.feed(response_to(trunk_bye, 200, "OK"), TRUNK)
    assert harness.controller.live_calls == 0
    assert harness.controller.dialog_count == 0
    harness.advance(harness.settings.timeout + harness.settings.timer_d + 1)
    assert harness.endpoint.transaction_count == 0
    assert [log.event for log in harness.logs].count("call.ended") == 1


def test_bye_from_trunk_is_relayed_to_pbx():
    """A BYE from the trunk is answered and repeated to the PBX in the PBX's dialog."""
    harness = Harness()
    trunk_invite, ok = _answered_call(harness)
    bye = (
        f"BYE sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bK-tbye\r\nMax-Forwards: 70\r\n"
        f"From: <sip:12125551234@127.0.0.2>;tag=trunktag\r\n"
        f"To: {trunk_invite.headers.get('From')}\r\n"
        f"Call-ID: {trunk_invite.call_id}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    sent = harness.feed(bye, TRUNK)
    assert [m.status_code for m in only(sent, TRUNK) if isinstance(m, Response)] == [200]
    (pbx_bye,) = only(sent, PBX)
    assert isinstance(pbx_bye, Request) and pbx_bye.method == "BYE"
    assert pbx_bye.call_id == "call-1" and pbx_bye.to_tag == "pbxtag"
    assert pbx_bye.from_tag == ok.to_tag
    assert pbx_bye.uri.port == 5070  # the PBX's Contact
    harness.feed(response_to(pbx_bye, 200, "OK", to_tag=None), PBX)
    assert harness.controller.live_calls == 0


def test_blocked_prefix_gets_403_and_its_ack_is_absorbed():
    """A 1-900 number is refused with 403 and a Reason; the PBX's ACK goes nowhere."""
    harness = Harness()
    sent = harness.feed(invite("19005551234"), PBX)
    assert only(sent, TRUNK) == []
    statuses = [m for m in only(sent, PBX) if isinstance(m, Response)]
    assert [m.status_code for m in statuses] == [100, 403]
    forbidden = statuses[1]
    assert forbidden.headers.get("Reason") == 'SIP;cause=403;text="premium rate"'
    assert forbidden.to_tag
    ack = (
        f"ACK sip:19005551234@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-i1;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:201@127.0.0.1>;tag=pbxtag\r\n"
        f"To: <sip:19005551234@127.0.0.1>;tag={forbidden.to_tag}\r\n"
        f"Call-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert harness.feed(ack, PBX) == []
    assert harness.controller.live_calls == 0
    assert [log.fields["status"] for log in harness.events("call.rejected")] == [403]
    assert harness.advance(10) == []  # confirmed: no more 403 retransmissions


def test_cancel_during_ringing_gives_487_and_cancels_the_trunk():
    """CANCEL after the trunk's 180: 200 for the CANCEL, 487 for the INVITE, CANCEL to the trunk."""
    harness = Harness()
    trunk_invite, _ = _trunk_invite(harness)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    cancel = CANCEL
    sent = harness.feed(cancel, PBX)
    to_pbx = sorted((m.status_code, m.cseq.method) for m in only(sent, PBX)
                    if isinstance(m, Response))
    assert to_pbx == [(200, "CANCEL"), (487, "INVITE")]
    (trunk_cancel,) = only(sent, TRUNK)
    assert isinstance(trunk_cancel, Request) and trunk_cancel.method == "CANCEL"
    assert trunk_cancel.top_via.branch == trunk_invite.top_via.branch
    harness.feed(response_to(trunk_cancel, 200, "OK", to_tag=None), TRUNK)
    sent = harness.feed(response_to(trunk_invite, 487, "Request Terminated"), TRUNK)
    (trunk_ack,) = only(sent, TRUNK)
    assert isinstance(trunk_ack, Request) and trunk_ack.method == "ACK"
    assert only(sent, PBX) == []  # the PBX already has its 487
    assert harness.controller.live_calls == 0


def test_cancel_before_any_provisional_waits_for_one():
    """RFC 3261 §9.1: no CANCEL goes to the trunk until it has sent a provisional response."""
    harness = Harness()
    trunk_invite, _ = _trunk_invite(harness)
    cancel = CANCEL
    sent = harness.feed(cancel, PBX)
    assert [m for m in only(sent, TRUNK) if isinstance(m, Request) and m.method == "CANCEL"] == []
    sent = harness.feed(response_to(trunk_invite, 183, "Session Progress"), TRUNK)
    methods = [m.method for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert methods == ["CANCEL"]
    assert only(sent, PBX) == []  # no early media after the PBX cancelled


def test_answer_crossing_cancel_is_acked_and_hung_up():
    """A 200 from the trunk after the PBX cancelled gets ACK and BYE, never reaches the PBX."""
    harness = Harness()
    trunk_invite, _ = _trunk_invite(harness)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    cancel = CANCEL
    harness.feed(cancel, PBX)
    sent = harness.feed(response_to(trunk_invite, 200, "OK"), TRUNK)
    methods = [m.method for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert methods == ["ACK", "BYE"]
    assert only(sent, PBX) == []


def test_trunk_busy_is_relayed_and_acked():
    """A 486 from the trunk reaches the PBX as 486; the trunk gets its ACK."""
    harness = Harness()
    trunk_invite, _ = _trunk_invite(harness)
    sent = harness.feed(response_to(trunk_invite, 486, "Busy Here"), TRUNK)
    (busy,) = only(sent, PBX)
    assert isinstance(busy, Response) and busy.status_code == 486
    assert busy.reason == "Busy Here"
    (ack,) = only(sent, TRUNK)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert harness.controller.live_calls == 0
    assert [log.fields["status"] for log in harness.events("call.failed")] == [486]


def test_silent_trunk_gives_408_after_timer_b():
    """With no answer at all, the INVITE is retransmitted on Timer A and the PBX gets 408 at 64*T1."""
    harness = Harness()
    _trunk_invite(harness)
    sent = harness.advance(harness.settings.timeout - 0.01)
    retransmissions = [m for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert len(retransmissions) == 6  # T1 = 0.5: at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    assert only(sent, PBX) == []
    sent = harness.advance(0.02)
    (timeout,) = only(sent, PBX)
    assert isinstance(timeout, Response) and timeout.status_code == 408
    assert len(harness.events("call.failed")) == 1
    assert harness.controller.live_calls == 0


def test_max_forwards_zero_gets_483():
    """An INVITE with Max-Forwards 0 is answered 483 and never screened."""
    harness = Harness()
    sent = harness.feed(invite(max_forwards=0), PBX)
    assert [m.status_code for m in only(sent, PBX) if isinstance(m, Response)] == [100, 483]
    assert harness.attempts == []


def test_unknown_source_gets_403():
    """An INVITE from an address that is not a configured peer is refused with 403."""
    harness = Harness()
    sent = harness.feed(invite(source=STRANGER), STRANGER)
    assert [m.status_code for m in only(sent, STRANGER) if isinstance(m, Response)] == [100, 403]
    assert harness.attempts == []
    assert harness.events("call.rejected")[0].fields["reason"] == "unknown source"
    assert harness.commands == [
        SourceFailure(STRANGER[0], "INVITE from an address that is no peer")]


def test_unknown_sources_get_the_same_answer_whatever_user_they_name():
    """Nothing to enumerate: every extension, real or not, gets the same 100 then 403."""
    harness = Harness()
    answers = []
    for index, number in enumerate(("201", "202", "9999", "12125551234")):
        sent = harness.feed(invite(number, call_id=f"enum-{index}", branch=f"z9hG4bK-e{index}",
                                   source=STRANGER), STRANGER)
        answers.append([(m.status_code, m.reason) for m in only(sent, STRANGER)
                        if isinstance(m, Response)])
    assert all(answer == answers[0] for answer in answers), answers
    assert len(harness.commands) == 4


def test_a_denied_destination_counts_against_its_source():
    harness = Harness()
    harness.feed(invite("19005551234"), PBX)
    assert harness.commands == [SourceFailure(PBX[0], "denied: premium rate")]


def test_options_is_answered_locally():
    """OPTIONS (Asterisk's qualify) gets 200 with Allow, and nothing goes to the trunk."""
    harness = Harness()
    options = (
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-o1\r\nMax-Forwards: 70\r\n"
        "From: <sip:asterisk@127.0.0.1>;tag=q1\r\nTo: <sip:127.0.0.1>\r\n"
        "Call-ID: qualify-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    sent = harness.feed(options, PBX)
    (ok,) = only(sent, PBX)
    assert isinstance(ok, Response) and ok.status_code == 200
    assert "INVITE" in (ok.headers.get("Allow") or "")
    assert only(sent, TRUNK) == []


def test_reinvite_from_pbx_is_relayed_with_its_ack():
    """A re-INVITE crosses to the trunk leg; its 200 comes back and the ACK follows with the trunk's CSeq."""
    harness = Harness()
    trunk_invite, ok = _answered_call(harness)
    sent = harness.feed(_in_dialog("INVITE", ok, "z9hG4bK-re1", 2, body="v=0\r\n",
                                   extra="Content-Type: application/sdp\r\n"), PBX)
    (reinvite,) = [m for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert reinvite.method == "INVITE" and reinvite.body == b"v=0\r\n"
    assert reinvite.call_id == trunk_invite.call_id
    assert reinvite.cseq.number == trunk_invite.cseq.number + 1
    sent = harness.feed(response_to(reinvite, 200, "OK", body=b"v=1\r\n"), TRUNK)
    (relayed_ok,) = [m for m in only(sent, PBX) if isinstance(m, Response)]
    assert relayed_ok.status_code == 200 and relayed_ok.cseq.number == 2
    assert relayed_ok.body == b"v=1\r\n"
    ack = _in_dialog("ACK", ok, "z9hG4bK-reack", 2)
    sent = harness.feed(ack, PBX)
    (trunk_ack,) = only(sent, TRUNK)
    assert isinstance(trunk_ack, Request) and trunk_ack.method == "ACK"
    assert trunk_ack.cseq.number == reinvite.cseq.number


def test_info_and_update_are_relayed_both_ways():
    """INFO from the PBX reaches the trunk and the trunk's answer comes back."""
    harness = Harness()
    _, ok = _answered_call(harness)
    sent = harness.feed(_in_dialog("INFO", ok, "z9hG4bK-info1", 2, body="Signal=5\r\n",
                                   extra="Content-Type: application/dtmf-relay\r\n"), PBX)
    (info,) = [m for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert info.method == "INFO" and info.body == b"Signal=5\r\n"
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    sent = harness.feed(response_to(info, 200, "OK"), TRUNK)
    (answer,) = only(sent, PBX)
    assert isinstance(answer, Response) and answer.status_code == 200
    assert answer.cseq.method == "INFO"


def test_prack_rack_names_the_invite_cseq_of_each_leg():
    """RFC 3262: a relayed PRACK's RAck carries the trunk INVITE's CSeq, not the PBX's."""
    harness = Harness()
    sent = harness.feed(invite(cseq=77, extra="Supported: 100rel\r\n"), PBX)
    (trunk_invite,) = only(sent, TRUNK)
    assert isinstance(trunk_invite, Request)
    reliable = response_to(trunk_invite, 183, "Session Progress",
                           extra=[("Require", "100rel"), ("RSeq", "1")])
    sent = harness.feed(reliable, TRUNK)
    (early,) = only(sent, PBX)
    assert isinstance(early, Response) and early.headers.get("RSeq") == "1"
    prack = (
        f"PRACK sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-pr1\r\nMax-Forwards: 70\r\n"
        f"From: <sip:201@127.0.0.1>;tag=pbxtag\r\n"
        f"To: <sip:12125551234@127.0.0.1>;tag={early.to_tag}\r\n"
        f"Call-ID: call-1\r\nCSeq: 78 PRACK\r\nRAck: 1 77 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    sent = harness.feed(prack, PBX)
    (relayed,) = [m for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert relayed.method == "PRACK"
    assert relayed.headers.get("RAck") == f"1 {trunk_invite.cseq.number} INVITE"


def test_request_in_unknown_dialog_gets_481():
    """A BYE for a dialog sipguard does not know is answered 481."""
    harness = Harness()
    bye = (
        "BYE sip:sipguard@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-b9\r\nMax-Forwards: 70\r\n"
        "From: <sip:201@127.0.0.1>;tag=a\r\nTo: <sip:1@127.0.0.1>;tag=nope\r\n"
        "Call-ID: ghost\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    (answer,) = only(harness.feed(bye, PBX), PBX)
    assert isinstance(answer, Response) and answer.status_code == 481


def test_draining_refuses_new_calls_with_503():
    """While the service drains, a new INVITE gets 503 with Retry-After."""
    harness = Harness()
    harness.controller.draining = True
    sent = harness.feed(invite(), PBX)
    statuses = [m for m in only(sent, PBX) if isinstance(m, Response)]
    assert [m.status_code for m in statuses] == [100, 503]
    assert statuses[1].headers.get("Retry-After") == "5"


def test_hang_up_all_sends_bye_on_both_legs():
    """At the end of the drain grace, a live call is ended with BYE to the PBX and the trunk."""
    harness = Harness()
    _answered_call(harness)
    harness.controller.hang_up_all(harness.now)
    sent = [item for item in harness._collect()]
    assert [m.method for m in only(sent, PBX) if isinstance(m, Request)] == ["BYE"]
    assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["BYE"]


def test_retransmitted_invite_is_screened_once():
    """The PBX retransmitting its INVITE gets 100 again but the trunk sees one INVITE."""
    harness = Harness()
    harness.feed(invite(), PBX)
    sent = harness.feed(invite(), PBX)
    assert only(sent, TRUNK) == []
    assert [m.status_code for m in only(sent, PBX) if isinstance(m, Response)] == [100]
    assert len(harness.attempts) == 1


def test_emergency_number_is_forwarded_even_under_a_broad_block(tmp_path):
    """911 is forwarded even when the policy denies every destination and every extension."""
    from sipguard.policy.loader import load_policy

    deny_all = tmp_path / "policy.yaml"
    deny_all.write_text("accounts:\n  - {name: asterisk-1, may_dial: []}\n"
                        "destinations: {default: deny}\n")
    harness = Harness(policy=load_policy(deny_all))
    sent = harness.feed(invite("911"), PBX)
    assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["INVITE"]
    sent = harness.feed(invite("9123", call_id="call-2", branch="z9hG4bK-i2"), PBX)
    assert 403 in [m.status_code for m in only(sent, PBX) if isinstance(m, Response)]


def test_endless_ringing_is_cancelled_at_the_ring_timeout():
    """A trunk that rings past the ring timeout is cancelled and the PBX gets 408."""
    harness = Harness()
    harness.controller.ring_timeout = 60.0
    trunk_invite, _ = _trunk_invite(harness)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    assert harness.advance(59.0) == []
    sent = harness.advance(1.0)
    assert [m.status_code for m in only(sent, PBX) if isinstance(m, Response)] == [408]
    assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["CANCEL"]
    assert "no answer within 60 s" in harness.events("call.failed")[0].fields["reason"]
    harness.feed(response_to(trunk_invite, 487, "Request Terminated"), TRUNK)
    assert harness.controller.live_calls == 0
    assert harness.controller.get_timer() is None


def test_answered_call_has_no_ring_timeout():
    """Once answered, the ring timeout no longer applies; only the longest-call limit does."""
    harness = Harness()
    harness.controller.ring_timeout = 10.0
    harness.controller.max_call_duration = 3600.0
    _answered_call(harness)
    assert harness.controller.get_timer() == harness.now + 3600.0
    sent = harness.advance(20.0)
    assert [m for m in only(sent, PBX) if isinstance(m, Response) and m.status_code == 408] == []
    assert harness.controller.live_calls == 1


def test_longest_call_is_ended_with_bye_on_both_legs():
    """A call that reaches max_call_duration gets BYE on both legs and a call.ended line."""
    harness = Harness()
    harness.controller.max_call_duration = 100.0
    _answered_call(harness)
    sent = harness.advance(99.0)
    assert [m for m in only(sent, PBX) if isinstance(m, Request)] == []
    sent = harness.advance(1.0)
    (pbx_bye,) = [m for m in only(sent, PBX) if isinstance(m, Request)]
    (trunk_bye,) = [m for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert pbx_bye.method == trunk_bye.method == "BYE"
    assert "longest call" in harness.events("call.ended")[-1].fields["reason"]
    harness.feed(response_to(pbx_bye, 200, "OK", to_tag=None), PBX)
    harness.feed(response_to(trunk_bye, 200, "OK", to_tag=None), TRUNK)
    assert harness.controller.live_calls == 0


def test_malformed_contact_in_dialog_gets_400():
    """A re-INVITE whose Contact cannot be parsed is answered 400, not dropped."""
    harness = Harness()
    _, ok = _answered_call(harness)
    reinvite = _in_dialog("INVITE", ok, "z9hG4bK-badc", 2).replace(
        b"Contact: <sip:201@127.0.0.1:5070>", b"Contact: <sip:201@[bad>")
    sent = harness.feed(reinvite, PBX)
    statuses = [m.status_code for m in only(sent, PBX) if isinstance(m, Response)]
    assert statuses[-1] == 400
    assert only(sent, TRUNK) == []


def test_call_log_lines_carry_the_call_fields_and_decision():
    """Every call.* line after screening names call_id, account, from, to and the decision."""
    harness = Harness()
    _, ok = _answered_call(harness)
    harness.feed(_in_dialog("BYE", ok, "z9hG4bK-bye-log", 2), PBX)
    call_lines = [log for log in harness.logs if log.event.startswith("call.")]
    assert [log.event for log in call_lines] == [
        "call.screened", "call.forwarded", "call.answered", "call.ended"]
    for log in call_lines:
        assert log.fields["call_id"] == "call-1"
        assert log.fields["account"] == "asterisk-1"
        assert log.fields["from"] == "201"
        assert log.fields["to"] == "12125551234"
        assert log.fields["decision"] == "forward"
    assert harness.events("call.answered")[0].fields["status"] == 200
    assert harness.events("call.screened")[0].fields["trace"][0].startswith("emergency:")


def test_bye_before_ack_still_acks_the_trunk_answer():
    """If the PBX hangs up before ACKing, the trunk's 2xx gets its ACK before the BYE."""
    harness = Harness()
    trunk_invite, _ = _trunk_invite(harness)
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=b"v=0\r\n"), TRUNK)
    (ok,) = only(sent, PBX)
    assert isinstance(ok, Response)
    sent = harness.feed(_in_dialog("BYE", ok, "z9hG4bK-early-bye", 2), PBX)
    methods = [m.method for m in only(sent, TRUNK) if isinstance(m, Request)]
    assert methods == ["ACK", "BYE"]
    ack = next(m for m in only(sent, TRUNK) if isinstance(m, Request) and m.method == "ACK")
    assert ack.cseq.number == trunk_invite.cseq.number
    sent = harness.feed(response_to(trunk_invite, 200, "OK", body=b"v=0\r\n"), TRUNK)
    assert [m.method for m in only(sent, TRUNK) if isinstance(m, Request)] == ["ACK"]


def test_trunk_that_never_answers_a_cancel_is_given_up_after_64_t1():
    """RFC 3261 §9.1: no 487 within 64*T1 of the CANCEL, and the call and its INVITE are dropped."""
    harness = Harness()
    trunk_invite, _ = _trunk_invite(harness)
    harness.feed(response_to(trunk_invite, 180, "Ringing"), TRUNK)
    cancel = CANCEL
    sent = harness.feed(cancel, PBX)
    (trunk_cancel,) = only(sent, TRUNK)
    harness.feed(response_to(trunk_cancel, 200, "OK", to_tag=None), TRUNK)  # but never a 487
    harness.advance(harness.settings.timeout - 1)
    assert harness.controller.live_calls == 1
    harness.advance(2)
    assert harness.controller.live_calls == 0
    harness.advance(harness.settings.timeout + 1)
    assert harness.endpoint.transaction_count == 0


def test_invite_from_the_trunk_address_is_refused_visibly():
    """An INVITE from the trunk's address (an inbound call) gets 403 and a call.rejected line."""
    harness = Harness()
    sent = harness.feed(invite(source=TRUNK), TRUNK)
    assert [m.status_code for m in only(sent, TRUNK) if isinstance(m, Response)] == [100, 403]
    (rejected,) = harness.events("call.rejected")
    assert rejected.fields["reason"] == "not a peer (a trunk address)"
    assert harness.attempts == []


def test_out_of_dialog_message_gets_405_and_a_log_line():
    """A MESSAGE outside any call is answered 405 with Allow and logged."""
    harness = Harness()
    message = (
        "MESSAGE sip:201@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m1\r\nMax-Forwards: 70\r\n"
        "From: <sip:201@127.0.0.1>;tag=m\r\nTo: <sip:202@127.0.0.1>\r\n"
        "Call-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    (answer,) = only(harness.feed(message, PBX), PBX)
    assert isinstance(answer, Response) and answer.status_code == 405
    assert "INVITE" in (answer.headers.get("Allow") or "")
    assert harness.events("sip.request_refused")[0].fields["status"] == 405


def test_request_uri_decides_never_the_to_header():
    """A premium number in the Request-URI is denied even when To names an allowed one."""
    harness = Harness()
    sneaky = invite("19005551234").replace(
        b"To: <sip:19005551234@127.0.0.1>", b"To: <sip:12125551234@127.0.0.1>")
    sent = harness.feed(sneaky, PBX)
    assert only(sent, TRUNK) == []
    assert harness.attempts[0].dialled == "19005551234"


def test_request_uri_without_a_user_is_denied():
    """An INVITE to sip:host (no number at all) is refused, whatever the To header says."""
    harness = Harness()
    data = invite().replace(b"INVITE sip:12125551234@127.0.0.1:5060", b"INVITE sip:127.0.0.1:5060")
    sent = harness.feed(data, PBX)
    assert only(sent, TRUNK) == []
    assert [m.status_code for m in only(sent, PBX) if isinstance(m, Response)] == [100, 403]


def test_tel_uri_and_escaped_forms_screen_like_the_plain_number():
    """tel:, %-escaped + and user=phone forms of a premium number are all denied."""
    for index, uri in enumerate([b"tel:+1-900-555-1234", b"sip:%2B19005551234@127.0.0.1;user=phone",
                                 b"SIP:+1.900.555.1234;isub=77@127.0.0.1"]):
        harness = Harness()
        data = invite().replace(b"sip:12125551234@127.0.0.1:5060", uri, 1)
        sent = harness.feed(data, PBX)
        assert only(sent, TRUNK) == [], uri
        assert harness.events("call.rejected"), index


def test_billed_length_stops_at_the_bye_not_at_its_answer():
    """A call hung up 90 s after the answer bills 90 s even if the trunk answers the BYE late."""
    harness = Harness()
    _, ok = _answered_call(harness)
    harness.controller.take_finished()
    harness.advance(90.0)
    sent = harness.feed(_in_dialog("BYE", ok, "z9hG4bK-bill", 2), PBX)
    (trunk_bye,) = [m for m in only(sent, TRUNK) if isinstance(m, Request)]
    harness.now += 20.0  # the trunk is slow to answer the BYE
    harness.feed(response_to(trunk_bye, 200, "OK", to_tag=None), TRUNK)
    ((_, seconds, _),) = harness.controller.take_finished()
    assert seconds == 90.0


def test_unknown_method_full_of_legal_token_characters_gets_501():
    """RFC 4475 §3.1.1.2 (intmeth): a valid request whose method nobody defined, with a
    Request-URI user part full of '?', ';', '/', '=' and a password, odd tokens in From,
    escaped controls in To's display name and a UTF-8 extension header, gets 501 with
    Allow, never 400."""
    harness = Harness()
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    message = (
        f"{method} sip:{user}:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-.!%66*_+`'~\r\n"
        'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
        f"<sip:{user}@127.0.0.1>\r\n"
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@127.0.0.1>"
        ";fromParam''~+*_!.-%=\"\u0440\u0430\u0431\u043e\u0442\u0430\";tag=_token~1'+`*%!-.\r\n"
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n"
        f"CSeq: 139122385 {method}\r\nMax-Forwards: 255\r\n"
        "extensionHeader-!.%*+_`'~: \u5927\u505c\u96fb\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    (answer,) = only(harness.feed(message, PBX), PBX)
    assert isinstance(answer, Response) and answer.status_code == 501, answer
    assert "INVITE" in (answer.headers.get("Allow") or "")
    assert harness.events("sip.request_refused")[0].fields["status"] == 501
    assert harness.attempts == []


def test_known_method_outside_a_dialog_still_gets_405():
    """SUBSCRIBE is a method sipguard knows but does not take: 405, not 501."""
    harness = Harness()
    message = (
        "SUBSCRIBE sip:201@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-s1\r\nMax-Forwards: 70\r\n"
        "From: <sip:201@127.0.0.1>;tag=s\r\nTo: <sip:202@127.0.0.1>\r\n"
        "Call-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    (answer,) = only(harness.feed(message, PBX), PBX)
    assert isinstance(answer, Response) and answer.status_code == 405
