"""The running service: drain on SIGTERM, policy reload on SIGHUP, bad input, IPv6.

These tests start a real ``python -m sipguard run`` and play the PBX and the
trunk themselves with plain UDP sockets on loopback, so that each message is
exactly what the test says it is.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0  # the longest any single wait in these tests may take
BASIC_POLICY = REPO / "tests" / "policies" / "basic.yaml"


@dataclass
class Service:
    """A sipguard process and the JSON lines it has logged."""

    process: subprocess.Popen[str]
    port: int
    host: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [line for line in self.lines if line.get("event") == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = WAIT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {count}x {name} within {timeout}s; log: {self.lines[-10:]}")


class Udp:
    """A loopback UDP socket playing the PBX or the trunk."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def send(self, text: str, port: int, host: str | None = None) -> None:
        self.sock.sendto(text.replace("\n", "\r\n").encode(), (host or self.host, port))

    def receive(self, timeout: float = WAIT, want: str | None = None) -> str:
        """The next datagram (optionally the next whose first line contains ``want``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"nothing{' like ' + want if want else ''} within {timeout}s")
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode()
            if want is None or want in text.split("\r\n", 1)[0]:
                return text

    def nothing_for(self, seconds: float, want: str) -> bool:
        try:
            self.receive(seconds, want)
        except AssertionError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def header(message: str, name: str) -> str:
    for line in message.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} in {message!r}")


def invite(
    pbx: Udp, number: str, call_id: str, sipguard_port: int, branch: str = "z9hG4bK-1"
) -> str:
    return (
        f"INVITE sip:{number}@{pbx.hostport.rsplit(':', 1)[0]}:{sipguard_port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {pbx.hostport};branch={branch};rport\n"
        f"Max-Forwards: 70\nFrom: <sip:201@{pbx.hostport}>;tag=pbx1\n"
        f"To: <sip:{number}@{pbx.hostport}>\nCall-ID: {call_id}\nCSeq: 1 INVITE\n"
        f"Contact: <sip:201@{pbx.hostport}>\nContent-Type: application/sdp\n"
        f"Content-Length: 4\n\nv=0\n"
    )


def answer(trunk: Udp, request: str, status: str = "200 OK", tag: str = "trk1") -> str:
    vias = [line for line in request.split("\r\n") if line.lower().startswith("via:")]
    to = header(request, "To")
    if ";tag=" not in to:
        to += f";tag={tag}"
    return (
        f"SIP/2.0 {status}\n" + "\n".join(vias) + "\n"
        f"From: {header(request, 'From')}\nTo: {to}\n"
        f"Call-ID: {header(request, 'Call-ID')}\nCSeq: {header(request, 'CSeq')}\n"
        f"Contact: <sip:carrier@{trunk.hostport}>\nContent-Length: 0\n\n"
    )


def in_dialog(pbx: Udp, method: str, ok: str, cseq: int, sipguard_port: int, branch: str) -> str:
    return (
        f"{method} sip:sipguard@{pbx.hostport.rsplit(':', 1)[0]}:{sipguard_port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {pbx.hostport};branch={branch};rport\nMax-Forwards: 70\n"
        f"From: {header(ok, 'From')}\nTo: {header(ok, 'To')}\nCall-ID: {header(ok, 'Call-ID')}\n"
        f"CSeq: {cseq} {method}\nContent-Length: 0\n\n"
    )


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A PBX socket, a trunk socket and a way to start sipguard between them."""
    state: dict[str, Any] = {"services": [], "sockets": []}

    def start(
        host: str = "127.0.0.1",
        policy: str | None = None,
        drain_grace: float = 5.0,
        t1: float = 0.5,
    ) -> tuple[Service, Udp, Udp]:
        pbx, trunk = Udp(host), Udp(host)
        state["sockets"] += [pbx, trunk]
        bracketed = f"[{host}]" if ":" in host else host
        network_mask = "128" if ":" in host else "32"
        (tmp_path / "policy.yaml").write_text(policy or BASIC_POLICY.read_text())
        config = tmp_path / "sipguard.yaml"
        config.write_text(
            f'listen: ["udp:{bracketed}:0"]\n'
            f'peers: [{{name: pbx, addresses: ["{host}/{network_mask}"]}}]\n'
            f'trunks: [{{name: carrier, uri: "sip:{bracketed}:{trunk.port}"}}]\n'
            f"policy: policy.yaml\n"
            f"sip: {{t1: {t1}, t4: 0.5, timer_d: 0.5}}\n"
            f"service: {{drain_grace: {drain_grace}, policy_poll: 0.2}}\n"
            f"logging: {{level: info, format: json}}\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "sipguard", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        lines: queue.Queue[dict[str, Any]] = queue.Queue()
        service = Service(process, 0, host)

        def read() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    line = {"event": "non-json", "text": raw}
                with service.lock:
                    service.lines.append(line)
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        started = service.wait_for("service.started")[0]
        service.port = int(started["listen"][0].rsplit(":", 1)[1])
        state["services"].append(service)
        return service, pbx, trunk

    state["start"] = start
    yield state
    for service in state["services"]:
        if service.process.poll() is None:
            service.process.kill()
        service.process.wait(timeout=WAIT)
    for udp in state["sockets"]:
        udp.close()


def _answered_call(service: Service, pbx: Udp, trunk: Udp, call_id: str = "call-1") -> str:
    pbx.send(invite(pbx, "12125551234", call_id, service.port), service.port)
    trunk_invite = trunk.receive(want="INVITE")
    trunk.send(answer(trunk, trunk_invite), service.port)
    ok = pbx.receive(want="200 OK")
    pbx.send(in_dialog(pbx, "ACK", ok, 1, service.port, "z9hG4bK-ack"), service.port)
    trunk.receive(want="ACK")
    return ok


def test_sigterm_refuses_new_calls_and_waits_for_the_live_one(network: dict[str, Any]):
    """After SIGTERM a new INVITE gets 503, the live call ends normally and the process exits 0."""
    service, pbx, trunk = network["start"](drain_grace=8.0)
    ok = _answered_call(service, pbx, trunk)
    service.process.send_signal(signal.SIGTERM)
    service.wait_for("service.draining")
    pbx.send(invite(pbx, "12125551234", "call-2", service.port, branch="z9hG4bK-2"), service.port)
    assert "503" in pbx.receive(want="503").split("\r\n", 1)[0]
    assert service.process.poll() is None  # still draining: the first call is live
    pbx.send(in_dialog(pbx, "BYE", ok, 2, service.port, "z9hG4bK-bye"), service.port)
    bye = trunk.receive(want="BYE")
    trunk.send(answer(trunk, bye), service.port)
    assert service.process.wait(timeout=WAIT) == 0
    stopped = service.wait_for("service.stopped")[0]
    assert stopped["calls"] == 0


def test_drain_grace_ends_calls_with_bye_on_both_legs(network: dict[str, Any]):
    """A call still up when the grace period ends gets BYE on both legs, then the process stops."""
    service, pbx, trunk = network["start"](drain_grace=1.0)
    _answered_call(service, pbx, trunk)
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    pbx_bye = pbx.receive(want="BYE")
    trunk_bye = trunk.receive(want="BYE")
    assert time.monotonic() - started >= 0.9
    assert header(pbx_bye, "Call-ID") == "call-1"
    pbx.send(answer(pbx, pbx_bye), service.port)
    trunk.send(answer(trunk, trunk_bye), service.port)
    assert service.process.wait(timeout=WAIT) == 0


def test_sighup_with_bad_policy_keeps_the_running_one(network: dict[str, Any], tmp_path: Path):
    """A reload of an invalid policy is refused with file:line errors; the old rules stay,
    and a valid new file is swapped in."""
    service, pbx, trunk = network["start"]()
    good = BASIC_POLICY.read_text()
    bad = good.replace("    - {id: irsf-cu, region: CU, action: deny}",
                       "    - {id: irsf-cu, region: CU, action: deny}\n"
                       "    - {id: oops, region: XX, action: deny}")
    bad_line = bad.splitlines().index("    - {id: oops, region: XX, action: deny}") + 1
    (tmp_path / "policy.yaml").write_text(bad)
    service.process.send_signal(signal.SIGHUP)
    failed = service.wait_for("policy.reload_failed")[0]
    assert any(f"policy.yaml:{bad_line}: destinations.rules[5].region:" in problem
               for problem in failed["problems"]), failed
    pbx.send(invite(pbx, "19005550000", "call-b", service.port), service.port)
    assert pbx.receive(want="403")
    pbx.send(invite(pbx, "12125551234", "call-c", service.port, branch="z9hG4bK-c"), service.port)
    assert trunk.receive(want="INVITE")  # the old policy still allows the US
    (tmp_path / "policy.yaml").write_text(
        good.replace("{id: allow-us, region: US, action: allow}",
                     "{id: allow-us, region: US, action: deny}"))
    service.process.send_signal(signal.SIGHUP)
    reloaded = service.wait_for("policy.reloaded")[0]
    assert reloaded["version"] != reloaded["previous_version"]
    pbx.send(invite(pbx, "12125551234", "call-d", service.port, branch="z9hG4bK-d"), service.port)
    forbidden = pbx.receive(want="403")
    assert 'text="destination not allowed"' in header(forbidden, "Reason")
    pbx.send(invite(pbx, "16135550123", "call-e", service.port, branch="z9hG4bK-e"), service.port)
    assert "16135550123" in trunk.receive(want="INVITE").split("\r\n", 1)[0]


def test_policy_file_change_is_picked_up_without_a_signal(network: dict[str, Any],
                                                          tmp_path: Path):
    """Editing the policy file is enough: the service reloads it and logs the new version."""
    service, pbx, _ = network["start"]()
    good = BASIC_POLICY.read_text()
    time.sleep(0.05)  # a later modification time than the file the service loaded
    (tmp_path / "policy.yaml").write_text(
        good.replace("{id: allow-us, region: US, action: allow}",
                     "{id: allow-us, region: US, action: deny}"))
    reloaded = service.wait_for("policy.reloaded", timeout=WAIT)[0]
    assert reloaded["reason"] == "file changed"
    pbx.send(invite(pbx, "12125551234", "call-f", service.port), service.port)
    assert pbx.receive(want="403")


def test_emergency_call_forwards_under_a_deny_all_policy(network: dict[str, Any]):
    """911 reaches the trunk even when the policy denies every destination and every extension."""
    deny_all = (
        "accounts:\n  - {name: pbx, home_region: US, may_dial: []}\n"
        "destinations: {default: deny}\n"
    )
    service, pbx, trunk = network["start"](policy=deny_all)
    pbx.send(invite(pbx, "911", "sos-1", service.port), service.port)
    assert "sip:911@" in trunk.receive(want="INVITE").split("\r\n", 1)[0]
    screened = service.wait_for("call.screened")[0]
    assert screened["rule"] == "emergency"
    pbx.send(invite(pbx, "12125551234", "call-g", service.port, branch="z9hG4bK-g"), service.port)
    assert pbx.receive(want="403")


def test_malformed_input_gets_400_or_is_dropped_and_the_service_carries_on(network: dict[str, Any]):
    """Garbage is dropped and logged, a broken request with a usable Via gets 400, calls still work."""
    service, pbx, trunk = network["start"]()
    pbx.send("\x00\x01garbage that is not SIP at all", service.port)
    pbx.send(
        f"INVITE sip:1555@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {pbx.hostport};branch=z9hG4bK-bad\n"
        f"From: <sip:201@127.0.0.1>;tag=x\nTo: <sip:1555@127.0.0.1>\nCall-ID: bad-1\n"
        f"CSeq: one INVITE\nContent-Length: 0\n\n",
        service.port,
    )
    bad = pbx.receive(want="400")
    assert header(bad, "Call-ID") == "bad-1"
    discarded = service.wait_for("sip.message_discarded", count=2)
    assert {line.get("status") for line in discarded} >= {None, 400}
    _answered_call(service, pbx, trunk, call_id="after-bad")
    assert service.process.poll() is None


def test_dead_trunk_gives_408_and_the_service_survives(network: dict[str, Any]):
    """With the trunk's port closed (ICMP unreachable), the PBX gets 408 after Timer B; OPTIONS still work."""
    service, pbx, trunk = network["start"](t1=0.05)
    trunk.close()  # nothing listens there any more: the kernel answers with ICMP
    pbx.send(invite(pbx, "12125551234", "dead-1", service.port), service.port)
    started = time.monotonic()
    final = pbx.receive(timeout=WAIT, want="408")
    assert 64 * 0.05 - 0.2 <= time.monotonic() - started <= 64 * 0.05 + 3
    assert header(final, "Call-ID") == "dead-1"
    assert len(service.wait_for("call.failed")) == 1
    pbx.send(
        f"OPTIONS sip:127.0.0.1:{service.port} SIP/2.0\nVia: SIP/2.0/UDP {pbx.hostport};branch=z9hG4bK-o\n"
        f"Max-Forwards: 70\nFrom: <sip:q@127.0.0.1>;tag=q\nTo: <sip:127.0.0.1>\nCall-ID: q-1\n"
        f"CSeq: 1 OPTIONS\nContent-Length: 0\n\n",
        service.port,
    )
    assert pbx.receive(want="200")
    os.kill(service.process.pid, signal.SIGUSR1)
    stats = service.wait_for("service.stats")[-1]
    assert stats["calls"] == 0


def test_call_over_ipv6_loopback(network: dict[str, Any]):
    """A call placed and answered over [::1] is relayed like one over IPv4."""
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; sipguard's IPv6 support cannot be checked")
    service, pbx, trunk = network["start"](host="::1")
    ok = _answered_call(service, pbx, trunk)
    assert "[::1]" in header(ok, "Contact")
    pbx.send(in_dialog(pbx, "BYE", ok, 2, service.port, "z9hG4bK-bye6"), service.port)
    assert pbx.receive(want="200")
    assert trunk.receive(want="BYE")


def test_requests_to_a_host_name_contact_are_resolved(network: dict[str, Any]):
    """A PBX whose Contact names a host (localhost) still gets the trunk's BYE."""
    service, pbx, trunk = network["start"]()
    text = invite(pbx, "12125551234", "named-1", service.port).replace(
        f"Contact: <sip:201@{pbx.hostport}>", f"Contact: <sip:201@localhost:{pbx.port}>"
    )
    pbx.send(text, service.port)
    trunk_invite = trunk.receive(want="INVITE")
    trunk.send(answer(trunk, trunk_invite), service.port)
    ok = pbx.receive(want="200 OK")
    pbx.send(in_dialog(pbx, "ACK", ok, 1, service.port, "z9hG4bK-ackn"), service.port)
    trunk_ack = trunk.receive(want="ACK")
    bye = (
        f"BYE sip:sipguard@127.0.0.1:{service.port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {trunk.hostport};branch=z9hG4bK-tbye\nMax-Forwards: 70\n"
        f"From: {header(trunk_ack, 'To')}\nTo: {header(trunk_ack, 'From')}\n"
        f"Call-ID: {header(trunk_ack, 'Call-ID')}\nCSeq: 5 BYE\nContent-Length: 0\n\n"
    )
    trunk.send(bye, service.port)
    assert trunk.receive(want="200")
    pbx_bye = pbx.receive(want="BYE")
    assert header(pbx_bye, "Call-ID") == "named-1"
    assert "localhost" in pbx_bye.split("\r\n", 1)[0]


def test_reload_during_a_call_leaves_the_call_alone(network: dict[str, Any], tmp_path: Path):
    """A policy swapped in mid-call (even one that would now deny it) does not touch that call."""
    service, pbx, trunk = network["start"]()
    ok = _answered_call(service, pbx, trunk, call_id="live-1")
    (tmp_path / "policy.yaml").write_text(
        BASIC_POLICY.read_text().replace("{id: allow-us, region: US, action: allow}",
                                         "{id: allow-us, region: US, action: deny}"))
    service.process.send_signal(signal.SIGHUP)
    service.wait_for("policy.reloaded")
    pbx.send(in_dialog(pbx, "BYE", ok, 2, service.port, "z9hG4bK-live-bye"), service.port)
    assert pbx.receive(want="200")
    bye = trunk.receive(want="BYE")
    assert header(bye, "Call-ID") != "live-1"  # the trunk leg's own Call-ID
    trunk.send(answer(trunk, bye), service.port)
    deadline = time.monotonic() + WAIT
    calls = None
    while time.monotonic() < deadline and calls != 0:
        asked = len(service.events("service.stats"))
        os.kill(service.process.pid, signal.SIGUSR1)
        calls = service.wait_for("service.stats", count=asked + 1)[-1]["calls"]
        time.sleep(0.05)
    assert calls == 0
    (ended,) = service.events("call.ended")
    assert ended["call_id"] == "live-1" and ended["reason"] == "BYE from pbx"
