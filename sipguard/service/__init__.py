"""The running service: the asyncio pump (datagrams and stream messages in, the endpoint
and controller fed, sends out, one timer re-armed), its sockets, signals, the control
socket's handlers, and the edges it drives (screening, records, IVR, alerts, admin web).

Owns: all the glue that does I/O for the B2BUA. May import every package except ``cli``.
"""

from sipguard.service.pump import Service

__all__ = ["Service"]
