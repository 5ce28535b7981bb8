"""PIN challenges end to end: a pjsua2 caller (the PBX), sipguard with its pjsua2 IVR,
and a pjsua2 or SIPp trunk, all over loopback.

The caller dials a number the policy marks ``pin``; sipguard sends the call to its
IVR, which collects the PIN (RFC 4733 or SIP INFO digits); after a correct PIN the
trunk is called and the caller is re-INVITEd with the trunk's SDP, so that RTP flows
straight from the caller to the trunk. No skip: without pjsua2 these tests fail.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pjsua2  # noqa: F401 (fail loudly, never skip, when pjsua2 is missing)
import pytest
from harness import Sipguard

from sipguard.pin.pins import hash_pin, save_pin_file

pytestmark = pytest.mark.e2e

PIN_POLICY = (Path(__file__).resolve().parents[1] / "policies" / "pin.yaml").read_text()
PIN_NUMBER = "12125551234"  # US: the policy asks for a PIN
PINS = {"2001": "246810", "2002": "135790"}
WRONG = "975318"
CALL_TIMEOUT = 10.0  # seconds for the IVR to answer, the trunk to ring, and so on


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "pins.yaml"
    save_pin_file(path, {f"asterisk-1/{extension}": hash_pin(pin)
                         for extension, pin in PINS.items()})
    return path


@pytest.fixture
def pin_sipguard(start_sipguard: Callable[..., Sipguard],
                 pin_file: Path) -> Callable[..., Sipguard]:
    """sipguard with the PIN policy, the PIN file and short IVR timeouts."""

    def start(trunk_uri: str, ivr: dict[str, Any] | None = None,
              pin: dict[str, Any] | None = None) -> Sipguard:
        return start_sipguard(
            trunk_uri, policy=PIN_POLICY,
            pin={"file": str(pin_file), **(pin or {})},
            ivr={"digit_timeout": 3.0, "overall_timeout": 10.0, **(ivr or {})})

    return start


def _target(sipguard: Sipguard, number: str = PIN_NUMBER) -> str:
    host, port = sipguard.address()
    return f"sip:{number}@{host}:{port}"


def _dial(caller: Any, sipguard: Sipguard, extension: str = "2001") -> None:
    caller.call(_target(sipguard), {"X-Sipguard-Extension": extension})


def _in_ivr(caller: Any, sipguard: Sipguard, extension: str = "2001") -> str:
    """Dial and wait until the IVR has the call; return the IVR's RTP address."""
    _dial(caller, sipguard, extension)
    caller.wait_for("state", CALL_TIMEOUT, state="CONFIRMED")
    media = caller.wait_for("media", CALL_TIMEOUT)
    sipguard.wait_for("call.challenged", CALL_TIMEOUT)
    return str(media["remote_rtp"])


def _no_digits_logged(sipguard: Sipguard) -> None:
    text = sipguard.stdout_path.read_text() + sipguard.stderr_path.read_text()
    for pin in (*PINS.values(), WRONG):
        assert pin not in text


def test_right_pin_by_rfc4733_connects_and_rtp_flows_caller_to_trunk(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard]) -> None:
    trunk = agents(answer=True, ring_seconds=0.5)
    sipguard = pin_sipguard(trunk.uri)
    caller = agents()
    ivr_rtp = _in_ivr(caller, sipguard)
    time.sleep(0.5)
    assert int(caller.stats()["rx_packets"]) > 0  # the prompt is streaming from the IVR

    caller.send_dtmf(PINS["2001"] + "#", "rfc4733")
    trunk.wait_for("incoming", CALL_TIMEOUT)
    trunk.wait_for("state", CALL_TIMEOUT, state="CONFIRMED")
    trunk.wait_for("media", CALL_TIMEOUT)
    trunk_rtp = str(trunk.stats()["local_rtp"])
    # The bridging re-INVITE points the caller's media at the trunk, not the IVR.
    moved = caller.wait_for("media", CALL_TIMEOUT, remote_rtp=trunk_rtp)
    assert moved["remote_rtp"] != ivr_rtp
    sipguard.wait_for("call.bridged", CALL_TIMEOUT)
    before = int(trunk.stats()["rx_packets"])
    time.sleep(1.0)
    after = int(trunk.stats()["rx_packets"])
    # 20 ms packets: about 50 a second reach the trunk straight from the caller.
    assert after - before >= 30, (before, after)

    caller.hangup()
    trunk.wait_for("disconnected", CALL_TIMEOUT)
    ended = sipguard.wait_for("call.ended", CALL_TIMEOUT)[0]
    assert ended["pin"] == "accepted" and ended["ended_by"] == "pbx"
    accepted = sipguard.events("call.pin_accepted")
    assert len(accepted) == 1 and accepted[0]["extension"] == "2001"
    _no_digits_logged(sipguard)
    _one_log_stream(sipguard)


