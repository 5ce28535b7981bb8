"""Hypothesis: whatever the PBX or the trunk sends, the endpoint and controller never raise."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.transports import BoundedProtocol
from tests.unit.b2bua_harness import PBX, TRUNK, Harness, invite, only, response_to

_HEADER_LINES = st.sampled_from([
    b"Contact: <sip:201@[bad>", b"Contact: *", b"Record-Route: <sip:127.0.0.3;lr>",
    b"Record-Route: garbage<", b"Require: 100rel", b"Max-Forwards: 0", b"RAck: 1 2",
    b"To: <sip:x@127.0.0.1>;tag=", b"Via: SIP/2.0/UDP [::1]:5070;branch=z9hG4bK-v6",
    b"Content-Length: 99999", b"CSeq: 4294967296 INVITE", b"Route: <sip:127.0.0.1;lr>",
])


def _mutate(data: bytes, choice: int, position: int, payload: bytes) -> bytes:
    index = position % (len(data) + 1)
    if choice == 0:
        return data[:index] + payload + data[index:]
    if choice == 1:
        return data[:index] + data[index + len(payload):]
    if choice == 2:
        head, _, body = data.partition(b"\r\n\r\n")
        return head + b"\r\n" + payload + b"\r\n\r\n" + body
    return data[:index]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    choice=st.integers(0, 3),
    position=st.integers(0, 2000),
    payload=st.one_of(st.binary(max_size=40), _HEADER_LINES),
    trunk_status=st.sampled_from([100, 180, 183, 200, 302, 404, 486, 503, 603]),
    mutate_response=st.booleans(),
)
def test_mutated_call_flows_never_raise(choice: int, position: int, payload: bytes,
                                        trunk_status: int, mutate_response: bool):
    """A mutated INVITE or trunk response gives an answer or is dropped; nothing raises."""
    harness = Harness(strict=False)
    data = invite()
    if not mutate_response:
        data = _mutate(data, choice, position, payload)
    sent = harness.feed(data, PBX)
    to_trunk = [m for m in only(sent, TRUNK)]
    if to_trunk:
        response = response_to(to_trunk[0], trunk_status, "Status").to_bytes()  # type: ignore[arg-type]
        if mutate_response:
            response = _mutate(response, choice, position, payload)
        harness.feed(response, TRUNK)
    harness.advance(200.0)
    assert harness.endpoint.transaction_count >= 0
    if trunk_status >= 300 or not to_trunk:
        assert harness.controller.live_calls == 0 or mutate_response


def test_receive_queue_drops_beyond_its_limit():
    """The bounded receive queue keeps `limit` datagrams and counts the rest as dropped."""
    loop = asyncio.new_event_loop()
    try:
        received: asyncio.Queue[object] = asyncio.Queue()
        protocol = BoundedProtocol(received, asyncio.Queue(), asyncio.Event(), limit=3)
        for number in range(10):
            protocol.datagram_received(b"x%d" % number, ("127.0.0.1", 5060))
        assert received.qsize() == 3
        assert protocol.dropped == 7
        assert received.get_nowait() == (b"x0", ("127.0.0.1", 5060))
    finally:
        loop.close()
