"""PjsuaIvr: the PIN IVR of the IvrPort Protocol, on pjsua2.

Threading
---------
pjsua2 lives in ONE thread this class starts: it creates, initialises and starts
the library, then loops on ``libHandleEvents(10 ms)``, runs the commands the
asyncio side queued (``instruct``, ``stop``) and its own deadlines, and destroys
the library at the end. pjsua2 has no worker threads (``threadCnt = 0`` for SIP
and media, media sharing the SIP ioqueue), and the null sound device drives the
conference bridge. pjsua2 callbacks only record what happened (a few also answer
what must be answered inside them, like the INFO requests): the work is done by
the loop after ``libHandleEvents`` returns, outside every callback, so no Call or
player is ever released inside its own callback. Results go to the event loop with
``call_soon_threadsafe``. This thread logs with the stdlib ``logging`` module
(logger ``sipguard.ivr``), never the digits nor anything about them (not even how
many): pjsip's own log is capped at level 3 and its SIP message log is off, since
level 4 prints whole messages (INFO bodies such as ``Signal=5``).

Every pjsua2 callback catches and logs its exceptions (an exception escaping into
pjsua2 could leave an INVITE unanswered, holding a call slot); an INVITE whose
handling fails is still refused. An exception that escapes the loop itself is
logged with its traceback and ends the thread; ``PjsuaIvr.on_failure`` then tells
the owner, which should give the IVR up (the worker process exits non-zero).

A session
---------
INVITE (with the start token in TOKEN_HEADER, else 403; 486 when full) -> 200 ->
enter_pin prompt (digits barge in) -> '#' or max_digits: "entered"; inter-digit or
overall timeout: "timeout"; caller's BYE: "hangup". Then ``instruct``: "retry" plays
retry and collects again (a new round, fresh timeouts); "refuse" plays refused and
sends BYE when it has played; "accept" plays connecting, then ringback until the
far side hangs up.

DTMF arrives as RFC 4733 telephone-events, SIP INFO application/dtmf-relay (pjsua
answers those itself) or SIP INFO application/dtmf (pjsua would answer 500: the
IVR answers 200 itself and takes the digit from the body).
"""

# pjsua2 callbacks are camelCase overrides.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pjsua2 as pj

from sipguard import logs
from sipguard.pin.ivr.pjsip import LogWriter, Pjsip, header_value, message_body, prompt_seconds
from sipguard.pin.ivr.port import PROMPT_NAMES, TOKEN_HEADER, IvrAction, IvrConfig, IvrResult

log = logs.module_logger()

START_TIMEOUT = 10.0  # seconds for the pjsua2 thread to come up
STOP_TIMEOUT = 5.0  # seconds for calls to end and the thread to finish
POLL_MS = 10  # libHandleEvents timeout
PJSIP_LOG_LEVEL_MAX = 3  # level 4 logs whole SIP messages (DTMF INFO bodies): never above 3
REFUSAL_TAIL = 0.3  # seconds of silence after the refusal prompt, before the BYE
RINGBACK = (440, 480, 2000, 4000)  # Hz, Hz, ms on, ms off (North American ringback)
DIGITS = frozenset("0123456789*#ABCDabcd")

Phase = Literal["collecting", "waiting", "refusing", "accepting"]


class _IvrAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, ivr: _Engine) -> None:
        super().__init__()
        self.ivr = ivr

    def onIncomingCall(self, prm: Any) -> None:
        try:
            self.ivr.incoming(self, prm)
        except Exception:
            log.exception("ivr.callback_failed", callback="onIncomingCall")
            self.ivr.refuse_now(prm)


