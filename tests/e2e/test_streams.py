"""SIP over TCP and TLS end to end: SIPp calls, certificates, bans and stream limits.

SIPp speaks TCP itself (``-t t1``); for TLS it speaks TCP through stunnel (see
tls_harness.py), so the TLS between the tunnels and sipguard is real: the PBX's
tunnel checks sipguard's certificate, sipguard checks the trunk's.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Sipguard, SippResult, SippUas, free_port, host_port
from tls_harness import Certificates, client_tunnel, server_tunnel

pytestmark = pytest.mark.e2e

ALLOWED = "12125551234"
STRANGER = "127.0.0.2"
STREAM_PEER = "127.0.0.3"  # a peer that opens connections by hand in the limit tests

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]
SHORT_TIMERS = {"t1": 0.1, "t4": 1.0, "timer_d": 1.0}


def _tls_section(certificates: Certificates, **more: Any) -> dict[str, Any]:
    return {"certificate": str(certificates.server_chain), "key": str(certificates.server_key),
            "ca": str(certificates.ca), **more}


def _options(transport: str, local: tuple[str, int], target: tuple[str, int],
             content_length: bool = True) -> bytes:
    """An OPTIONS as a PBX would send it over ``transport`` from ``local``."""
    stamp = time.monotonic_ns()
    lines = [f"OPTIONS sip:{host_port(*target)} SIP/2.0",
             f"Via: SIP/2.0/{transport} {host_port(*local)};branch=z9hG4bK-st-{stamp}",
             "Max-Forwards: 70",
             f"From: <sip:probe@{host_port(*local)}>;tag=st{stamp}",
             f"To: <sip:{host_port(*target)}>",
             f"Call-ID: st-{stamp}@e2e.invalid",
             "CSeq: 1 OPTIONS"]
    if content_length:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(target: tuple[str, int], source: str, tls: ssl.SSLContext | None = None,
             timeout: float = 3.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(target)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=target[0])
    return sock


def _read_response(sock: socket.socket, timeout: float = 3.0) -> str:
    """One whole response from a stream (head and Content-Length body), or "" at EOF."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return ""
        data += chunk
    return data.decode(errors="replace")


def _closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bool:
    """Whether the far end closes (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _client_tls(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _cli(sipguard: Sipguard, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipguard", *args, "--config", str(sipguard.config_path)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)


def _via_transport(uas: SippUas) -> set[str]:
    return {str(message.header("via")).split()[0] for message in
            uas.messages("received", "INVITE")}


@pytest.mark.parametrize(("uac", "uas_scenario", "hangs_up"), [
    ("uac_call_bye.xml", "uas_answer.xml", "pbx"),
    ("uac_call_wait_bye.xml", "uas_answer_bye.xml", "trunk"),
])
def test_sipp_calls_over_tcp_on_both_legs(start_uas: StartUas, start_sipguard: StartSipguard,
                                          run_uac: RunUac, uac: str, uas_scenario: str,
                                          hangs_up: str) -> None:
    """SIPp over TCP calls through sipguard to a trunk reached over TCP; either side hangs up."""
    uas = start_uas(uas_scenario, transport="tcp")
    guard = start_sipguard(f"sip:{host_port(uas.host, uas.port)};transport=tcp",
                           listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], sip=SHORT_TIMERS)
    result = run_uac(uac, guard.target("tcp"), service=ALLOWED, calls=5, rate=10,
                     extra=["-t", "t1"])
    assert result.returncode == 0 and result.successful == 5, result.describe()
    assert uas.wait_for_received("INVITE", 5) == 5, uas.describe()
    assert _via_transport(uas) == {"SIP/2.0/TCP"}
    ended = guard.wait_for("call.ended", count=5, where=lambda e: e.get("ended_by") == hangs_up)
    assert len(ended) == 5
    stats = guard.stats()
    assert stats["calls"] == 0 and stats["dialogs"] == 0, stats
    tcp = next(value for key, value in stats["streams"].items() if key.startswith("tcp:"))
    assert tcp["connections"] >= 1, stats  # the PBX's, and the one to the trunk


def test_sipp_calls_over_tls_on_both_legs(start_uas: StartUas, start_sipguard: StartSipguard,
                                          run_uac: RunUac, certificates: Certificates,
                                          tunnels: list[Any], tmp_path: Path) -> None:
    """A PBX over TLS calls through sipguard to a trunk over TLS; both certificates check."""
    trunk_tls_port = free_port()
    uas = start_uas("uas_answer_tls.xml", transport="tcp",
                    extra=["-key", "tls_port", str(trunk_tls_port)])
    tunnels.append(server_tunnel(tmp_path, "trunk", ("127.0.0.1", trunk_tls_port),
                                 (uas.host, uas.port), certificates.server_chain,
                                 certificates.server_key))
    guard = start_sipguard(f"sip:127.0.0.1:{trunk_tls_port};transport=tls",
                           listen=["udp:127.0.0.1:0", "tls:127.0.0.1:0"], sip=SHORT_TIMERS,
                           sections={"tls": _tls_section(certificates)})
    pbx_port = free_port()
    pbx_tunnel = client_tunnel(tmp_path, "pbx", ("127.0.0.1", pbx_port), guard.address("tls"),
                               certificates)
    tunnels.append(pbx_tunnel)
    result = run_uac("uac_call_bye.xml", f"127.0.0.1:{pbx_port}", service=ALLOWED, calls=3,
                     rate=10, extra=["-t", "t1"])
    assert result.returncode == 0 and result.successful == 3, (result.describe(),
                                                              pbx_tunnel.log())
    assert uas.wait_for_received("INVITE", 3) == 3, uas.describe()
    assert uas.wait_for_received("BYE", 3) == 3, uas.describe()  # back over TLS, by Contact
    assert _via_transport(uas) == {"SIP/2.0/TLS"}
    stats = guard.stats()
    tls = next(value for key, value in stats["streams"].items() if key.startswith("tls:"))
    assert tls["connections"] - tls["inbound"] == 1, stats  # one to the trunk, kept open


def test_a_tls_client_without_a_certificate_is_refused(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        certificates: Certificates, tunnels: list[Any], tmp_path: Path) -> None:
    """With tls.verify_client, a PBX without a certificate from client_ca cannot call; with one
    it can."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, listen=["udp:127.0.0.1:0", "tls:127.0.0.1:0"],
                           sections={"tls": _tls_section(certificates,
                                                         client_ca=str(certificates.ca),
                                                         verify_client=True)})
    anonymous_port, known_port = free_port(), free_port()
    tunnels.append(client_tunnel(tmp_path, "anonymous", ("127.0.0.1", anonymous_port),
                                 guard.address("tls"), certificates))
    tunnels.append(client_tunnel(tmp_path, "known", ("127.0.0.1", known_port),
                                 guard.address("tls"), certificates, client_certificate=True))
    refused = run_uac("uac_call_bye.xml", f"127.0.0.1:{anonymous_port}", service=ALLOWED,
                      timeout=4, extra=["-t", "t1"])
    assert refused.successful != 1
    guard.wait_for("transport.tls_refused")
    assert uas.received("INVITE") == 0
    accepted = run_uac("uac_call_bye.xml", f"127.0.0.1:{known_port}", service=ALLOWED,
                       extra=["-t", "t1"])
    assert accepted.returncode == 0 and accepted.successful == 1, accepted.describe()


