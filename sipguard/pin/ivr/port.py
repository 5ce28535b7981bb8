"""The IvrPort Protocol: what the service needs from a PIN-collecting IVR.

The IVR is one more downstream UAS for the controller: it is reached by a
SIP INVITE on loopback, answers, plays a prompt and collects DTMF. What it
collects goes back to the service as an :class:`IvrResult`; what the
service wants it to do next (play a refusal, collect again, play ringback
while the trunk is called) goes to it by the leg's SIP Call-ID.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

PROMPTS_DIRECTORY = Path(__file__).parent / "prompts"

# The header the controller puts on every INVITE to the IVR; the IVR refuses
# INVITEs without the token it was started with (anything on the machine can
# reach a loopback port).
TOKEN_HEADER = "X-Sipguard-Ivr-Token"


@dataclass(frozen=True, slots=True)
class IvrConfig:
    """How the IVR is set up (the ``ivr`` section of the service configuration)."""

    enabled: bool = True
    # Where the IVR listens for the controller's INVITEs: loopback, port 0 = any free port.
    sip_host: str = "127.0.0.1"
    sip_port: int = 0
    # The address the PBX sends its RTP to (the IVR's SDP carries it).
    media_host: str = "127.0.0.1"
    rtp_port: int = 0  # first RTP port; 0 = any free ports
    digit_timeout: float = 5.0  # seconds allowed between two digits
    overall_timeout: float = 30.0  # seconds allowed for the whole PIN, prompt included
    max_digits: int = 16
    attempts_per_call: int = 3  # wrong PINs a caller may retry within one call
    max_sessions: int = 4  # challenges at once per IVR (the wheel allows 4); more get 486
    answer_after: float = 0.0  # seconds the IVR rings (180) before it answers
    workers: int = 2  # IVR processes (one pjsua2 library each, 4 challenges each at most)
    prompts: dict[str, Path] = field(default_factory=dict)  # name -> WAV, overriding the shipped

    def prompt(self, name: str) -> Path:
        """The WAV file of a prompt: the configured one, else the one shipped."""
        return self.prompts.get(name, PROMPTS_DIRECTORY / f"{name}.wav")


PROMPT_NAMES = ("enter_pin", "retry", "refused", "connecting")


@dataclass(frozen=True, slots=True)
class IvrResult:
    """What the IVR collected on one leg, posted to the event loop."""

    call_id: str  # the SIP Call-ID of the IVR leg
    outcome: Literal["entered", "timeout", "hangup"]
    digits: str = ""  # entered before '#' (or before the digit limit); never logged


IvrAction = Literal["accept", "retry", "refuse"]


class IvrPort(Protocol):
    """A PIN-collecting IVR (implemented with pjsua2 in sipguard.pin.ivr.pjsua)."""

    @property
    def address(self) -> tuple[str, int]:
        """Where the IVR receives SIP (valid once started)."""
        ...

    @property
    def token(self) -> str:
        """The value of TOKEN_HEADER the IVR accepts."""
        ...

    @property
    def active_sessions(self) -> int:
        """Calls the IVR holds now."""
        ...

    async def start(self, on_result: Callable[[IvrResult], None]) -> None:
        """Start the IVR; ``on_result`` is called on the event loop's thread."""
        ...

    def instruct(self, call_id: str, action: IvrAction) -> None:
        """accept: play "connecting" then ringback until hung up; retry: play "wrong
        PIN, try again" and collect again; refuse: play the refusal, then hang up."""
        ...

    async def stop(self) -> None:
        """Hang up every call and shut the IVR down."""
        ...


# ----------------------------------------------------- the worker's first stdin line

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


def parse_config(line: str) -> tuple[IvrConfig, str, str]:
    """The IvrConfig, log level and log format of the first stdin line; ValueError if
    wrong."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"the configuration line is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError("the configuration line is not a JSON object")
    level = str(raw.pop("log_level", "info")).lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log_level {level!r}")
    output_format = str(raw.pop("log_format", "auto")).lower()
    if output_format not in LOG_FORMATS:
        raise ValueError(f"unknown log_format {output_format!r}")
    known = {f.name for f in dataclasses.fields(IvrConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown IvrConfig fields: {', '.join(unknown)}")
    prompts = raw.pop("prompts", {}) or {}
    if not isinstance(prompts, dict):
        raise ValueError("prompts must be an object {name: path}")
    try:
        config = IvrConfig(**raw, prompts={str(k): Path(str(v)) for k, v in prompts.items()})
    except TypeError as error:
        raise ValueError(f"bad IvrConfig: {error}") from None
    return config, level, output_format


def config_line(config: IvrConfig, log_level: str = "info", log_format: str = "auto") -> str:
    """The first stdin line for ``config`` (what the pool sends; inverse of parse_config)."""
    fields: dict[str, Any] = {f.name: getattr(config, f.name)
                              for f in dataclasses.fields(IvrConfig)}
    fields["prompts"] = {name: str(path) for name, path in config.prompts.items()}
    fields["log_level"] = log_level
    fields["log_format"] = log_format
    return json.dumps(fields) + "\n"
