"""The UDP listener's socket: a receive buffer large enough for a burst."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from sipguard.transports.udp import RECEIVE_BUFFER, bind_udp


def _rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_the_receive_buffer_is_as_large_as_the_kernel_allows() -> None:
    async def bound_buffer() -> int:
        listener = await bind_udp("127.0.0.1", 0, limit=100)
        try:
            sock = listener.transport.get_extra_info("socket")
            return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        finally:
            listener.transport.close()

    size = asyncio.run(bound_buffer())
    # The kernel reports twice what it was given (its bookkeeping overhead). With
    # CAP_NET_ADMIN (root) the buffer is not capped at net.core.rmem_max.
    allowed = RECEIVE_BUFFER if os.geteuid() == 0 else min(RECEIVE_BUFFER, _rmem_max())
    assert size >= 2 * allowed