def test_a_trunk_with_an_untrusted_certificate_is_not_called(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        certificates: Certificates, tunnels: list[Any], tmp_path: Path) -> None:
    """A TLS trunk whose certificate no trusted CA signed gets nothing, and the PBX gets 503
    at once rather than after Timer B."""
    uas = start_uas("uas_answer.xml", transport="tcp")
    trunk_port = free_port()
    tunnels.append(server_tunnel(tmp_path, "impostor", ("127.0.0.1", trunk_port),
                                 (uas.host, uas.port), certificates.stranger_chain,
                                 certificates.stranger_key))
    guard = start_sipguard(f"sip:127.0.0.1:{trunk_port};transport=tls",
                           listen=["udp:127.0.0.1:0", "tls:127.0.0.1:0"],
                           sections={"tls": _tls_section(certificates)})
    began = time.monotonic()
    result = run_uac("uac_timeout.xml", guard.target(), service=ALLOWED, timeout=20)
    elapsed = time.monotonic() - began
    assert result.returncode == 0 and result.successful == 1, result.describe()
    assert elapsed < 10, elapsed  # Timer B would be 32 s
    failed = guard.wait_for("transport.connect_failed")[0]
    assert "certificate" in failed["error"].lower(), failed
    assert guard.wait_for("call.failed")[0]["status"] == 503
    assert uas.received("INVITE") == 0


