"""`sipguard explain` gives the decision a real INVITE gets (issue 22, item 4).

Explain reads the number as the SIP path reads a Request-URI (tel: and sip:...;user=phone
included), and asks the running service for the call history the risk score uses (a
destination never called before, international calls in the last hour), so its action,
rule and score are those of the call.screened line of the INVITE sent right after it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness import Sipguard, SippUas, host_port, raw_invite

pytestmark = pytest.mark.e2e

POLICY = """
accounts:
  - name: asterisk-1
    home_region: US
    time_zone: UTC
    may_dial: [domestic, international]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: allow-ie, region: IE, action: allow}
number_types:
  premium_rate: deny
  invalid: deny
"""

IRELAND = "01135315550100"


def _explain(guard: Sipguard, target: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "sipguard", "explain", target, "--extension", "2001", "--json",
         "--config", str(guard.config_path)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert completed.returncode == 0, completed.stderr
    explained: dict[str, Any] = json.loads(completed.stdout)
    return explained


def _invite(guard: Sipguard, request_uri: str) -> str:
    """Send one INVITE with this Request-URI; return its Call-ID once it is answered."""
    target = guard.address()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        invite = raw_invite(target, sock.getsockname()[:2], "placeholder")
        invite = invite.replace(f"INVITE sip:placeholder@{host_port(*target)} SIP/2.0",
                                f"INVITE {request_uri} SIP/2.0", 1)
        call_id = next(line.split(":", 1)[1].strip() for line in invite.split("\r\n")
                       if line.startswith("Call-ID:"))
        sock.sendto(invite.encode(), target)
        sock.settimeout(5.0)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # wait for a final answer (the trunk says 486)
            if int(sock.recv(65536).decode(errors="replace").split(None, 2)[1]) >= 200:
                break
    return call_id


def test_explain_gives_the_decision_and_score_of_the_live_call(
        start_uas: Callable[..., SippUas], start_sipguard: Callable[..., Sipguard]) -> None:
    uas = start_uas("uas_busy.xml", extra=["-m", "10"])
    guard = start_sipguard(uas.uri, POLICY)
    host = host_port(*guard.address())
    cases = [
        ("tel:+1-900-555-0100", "tel:+1-900-555-0100"),
        ("sip:+19005550100@127.0.0.1;user=phone", f"sip:+19005550100@{host};user=phone"),
        ("12125551234", f"sip:12125551234@{host}"),
        # The first call to Ireland scores "never called before"; the second does not:
        # explain knows which, from the running service.
        (IRELAND, f"sip:{IRELAND}@{host}"),
        (IRELAND, f"sip:{IRELAND}@{host}"),
    ]
    risks = []
    for asked, request_uri in cases:
        explained = _explain(guard, asked)
        assert explained["usage_from"] == "the running service", explained
        assert explained["risk_unknown"] == []
        call_id = _invite(guard, request_uri)
        live = guard.wait_for("call.screened", where=lambda e, c=call_id: e["call_id"] == c)[0]
        assert (explained["action"], explained["rule"], explained["risk_score"]) == (
            live["action"], live["rule"], live["risk"]), (asked, explained, live)
        assert explained["number"]["e164"] == live["e164"]
        risks.append(next(entry for entry in live["trace"] if entry.startswith("risk-score")))
    screened = guard.events("call.screened")
    assert [line["action"] for line in screened] == ["deny", "deny", "allow", "allow", "allow"]
    assert screened[0]["category"] == screened[1]["category"] == "premium rate"
    assert "never called before +15" in risks[3] and "never called before" not in risks[4]
    assert "1 international calls in the last hour" in risks[4]


def test_without_a_running_service_explain_names_what_it_cannot_know(tmp_path: Any) -> None:
    from pathlib import Path

    directory = Path(tmp_path)
    (directory / "policy.yaml").write_text(POLICY)
    config = directory / "sipguard.yaml"
    config.write_text('listen: ["udp:127.0.0.1:0"]\n'
                      'peers: [{name: asterisk-1, addresses: ["127.0.0.1/32"]}]\n'
                      'trunks: [{name: carrier, uri: "sip:127.0.0.1:5080"}]\n'
                      "policy: policy.yaml\n")
    completed = subprocess.run(
        [sys.executable, "-m", "sipguard", "explain", IRELAND, "--config", str(config)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "no running service answered" in completed.stdout
    assert "never called before (+0 to +15)" in completed.stdout