def _one_log_stream(sipguard: Sipguard) -> None:
    """Issue 22 item 6: the IVR workers log on the service's stream, one JSON line per
    event (no plain-text lines, no event twice), each with its process and pid."""
    lines = sipguard.stdout_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON
    workers = [event for event in events if event.get("process") == "ivr-worker"]
    assert {event["event"] for event in workers} >= {"ivr.worker_ready", "ivr.answered"}
    assert len({event["pid"] for event in workers if event["event"] == "ivr.worker_ready"}) \
        == len([event for event in workers if event["event"] == "ivr.worker_ready"])
    answered = [event["call_id"] for event in workers if event["event"] == "ivr.answered"]
    assert len(answered) == len(set(answered)) == 1
    assert "ivr." not in sipguard.stderr_path.read_text()


def test_right_pin_by_sip_info_reaches_a_sipp_trunk(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard],
        start_uas: Callable[..., Any]) -> None:
    uas = start_uas("uas_answer.xml")
    sipguard = pin_sipguard(uas.uri)
    caller = agents()
    ivr_rtp = _in_ivr(caller, sipguard)
    caller.send_dtmf(PINS["2001"] + "#", "info")
    sipguard.wait_for("call.bridged", CALL_TIMEOUT)
    moved = caller.wait_for("media", CALL_TIMEOUT)
    assert moved["remote_rtp"] != ivr_rtp
    assert uas.received("INVITE") == 1
    caller.hangup()
    caller.wait_for("disconnected", CALL_TIMEOUT)
    sipguard.wait_for("call.ended", CALL_TIMEOUT)


def test_three_wrong_pins_lock_the_extension_until_the_lock_expires(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard]) -> None:
    trunk = agents(answer=True)
    lock_seconds = 12.0  # outlasts the refusal prompt and the fourth call
    sipguard = pin_sipguard(trunk.uri, pin={"lock_seconds": lock_seconds})
    caller = agents()
    _in_ivr(caller, sipguard)
    for attempt in (1, 2, 3):
        caller.send_dtmf(WRONG + "#", "rfc4733")
        if attempt < 3:
            sipguard.wait_for("call.pin_wrong", CALL_TIMEOUT, count=attempt)
    # The third wrong PIN locks the extension; the IVR plays the refusal and hangs up.
    locked = sipguard.wait_for("pin.locked", CALL_TIMEOUT)[0]
    assert locked["level"] == "warning" and locked["extension"] == "2001"
    refused = sipguard.wait_for("call.pin_refused", CALL_TIMEOUT)[0]
    assert refused["pin"] == "locked"
    caller.wait_for("disconnected", 15.0)
    locked_at = time.monotonic()

    # A fourth try with the right PIN is still refused while the lock holds.
    _in_ivr(caller, sipguard)
    caller.send_dtmf(PINS["2001"] + "#", "rfc4733")
    second = sipguard.wait_for("call.pin_refused", CALL_TIMEOUT, count=2)[1]
    assert second["pin"] == "locked"
    caller.wait_for("disconnected", 15.0)
    assert not [event for event in trunk.events if event["event"] == "incoming"]

    # Once it expires the right PIN goes through.
    time.sleep(max(0.0, locked_at + lock_seconds + 0.5 - time.monotonic()))
    _in_ivr(caller, sipguard)
    caller.send_dtmf(PINS["2001"] + "#", "rfc4733")
    trunk.wait_for("incoming", CALL_TIMEOUT)
    sipguard.wait_for("call.bridged", CALL_TIMEOUT)
    caller.hangup()
    sipguard.wait_for("call.ended", CALL_TIMEOUT, count=3)
    _no_digits_logged(sipguard)


