"""Stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1): byte chunks in, frames and errors out.

Most cases are one table of (chunks fed, frames expected, error expected):
the chunks are fed in order and every frame they produce is collected. The
properties check that where TCP happens to cut the stream never changes the
frames, and that the framer never holds more than the maximum message size.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.sip.framing import Frame, FrameKind, StreamFramer
from tests.unit.sip_messages import build

MAX_SIZE = 600
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

PING_BYTES = b"\r\n\r\n"  # RFC 5626 §3.5.1: the client's keep-alive
PONG_BYTES = b"\r\n"  # the answer, which the framer skips


def message(
    method: str = "OPTIONS",
    body: bytes = b"",
    *,
    call_id: str = "frame-1",
    content_length: str | None = "auto",
    length_name: str = "Content-Length",
) -> bytes:
    """A short request as a PBX writes it on a TCP connection."""
    headers = [
        ("Via", "SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKframe"),
        ("From", "<sip:200@pbx.example.com>;tag=f"),
        ("To", "<sip:300@sipguard.example.com>"),
        ("Call-ID", call_id),
        ("CSeq", f"1 {method}"),
    ]
    if length_name != "Content-Length" and content_length == "auto":
        headers.append((length_name, str(len(body))))
        content_length = None
    return build(f"{method} sip:300@127.0.0.1 SIP/2.0", headers, body,
                 content_length=content_length)


def head_of(data: bytes) -> bytes:
    """The header block of a message, up to and including the empty line."""
    end = data.index(b"\r\n\r\n") + 4
    return data[:end]


def msg(data: bytes) -> Frame:
    """A MESSAGE frame."""
    return Frame(FrameKind.MESSAGE, data)


def too_large(data: bytes) -> Frame:
    """A TOO_LARGE frame: the header block only."""
    return Frame(FrameKind.TOO_LARGE, head_of(data))


PING = Frame(FrameKind.PING)

FIRST = message(call_id="first")
SECOND = message("INFO", b"Signal=1\r\n", call_id="second")
COMPACT = message("MESSAGE", b"hello", length_name="l")
COMPACT_LOWER = message("MESSAGE", b"hello", length_name="content-length")
TRICKY_BODY = message("INFO", b"a\r\n\r\nINVITE sip:x SIP/2.0\r\n\r\n", call_id="tricky")
LARGE = message("INVITE", b"v=0\r\n" + b"a" * 1500, call_id="large")
LARGE_HEAD = head_of(LARGE)
EXACT = message("INFO", b"x" * (MAX_SIZE - len(message("INFO", b"x" * 100)) + 100))
ONE_OVER = message("INFO", b"x" * (len(EXACT) - len(head_of(EXACT)) + 1))
NO_LENGTH = message("INVITE", content_length=None, call_id="no-length")
BAD_LENGTH = message("INVITE", b"body", content_length="abc", call_id="bad-length")
NEGATIVE_LENGTH = message("INVITE", content_length="-1")
EMPTY_LENGTH = message("INVITE", content_length="")
HUGE_HEAD = b"OPTIONS sip:300@127.0.0.1 SIP/2.0\r\n" + b"X-Pad: " + b"p" * MAX_SIZE + b"\r\n"

HEAD_ERROR = "header block larger than the maximum message size"
NO_LENGTH_ERROR = "no Content-Length on a stream"
BAD_LENGTH_ERROR = "bad Content-Length on a stream"

FRAMING_CASES = [
    pytest.param([FIRST], [msg(FIRST)], None, id="one-message"),
    pytest.param([FIRST + SECOND], [msg(FIRST), msg(SECOND)], None, id="two-in-one-chunk"),
    pytest.param([FIRST[:30], FIRST[30:]], [msg(FIRST)], None, id="split-in-the-head"),
    pytest.param([SECOND[:-3], SECOND[-3:]], [msg(SECOND)], None, id="split-in-the-body"),
    pytest.param([SECOND[:len(head_of(SECOND)) - 2], SECOND[len(head_of(SECOND)) - 2:]],
                 [msg(SECOND)], None, id="split-inside-the-empty-line"),
    pytest.param([FIRST + SECOND[:10], SECOND[10:]], [msg(FIRST), msg(SECOND)], None,
                 id="second-message-completes-later"),
    pytest.param([COMPACT + FIRST], [msg(COMPACT), msg(FIRST)], None, id="compact-l"),
    pytest.param([COMPACT_LOWER], [msg(COMPACT_LOWER)], None, id="lowercase-content-length"),
    pytest.param([TRICKY_BODY + FIRST], [msg(TRICKY_BODY), msg(FIRST)], None,
                 id="body-containing-crlfcrlf"),
    pytest.param([FIRST + PING_BYTES + SECOND], [msg(FIRST), PING, msg(SECOND)], None,
                 id="ping-between-messages"),
    pytest.param([PING_BYTES], [PING], None, id="ping-alone"),
    pytest.param([b"\r\n", b"\r\n"], [PING], None, id="ping-split-crlf-crlf"),
    pytest.param([b"\r\n\r", b"\n"], [PING], None, id="ping-split-inside-the-second-crlf"),
    pytest.param([b"\r", b"\n\r\n"], [PING], None, id="ping-split-inside-the-first-crlf"),
    pytest.param([PONG_BYTES], [], None, id="lone-pong"),
    pytest.param([PONG_BYTES, FIRST], [msg(FIRST)], None, id="pong-then-message"),
    pytest.param([FIRST + PONG_BYTES + SECOND], [msg(FIRST), msg(SECOND)], None,
                 id="pong-between-messages"),
    pytest.param([EXACT], [msg(EXACT)], None, id="exactly-max-size"),
    pytest.param([ONE_OVER + FIRST], [too_large(ONE_OVER), msg(FIRST)], None,
                 id="one-byte-over-max-size"),
    pytest.param(
        [LARGE[:len(LARGE_HEAD) + 10], LARGE[len(LARGE_HEAD) + 10:800],
         LARGE[800:1200], LARGE[1200:] + FIRST],
        [too_large(LARGE), msg(FIRST)], None, id="too-large-body-skipped-across-chunks",
    ),
    pytest.param([LARGE[:len(LARGE_HEAD)], LARGE[len(LARGE_HEAD):], PING_BYTES + FIRST],
                 [too_large(LARGE), PING, msg(FIRST)], None, id="too-large-then-ping"),
    pytest.param([LARGE + SECOND], [too_large(LARGE), msg(SECOND)], None,
                 id="too-large-whole-in-one-chunk"),
    pytest.param([HUGE_HEAD], [], HEAD_ERROR, id="head-over-max-without-end"),
    pytest.param([HUGE_HEAD[:300], HUGE_HEAD[300:], b"\r\n" + FIRST], [], HEAD_ERROR,
                 id="head-over-max-then-nothing-more"),
    pytest.param([HUGE_HEAD + b"Content-Length: 0\r\n\r\n" + FIRST], [], HEAD_ERROR,
                 id="head-over-max-with-its-end"),
    pytest.param([FIRST + HUGE_HEAD], [msg(FIRST)], HEAD_ERROR,
                 id="frames-before-the-huge-head-kept"),
    pytest.param([NO_LENGTH + FIRST], [msg(NO_LENGTH)], NO_LENGTH_ERROR,
                 id="missing-content-length"),
    pytest.param([NO_LENGTH, FIRST], [msg(NO_LENGTH)], NO_LENGTH_ERROR,
                 id="missing-content-length-then-nothing-more"),
    pytest.param([BAD_LENGTH + FIRST], [msg(head_of(BAD_LENGTH))], BAD_LENGTH_ERROR,
                 id="content-length-abc"),
    pytest.param([NEGATIVE_LENGTH], [msg(NEGATIVE_LENGTH)], BAD_LENGTH_ERROR,
                 id="content-length-negative"),
    pytest.param([EMPTY_LENGTH], [msg(EMPTY_LENGTH)], BAD_LENGTH_ERROR,
                 id="content-length-empty"),
    pytest.param([FIRST + PING_BYTES + BAD_LENGTH], [msg(FIRST), PING, msg(head_of(BAD_LENGTH))],
                 BAD_LENGTH_ERROR, id="frames-before-the-bad-length-kept"),
]


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[Frame]:
    """Every frame the chunks produce, in order."""
    return [frame for chunk in chunks for frame in framer.feed(chunk)]


@pytest.mark.parametrize(("chunks", "frames", "error"), FRAMING_CASES)
def test_framing(chunks: list[bytes], frames: list[Frame], error: str | None) -> None:
    """The chunks, fed in order, yield exactly these frames and leave this error."""
    framer = StreamFramer(MAX_SIZE)
    assert feed_all(framer, chunks) == frames
    assert framer.error == error


def test_fixtures_are_the_sizes_the_table_needs() -> None:
    """The table's boundary messages sit exactly at and just past the maximum size."""
    assert len(EXACT) == MAX_SIZE
    assert len(ONE_OVER) == MAX_SIZE + 1
    assert len(FIRST) + len(SECOND) < MAX_SIZE
    assert len(LARGE_HEAD) < MAX_SIZE < len(LARGE)


