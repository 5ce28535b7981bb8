"""pjsip helpers for the pjsua2 IVR: what pjsua2 does not wrap, and small readers.

``Pjsip`` reaches a few pjsip C functions through ctypes in the pjsua2 extension
module itself (the library instance pjsua2 already loaded): reading back the call
limit, answering an INFO pjsua does not handle, capping pjsip's log level and
hanging up a call with a status. ``LogWriter`` sends pjsip's own log lines to the
stdlib logger. The readers parse the raw SIP text pjsua2 hands to callbacks.
"""

from __future__ import annotations

import ctypes
import importlib
import wave
from pathlib import Path
from typing import Any

import pjsua2 as pj

from sipguard import logs

log = logs.module_logger()


def prompt_seconds(path: Path) -> float:
    """The duration of a WAV prompt (also checks that it is a readable WAV)."""
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / float(wav.getframerate())


def header_value(message: str, name: str) -> str | None:
    """The value of the first header ``name`` (case-insensitive) in a SIP message."""
    head = message.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    wanted = name.lower()
    for line in head.splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == wanted:
            return value.strip()
    return None


def message_body(message: str) -> str:
    for separator in ("\r\n\r\n", "\n\n"):
        if separator in message:
            return message.split(separator, 1)[1]
    return ""


class Pjsip:
    """The few pjsip C functions pjsua2 does not wrap: reading back the call limit
    and answering an INFO that pjsua does not handle. Found in the pjsua2 extension
    module itself (already loaded, so the same library instance)."""

    def __init__(self) -> None:
        extension = importlib.import_module("pjsua2._pjsua2")  # loaded by pjsua2 already
        lib = ctypes.CDLL(extension.__file__)
        self.max_calls = lib.pjsua_call_get_max_count
        self.max_calls.restype = ctypes.c_uint
        self.max_calls.argtypes = []
        self.get_endpt = lib.pjsua_get_pjsip_endpt
        self.get_endpt.restype = ctypes.c_void_p
        self.get_endpt.argtypes = []
        self.create_response = lib.pjsip_endpt_create_response
        self.create_response.restype = ctypes.c_int
        self.create_response.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                         ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        self.tsx_send = lib.pjsip_tsx_send_msg
        self.tsx_send.restype = ctypes.c_int
        self.tsx_send.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.set_log_level = lib.pj_log_set_level
        self.set_log_level.restype = None
        self.set_log_level.argtypes = [ctypes.c_int]
        self.call_hangup = lib.pjsua_call_hangup
        self.call_hangup.restype = ctypes.c_int
        self.call_hangup.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_void_p,
                                     ctypes.c_void_p]

    def respond(self, tsx: Any, rdata: Any, code: int) -> bool:
        """Answer a server transaction (inside the callback that reported it)."""
        if tsx is None or rdata is None:
            return False
        tdata = ctypes.c_void_p()
        status = self.create_response(self.get_endpt(), int(rdata), code, None,
                                      ctypes.byref(tdata))
        if status != 0:
            return False
        return bool(self.tsx_send(int(tsx), tdata) == 0)


class LogWriter(pj.LogWriter):  # type: ignore[misc]
    """pjsip's log lines, to the log at debug level (any thread may write)."""

    def write(self, entry: Any) -> None:
        try:
            log.debug("ivr.pjsip", line=str(entry.msg).rstrip())
        except Exception:
            log.exception("ivr.callback_failed", callback="LogWriter.write")
