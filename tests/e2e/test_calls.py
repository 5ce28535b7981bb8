"""End-to-end calls through a real sipguard process, driven by SIPp over loopback.

The PBX is a SIPp UAC, the carrier trunk a SIPp UAS (or a silent socket); the
scenarios are the ones in tests/sip_fixtures/, which testers also run by hand.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from harness import (
    BlackHole,
    Sipguard,
    SippMessage,
    SippResult,
    SippRun,
    SippUas,
    udp_invite_transaction,
)

pytestmark = pytest.mark.e2e

ALLOWED = "12125551234"
BLOCKED = "19005551234"

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]
StartUac = Callable[..., SippRun]


# Short timers so finished transactions go away in seconds: Timers B, F, H and J = 64*T1
# = 6.4 s, Timers D, I and K = 1 s.
SHORT_TIMERS = {"t1": 0.1, "t4": 1.0, "timer_d": 1.0}


def wait_for_idle(guard: Sipguard, timeout: float) -> dict[str, object]:
    """Poll SIGUSR1 stats until calls, dialogs and transactions are all 0 (or time runs out);
    return the last stats event."""
    deadline = time.monotonic() + timeout
    stats = guard.stats()
    while time.monotonic() < deadline and any(
        stats.get(counter) != 0 for counter in ("calls", "dialogs", "transactions")
    ):
        time.sleep(0.5)
        stats = guard.stats()
    return stats


def assert_all_calls_succeeded(result: SippResult, calls: int) -> None:
    """SIPp exited 0 and counted every call as successful."""
    assert result.returncode == 0, result.describe()
    assert result.successful == calls, result.describe()
    assert result.failed == 0, result.describe()


def call_ids(messages: list[SippMessage]) -> set[str | None]:
    """The Call-IDs of some messages."""
    return {message.header("Call-ID") for message in messages}


def test_call_with_bye_from_caller_completes(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """Calls answered by the trunk and hung up by the PBX complete, on new Call-IDs."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_call_bye.xml", guard.target(), calls=3, extra=["-d", "300"])

    assert_all_calls_succeeded(result, 3)
    guard.wait_for("call.answered", count=3)
    guard.wait_for("call.ended", count=3)
    assert uas.wait_for_received("BYE ", 3) >= 3, uas.describe()
    uas.stop()
    trunk_invites = uas.messages("received", "INVITE ")
    assert len(call_ids(trunk_invites)) == 3, uas.describe()
    # A B2BUA, not a proxy: the trunk leg is a dialog of its own (DESIGN.md step 6).
    assert call_ids(trunk_invites).isdisjoint(call_ids(result.messages("sent", "INVITE ")))