class _IvrCall(pj.Call):  # type: ignore[misc]
    """Records what pjsua2 reports; the engine acts on it after the callback."""

    def __init__(self, engine: _Engine, account: Any, call_id: int) -> None:
        super().__init__(account, call_id)
        self.engine = engine
        self.session: _Session | None = None

    def onCallState(self, prm: Any) -> None:
        try:
            info = self.getInfo()
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.engine.events.put(("disconnected", self, info.lastStatusCode))
        except Exception:
            log.exception("ivr.callback_failed", callback="onCallState")

    def onCallMediaState(self, prm: Any) -> None:
        try:
            self.engine.events.put(("media", self, None))
        except Exception:
            log.exception("ivr.callback_failed", callback="onCallMediaState")

    def onDtmfDigit(self, prm: Any) -> None:
        try:
            self.engine.events.put(("digit", self, str(prm.digit)))
        except Exception:
            log.exception("ivr.callback_failed", callback="onDtmfDigit")

    def onCallTsxState(self, prm: Any) -> None:
        try:
            self.tsx_state(prm)
        except Exception:
            log.exception("ivr.callback_failed", callback="onCallTsxState")

    def tsx_state(self, prm: Any) -> None:
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = event.body.tsxState.tsx
        if (tsx.role != pj.PJSIP_ROLE_UAS or tsx.method != "INFO"
                or tsx.state != pj.PJSIP_TSX_STATE_TRYING):
            return
        rdata = event.body.tsxState.src.rdata
        message = str(rdata.wholeMsg)
        content_type = (header_value(message, "Content-Type")
                        or header_value(message, "c") or "")
        if content_type.split(";", 1)[0].strip().lower() != "application/dtmf":
            return  # dtmf-relay and the rest: pjsua's own handling
        digit = message_body(message).strip()[:1]
        if self.engine.pjsip.respond(tsx.pjTransaction, rdata.pjRxData, 200) and digit:
            self.engine.events.put(("digit", self, digit))


@dataclass(eq=False)
class _Session:
    call: _IvrCall
    call_id: str  # the SIP Call-ID
    phase: Phase = "collecting"
    audio: Any = None  # the call's AudioMedia, once media is active
    player: Any = None
    player_ends: float = math.inf
    pending_prompt: str | None = "enter_pin"  # to play as soon as media is active
    then: Callable[[], None] | None = None  # what to do when the prompt has played
    tone: Any = None
    digits: str = ""
    round_deadline: float = math.inf
    digit_deadline: float = math.inf
    hangup_at: float = math.inf
    answer_at: float = math.inf  # when a ringing IVR answers (IvrConfig.answer_after)
    ended: bool = False


