"""The IvrPort Protocol: what the service needs from a PIN-collecting IVR.

The IVR is one more downstream UAS for the controller: it is reached by a
SIP INVITE on loopback, answers, plays a prompt and collects DTMF. What it
collects goes back to the service as an :class:`IvrResult`; what the
service wants it to do next (play a refusal, collect again, play ringback
while the trunk is called) goes to it by the leg's SIP Call-ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

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