def test_call_with_bye_from_callee_completes(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """Calls the trunk hangs up complete: its BYE reaches the PBX and the 200 gets back."""
    uas = start_uas("uas_answer_bye.xml", extra=["-d", "300"])
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_call_wait_bye.xml", guard.target(), calls=2)

    assert_all_calls_succeeded(result, 2)
    assert len(result.messages("received", "BYE ")) >= 2, result.describe()
    guard.wait_for("call.ended", count=2)
    # The answers to the trunk's BYEs (the 200s for the INVITEs go the other way).
    assert uas.wait_for_received("SIP/2.0 200", 2) >= 2, uas.describe()


def test_requests_inside_the_dialog_are_relayed(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A re-INVITE (hold), an INFO (DTMF) and an UPDATE from the PBX reach the trunk and are answered."""
    uas = start_uas("uas_answer_midcall.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_call_midcall.xml", guard.target(), calls=2, extra=["-d", "100"])

    assert_all_calls_succeeded(result, 2)
    guard.wait_for("call.ended", count=2)
    assert uas.wait_for_received("BYE ", 2) >= 2, uas.describe()
    uas.stop()
    invites = uas.messages("received", "INVITE ")
    assert sum(1 for m in invites if "a=sendonly" in m.text) >= 2, uas.describe()
    infos = uas.messages("received", "INFO ")
    assert len(infos) >= 2 and all("Signal=5" in m.text for m in infos), uas.describe()
    assert uas.received("UPDATE ") >= 2, uas.describe()


def test_reinvite_from_the_trunk_is_relayed_to_the_pbx(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A hold re-INVITE from the trunk reaches the PBX with its SDP and the PBX's answer
    gets back, before the trunk hangs up."""
    uas = start_uas("uas_answer_reinvite_bye.xml", extra=["-d", "200"])
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_call_callee_reinvite.xml", guard.target(), calls=2)

    assert_all_calls_succeeded(result, 2)
    reinvites = [m for m in result.messages("received", "INVITE ") if "a=sendonly" in m.text]
    assert len(reinvites) >= 2, result.describe()
    guard.wait_for("call.ended", count=2)
    answers = [m for m in uas.messages("received", "SIP/2.0 200") if "a=recvonly" in m.text]
    assert len(answers) >= 2, uas.describe()


def test_reliable_provisional_and_prack_are_relayed(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A trunk's reliable 183 reaches the PBX, whose PRACK reaches the trunk (RFC 3262)."""
    uas = start_uas("uas_answer_prack.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_call_prack.xml", guard.target(), calls=2, extra=["-d", "200"])

    assert_all_calls_succeeded(result, 2)
    assert uas.wait_for_received("BYE ", 2) >= 2, uas.describe()
    pracks = uas.messages("received", "PRACK ")
    assert len(call_ids(pracks)) == 2, uas.describe()
    # The trunk sent RSeq 1 on each call; the RAck it gets back must name that 183.
    assert all((m.header("RAck") or "").split()[:1] == ["1"] for m in pracks), [
        m.header("RAck") for m in pracks
    ]


@pytest.mark.parametrize("number", [BLOCKED, "+19765550123"])
def test_blocked_prefix_gets_403_and_never_reaches_the_trunk(
    number: str, start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A premium-rate number gets 403, and neither its INVITE nor its ACK reaches the trunk."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_blocked.xml", guard.target(), service=number)

    assert_all_calls_succeeded(result, 1)
    guard.wait_for("call.rejected", where=lambda event: event.get("status") == 403)
    assert not guard.events("call.forwarded"), guard.describe()
    uas.stop()
    assert uas.messages("received") == [], uas.describe()


@pytest.mark.parametrize(
    ("number", "category"),
    [
        ("011535123456", "destination not allowed"),  # Cuba, a high-risk IRSF destination
        ("0113712345678", "destination not allowed"),  # Latvia, default denied... and IRSF
        ("+4412345", "destination not allowed"),  # not a valid number at all
        ("9011%2A123%23", "number not dialable"),  # *123# behind escapes: not a number
    ],
)
def test_denied_destinations_get_403_with_a_public_reason(
    number: str, category: str, start_uas: StartUas, start_sipguard: StartSipguard,
    run_uac: RunUac,
) -> None:
    """Denied countries, invalid and undialable numbers get 403 whose Reason names the category."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_blocked.xml", guard.target(), service=number)

    assert_all_calls_succeeded(result, 1)
    (rejected,) = guard.wait_for("call.rejected", where=lambda event: event.get("status") == 403)
    assert rejected["category"] == category, rejected
    uas.stop()
    assert uas.messages("received") == [], uas.describe()


def test_emergency_call_forwards_under_a_deny_all_policy(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """911 is forwarded and completes even when the policy denies every destination."""
    uas = start_uas("uas_answer.xml")
    deny_all = (
        "accounts:\n  - {name: asterisk-1, home_region: US, may_dial: []}\n"
        "destinations: {default: deny}\n"
    )
    guard = start_sipguard(uas.uri, policy=deny_all)

    result = run_uac("uac_call_bye.xml", guard.target(), service="911")

    assert_all_calls_succeeded(result, 1)
    (screened,) = guard.wait_for("call.screened")
    assert screened["rule"] == "emergency" and screened["action"] == "allow", screened
    assert uas.wait_for_received("BYE ", 1) == 1, uas.describe()


def test_cancel_while_ringing_gives_487(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A CANCEL while the trunk rings gives the PBX 487; the trunk gets the CANCEL and the ACK."""
    uas = start_uas("uas_ring_cancel.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_cancel.xml", guard.target(), extra=["-d", "300"])

    assert_all_calls_succeeded(result, 1)
    assert uas.wait_for_received("CANCEL ", 1) >= 1, uas.describe()
    # The hop-by-hop ACK for the trunk's 487 (RFC 3261 §17.1.1.3).
    assert uas.wait_for_received("ACK ", 1) >= 1, uas.describe()
    assert not guard.events("call.answered"), guard.describe()


def test_cancel_before_ringing_gives_487_promptly(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A CANCEL after the trunk's 100 Trying but before any ringing gives the PBX its 487
    within a second, and the trunk gets the CANCEL and its ACK."""
    uas = start_uas("uas_trying_cancel.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_cancel_early.xml", guard.target(), extra=["-d", "300"])

    assert_all_calls_succeeded(result, 1)
    (cancel,) = result.messages("sent", "CANCEL ")[:1]
    (final,) = result.messages("received", "SIP/2.0 487")[:1]
    assert final.timestamp - cancel.timestamp < 1.0, result.describe()
    assert uas.wait_for_received("CANCEL ", 1) >= 1, uas.describe()
    assert uas.wait_for_received("ACK ", 1) >= 1, uas.describe()


@pytest.mark.parametrize(
    ("uas_scenario", "uac_scenario", "status"),
    [("uas_busy.xml", "uac_busy.xml", 486), ("uas_unavailable.xml", "uac_unavailable.xml", 503)],
)
def test_trunk_failure_is_relayed_with_the_same_code(
    uas_scenario: str,
    uac_scenario: str,
    status: int,
    start_uas: StartUas,
    start_sipguard: StartSipguard,
    run_uac: RunUac,
) -> None:
    """The trunk's 486 or 503 reaches the PBX unchanged, and the trunk gets its ACK."""
    uas = start_uas(uas_scenario)
    guard = start_sipguard(uas.uri)

    result = run_uac(uac_scenario, guard.target())

    assert_all_calls_succeeded(result, 1)
    guard.wait_for("call.failed", where=lambda event: event.get("status") == status)
    assert uas.wait_for_received("ACK ", 1) >= 1, uas.describe()


def test_silent_trunk_times_out_with_timer_b(
    black_hole: BlackHole, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A trunk that never answers gives the PBX 408 (or 503) by Timer B, with one call.failed."""
    t1 = 0.1
    timer_b = 64 * t1  # RFC 3261 §17.1.1.2
    guard = start_sipguard(black_hole.uri, sip={"t1": t1})

    result = run_uac("uac_timeout.xml", guard.target(), timeout=timer_b + 10)

    assert_all_calls_succeeded(result, 1)
    (invite,) = result.messages("sent", "INVITE ")[:1]
    finals = [
        message
        for message in result.messages("received", "SIP/2.0 ")
        if message.start_line.split()[1] in ("408", "503")
    ]
    assert finals, result.describe()
    waited = finals[0].timestamp - invite.timestamp
    assert waited <= timer_b + 2.0, f"final response after {waited:.1f} s"
    (failed,) = guard.wait_for("call.failed")
    assert failed.get("status") in (408, 503), guard.describe()
    assert finals[0].start_line.split()[1] == str(failed["status"])
    time.sleep(1.0)  # a second call.failed for the same call would come about now
    assert len(guard.events("call.failed")) == 1, guard.describe()
    # Timer A: over UDP the INVITE to the trunk is retransmitted (RFC 3261 §17.1.1.2).
    assert black_hole.requests("INVITE") >= 2


def test_trunk_answer_is_acked_when_the_pbx_hangs_up_before_acking(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A PBX that sends BYE without ever ACKing still gets its call ended, and the trunk's
    200 still gets an ACK (RFC 3261 §13.2.2.4) as well as the BYE."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_call_no_ack.xml", guard.target(), extra=["-d", "200"])

    assert_all_calls_succeeded(result, 1)
    assert uas.wait_for_received("BYE ", 1) >= 1, uas.describe()
    assert uas.wait_for_received("ACK ", 1, timeout=3.0) >= 1, uas.describe()


def test_calls_complete_with_ten_percent_loss_at_the_pbx(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """With 10% of the PBX side's messages lost, all 50 calls still complete, once each."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac(
        "uac_call_bye.xml",
        guard.target(),
        calls=50,
        rate=25,
        timeout=60,
        extra=["-d", "200", "-lost", "10"],
    )

    assert_all_calls_succeeded(result, 50)
    assert uas.wait_for_received("BYE ", 50) >= 50, uas.describe()
    uas.stop()
    # Retransmitted INVITEs from the PBX must not become second calls to the trunk.
    assert len(call_ids(uas.messages("received", "INVITE "))) == 50, uas.describe()


def test_callee_hangups_complete_with_ten_percent_loss_at_the_pbx(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """With 10% loss at the PBX, 30 calls the trunk hangs up complete: sipguard retransmits
    its BYE to the PBX until the 200 gets through (RFC 3261 §17.1.2.2)."""
    uas = start_uas("uas_answer_bye.xml", extra=["-d", "300"])
    guard = start_sipguard(uas.uri)

    result = run_uac(
        "uac_call_wait_bye.xml",
        guard.target(),
        calls=30,
        rate=25,
        timeout=60,
        extra=["-lost", "10"],
    )

    assert_all_calls_succeeded(result, 30)
    guard.wait_for("call.ended", count=30)


def test_blocked_calls_stay_blocked_with_ten_percent_loss_at_the_pbx(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """With 10% loss at the PBX, 30 blocked calls all get their 403 (retransmitted until
    ACKed) and nothing, not even a retransmitted INVITE, reaches the trunk."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac(
        "uac_blocked.xml",
        guard.target(),
        service=BLOCKED,
        calls=30,
        rate=25,
        timeout=60,
        extra=["-lost", "10"],
    )

    assert_all_calls_succeeded(result, 30)
    guard.wait_for("call.rejected", count=30)
    uas.stop()
    assert uas.messages("received") == [], uas.describe()


def test_calls_complete_with_ten_percent_loss_at_the_trunk(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """With 10% of the trunk side's messages lost, calls complete (sipguard retransmits its
    INVITEs and BYEs and ACKs every retransmitted 200) and no call state is left.

    SIPp's UAS itself sometimes gives up on a call when its 180 and 200 are both lost and
    our retransmitted INVITE reaches it ("Unexpected UDP message received"); sipguard then
    answers that call 408 at Timer B, which is right. So at most 3 of 30 calls may end with
    408 — never any other failure — and every call, completed or not, leaves no state.
    """
    uas = start_uas("uas_answer.xml", extra=["-lost", "10"])
    guard = start_sipguard(uas.uri, sip=SHORT_TIMERS)

    result = run_uac(
        "uac_call_bye.xml", guard.target(), calls=30, rate=25, timeout=60, extra=["-d", "300"]
    )

    failed = guard.events("call.failed")
    assert all(event.get("status") == 408 for event in failed), failed
    assert result.successful >= 27 and result.successful + len(failed) == 30, result.describe()
    guard.wait_for("call.ended", count=result.successful)
    stats = wait_for_idle(guard, timeout=20.0)
    assert (stats.get("calls"), stats.get("dialogs"), stats.get("transactions")) == (0, 0, 0), stats


def test_no_state_is_left_after_500_calls(
    start_uas: StartUas, start_sipguard: StartSipguard, start_uac: StartUac
) -> None:
    """After 500 calls at 100/s and the transaction timers, SIGUSR1 stats show nothing left."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, sip=SHORT_TIMERS)

    run = start_uac("uac_call_bye.xml", guard.target(), calls=500, rate=100, timeout=60)
    guard.wait_for("call.ended", count=100, timeout=30)
    busy = guard.stats()  # the counters must count something, or "0 at the end" means nothing
    result = run.finish()

    assert_all_calls_succeeded(result, 500)
    assert busy.get("transactions", 0) > 0, busy
    stats = wait_for_idle(guard, timeout=20.0)
    assert stats.get("calls") == 0, stats
    assert stats.get("transactions") == 0, stats
    assert stats.get("dialogs") == 0, stats


def test_options_ping_is_answered_locally(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """An OPTIONS ping from the PBX gets 200 from sipguard and is not relayed to the trunk."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    result = run_uac("uac_options.xml", guard.target(), service="sipguard")

    assert_all_calls_succeeded(result, 1)
    uas.stop()
    assert uas.received("OPTIONS ") == 0, uas.describe()


def test_call_over_ipv6_loopback_completes(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """A call from a PBX on [::1] to a trunk on [::1] completes."""
    uas = start_uas("uas_answer.xml", host="::1")
    guard = start_sipguard(uas.uri, listen=["udp:[::1]:0"], peers=["::1/128"])
    host, _ = guard.address()
    assert host == "::1"

    result = run_uac("uac_call_bye.xml", guard.target(), host="::1", extra=["-d", "200"])

    assert_all_calls_succeeded(result, 1)
    guard.wait_for("call.ended")


def test_unknown_source_gets_403(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """An INVITE from an address that is not a configured peer gets 403 and goes nowhere."""
    uas = start_uas("uas_answer.xml")
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): configured, never contacted.
    guard = start_sipguard(uas.uri, peers=["192.0.2.10/32"])

    result = run_uac("uac_blocked.xml", guard.target(), service=ALLOWED)

    assert_all_calls_succeeded(result, 1)
    (rejected,) = guard.wait_for("call.rejected", timeout=5)
    assert rejected["status"] == 403, rejected
    uas.stop()
    assert uas.messages("received") == [], uas.describe()


def test_sigterm_when_idle_exits_zero(start_sipguard: StartSipguard, black_hole: BlackHole) -> None:
    """SIGTERM with no call in progress stops the service promptly with exit code 0."""
    guard = start_sipguard(black_hole.uri, drain_grace=5)

    began = time.monotonic()
    guard.process.send_signal(signal.SIGTERM)
    returncode = guard.process.wait(timeout=10)

    assert returncode == 0, guard.describe()
    assert time.monotonic() - began < 5.0, "an idle service should not wait out drain_grace"
    guard.wait_for("service.stopped", timeout=2)


def test_sigterm_lets_a_call_in_progress_finish(
    start_uas: StartUas, start_sipguard: StartSipguard, start_uac: StartUac
) -> None:
    """SIGTERM during a call drains it: the call still ends normally, then the exit code is 0."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, drain_grace=5)
    call = start_uac("uac_call_bye.xml", guard.target(), timeout=15, extra=["-d", "1500"])
    guard.wait_for("call.answered")

    guard.process.send_signal(signal.SIGTERM)
    result = call.finish()
    returncode = guard.process.wait(timeout=10)

    assert_all_calls_succeeded(result, 1)
    assert returncode == 0, guard.describe()
    guard.wait_for("call.ended", timeout=2)


def test_max_forwards_zero_gets_483(start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """An INVITE with Max-Forwards: 0 gets 483 Too Many Hops and goes no further."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri)

    responses = udp_invite_transaction(guard.address(), ALLOWED, Max_Forwards="0")

    finals = [r.split(None, 2)[1] for r in responses if not r.startswith("SIP/2.0 1")]
    assert finals == ["483"], responses  # RFC 3261 §16.3 step 3
    uas.stop()
    assert uas.messages("received") == [], uas.describe()
