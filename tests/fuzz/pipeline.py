"""The whole per-datagram path as a fuzz target: edge filter, endpoint, controller.

``Pipeline.feed(data, source)`` does what the service does with a datagram,
without sockets: the edge filter's verdict, then the endpoint's events handed to
the controller, then the controller's commands (screening with the real policy
engine). Anything but a clean return is a bug. Used by the bounded hypothesis
test in tests/unit/test_fuzz_pipeline.py and by the atheris harness
tests/fuzz/atheris_datagram.py (run by hand).
"""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

from sipguard.b2bua.calls import CheckPin, Command, Peer, PeerAuth, ScreenAttempt, Trunk
from sipguard.b2bua.controller import Controller, IvrLink
from sipguard.b2bua.peer_auth import Authenticator
from sipguard.edge import EdgeFilter
from sipguard.policy import evaluate
from sipguard.policy.loader import load_policy
from sipguard.sip.endpoint import Endpoint
from sipguard.sip.transaction_table import TimerSettings
from sipguard.sip.transport import Local
from sipguard.sip.uri import parse_uri

POLICY = Path(__file__).resolve().parents[1] / "policies" / "pin.yaml"
LOCAL = Local("127.0.0.1", 5060)
SOURCES = (("127.0.0.1", 5070), ("127.0.0.9", 5090), ("127.0.0.2", 5080),
           ("127.0.0.5", 5100), ("::1", 5070))


class Pipeline:
    """sipguard's sans-IO parts wired as the service wires them."""

    def __init__(self) -> None:
        counter = itertools.count(1)
        self.endpoint = Endpoint([LOCAL, ("::1", 5060)], TimerSettings(),
                                 token=lambda length: f"f{next(counter):0{length}d}"[:length])
        peers = [Peer("asterisk-1", (ipaddress.ip_network("127.0.0.1/32"),)),
                 Peer("remote", (ipaddress.ip_network("::/0"),),
                      PeerAuth("pbx", "correct horse battery"))]
        trunk = Trunk("carrier", parse_uri("sip:127.0.0.2:5080"), ("127.0.0.2", 5080))
        self.controller = Controller(
            self.endpoint, peers, [trunk], ivrs=[IvrLink(("127.0.0.5", 5100), "token")],
            authenticator=Authenticator("sipguard", b"s" * 32, self.endpoint.new_token))
        self.edge = EdgeFilter([ipaddress.ip_network("127.0.0.1/32")], rate=1000, burst=1000)
        self.policy = load_policy(POLICY)
        self.now = 1000.0

    def feed(self, data: bytes, source: tuple[str, int]) -> None:
        self.now += 0.01
        if self.edge.check(source[0], data, self.now) is not None:
            return
        for event in self.endpoint.receive_datagram(data, source, LOCAL, self.now):
            self._run(self.controller.handle(event, self.now))
        self._run(self.controller.handle_timer(self.now))
        for event in self.endpoint.handle_timer(self.now):
            self._run(self.controller.handle(event, self.now))
        self.endpoint.datagrams_to_send()

    def _run(self, commands: list[Command]) -> None:
        pending = list(commands)
        while pending:
            command = pending.pop(0)
            if isinstance(command, ScreenAttempt):
                decision = evaluate(self.policy, command.attempt)
                pending.extend(self.controller.screened(command.call_key, decision, self.now))
            elif isinstance(command, CheckPin):
                pending.extend(self.controller.pin_checked(command.call_key, "wrong", self.now))
