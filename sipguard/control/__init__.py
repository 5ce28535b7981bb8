"""The control socket: how the command line reaches the running service (JSON lines over
a Unix socket, mode 0600).

Owns: the server the service runs and the client the command line uses. May import: the
standard library (asyncio), nothing of sipguard's; the handlers come from the packages
that own what they act on (edge, alerts).
"""

from sipguard.control.channel import LINE_LIMIT, REQUEST_TIMEOUT, ControlServer, Handler, request

__all__ = ["LINE_LIMIT", "REQUEST_TIMEOUT", "ControlServer", "Handler", "request"]
