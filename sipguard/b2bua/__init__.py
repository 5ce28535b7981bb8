"""The B2BUA front door, without I/O: the call controller that pairs the PBX leg with the
trunk leg, the call table and its deadlines, the PIN challenge flow (IVR leg, bridging
re-INVITE), trunk registrations and peers' digest authentication.

Owns: turning SIP events into call events and commands (screen this attempt, check this
PIN, log this) on virtual time. May import: ``sipguard.sip`` and ``sipguard.policy``
only; no sockets, clock, store or logging library (the service runs the commands).
"""

from sipguard.b2bua.calls import (
    Call,
    CheckPin,
    Command,
    InstructIvr,
    LogEvent,
    Network,
    Peer,
    PeerAuth,
    ScreenAttempt,
    SourceFailure,
    Trunk,
    dialled_from_text,
    dialled_of,
)
from sipguard.b2bua.controller import Controller
from sipguard.b2bua.legs import IvrLink
from sipguard.b2bua.peer_auth import Authenticator

__all__ = [
    "Authenticator",
    "Call",
    "CheckPin",
    "Command",
    "Controller",
    "InstructIvr",
    "IvrLink",
    "LogEvent",
    "Network",
    "Peer",
    "PeerAuth",
    "ScreenAttempt",
    "SourceFailure",
    "Trunk",
    "dialled_from_text",
    "dialled_of",
]
