"""PINs: the PIN file (scrypt hashes only, mode 0600), PIN rules, the lockout shared
through the state store, and the IVR that collects a caller's PIN (``sipguard.pin.ivr``:
the IvrPort, pjsua2 worker processes, prompts).

Owns: everything about a PIN except the call flow around it (``sipguard.b2bua``). May
import: ``sipguard.store``, ``sipguard.schema`` and ``sipguard.logs``.
"""

from sipguard.pin.ivr.pool import IvrPool
from sipguard.pin.ivr.port import PROMPT_NAMES, TOKEN_HEADER, IvrConfig, IvrResult
from sipguard.pin.pins import (
    MIN_PIN_LENGTH,
    PinCheck,
    PinGuard,
    PinOutcome,
    PinSettings,
    hash_pin,
    load_pin_file,
    pin_key,
    save_pin_file,
    validate_pin,
    verify_pin,
)

__all__ = [
    "MIN_PIN_LENGTH",
    "PROMPT_NAMES",
    "TOKEN_HEADER",
    "IvrConfig",
    "IvrPool",
    "IvrResult",
    "PinCheck",
    "PinGuard",
    "PinOutcome",
    "PinSettings",
    "hash_pin",
    "load_pin_file",
    "pin_key",
    "save_pin_file",
    "validate_pin",
    "verify_pin",
]