def test_caller_hangs_up_during_the_prompt(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard]) -> None:
    trunk = agents(answer=True)
    sipguard = pin_sipguard(trunk.uri)
    caller = agents()
    _in_ivr(caller, sipguard)
    caller.send_dtmf("24", "rfc4733")  # a PIN half typed
    time.sleep(0.5)
    caller.hangup()
    caller.wait_for("disconnected", CALL_TIMEOUT)
    ended = sipguard.wait_for("call.ended", CALL_TIMEOUT)[0]
    assert ended["ended_by"] == "pbx"
    assert sipguard.events("call.forwarded") == []
    assert not [event for event in trunk.events if event["event"] == "incoming"]


def test_cancel_before_the_ivr_answers(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard]) -> None:
    trunk = agents(answer=True)
    sipguard = pin_sipguard(trunk.uri, ivr={"answer_after": 5.0})
    caller = agents()
    _dial(caller, sipguard)
    caller.wait_for("state", CALL_TIMEOUT, state="EARLY")  # the IVR's 180, relayed
    caller.hangup()  # CANCEL
    caller.wait_for("disconnected", CALL_TIMEOUT)
    ended = sipguard.wait_for("call.ended", CALL_TIMEOUT)[0]
    assert ended["status"] == 487 and ended["ended_by"] == "pbx"
    # The IVR's INVITE was cancelled too: it holds no session, sipguard no call.
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        stats = sipguard.stats()
        if (stats["calls"], stats["ivr_sessions"]) == (0, 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (stats["calls"], stats["ivr_sessions"]) == (0, 0), stats
    assert sipguard.events("call.forwarded") == []


def test_no_digits_at_all_times_out_and_is_refused(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard]) -> None:
    trunk = agents(answer=True)
    sipguard = pin_sipguard(trunk.uri, ivr={"overall_timeout": 3.0})
    caller = agents()
    _in_ivr(caller, sipguard)
    refused = sipguard.wait_for("call.pin_refused", 10.0)[0]
    assert refused["pin"] == "timeout"
    caller.wait_for("disconnected", 15.0)  # after the refusal prompt
    assert sipguard.events("call.forwarded") == []


def test_two_pin_calls_at_once_from_different_extensions(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard],
        start_uas: Callable[..., Any]) -> None:
    uas = start_uas("uas_answer.xml")
    sipguard = pin_sipguard(uas.uri)
    first, second = agents(), agents()
    _in_ivr(first, sipguard, "2001")
    _in_ivr(second, sipguard, "2002")
    first.send_dtmf(PINS["2001"] + "#", "rfc4733")
    second.send_dtmf(PINS["2002"] + "#", "info")
    bridged = sipguard.wait_for("call.bridged", CALL_TIMEOUT, count=2)
    assert sorted(event["extension"] for event in bridged) == ["2001", "2002"]
    assert uas.received("INVITE") == 2
    for caller in (first, second):
        caller.hangup()
        caller.wait_for("disconnected", CALL_TIMEOUT)
    sipguard.wait_for("call.ended", CALL_TIMEOUT, count=2)


