"""The PIN IVR edge: the IvrPort Protocol and its pjsua2 implementation."""

from sipguard.pin.ivr.port import IvrAction, IvrConfig, IvrPort, IvrResult

__all__ = ["IvrAction", "IvrConfig", "IvrPort", "IvrResult"]