def test_a_banned_address_is_refused_on_every_transport_and_unbanned_by_the_cli(
        start_uas: StartUas, start_sipguard: StartSipguard,
        certificates: Certificates) -> None:
    """A ban holds on UDP, TCP and TLS alike (connections refused before any byte), and
    `sipguard bans remove` lets the address be answered on all three again."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0",
                                            "tls:127.0.0.1:0"],
                           sections={"tls": _tls_section(certificates)})
    udp, tcp, tls = guard.address("udp"), guard.address("tcp"), guard.address("tls")
    banned = _cli(guard, "bans", "add", STRANGER, "--seconds", "300", "--reason", "test")
    assert banned.returncode == 0, banned.stderr

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((STRANGER, 0))
        probe.settimeout(1.0)
        probe.sendto(_options("UDP", probe.getsockname(), udp), udp)
        with pytest.raises(TimeoutError):
            probe.recv(65536)
    with _connect(tcp, STRANGER) as stream:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            stream.sendall(_options("TCP", stream.getsockname(), tcp))
        assert _closed_by_peer(stream)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError)):
        _connect(tls, STRANGER, _client_tls(certificates)).close()
    assert guard.stats()["dropped_before_parsing"]["banned"] >= 3

    removed = _cli(guard, "bans", "remove", STRANGER)
    assert removed.returncode == 0 and f"unbanned {STRANGER}" in removed.stdout, removed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((STRANGER, 0))
        probe.settimeout(3.0)
        probe.sendto(_options("UDP", probe.getsockname(), udp), udp)
        assert probe.recv(65536).startswith(b"SIP/2.0 403")
    with _connect(tcp, STRANGER) as stream:
        stream.sendall(_options("TCP", stream.getsockname(), tcp))
        assert _read_response(stream).startswith("SIP/2.0 403")
    with _connect(tls, STRANGER, _client_tls(certificates)) as stream:
        stream.sendall(_options("TLS", stream.getsockname(), tls))
        assert _read_response(stream).startswith("SIP/2.0 403")


def test_stream_limits_hold(start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """Connections per source, the idle timeout, the largest message and lost framing are
    enforced on TCP; a double-CRLF keep-alive is answered."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, listen=["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
                           peers=["127.0.0.1/32", f"{STREAM_PEER}/32"],
                           sip={"max_message_size": 4096},
                           sections={"transport": {"idle_timeout": 1.5,
                                                   "max_connections_per_source": 2}})
    tcp = guard.address("tcp")

    first, second = _connect(tcp, STREAM_PEER), _connect(tcp, STREAM_PEER)
    with first, second, _connect(tcp, STREAM_PEER) as third:
        assert _closed_by_peer(third, timeout=1.0)  # the third from one address
        second.sendall(b"\r\n\r\n")  # RFC 5626 keep-alive: answered with CRLF
        second.settimeout(1.0)
        assert second.recv(16) == b"\r\n"
        # A message over the maximum: 513, its body skipped, the connection still usable.
        oversized = _options("TCP", first.getsockname(), tcp).replace(
            b"Content-Length: 0", b"Content-Length: 20000")
        first.sendall(oversized + b"x" * 20000)
        assert _read_response(first).startswith("SIP/2.0 513")
        first.sendall(_options("TCP", first.getsockname(), tcp))
        assert _read_response(first).startswith("SIP/2.0 200")
        # Silent for longer than idle_timeout: closed by sipguard.
        began = time.monotonic()
        assert _closed_by_peer(second, timeout=5.0)
        assert 0.5 < time.monotonic() - began < 4.0
    with _connect(tcp, STREAM_PEER) as stream:  # no Content-Length: 400, then closed
        stream.sendall(_options("TCP", stream.getsockname(), tcp, content_length=False))
        assert _read_response(stream).startswith("SIP/2.0 400")
        assert _closed_by_peer(stream)
    with _connect(tcp, STREAM_PEER) as stream:  # a header block that never ends: closed
        stream.sendall(b"OPTIONS sip:x SIP/2.0\r\nX-Filler: " + b"a" * 5000)
        assert _closed_by_peer(stream)
    refused = guard.stats()["streams"]
    counts = next(value for key, value in refused.items() if key.startswith("tcp:"))["refused"]
    assert counts.get("max_connections_per_source") == 1, refused
    assert counts.get("idle", 0) >= 1 and counts.get("framing", 0) >= 2, refused


def test_pjsua2_agents_call_over_tls_and_the_trunk_hangs_up(
        start_sipguard: StartSipguard, agents: Callable[..., Any],
        certificates: Certificates) -> None:
    """Two pjsua2 user agents speaking TLS themselves: the PBX calls through sipguard to a TLS
    trunk, media flows between them, and the trunk's BYE reaches the PBX over TLS (on the
    connection the PBX opened)."""
    pem = (str(certificates.server_chain), str(certificates.server_key), str(certificates.ca))
    trunk = agents(answer=True, tls=pem)
    guard = start_sipguard(f"sip:127.0.0.1:{trunk.tls_port};transport=tls",
                           listen=["udp:127.0.0.1:0", "tls:127.0.0.1:0"],
                           sections={"tls": _tls_section(certificates)})
    pbx = agents(tls=pem)
    host, port = guard.address("tls")
    pbx.call(f"sip:{ALLOWED}@{host}:{port};transport=tls")
    pbx.wait_for("state", 10, state="CONFIRMED")
    trunk.wait_for("state", 10, state="CONFIRMED")
    deadline = time.monotonic() + 5
    while int(trunk.stats()["rx_packets"]) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(trunk.stats()["rx_packets"]) >= 20  # the PBX's RTP reaches the trunk directly
    trunk.hangup()
    pbx.wait_for("disconnected", 10)
    ended = guard.wait_for("call.ended")[0]
    assert ended["ended_by"] == "trunk" and ended["status"] == 200, ended
    stats = guard.stats()
    tls = next(value for key, value in stats["streams"].items() if key.startswith("tls:"))
    # sipguard opened one connection only, to the trunk: its BYE to the PBX went back on the
    # PBX's own connection (the trunk's BYE may come on a new one: the agent does not know
    # that sipguard's connection to it is sipguard's listener as well).
    assert tls["connections"] - tls["inbound"] == 1 and tls["inbound"] >= 1, stats
    assert stats["calls"] == 0, stats
