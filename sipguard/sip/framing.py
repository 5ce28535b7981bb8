"""Cutting a TCP or TLS byte stream into SIP messages (RFC 3261 §18.3), sans-IO.

Theory of operation
-------------------
On a stream, a message ends where its Content-Length says: the header
block runs to the first empty line, and the body is exactly Content-Length
bytes after it. The framer is fed whatever the socket read and hands back
:class:`Frame` records:

- ``MESSAGE``: one whole message, for the endpoint to parse;
- ``PING``: a double CRLF between messages, the RFC 5626 §3.5.1 keep-alive,
  which the service answers with a single CRLF (the "pong"); a lone CRLF
  (a pong, or stray line ends before a start line, RFC 3261 §7.5) is skipped;
- ``TOO_LARGE``: the header block of a message whose size would pass the
  maximum; its body is skipped as it arrives, never buffered, and the
  endpoint answers 513 from the header block alone.

Framing is lost for good when a header block grows past the maximum with no
empty line, or when a message has no usable Content-Length (required on
streams). The framer then stops (:attr:`StreamFramer.error` says why); a
message without Content-Length is still handed over first, so that the
endpoint can answer it with 400, and the service closes the connection.
The buffer never holds more than the maximum message size.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class FrameKind(enum.Enum):
    """What a frame carries."""

    MESSAGE = "message"
    PING = "ping"
    TOO_LARGE = "too large"


@dataclass(frozen=True, slots=True)
class Frame:
    """One thing cut from the stream."""

    kind: FrameKind
    data: bytes = b""


# Content-Length, or its compact form "l" (RFC 3261 §7.3.3, §20.14), at a line start.
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)")
_CRLF = b"\r\n"
MAX_LENGTH_DIGITS = 10  # a longer Content-Length is refused, not converted
_END_OF_HEAD = b"\r\n\r\n"


class StreamFramer:
    """Messages out of one connection's bytes."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.error: str | None = None
        self._buffer = bytearray()
        self._skip = 0  # body bytes of a too-large message still to discard

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message waiting for the rest."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Take bytes read from the stream; return the frames they complete."""
        if self.error is not None:
            return []
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        self._buffer += data
        frames: list[Frame] = []
        while self.error is None and not self._skip:
            frame = self._next_frame()
            if frame is None:
                break
            frames.append(frame)
        return frames

    def _next_frame(self) -> Frame | None:
        buffer = self._buffer
        line_ends = 0
        while buffer.startswith(_CRLF, 2 * line_ends):
            line_ends += 1
        if line_ends:
            rest = len(buffer) - 2 * line_ends
            if line_ends < 2 and (rest == 0 or (rest == 1 and buffer[-1:] == b"\r")):
                return None  # a lone CRLF: a pong, or the start of a ping cut short
            del buffer[:2 * line_ends]
            if line_ends >= 2:
                return Frame(FrameKind.PING)
        if not buffer:
            return None
        end = buffer.find(_END_OF_HEAD)
        if end < 0:
            if len(buffer) > self.max_size:
                self._fail("header block larger than the maximum message size")
            return None
        head_end = end + len(_END_OF_HEAD)
        if head_end > self.max_size:
            self._fail("header block larger than the maximum message size")
            return None
        match = _CONTENT_LENGTH.search(buffer, 0, end + 2)
        value = match.group(1).strip() if match else b""
        if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
            # No usable Content-Length: the endpoint answers 400, then the stream is lost.
            head = bytes(buffer[:head_end])
            self._fail("no Content-Length on a stream" if match is None
                       else "bad Content-Length on a stream")
            return Frame(FrameKind.MESSAGE, head)
        length = int(value)
        if head_end + length > self.max_size:
            head = bytes(buffer[:head_end])
            available = len(buffer) - head_end
            self._skip = max(0, length - available)
            del buffer[:head_end + min(length, available)]
            return Frame(FrameKind.TOO_LARGE, head)
        if len(buffer) < head_end + length:
            return None
        message = bytes(buffer[:head_end + length])
        del buffer[:head_end + length]
        return Frame(FrameKind.MESSAGE, message)

    def _fail(self, reason: str) -> None:
        self.error = reason
        self._buffer.clear()
