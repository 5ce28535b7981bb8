"""The pjsua2 PIN IVR, called directly by a pjsua2 test user agent over loopback.

PjsuaIvr runs inside this process on an asyncio loop in a helper thread (one pjsua2
library per process: each test starts and stops its own IVR, which libDestroy then
libCreate again allows); the caller is tests/agents/pjsua_agent.py in a subprocess.
No skip: if pjsua2 cannot be imported these tests fail.
"""

from __future__ import annotations

import asyncio
import io
import json
import queue
import secrets
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pjsua2  # noqa: F401 (fail loudly, never skip, when pjsua2 is missing)
import pytest
from harness import load_agent_client

from sipguard import logs
from sipguard.pin.ivr.pjsua import PjsuaIvr, prompt_seconds
from sipguard.pin.ivr.port import TOKEN_HEADER, IvrConfig, IvrResult

pytestmark = pytest.mark.e2e




Agent = load_agent_client().Agent

CALL_TIMEOUT = 5.0  # seconds for a call to be answered
RESULT_SLACK = 3.0  # seconds beyond the configured timeouts a result may take
TEST_CONFIG = IvrConfig(digit_timeout=3.0, overall_timeout=8.0, max_digits=12, max_sessions=4)


class IvrRunner:
    """An asyncio loop in a thread, with a PjsuaIvr started on it; results in a queue."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.results: queue.Queue[IvrResult] = queue.Queue()
        self.ivr: PjsuaIvr | None = None

    def run(self, coro: Any, timeout: float = 15.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, config: IvrConfig) -> PjsuaIvr:
        ivr = PjsuaIvr(config)
        self.run(ivr.start(self.results.put))
        self.ivr = ivr
        return ivr

    def stop(self) -> None:
        if self.ivr is not None:
            self.run(self.ivr.stop())
            self.ivr = None

    def result(self, timeout: float) -> IvrResult:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no IvrResult within {timeout} s") from None

    def no_result(self, wait: float) -> None:
        try:
            result = self.results.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected {result}")

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def runner() -> Iterator[IvrRunner]:
    runner = IvrRunner()
    try:
        yield runner
    finally:
        runner.close()


StartIvr = Callable[..., PjsuaIvr]


@pytest.fixture
def start_ivr(runner: IvrRunner) -> Iterator[StartIvr]:
    def start(**overrides: Any) -> PjsuaIvr:
        return runner.start(replace(TEST_CONFIG, **overrides))

    try:
        yield start
    finally:
        runner.stop()
        while not runner.results.empty():
            runner.results.get_nowait()


@pytest.fixture
def agent() -> Iterator[Any]:
    with Agent() as agent:
        yield agent


def call_ivr(agent: Any, ivr: PjsuaIvr, token: str | None = None) -> None:
    host, port = ivr.address
    agent.call(f"sip:pin@{host}:{port}", {TOKEN_HEADER: ivr.token if token is None else token})


def answered(agent: Any, ivr: PjsuaIvr) -> None:
    call_ivr(agent, ivr)
    agent.wait_for("state", CALL_TIMEOUT, state="CONFIRMED")
    agent.wait_for("media", CALL_TIMEOUT)


@pytest.mark.parametrize("method", ["rfc4733", "info", "info-dtmf"])
def test_digits_are_collected(runner: IvrRunner, start_ivr: StartIvr, agent: Any,
                              method: str) -> None:
    ivr = start_ivr()
    answered(agent, ivr)
    agent.send_dtmf("4*1234567#", method=method)  # '*' clears what came before
    result = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
    assert result.outcome == "entered"
    assert result.digits == "1234567"
    assert result.call_id == agent.wait_for("calling", 1)["call_id"]
    if method != "rfc4733":  # every INFO was answered 200 (pjsua alone says 500 to application/dtmf)
        statuses = [agent.wait_for("response", 5, method="INFO")["status"] for _ in range(10)]
        assert statuses == [200] * 10
    assert ivr.active_sessions == 1
    agent.hangup()
    agent.wait_for("disconnected", CALL_TIMEOUT)
    runner.no_result(0.5)  # the round already had its result


def test_max_digits_ends_entry(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr(max_digits=6)
    answered(agent, ivr)
    agent.send_dtmf("12345678", method="info")
    result = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
    assert (result.outcome, result.digits) == ("entered", "123456")


def test_no_digits_times_out(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr(overall_timeout=2.0)
    answered(agent, ivr)
    result = runner.result(2.0 + RESULT_SLACK)
    assert (result.outcome, result.digits) == ("timeout", "")


def test_inter_digit_timeout(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr(digit_timeout=1.0, overall_timeout=20.0)
    answered(agent, ivr)
    agent.send_dtmf("12", method="info")
    result = runner.result(1.0 + RESULT_SLACK)
    assert (result.outcome, result.digits) == ("timeout", "12")


def test_wrong_token_is_refused_403(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr()
    call_ivr(agent, ivr, token="not-the-token")
    assert agent.wait_for("disconnected", CALL_TIMEOUT)["status"] == 403
    host, port = ivr.address
    agent.call(f"sip:pin@{host}:{port}")  # no token header at all
    assert agent.wait_for("disconnected", CALL_TIMEOUT)["status"] == 403
    assert ivr.active_sessions == 0
    runner.no_result(0.5)


def _raw_invite(sock: socket.socket, ivr: PjsuaIvr, token: bytes) -> int:
    """Send an INVITE carrying ``token`` (raw bytes) from ``sock``; the final status
    (the ACK of a non-2xx final response is sent too). Every wait is bounded."""
    host, port = ivr.address
    local_port = sock.getsockname()[1]
    branch = "z9hG4bK" + secrets.token_hex(8)
    call_id = secrets.token_hex(8) + "@127.0.0.1"
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
           b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    common = (f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
              f"From: <sip:raw@127.0.0.1:{local_port}>;tag=raw1\r\n"
              f"Call-ID: {call_id}\r\nMax-Forwards: 70\r\n").encode()
    invite = (f"INVITE sip:pin@{host}:{port} SIP/2.0\r\n".encode() + common
              + f"To: <sip:pin@{host}:{port}>\r\nCSeq: 1 INVITE\r\n".encode()
              + f"Contact: <sip:raw@127.0.0.1:{local_port}>\r\n".encode()
              + TOKEN_HEADER.encode() + b": " + token + b"\r\n"
              + b"Content-Type: application/sdp\r\n"
              + f"Content-Length: {len(sdp)}\r\n\r\n".encode() + sdp)
    sock.sendto(invite, (host, port))
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            raise AssertionError(f"no final response within {CALL_TIMEOUT} s") from None
        status = int(data.split(b" ", 2)[1])
        if status >= 200:
            break
    to_header = next(line for line in data.split(b"\r\n") if line.lower().startswith(b"to:"))
    ack = (f"ACK sip:pin@{host}:{port} SIP/2.0\r\n".encode() + common + to_header
           + b"\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
    sock.sendto(ack, (host, port))
    return status


def test_non_ascii_token_is_refused_403(runner: IvrRunner, start_ivr: StartIvr,
                                        agent: Any) -> None:
    # Non-ASCII text made hmac.compare_digest(str, str) raise inside onIncomingCall,
    # which left the INVITE unanswered and its call slot taken.
    ivr = start_ivr(max_sessions=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert _raw_invite(sock, ivr, "t\u00f6k\u00e9n".encode()) == 403  # UTF-8, not ASCII
        assert _raw_invite(sock, ivr, b"\xff\xfe" + ivr.token.encode()) == 403  # not UTF-8
    assert ivr.active_sessions == 0
    answered(agent, ivr)  # the only slot is free: a normal call is still served
    agent.send_dtmf("2468#", method="info")
    result = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
    assert (result.outcome, result.digits) == ("entered", "2468")


def test_debug_logs_carry_no_digits(runner: IvrRunner, start_ivr: StartIvr,
                                    agent: Any) -> None:
    stream = io.StringIO()
    logs.configure("debug", "json", stream)  # before start: it sets pjsip's level
    try:
        ivr = start_ivr()
        answered(agent, ivr)
        agent.send_dtmf("97", method="info-dtmf")
        agent.send_dtmf("53", method="info")
        for _ in range(4):
            agent.wait_for("response", 5, method="INFO")
        agent.send_dtmf("18#", method="rfc4733")
        result = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
        assert result.outcome == "entered"
        assert sorted(result.digits) == sorted("975318")  # the agent may reorder the methods
        agent.hangup()
        agent.wait_for("disconnected", CALL_TIMEOUT)
    finally:
        logs.configure()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(line["event"] == "ivr.pjsip" for line in lines)  # pjsip's log, at debug
    text = stream.getvalue()
    for leak in ("Signal", "dtmf", "INFO sip:", "SIP/2.0", "length=", "digit"):
        assert leak.lower() not in text.lower(), leak


def test_hangup_during_prompt(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr()
    answered(agent, ivr)
    agent.send_dtmf("12", method="info")
    agent.wait_for("response", 5, method="INFO")
    agent.hangup()
    result = runner.result(RESULT_SLACK)
    assert result.outcome == "hangup"
    assert ivr.active_sessions == 0


def test_refuse_plays_refusal_then_bye(runner: IvrRunner, start_ivr: StartIvr,
                                       agent: Any) -> None:
    ivr = start_ivr()
    answered(agent, ivr)
    agent.send_dtmf("000000#", method="info")
    result = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
    assert result.outcome == "entered"
    refusal = prompt_seconds(TEST_CONFIG.prompt("refused"))
    ivr.instruct(result.call_id, "refuse")
    # The BYE comes from the IVR (status 200: the call was cleared normally by the far
    # end), after the prompt has played.
    disconnected = agent.wait_for("disconnected", refusal + RESULT_SLACK)
    assert disconnected["status"] == 200
    last = agent.events.index(disconnected)
    assert not any(e["event"] == "response" and e["method"] == "BYE" for e in agent.events[:last])
    runner.no_result(0.5)


def test_retry_collects_again(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr()
    answered(agent, ivr)
    agent.send_dtmf("111111#", method="info")
    first = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
    assert (first.outcome, first.digits) == ("entered", "111111")
    ivr.instruct(first.call_id, "retry")
    agent.send_dtmf("222222#", method="rfc4733")
    second = runner.result(TEST_CONFIG.overall_timeout + RESULT_SLACK)
    assert (second.outcome, second.digits, second.call_id) == ("entered", "222222",
                                                                first.call_id)
    ivr.instruct(second.call_id, "accept")  # connecting, then ringback until our BYE
    runner.no_result(1.0)
    assert ivr.active_sessions == 1
    agent.hangup()
    agent.wait_for("disconnected", CALL_TIMEOUT)
    runner.no_result(0.5)


def test_prompt_is_streamed(runner: IvrRunner, start_ivr: StartIvr, agent: Any,
                            tmp_path: Path) -> None:
    ivr = start_ivr()
    answered(agent, ivr)
    recording = tmp_path / "heard.wav"
    agent.record(str(recording))
    stats = _stats_after(agent, 1.5)
    assert stats["rx_packets"] > 0
    assert stats["remote_rtp"].startswith(TEST_CONFIG.media_host + ":")
    agent.hangup()
    assert agent.wait_for("recorded", CALL_TIMEOUT)["complete"]
    with wave.open(str(recording), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
    samples = memoryview(frames).cast("h")
    loud = sum(1 for sample in samples if abs(sample) > 1000)
    assert len(samples) > 4000  # half a second of audio at least
    assert loud > len(samples) // 50, "the prompt was not heard"


def _stats_after(agent: Any, seconds: float) -> dict[str, Any]:
    threading.Event().wait(seconds)
    stats: dict[str, Any] = agent.stats()
    return stats


def test_busy_beyond_max_sessions(runner: IvrRunner, start_ivr: StartIvr, agent: Any) -> None:
    ivr = start_ivr(max_sessions=1)
    assert ivr.capacity == 1
    answered(agent, ivr)
    with Agent() as second:
        call_ivr(second, ivr)
        assert second.wait_for("disconnected", CALL_TIMEOUT)["status"] == 486
    assert ivr.active_sessions == 1


def test_agent_uas_early_media_then_answer() -> None:
    # The agent's UAS mode, as the end-to-end tests of the service use it for trunks.
    with Agent(answer=True, ring_seconds=0.5, early_media=True) as uas, Agent() as uac:
        uac.call(uas.uri)
        assert uac.wait_for("state", CALL_TIMEOUT, state="EARLY")["status"] == 183
        early = uac.wait_for("media", CALL_TIMEOUT)
        assert uac.wait_for("state", CALL_TIMEOUT, state="CONFIRMED")["status"] == 200
        stats = _stats_after(uac, 0.5)
        assert stats["rx_packets"] > 0
        assert stats["remote_rtp"] == early["remote_rtp"]
        uac.hangup()
        assert uas.wait_for("disconnected", CALL_TIMEOUT)["status"] == 200