def test_too_large_body_is_never_buffered() -> None:
    """While a too-large body is being skipped, nothing is held, and the next message frames."""
    framer = StreamFramer(MAX_SIZE)
    body_start = len(LARGE_HEAD)
    assert framer.feed(LARGE[:body_start + 100]) == [too_large(LARGE)]
    assert framer.buffered == 0
    for start in range(body_start + 100, len(LARGE), 250):
        assert framer.feed(LARGE[start:start + 250]) == []
        assert framer.buffered == 0
    assert framer.feed(FIRST) == [msg(FIRST)]
    assert framer.buffered == 0
    assert framer.error is None


def test_incomplete_message_is_buffered_until_its_body_arrives() -> None:
    """A message waiting for its body holds exactly the bytes received so far."""
    framer = StreamFramer(MAX_SIZE)
    assert framer.feed(SECOND[:-4]) == []
    assert framer.buffered == len(SECOND) - 4
    assert framer.feed(SECOND[-4:]) == [msg(SECOND)]
    assert framer.buffered == 0


def test_error_clears_the_buffer_and_stops_framing() -> None:
    """After a fatal error the buffer is empty and every later feed yields nothing."""
    framer = StreamFramer(MAX_SIZE)
    assert framer.feed(HUGE_HEAD) == []
    assert framer.error == HEAD_ERROR
    assert framer.buffered == 0
    for chunk in (FIRST, PING_BYTES, FIRST + SECOND):
        assert framer.feed(chunk) == []
    assert framer.buffered == 0