class _Engine:
    """Everything that runs in the pjsua2 thread."""

    def __init__(self, config: IvrConfig, token: str, post: Callable[[IvrResult], None]):
        self.config = config
        self.token = token
        self.post = post
        self.events: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
        self.sessions: dict[str, _Session] = {}  # by SIP Call-ID
        self.calls: list[_IvrCall] = []  # every Call object pjsua2 may still use
        self.prompts = {name: config.prompt(name) for name in PROMPT_NAMES}
        self.durations = {name: prompt_seconds(path) for name, path in self.prompts.items()}
        self.pjsip = Pjsip()
        self.capacity = max(0, config.max_sessions)
        self.address = (config.sip_host, config.sip_port)
        self.ep: Any = None
        self.account: Any = None
        self.writer: Any = None
        self.transport: Any = None
        self.running = True

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.pjsip.set_log_level(0)  # quiet libCreate's banner on stderr
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = max(1, self.config.max_sessions)
        cfg.uaConfig.userAgent = "sipguard-ivr"
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.noVad = True
        self.writer = LogWriter()
        cfg.logConfig.writer = self.writer
        # pjsua hands the writer the lines up to consoleLevel (there is no console
        # with a writer); level 4 and up would print whole SIP messages.
        level = PJSIP_LOG_LEVEL_MAX if logs.debug_enabled() else 1
        cfg.logConfig.level = cfg.logConfig.consoleLevel = level
        cfg.logConfig.msgLogging = 0  # whole SIP messages: DTMF INFO bodies
        cfg.logConfig.decor = 0
        self.ep.libInit(cfg)
        # The library keeps the smaller of what was asked and PJSUA_MAX_CALLS.
        compiled = int(self.pjsip.max_calls())
        self.capacity = min(self.capacity, compiled)
        if compiled < self.config.max_sessions:
            log.warning("ivr.max_sessions_capped", requested=self.config.max_sessions,
                        pjsua_max_calls=compiled)
        self.ep.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = self.config.sip_host
        tcfg.port = self.config.sip_port
        self.transport = self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        port = int(str(self.ep.transportGetInfo(self.transport).localName).rsplit(":", 1)[1])
        self.address = (self.config.sip_host, port)
        for codec in self.ep.codecEnum2():
            name = str(codec.codecId).upper()
            if name.startswith("PCMU/"):
                self.ep.codecSetPriority(codec.codecId, 255)
            elif name.startswith("PCMA/"):
                self.ep.codecSetPriority(codec.codecId, 254)
        self.ep.libStart()
        acfg = pj.AccountConfig()
        host = self.config.sip_host
        acfg.idUri = f"sip:ivr@{host}:{port}" if ":" not in host else f"sip:ivr@[{host}]:{port}"
        media = acfg.mediaConfig.transportConfig
        media.boundAddress = self.config.media_host
        media.publicAddress = self.config.media_host
        media.port = self.config.rtp_port
        self.account = _IvrAccount(self)
        self.account.create(acfg)

    def run(self) -> bool:
        """The loop, until a "stop" command; False if it ended on an exception
        (logged with its traceback here; the library is then shut down anyway)."""
        try:
            while self.running:
                self.ep.libHandleEvents(POLL_MS)
                self.drain()
                self.tick(time.monotonic())
        except Exception:
            log.exception("ivr.loop_failed")
            try:
                self.shutdown()
            except Exception:
                log.exception("ivr.shutdown_failed")
            return False
        self.shutdown()
        return True

    def shutdown(self) -> None:
        self.running = False
        for session in list(self.sessions.values()):
            self.end_round(session, "hangup")
            self.release_media(session)
        with contextlib.suppress(pj.Error):
            self.ep.hangupAllCalls()
        deadline = time.monotonic() + STOP_TIMEOUT / 2
        while self.calls and time.monotonic() < deadline:
            self.ep.libHandleEvents(POLL_MS)
            self.drain()
        self.sessions.clear()
        self.calls.clear()
        if self.account is not None:
            with contextlib.suppress(pj.Error):
                self.account.shutdown()
        self.account = None
        self.ep.libDestroy()
        self.ep = None
        self.writer = None

    # ------------------------------------------------------------ callbacks

    def incoming(self, account: Any, prm: Any) -> None:
        """In pjsua2's callback: keep the Call object, then act from the loop.

        If no Call object could be made, pjsua2 answers 500 itself; once there is
        one, the loop answers it (403 when the token could not be checked)."""
        call = _IvrCall(self, account, prm.callId)
        self.calls.append(call)
        accepted = False
        try:
            accepted = self.token_matches(str(prm.rdata.wholeMsg))
        except Exception:
            log.exception("ivr.token_check_failed")
        self.events.put(("incoming", call, accepted))

    def token_matches(self, message: str) -> bool:
        """Whether the INVITE carries the start token. Compared as bytes: SWIG
        decodes with surrogateescape, and compare_digest refuses non-ASCII str."""
        token = header_value(message, TOKEN_HEADER)
        if token is None:
            return False
        return hmac.compare_digest(token.encode("utf-8", "surrogateescape"),
                                   self.token.encode("utf-8"))

    def refuse_now(self, prm: Any) -> None:
        """Inside onIncomingCall, after a failure: answer 500 so that the INVITE
        does not stay unanswered (pjsua ignores a hangup of a call already ended)."""
        try:
            status = self.pjsip.call_hangup(int(prm.callId), 500, None, None)
            if status != 0:
                log.warning("ivr.refuse_failed", status=status)
        except Exception:
            log.exception("ivr.refuse_failed")

    # ------------------------------------------------------------ the loop's work

    def drain(self) -> None:
        while True:
            try:
                kind, subject, value = self.events.get_nowait()
            except queue.Empty:
                return
            try:
                self.handle(kind, subject, value)
            except pj.Error as error:
                log.warning("ivr.pjsua_error", event=kind, error=error.info())

    def handle(self, kind: str, subject: Any, value: Any) -> None:
        if kind == "stop":
            self.running = False
        elif kind == "instruct":
            session = self.sessions.get(subject)
            if session is None:
                log.info("ivr.instruct_unknown_call", call_id=subject, action=value)
            else:
                self.instruct(session, value)
        elif kind == "incoming":
            try:
                self.answer(subject, accepted=value)
            except Exception:
                log.exception("ivr.answer_failed")
                prm = pj.CallOpParam(True)
                prm.statusCode = 500
                with contextlib.suppress(Exception):
                    subject.hangup(prm)
        elif kind == "crash_for_test":
            raise RuntimeError("crash_for_test: an injected failure of the IVR loop")
        elif kind == "disconnected":
            self.disconnected(subject)
        elif subject.session is not None and not subject.session.ended:
            if kind == "media":
                self.media_changed(subject.session)
            elif kind == "digit":
                self.digit(subject.session, value, time.monotonic())

    def answer(self, call: _IvrCall, accepted: bool) -> None:
        call_id = str(call.getInfo().callIdString)
        prm = pj.CallOpParam(True)
        if not accepted:
            log.warning("ivr.invite_refused", reason="bad_token", call_id=call_id)
            prm.statusCode = 403
            call.hangup(prm)
            return
        if len(self.sessions) >= self.capacity:
            log.warning("ivr.invite_refused", reason="busy", call_id=call_id)
            prm.statusCode = 486
            call.hangup(prm)
            return
        session = _Session(call=call, call_id=call_id)
        call.session = session
        self.sessions[call_id] = session
        if self.config.answer_after > 0:
            prm.statusCode = 180  # ring first; tick() answers
            call.answer(prm)
            session.answer_at = time.monotonic() + self.config.answer_after
            return
        self.answer_now(session)

    def answer_now(self, session: _Session) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = 200
        session.call.answer(prm)
        session.round_deadline = time.monotonic() + self.config.overall_timeout
        log.info("ivr.answered", call_id=session.call_id)

    def disconnected(self, call: _IvrCall) -> None:
        session = call.session
        if session is not None:
            session.audio = None  # pjsua2 freed the call's AudioMedia
            self.sessions.pop(session.call_id, None)  # not active when the result lands
            self.end_round(session, "hangup")
            self.release_media(session)
            session.ended = True
            call.session = None
            log.info("ivr.call_ended", call_id=session.call_id)
        # Outside pjsua2's callbacks here: dropping the last reference is safe.
        with contextlib.suppress(ValueError):
            self.calls.remove(call)

    def media_changed(self, session: _Session) -> None:
        info = session.call.getInfo()
        audio = None
        for media in info.media:
            if (media.type == pj.PJMEDIA_TYPE_AUDIO
                    and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE):
                audio = session.call.getAudioMedia(media.index)
                break
        if audio is None:
            return
        session.audio = audio
        if session.pending_prompt is not None:
            name, session.pending_prompt = session.pending_prompt, None
            self.play(session, name, session.then)
        elif session.player is not None:
            session.player.startTransmit(audio)
        elif session.tone is not None:
            session.tone.startTransmit(audio)

    def digit(self, session: _Session, digit: str, now: float) -> None:
        if session.phase != "collecting" or digit not in DIGITS:
            return
        if session.player is not None:  # barge-in
            self.stop_player(session)
        if digit == "#":
            self.end_round(session, "entered")
        elif digit == "*":
            session.digits = ""
            session.digit_deadline = now + self.config.digit_timeout
        else:
            session.digits += digit.upper()
            session.digit_deadline = now + self.config.digit_timeout
            if len(session.digits) >= self.config.max_digits:
                self.end_round(session, "entered")

    def instruct(self, session: _Session, action: IvrAction) -> None:
        if session.phase in ("refusing", "accepting"):
            log.info("ivr.instruct_ignored", call_id=session.call_id, action=action,
                     phase=session.phase)
            return
        if session.phase == "collecting":
            self.end_round(session, None)  # the controller decided: no result for this round
        self.stop_player(session)
        now = time.monotonic()
        if action == "retry":
            session.phase = "collecting"
            session.digits = ""
            session.digit_deadline = math.inf
            session.round_deadline = now + self.config.overall_timeout
            self.play(session, "retry", None)
        elif action == "refuse":
            session.phase = "refusing"
            self.play(session, "refused", lambda: self.hang_up_later(session))
        else:
            session.phase = "accepting"
            self.play(session, "connecting", lambda: self.ringback(session))
        log.info("ivr.instructed", call_id=session.call_id, action=action)

    def tick(self, now: float) -> None:
        for session in list(self.sessions.values()):
            if now >= session.answer_at:
                session.answer_at = math.inf
                try:
                    self.answer_now(session)
                except pj.Error as error:
                    log.warning("ivr.answer_failed", call_id=session.call_id, error=error.info())
            if session.player is not None and now >= session.player_ends:
                then = session.then
                self.stop_player(session)
                if then is not None:
                    then()
            if session.phase == "collecting" and (
                    now >= session.round_deadline or now >= session.digit_deadline):
                self.stop_player(session)
                self.end_round(session, "timeout")
            if now >= session.hangup_at:
                session.hangup_at = math.inf
                prm = pj.CallOpParam(True)
                prm.statusCode = 200
                try:
                    session.call.hangup(prm)
                except pj.Error as error:
                    log.warning("ivr.hangup_failed", call_id=session.call_id, error=error.info())

    # ------------------------------------------------------------ helpers

    def end_round(self, session: _Session,
                  outcome: Literal["entered", "timeout", "hangup"] | None) -> None:
        """Close the collection round; post its result unless ``outcome`` is None."""
        if session.phase != "collecting":
            return
        session.phase = "waiting"
        session.digit_deadline = session.round_deadline = math.inf
        digits, session.digits = session.digits, ""
        if outcome is not None:
            log.info("ivr.collected", call_id=session.call_id, outcome=outcome)
            self.post(IvrResult(call_id=session.call_id, outcome=outcome, digits=digits))

    def play(self, session: _Session, name: str, then: Callable[[], None] | None) -> None:
        self.stop_player(session)
        session.then = then
        if session.audio is None:
            session.pending_prompt = name
            return
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(self.prompts[name]), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(session.audio)
        session.player = player
        session.player_ends = time.monotonic() + self.durations[name]

    def stop_player(self, session: _Session) -> None:
        player, session.player = session.player, None
        session.player_ends = math.inf
        session.pending_prompt = None
        if player is not None and session.audio is not None:
            with contextlib.suppress(pj.Error):
                player.stopTransmit(session.audio)
        # the player is destroyed with its last reference, here, in this thread

    def hang_up_later(self, session: _Session) -> None:
        session.then = None
        session.hangup_at = time.monotonic() + REFUSAL_TAIL

    def ringback(self, session: _Session) -> None:
        session.then = None
        if session.audio is None:
            return
        tone = pj.ToneGenerator()
        tone.createToneGenerator(8000, 1)
        tones = pj.ToneDescVector()
        desc = pj.ToneDesc()
        desc.freq1, desc.freq2, desc.on_msec, desc.off_msec = RINGBACK
        tones.append(desc)
        tone.play(tones, True)
        tone.startTransmit(session.audio)
        session.tone = tone

    def release_media(self, session: _Session) -> None:
        self.stop_player(session)
        session.then = None
        tone, session.tone = session.tone, None
        if tone is not None and session.audio is not None:
            with contextlib.suppress(pj.Error):
                tone.stopTransmit(session.audio)


