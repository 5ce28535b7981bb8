"""The SIP edge end to end: scanners (sipvicious), bans, floods, over loopback.

The PBX here is 127.0.0.5 (a SIPp UAC bound there); everything from 127.0.0.1 or
127.0.0.2 is a stranger. sipvicious (Debian's package: svmap, svwar, svcrack)
sends from 127.0.0.1 whatever it is told to bind, which suits: it is no peer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Sipguard

pytestmark = pytest.mark.e2e

PBX_HOST = "127.0.0.5"
STRANGER = "127.0.0.2"
ALLOWED = "12125551234"


def _cli(sipguard: Sipguard, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipguard", *args, "--config", str(sipguard.config_path)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)


def _bans(sipguard: Sipguard) -> dict[str, dict[str, Any]]:
    listed = _cli(sipguard, "bans", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {ban["address"]: ban for ban in json.loads(listed.stdout)}


def _wait_for_ban(sipguard: Sipguard, address: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        bans = _bans(sipguard)
        if address in bans or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert address in bans, (bans, sipguard.describe())
    return bans[address]


def _unban(sipguard: Sipguard, address: str) -> None:
    removed = _cli(sipguard, "bans", "remove", address)
    assert removed.returncode == 0 and f"unbanned {address}" in removed.stdout, removed


def _sipvicious(tool: str, *args: str, home: Path) -> str:
    assert shutil.which(tool), f"{tool} is missing: ./dev installs Debian's sipvicious"
    completed = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HOME": str(home)},
                               stdin=subprocess.DEVNULL, check=False)
    return completed.stdout + completed.stderr


@pytest.fixture
def edge_sipguard(start_sipguard: Callable[..., Sipguard],
                  start_uas: Callable[..., Any]) -> tuple[Sipguard, Any]:
    # Under a flood datagrams are lost (the kernel's receive buffer overflows) and both
    # sides retransmit: a duplicate ACK or INVITE reaching the trunk is not an error.
    uas = start_uas("uas_answer.xml", host=PBX_HOST,
                    extra=["-m", "1000", "-default_behaviors", "all,-abortunexp"])
    sipguard = start_sipguard(uas.uri, peers=[f"{PBX_HOST}/32"],
                              edge={"maxretry": 3, "findtime": 60, "bantime": 120,
                                    "rate": 200, "burst": 400})
    return sipguard, uas


def test_sipvicious_finds_nothing_and_is_banned(
        edge_sipguard: tuple[Sipguard, Any], run_uac: Callable[..., Any],
        tmp_path: Path) -> None:
    sipguard, uas = edge_sipguard
    host, port = sipguard.address()
    runs = {
        "svmap": ("svmap", "-p", str(port), host),
        "svwar": ("svwar", "-p", str(port), "-e", "100-140", "-m", "INVITE", host),
        "svcrack": ("svcrack", "-p", str(port), "-u", "100", "-r", "1000-1040", host),
    }
    for name, command in runs.items():
        output = _sipvicious(*command, home=tmp_path)
        assert "found nothing" in output or "could not" in output.lower(), (name, output)
        assert "| 100 " not in output and "reqauth" not in output.lower(), (name, output)
        ban = _wait_for_ban(sipguard, "127.0.0.1")
        assert ban["reason"] == "a known scanner's User-Agent", (name, ban)
        _unban(sipguard, "127.0.0.1")  # for the next tool (and to test the CLI)
    # Through all of it the PBX's calls go through.
    result = run_uac("uac_call_bye.xml", sipguard.target(), service=ALLOWED, host=PBX_HOST)
    assert result.successful == 1, result.describe()
    stats = sipguard.stats()
    assert stats["dropped_before_parsing"]["scanner"] >= 3
    assert uas.received("INVITE") == 1  # nothing of the scanners' reached the trunk


def test_a_stranger_is_banned_after_its_failures_and_unbanned_by_the_cli(
        edge_sipguard: tuple[Sipguard, Any], run_uac: Callable[..., Any]) -> None:
    sipguard, _ = edge_sipguard
    for _ in range(3):  # maxretry: 3 requests refused with 403 (at least a second apart)
        refused = run_uac("uac_blocked.xml", sipguard.target(), service=ALLOWED, host=STRANGER)
        assert refused.successful == 1, refused.describe()
        time.sleep(1.1)
    ban = _wait_for_ban(sipguard, STRANGER)
    assert "no peer" in ban["reason"] and ban["offences"] == 1
    # Banned: the next INVITE gets no answer at all (SIPp gives up).
    silent = run_uac("uac_blocked.xml", sipguard.target(), service=ALLOWED, host=STRANGER,
                     timeout=4)
    assert silent.successful == 0
    assert sipguard.stats()["dropped_before_parsing"]["banned"] >= 1
    # Peers are never banned, even by hand.
    refused_ban = _cli(sipguard, "bans", "add", PBX_HOST)
    assert refused_ban.returncode == 1 and "never banned" in refused_ban.stderr
    _unban(sipguard, STRANGER)
    again = run_uac("uac_blocked.xml", sipguard.target(), service=ALLOWED, host=STRANGER)
    assert again.successful == 1, again.describe()
    # A ban by hand, for a set time.
    added = _cli(sipguard, "bans", "add", STRANGER, "--seconds", "60", "--reason", "ops")
    assert added.returncode == 0 and f"banned {STRANGER}" in added.stdout, added
    assert _bans(sipguard)[STRANGER]["by"].startswith("cli:")


def test_a_flood_from_a_stranger_does_not_stop_the_pbx_calls(
        edge_sipguard: tuple[Sipguard, Any], start_uac: Callable[..., Any],
        run_uac: Callable[..., Any]) -> None:
    sipguard, uas = edge_sipguard
    before_kib = _rss_kib(sipguard.process.pid)
    # As fast as SIPp sends here, bounded: 60,000 INVITEs from a stranger (a few seconds).
    flood = start_uac("uac_flood.xml", sipguard.target(), service=ALLOWED, host=STRANGER,
                      calls=60000, rate=20000, timeout=60, extra=["-rp", "1000"])
    calls = run_uac("uac_call_bye.xml", sipguard.target(), service=ALLOWED, host=PBX_HOST,
                    calls=100, rate=20, timeout=60)
    flood.finish()
    assert calls.successful == 100 and calls.failed == 0, calls.describe()
    # A call whose ACK was lost in the flood ends when its 200 is given up on (Timer H,
    # 64*T1 = 32 s); every call has ended well within that.
    deadline = time.monotonic() + 40
    stats = sipguard.stats()
    while stats["calls"] and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = sipguard.stats()
    dropped = stats["dropped_before_parsing"]
    assert dropped["flood"] + dropped["banned"] > 10000, stats
    assert "failures" in _wait_for_ban(sipguard, STRANGER)["reason"]
    assert stats["calls"] == 0 and stats["tracked_sources"] <= 10
    # Nothing of the flood reached the trunk: 100 calls (INVITEs lost in the flood are
    # retransmitted, so there may be more than 100 INVITEs, never more than 100 calls).
    trunk_invites = uas.messages("received", "INVITE")
    assert len({invite.header("Call-ID") for invite in trunk_invites}) == 100
    assert not any("sip:flood@" in invite.text for invite in trunk_invites)
    grown_mib = (_rss_kib(sipguard.process.pid) - before_kib) / 1024
    assert grown_mib < 50, f"RSS grew {grown_mib:.1f} MiB under the flood"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


PASSWORD = "correct horse battery"


def test_a_digest_peer_calls_and_a_wrong_password_is_refused_and_counted(
        start_sipguard: Callable[..., Sipguard], start_uas: Callable[..., Any],
        run_uac: Callable[..., Any]) -> None:
    uas = start_uas("uas_answer.xml", host=PBX_HOST, extra=["-m", "10"])
    sipguard = start_sipguard(uas.uri, peers=["127.0.0.0/8"],
                              # SIPp's digest-uri leaves the user part out.
                              peer_auth={"username": "pbx", "password": PASSWORD,
                                         "relaxed_uri": True},
                              sip={"auth_algorithms": ["MD5"]},  # what SIPp 3.6 can answer
                              edge={"maxretry": 2, "findtime": 60})
    good = run_uac("uac_auth_call.xml", sipguard.target(), service=ALLOWED, host=STRANGER,
                   extra=["-au", "pbx", "-ap", PASSWORD])
    assert good.successful == 1, good.describe()
    assert uas.received("INVITE") == 1
    for attempt in range(2):
        bad = run_uac("uac_auth_call.xml", sipguard.target(), service=ALLOWED, host=STRANGER,
                      extra=["-au", "pbx", "-ap", "not the password"], timeout=5)
        assert bad.successful == 0
        failed = sipguard.wait_for("sip.auth_failed", 10.0, count=attempt + 1)
        assert failed[-1]["reason"] == "wrong password" and failed[-1]["username"] == "pbx"
        time.sleep(1.1)
    assert "authentication failed" in _wait_for_ban(sipguard, STRANGER)["reason"]
    assert uas.received("INVITE") == 1
    text = sipguard.stdout_path.read_text() + sipguard.stderr_path.read_text()
    assert PASSWORD not in text and "not the password" not in text


def test_the_carriers_challenge_is_answered_with_the_trunk_credentials(
        start_sipguard: Callable[..., Sipguard], start_uas: Callable[..., Any],
        run_uac: Callable[..., Any]) -> None:
    uas = start_uas("uas_auth_answer.xml")  # it expects acme / s3cret-carrier
    config_trunk = {"username": "acme", "password": "s3cret-carrier"}
    sipguard = start_sipguard(uas.uri, trunk_auth=config_trunk)
    result = run_uac("uac_call_bye.xml", sipguard.target(), service=ALLOWED)
    assert result.successful == 1, result.describe()
    assert uas.received("INVITE") == 2  # challenged, then with credentials
    ended = sipguard.wait_for("call.ended", 10.0)[0]
    assert ended["ended_by"] == "pbx"
