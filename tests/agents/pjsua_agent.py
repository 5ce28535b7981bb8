"""A scriptable SIP user agent built on pjsua2, for end-to-end tests.

Run as its own process (pjsua2 allows one library per process)::

    python tests/agents/pjsua_agent.py --host 127.0.0.1 [--answer [--ring-seconds S] [--early-media]]

It is driven by JSON lines on stdin and reports JSON lines on stdout (see
``tests/agents/client.py`` for the Python side and the list of commands and events).
pjsua2 runs in the main thread only (no pjsua2 worker threads): the main loop
handles pjsua2 events for 10 ms at a time, then runs the commands a helper thread
read from stdin, then its own timers. A ToneGenerator (1 kHz) is connected to the
call's audio as soon as media is active, with VAD off, so RTP flows all the time.
"""

# pjsua2 callbacks are camelCase overrides.
# ruff: noqa: N802

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import wave
from typing import Any

import pjsua2 as pj

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
INFO_DTMF_GAP = 0.15  # seconds between two application/dtmf INFOs
RECORD_CLOSE_TIMEOUT = 3.0  # seconds for pjmedia to finish a recording's WAV


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class AgentCall(pj.Call):  # type: ignore[misc]
    def __init__(self, agent: Agent, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.agent = agent
        self.audio: Any = None
        self.media_index = -1
        self.recorder: Any = None
        self.record_path = ""

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        state = STATE_NAMES.get(info.state, str(info.state))
        emit("state", state=state, status=info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            emit("disconnected", status=info.lastStatusCode, reason=info.lastReason)
            self.agent.call_ended(self)

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for media in info.media:
            if (media.type == pj.PJMEDIA_TYPE_AUDIO
                    and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE):
                self.media_index = media.index
                self.audio = self.getAudioMedia(media.index)
                self.agent.tone.startTransmit(self.audio)
                remote = self.getStreamInfo(media.index).remoteRtpAddress
                emit("media", remote_rtp=remote)
                return

    def onCallRxOffer(self, prm: Any) -> None:
        if self.getInfo().state == pj.PJSIP_INV_STATE_CONFIRMED:
            emit("reinvite")

    def onCallTsxState(self, prm: Any) -> None:
        tsx = prm.e.body.tsxState.tsx
        if (tsx.role == pj.PJSIP_ROLE_UAC and tsx.method != "INVITE"
                and tsx.state == pj.PJSIP_TSX_STATE_COMPLETED):
            emit("response", method=tsx.method, status=tsx.statusCode)

    def onDtmfDigit(self, prm: Any) -> None:
        emit("dtmf", digit=prm.digit)


class AgentAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def onIncomingCall(self, prm: Any) -> None:
        self.agent.incoming(prm)


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.call: AgentCall | None = None
        self.dead: list[Any] = []  # released from the main loop, never in a callback
        self.timers: list[tuple[float, Any]] = []
        self.running = True
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = 4
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.noVad = True
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = 0
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = args.host
        tcfg.port = 0
        transport = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.sip_port = int(self.ep.transportGetInfo(transport).localName.rsplit(":", 1)[1])
        self.tls_port = 0
        if args.tls_cert:
            # A TLS listener too (TLS 1.2+), with the certificate sipguard checks when it
            # connects here, and the CA that sipguard's own certificate must come from.
            tls = pj.TransportConfig()
            tls.boundAddress = args.host
            tls.port = 0
            tls.tlsConfig.CaListFile = args.tls_ca
            tls.tlsConfig.certFile = args.tls_cert
            tls.tlsConfig.privKeyFile = args.tls_key
            tls.tlsConfig.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3
            tls.tlsConfig.verifyServer = True
            tls_transport = self.ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
            self.tls_port = int(
                self.ep.transportGetInfo(tls_transport).localName.rsplit(":", 1)[1])
        for codec in self.ep.codecEnum2():
            name = codec.codecId.upper()
            priority = 255 if name.startswith("PCMU/") else 254 if name.startswith("PCMA/") else 0
            self.ep.codecSetPriority(codec.codecId, priority)
        self.ep.libStart()
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:agent@{args.host}:{self.sip_port}"
        acfg.mediaConfig.transportConfig.boundAddress = args.host
        acfg.mediaConfig.transportConfig.publicAddress = args.host
        acfg.mediaConfig.transportConfig.port = 0
        self.account = AgentAccount(self)
        self.account.create(acfg)
        self.tone = pj.ToneGenerator()
        self.tone.createToneGenerator(8000, 1)
        tones = pj.ToneDescVector()
        tone = pj.ToneDesc()
        tone.freq1 = 1000
        tone.freq2 = 0
        tone.on_msec = 1000
        tone.off_msec = 0
        tones.append(tone)
        self.tone.play(tones, True)

    # --- incoming calls (UAS mode)
    def incoming(self, prm: Any) -> None:
        call = AgentCall(self, self.account, prm.callId)
        emit("incoming", call_id=call.getInfo().callIdString)
        if not self.args.answer or self.call is not None:
            self.dead.append(call)
            self.op(call.hangup, 486)
            return
        self.call = call
        if self.args.early_media:
            self.op(call.answer, 183)
        elif self.args.ring_seconds > 0:
            self.op(call.answer, 180)
        else:
            self.op(call.answer, 200)
            return
        self.timers.append((time.monotonic() + self.args.ring_seconds,
                            lambda: self.call is call and self.op(call.answer, 200)))

    def op(self, method: Any, code: int) -> bool:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            method(prm)
        except pj.Error as error:
            emit("error", message=error.info())
        return True

    def call_ended(self, call: AgentCall) -> None:
        if call is self.call:
            self.call = None
        self.dead.append(call)
        if call.recorder is not None:
            self.dead.append(call.recorder)
            call.recorder = None
            # pjmedia closes the file a little after the recorder is destroyed (the
            # conference bridge removes ports asynchronously): wait for a whole WAV.
            self.when_recorded(call.record_path, time.monotonic() + RECORD_CLOSE_TIMEOUT)

    def when_recorded(self, path: str, deadline: float) -> None:
        try:
            with wave.open(path, "rb") as wav:
                complete = wav.getnframes() > 0
        except (OSError, EOFError, wave.Error):
            complete = False
        if complete or time.monotonic() >= deadline:
            emit("recorded", path=path, complete=complete)
        else:
            self.timers.append((time.monotonic() + 0.05,
                                lambda: self.when_recorded(path, deadline)))

    # --- commands
    def run_command(self, cmd: dict[str, Any]) -> None:
        name = cmd.get("cmd")
        try:
            if name == "call":
                self.make_call(cmd["uri"], cmd.get("headers", {}))
            elif name == "dtmf":
                self.send_dtmf(cmd["digits"], cmd.get("method", "rfc4733"))
            elif name == "hangup":
                if self.call is not None:
                    self.op(self.call.hangup, 603)
            elif name == "record":
                self.record(cmd["path"])
            elif name == "stats":
                self.stats()
            elif name == "quit":
                self.running = False
            else:
                emit("error", message=f"unknown command {name!r}")
        except pj.Error as error:
            emit("error", message=error.info())

    def make_call(self, uri: str, headers: dict[str, str]) -> None:
        call = AgentCall(self, self.account)
        prm = pj.CallOpParam(True)
        for name, value in headers.items():
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            prm.txOption.headers.append(header)
        self.call = call
        call.makeCall(uri, prm)
        emit("calling", call_id=call.getInfo().callIdString)

    def send_dtmf(self, digits: str, method: str) -> None:
        call = self.call
        if call is None:
            emit("error", message="no call")
            return
        if method == "rfc4733":
            call.dialDtmf(digits)
        elif method == "info":
            prm = pj.CallSendDtmfParam()
            prm.digits = digits
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.duration = 160
            call.sendDtmf(prm)
        elif method == "info-dtmf":
            start = time.monotonic()
            for index, digit in enumerate(digits):
                self.timers.append((start + index * INFO_DTMF_GAP,
                                    lambda d=digit: self.send_info_dtmf(call, d)))
        else:
            emit("error", message=f"unknown DTMF method {method!r}")

    def send_info_dtmf(self, call: AgentCall, digit: str) -> None:
        if call is not self.call:
            return
        prm = pj.CallSendRequestParam()
        prm.method = "INFO"
        prm.txOption.contentType = "application/dtmf"
        prm.txOption.msgBody = digit
        try:
            call.sendRequest(prm)
        except pj.Error as error:
            emit("error", message=error.info())

    def record(self, path: str) -> None:
        call = self.call
        if call is None or call.audio is None:
            emit("error", message="no call with active media to record")
            return
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(path)
        call.audio.startTransmit(recorder)
        call.recorder = recorder
        call.record_path = path

    def stats(self) -> None:
        call = self.call
        if call is None or call.media_index < 0:
            emit("stats", rx_packets=0, tx_packets=0, remote_rtp="", local_rtp="")
            return
        stat = call.getStreamStat(call.media_index).rtcp
        info = call.getStreamInfo(call.media_index)
        transport = call.getMedTransportInfo(call.media_index)
        emit("stats", rx_packets=stat.rxStat.pkt, tx_packets=stat.txStat.pkt,
             remote_rtp=info.remoteRtpAddress, local_rtp=transport.localRtpName)

    # --- main loop
    def loop(self) -> None:
        emit("ready", sip_port=self.sip_port, tls_port=self.tls_port)
        while self.running:
            self.ep.libHandleEvents(10)
            self.dead.clear()
            while True:
                try:
                    cmd = self.commands.get_nowait()
                except queue.Empty:
                    break
                if cmd is None:
                    self.running = False
                    break
                self.run_command(cmd)
            self.dead.clear()  # commands may end calls too (callbacks run inside hangup)
            now = time.monotonic()
            due = [action for when, action in self.timers if when <= now]
            self.timers = [(when, action) for when, action in self.timers if when > now]
            for action in due:
                action()
        self.shutdown()

    def shutdown(self) -> None:
        self.ep.hangupAllCalls()
        deadline = time.monotonic() + 2.0
        while self.call is not None and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        self.call = None
        self.dead.clear()
        self.tone = None
        self.account.shutdown()
        self.account = None
        self.ep.libDestroy()
        emit("stopped")


def read_stdin(commands: queue.Queue[dict[str, Any] | None]) -> None:
    """Only enqueues: every pjsua2 call happens in the main thread."""
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            commands.put(json.loads(line))
        except json.JSONDecodeError:
            emit("error", message=f"not JSON: {line[:80]}")
    commands.put(None)  # stdin closed: quit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--answer", action="store_true", help="auto-answer incoming calls")
    parser.add_argument("--ring-seconds", type=float, default=0.0)
    parser.add_argument("--early-media", action="store_true",
                        help="send 183 with SDP before the 200 (after --ring-seconds)")
    parser.add_argument("--tls-cert", default="", help="PEM chain: also listen on TLS")
    parser.add_argument("--tls-key", default="")
    parser.add_argument("--tls-ca", default="", help="PEM: CAs trusted for TLS servers")
    args = parser.parse_args()
    if args.early_media and args.ring_seconds <= 0:
        args.ring_seconds = 1.0
    agent = Agent(args)
    threading.Thread(target=read_stdin, args=(agent.commands,), daemon=True).start()
    agent.loop()


if __name__ == "__main__":
    main()
