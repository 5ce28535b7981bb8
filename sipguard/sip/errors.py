"""Error kinds of the SIP core.

Two kinds, as h11 has them: the peer sent something we cannot accept
(:class:`RemoteProtocolError`), or our own code asked for something the
protocol forbids (:class:`LocalProtocolError`). A remote error carries the
status code and reason phrase to answer with, when an answer is possible.
"""

from __future__ import annotations


class SipError(Exception):
    """Base class of the errors raised inside the SIP core."""


class RemoteProtocolError(SipError):
    """The peer sent a message we cannot accept.

    ``status_code`` and ``reason`` are what a request gets in reply
    (RFC 3261 §21); ``extra_headers`` go into that reply (for example
    ``Unsupported`` with a 420).
    """

    def __init__(
        self,
        reason: str,
        status_code: int = 400,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.extra_headers = extra_headers


class LocalProtocolError(SipError):
    """Our own code asked the core for something the protocol forbids."""