@pytest.mark.parametrize("data", [FIRST + SECOND, TRICKY_BODY + COMPACT, ONE_OVER + FIRST],
                         ids=["two-messages", "tricky-body-then-compact", "too-large-then-next"])
def test_messages_split_at_every_byte_boundary(data: bytes) -> None:
    """Feeding messages one byte at a time yields the frames of feeding them whole."""
    whole = StreamFramer(MAX_SIZE).feed(data)
    assert feed_all(StreamFramer(MAX_SIZE), [bytes([byte]) for byte in data]) == whole
    for cut in range(1, len(data)):
        assert feed_all(StreamFramer(MAX_SIZE), [data[:cut], data[cut:]]) == whole, cut


@pytest.mark.parametrize("cut", range(1, len(PING_BYTES) + 2))
def test_ping_then_message_split_anywhere(cut: int) -> None:
    """A ping before a message is one PING frame wherever in or just after it the stream is cut."""
    data = PING_BYTES + FIRST
    assert feed_all(StreamFramer(MAX_SIZE), [data[:cut], data[cut:]]) == [PING, msg(FIRST)]


# -- properties -------------------------------------------------------------------------------------

# Each item is (wire bytes, the frames it alone yields). Keep-alives are placed
# only between messages, one at most, so no run of CRLFs is ambiguous.
MESSAGE_ITEMS = [
    (FIRST, [msg(FIRST)]),
    (SECOND, [msg(SECOND)]),
    (COMPACT, [msg(COMPACT)]),
    (TRICKY_BODY, [msg(TRICKY_BODY)]),
    (EXACT, [msg(EXACT)]),
    (LARGE, [too_large(LARGE)]),
]
KEEP_ALIVES = [(b"", []), (PING_BYTES, [PING]), (PONG_BYTES, [])]


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[Frame]]:
    """Messages with at most one keep-alive before, between and after them, and their frames."""
    messages = draw(st.lists(st.sampled_from(MESSAGE_ITEMS), min_size=1, max_size=5))
    data, frames = b"", []
    for wire, produced in messages:
        keep_alive, keep_alive_frames = draw(st.sampled_from(KEEP_ALIVES))
        data += keep_alive + wire
        frames += keep_alive_frames + produced
    keep_alive, keep_alive_frames = draw(st.sampled_from(KEEP_ALIVES))
    return data + keep_alive, frames + keep_alive_frames


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into chunks of the given sizes, repeated until it is used up."""
    chunks, start, index = [], 0, 0
    while start < len(data):
        size = sizes[index % len(sizes)]
        chunks.append(data[start:start + size])
        start += size
        index += 1
    return chunks


@PROPERTY_SETTINGS
@given(streams())
def test_whole_stream_yields_its_frames(stream: tuple[bytes, list[Frame]]) -> None:
    """A concatenation of messages and keep-alives fed whole yields each one's frames in order."""
    data, frames = stream
    framer = StreamFramer(MAX_SIZE)
    assert framer.feed(data) == frames
    assert framer.error is None