def test_sipp_pin_scenarios_right_and_wrong(
        pin_sipguard: Callable[..., Sipguard], start_uas: Callable[..., Any],
        run_uac: Callable[..., Any]) -> None:
    uas = start_uas("uas_answer.xml")
    sipguard = pin_sipguard(uas.uri, ivr={"attempts_per_call": 1})
    digits = [arg for index, digit in enumerate(PINS["2001"], 1)
              for arg in ("-set", f"d{index}", digit)]
    right = run_uac("uac_pin.xml", _target(sipguard).split("@", 1)[1],
                    service=PIN_NUMBER, extra=digits)
    assert right.successful == 1, right
    wrong_digits = [arg for index, digit in enumerate(WRONG, 1)
                    for arg in ("-set", f"d{index}", digit)]
    wrong = run_uac("uac_pin_refused.xml", _target(sipguard).split("@", 1)[1],
                    service=PIN_NUMBER, extra=wrong_digits)
    assert wrong.successful == 1, wrong
    outcomes = [event["pin"] for event in sipguard.wait_for("call.ended", CALL_TIMEOUT,
                                                              count=2)]
    assert outcomes == ["accepted", "wrong"]
    assert uas.received("INVITE") == 1


def _ivr_workers(sipguard: Sipguard) -> list[int]:
    """The PIDs of sipguard's IVR worker processes (those of its children that are; the
    call records' writer is another)."""
    children = Path(f"/proc/{sipguard.process.pid}/task/{sipguard.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()
            if b"sipguard.pin.ivr.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_worker_that_dies_mid_challenge_ends_its_call_and_is_replaced(
        agents: Callable[..., Any], pin_sipguard: Callable[..., Sipguard]) -> None:
    trunk = agents(answer=True)
    sipguard = pin_sipguard(trunk.uri, ivr={"workers": 1})
    workers = _ivr_workers(sipguard)
    assert len(workers) == 1
    caller = agents()
    _in_ivr(caller, sipguard)
    os.kill(workers[0], signal.SIGKILL)  # the one worker we started through sipguard
    caller.wait_for("disconnected", CALL_TIMEOUT)
    ended = sipguard.wait_for("call.ended", CALL_TIMEOUT)[0]
    assert ended["reason"] == "the PIN IVR stopped"
    # The pool starts a new worker; the next caller is served by it.
    sipguard.wait_for("ivr.workers_changed", CALL_TIMEOUT,
                      where=lambda event: event["workers"] == 1)
    assert _ivr_workers(sipguard) != workers
    _in_ivr(caller, sipguard)
    caller.send_dtmf(PINS["2001"] + "#", "rfc4733")
    sipguard.wait_for("call.bridged", CALL_TIMEOUT)
    caller.hangup()
    sipguard.wait_for("call.ended", CALL_TIMEOUT, count=2)


def test_challenges_beyond_the_ivr_capacity_are_refused_with_403(
        pin_sipguard: Callable[..., Sipguard], start_uas: Callable[..., Any],
        start_uac: Callable[..., Any]) -> None:
    uas = start_uas("uas_answer.xml")
    sipguard = pin_sipguard(uas.uri, ivr={"workers": 1})
    started = sipguard.events("service.started")[0]
    assert started["ivr_capacity"] == 4  # the pjsua2 wheel's PJSUA_MAX_CALLS
    digits = [arg for index, digit in enumerate(PINS["2001"], 1)
              for arg in ("-set", f"d{index}", digit)]
    # Six callers at once, each staying in the IVR for a while (uac_pin's 300 ms pause
    # before the digits, then seven INFOs): four are served, two refused, none hangs.
    run = start_uac("uac_pin.xml", _target(sipguard).split("@", 1)[1], service=PIN_NUMBER,
                    calls=6, rate=100, extra=[*digits, "-l", "6"])
    result = run.finish()
    refused = sipguard.wait_for("call.rejected", CALL_TIMEOUT,
                                where=lambda event: event["reason"] == "PIN service unavailable")
    bridged = sipguard.events("call.bridged")
    assert len(bridged) + len(refused) == 6, (len(bridged), len(refused))
    assert len(bridged) == result.successful >= 4
    assert all(event["detail"] == "every PIN IVR is busy" for event in refused)