class PjsuaIvr:
    """The PIN IVR on pjsua2 (see the module docstring); implements IvrPort.

    ``on_failure``, if set, is called on the event loop's thread when the pjsua2
    thread ends without being asked to stop (the IVR then serves nothing)."""

    def __init__(self, config: IvrConfig) -> None:
        self._config = config
        self._token = secrets.token_hex(16)
        self._engine: _Engine | None = None
        self._thread: threading.Thread | None = None
        self._address = (config.sip_host, config.sip_port)
        self.on_failure: Callable[[], None] | None = None
        self._failed = False

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    @property
    def token(self) -> str:
        return self._token

    @property
    def active_sessions(self) -> int:
        engine = self._engine
        return len(engine.sessions) if engine is not None and self._thread is not None else 0

    @property
    def failed(self) -> bool:
        """Whether the pjsua2 thread ended without being asked to stop."""
        return self._failed

    @property
    def capacity(self) -> int:
        """Sessions at once: max_sessions, capped by the library's PJSUA_MAX_CALLS."""
        return self._engine.capacity if self._engine is not None else 0

    async def start(self, on_result: Callable[[IvrResult], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("the IVR is already started")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[str, int]] = loop.create_future()

        def post(result: IvrResult) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(on_result, result)

        def report(error: BaseException | None, address: tuple[str, int]) -> None:
            def settle() -> None:
                if ready.done():
                    return
                if error is None:
                    ready.set_result(address)
                else:
                    ready.set_exception(error)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle)

        def main() -> None:
            try:
                engine = _Engine(self._config, self._token, post)
                self._engine = engine
                try:
                    engine.start()
                except BaseException:
                    if engine.ep is not None:
                        with contextlib.suppress(Exception):
                            engine.ep.libDestroy()
                    raise
            except pj.Error as error:
                report(RuntimeError(f"the IVR could not start: {error.info()}"), ("", 0))
                return
            except Exception as error:  # the prompts, ctypes, ...: say why
                report(RuntimeError(f"the IVR could not start: {type(error).__name__}: {error}"),
                       ("", 0))
                return
            report(None, engine.address)
            try:
                stopped = engine.run()
            except BaseException:
                log.exception("ivr.thread_failed")
                stopped = False
            if not stopped:
                self._failed = True
                log.error("ivr.thread_ended_unexpectedly")
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(failed)

        def failed() -> None:
            if self.on_failure is not None:
                self.on_failure()

        self._thread = threading.Thread(target=main, name="sipguard-ivr", daemon=True)
        self._thread.start()
        try:
            self._address = await asyncio.wait_for(ready, START_TIMEOUT)
        except BaseException as error:
            await self._join()
            if isinstance(error, TimeoutError):
                raise RuntimeError("the IVR did not start within "
                                   f"{START_TIMEOUT} s") from error
            raise

    def instruct(self, call_id: str, action: IvrAction) -> None:
        engine = self._engine
        if engine is not None:
            engine.events.put(("instruct", call_id, action))

    def crash_for_test(self) -> None:
        """Make the pjsua2 loop raise (tests of the recovery; the worker only
        forwards this when SIPGUARD_IVR_TEST_HOOKS=1)."""
        engine = self._engine
        if engine is not None:
            engine.events.put(("crash_for_test", None, None))

    async def stop(self) -> None:
        await self._join()

    async def _join(self) -> None:
        thread, engine = self._thread, self._engine
        if thread is None:
            return
        if engine is not None:
            engine.events.put(("stop", None, None))
        await asyncio.to_thread(thread.join, STOP_TIMEOUT)
        if thread.is_alive():
            log.warning("ivr.stop_timeout", seconds=STOP_TIMEOUT)
        self._thread = None
        self._engine = None