@PROPERTY_SETTINGS
@given(streams(), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_any_split_yields_the_same_frames(
    stream: tuple[bytes, list[Frame]], sizes: list[int]
) -> None:
    """However the stream is cut into chunks, the frames are those of feeding it whole."""
    data, _ = stream
    whole = StreamFramer(MAX_SIZE)
    expected = whole.feed(data)
    split = StreamFramer(MAX_SIZE)
    assert feed_all(split, chunked(data, sizes)) == expected
    assert (split.error, split.buffered) == (whole.error, whole.buffered)


PIECES = [
    b"\r\n", b"\r\n\r\n", b"\r", b"\n", b"Content-Length: 5\r\n", b"l: 99999\r\n",
    b"Content-Length: abc\r\n", b"OPTIONS sip:x SIP/2.0\r\n", FIRST, LARGE_HEAD,
]
garbage = st.lists(
    st.one_of(st.binary(max_size=300), st.sampled_from(PIECES)), min_size=1, max_size=30
)


@PROPERTY_SETTINGS
@given(garbage, st.integers(50, 800))
def test_buffer_never_exceeds_the_maximum(chunks: list[bytes], max_size: int) -> None:
    """Whatever arrives, the framer never raises and never holds more than max_size bytes."""
    framer = StreamFramer(max_size)
    for chunk in chunks:
        frames = framer.feed(chunk)
        assert framer.buffered <= max_size
        for frame in frames:
            if frame.kind is not FrameKind.PING:
                assert len(frame.data) <= max_size
            if frame.kind is FrameKind.TOO_LARGE:
                assert frame.data.endswith(b"\r\n\r\n")
        if framer.error is not None:
            assert framer.buffered == 0
