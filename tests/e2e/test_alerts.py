"""Alerts and lockdown end to end: a fraud weekend, in a few minutes of real time.

The call records hold four normal weeks for this hour of the week (written to the real
SQLite file before sipguard starts: a quarter of a minute of international calls an
hour, a scaled-down baseline). SIPp then places a burst of international calls through
sipguard. Within seconds the traffic alert fires at the urgent level, the email reaches
a real SMTP server (aiosmtpd) on loopback, the webhook gets its JSON, and the account's
international dialling is locked: the next international call gets 403 while domestic
and emergency calls go on, until `sipguard unlock` lets it through again. A dead webhook
and a dead SMTP server hold up no call, and the kill switch stops international calls
from every account.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from harness import Sipguard, SippResult, SippUas, free_port

from sipguard.records.record import CallRecord
from sipguard.records.sqlite import SqliteSink

pytestmark = pytest.mark.e2e

ACCOUNT = "asterisk-1"
CANADA = "14165550123"  # international from the US (allowed by the policy)
UK = "011442079460321"  # international, denied
US = "12125551234"  # interstate (allowed)
WEEK = 7 * 86400.0
NORMAL_SECONDS = 15.0  # international seconds in this hour, each of the last four weeks

POLICY = f"""
accounts:
  - name: {ACCOUNT}
    home_region: US
    home_state: CA
    time_zone: UTC
    may_dial: [domestic, international, premium]
destinations:
  default: deny
  rules:
    - {{id: allow-us, region: US, action: allow}}
    - {{id: allow-ca, region: CA, action: allow}}
alerts:
  baseline: {{weeks: 4}}
  min_minutes: 0.5
  min_calls: 1000
  contacts: [log, "email:noc@localhost", "webhook:noc"]
  lock_on_urgent: international
  types:
    first_source: {{enabled: false}}
"""

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]


@dataclass
class Mailbox:
    """What the SMTP server received."""

    messages: list[tuple[list[str], str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos),
                              envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, mailbox
    controller.stop()


class Webhook:
    """An HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


class Silent:
    """A TCP server that accepts connections and never says a word (a dead SMTP server
    or webhook that hangs instead of refusing)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            self.accepted.append(connection)

    def close(self) -> None:
        self._stop.set()
        for connection in self.accepted:
            connection.close()
        self.socket.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


def _seed_history(path: Path, now: float) -> None:
    """Four normal weeks: NORMAL_SECONDS of calls to Canada in this hour of each week."""
    hour = now - now % 3600

    async def write() -> None:
        sink = SqliteSink(path)
        await sink.open()
        records = []
        for weeks in range(1, 5):
            for hour_start in (hour - weeks * WEEK, hour + 3600 - weeks * WEEK):
                started = hour_start + 600
                records.append(CallRecord(
                    call_id=f"history-{weeks}-{hour_start}", started_at=started,
                    answered_at=started + 1, ended_at=started + 1 + NORMAL_SECONDS,
                    account=ACCOUNT, source="127.0.0.1", dialled=CANADA,
                    decision="forward", e164="+" + CANADA, region="CA",
                    jurisdiction="international", status=200, duration=NORMAL_SECONDS))
        await sink.write(records)
        await sink.close()

    asyncio.run(write())


def _clear_of_the_hour() -> None:
    """The test's traffic must stay within one hour of the week: wait out an hour's end."""
    left = 3600 - time.time() % 3600
    if left < 150:
        time.sleep(left + 1)


def _cli(guard: Sipguard, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipguard", *args, "--config", str(guard.config_path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _alert_sections(tmp_path: Path, smtp_port: int, webhook_url: str,
                    **alerts: Any) -> dict[str, Any]:
    return {
        "admin": {"listen": "127.0.0.1:0"},
        "cdr": {"path": str(tmp_path / "cdr.sqlite"), "spool": str(tmp_path / "spool"),
                "batch_seconds": 0.2},
        "alerts": {"check_seconds": 1.0,
                   "email": {"host": "127.0.0.1", "port": smtp_port,
                             "sender": "sipguard@localhost", "timeout": 5, "retries": 1},
                   "webhooks": {"noc": {"url": webhook_url, "timeout": 5, "retries": 1}},
                   **alerts},
    }


def test_a_burst_of_international_calls_at_night_fires_an_urgent_alert_and_locks_the_account(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        smtp_server: tuple[int, Mailbox], webhook: Webhook, tmp_path: Path) -> None:
    """Four normal weeks, then a burst: the urgent alert reaches the email and the webhook,
    the account's international dialling is locked (domestic and 911 go on), and
    `sipguard unlock` lets international calls through again."""
    _clear_of_the_hour()
    smtp_port, mailbox = smtp_server
    _seed_history(tmp_path / "cdr.sqlite", time.time())
    uas = start_uas("uas_answer.xml", extra=["-m", "100"])
    guard = start_sipguard(uas.uri, policy=POLICY,
                           sections=_alert_sections(tmp_path, smtp_port, webhook.url))

    began = time.monotonic()
    burst = run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=6, rate=6,
                    extra=["-d", "6000"])
    assert burst.successful == 6, burst.describe()

    alert = _wait(lambda: next((body for body in webhook.bodies if body["type"] == "traffic"
                                and body["details"]["dimension"] == "jurisdiction:international"),
                               None), 60, "the webhook")
    fired_after = time.monotonic() - began
    assert fired_after < 60
    assert alert["level"] == "urgent" and alert["account"] == ACCOUNT
    assert alert["jurisdiction"] == "international"
    details = alert["details"]
    assert details["normal"] == pytest.approx(NORMAL_SECONDS / 60, abs=0.05)
    assert details["baseline_weeks"] == 4 and details["current"] >= 0.5
    assert details["percent_above"] >= 100
    assert alert["text"].startswith(f"International minutes for account {ACCOUNT} are ")
    assert "% above normal for a " in alert["text"] and "min vs 0.2 min" in alert["text"]
    assert alert["text"].endswith(
        f"is now locked (international and premium calls) until someone runs: "
        f"sipguard unlock {ACCOUNT}")

    recipients, mail = _wait(lambda: next((message for message in mailbox.messages
                                           if "Subject: [sipguard urgent] International"
                                           in message[1]), None), 30, "the email")
    assert recipients == ["noc@localhost"]
    assert "Subject: [sipguard urgent] International minutes for account" in mail
    assert "To: noc@localhost" in mail and alert["id"] in mail

    locks = _cli(guard, "locks", "--json")
    assert locks.returncode == 0, locks.stderr
    (lock,) = json.loads(locks.stdout)["locks"]
    assert lock["account"] == ACCOUNT and lock["scope"] == "international"
    assert lock["by"].startswith("sipguard (alert ")

    refused = run_uac("uac_blocked.xml", guard.target(), service=CANADA)
    assert refused.successful == 1, refused.describe()
    domestic = run_uac("uac_call_bye.xml", guard.target(), service=US)
    assert domestic.successful == 1, domestic.describe()
    emergency = run_uac("uac_call_bye.xml", guard.target(), service="911")
    assert emergency.successful == 1, emergency.describe()
    locked = guard.events("call.rejected", lambda event: event.get("rule") == f"lock:{ACCOUNT}")
    assert len(locked) == 1

    unlocked = _cli(guard, "unlock", ACCOUNT)
    assert unlocked.returncode == 0 and f"unlocked {ACCOUNT}" in unlocked.stdout
    again = run_uac("uac_call_bye.xml", guard.target(), service=CANADA)
    assert again.successful == 1, again.describe()

    listed = _cli(guard, "alerts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    raised = json.loads(listed.stdout)["alerts"]
    international = [item for item in raised if item["type"] == "traffic"
                     and item["details"]["dimension"] == "jurisdiction:international"]
    assert [item["level"] for item in international] == ["urgent"]
    assert any(item["details"]["dimension"] == "country:CA" for item in raised)
    assert guard.stats()["locks"]["refused"] == 1
    metrics = _metrics(guard)
    assert metrics['sipguard_alerts_total{level="urgent",type="traffic"}'] >= 1
    assert metrics['sipguard_alert_deliveries_total{channel="email",outcome="sent"}'] >= 1
    assert metrics["sipguard_locks_set_total"] == 1


def test_a_dead_webhook_and_a_dead_smtp_server_hold_up_no_call(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        silent: Silent, tmp_path: Path) -> None:
    """Both channels hang (they accept and never answer) while calls raise alert after
    alert: every call completes, and the deliveries are still waiting when they have."""
    uas = start_uas("uas_answer.xml", extra=["-m", "100"])
    # One denied international attempt is enough for a failed_international alert.
    policy = POLICY.replace("  lock_on_urgent: international\n", "") + \
        "    failed_international: {threshold: 1}\n"
    guard = start_sipguard(uas.uri, policy=policy, sections=_alert_sections(
        tmp_path, silent.port, f"http://127.0.0.1:{silent.port}/alerts"))
    denied = run_uac("uac_blocked.xml", guard.target(), service=UK)
    assert denied.successful == 1, denied.describe()
    guard.wait_for("alert.raised")
    _wait(lambda: len(silent.accepted) >= 2, 10, "both channels to connect")
    calls = run_uac("uac_call_bye.xml", guard.target(), service=US, calls=20, rate=20)
    assert calls.successful == 20, calls.describe()
    channels = guard.stats()["alerts"]["channels"]
    assert channels["email"]["sent"] == 0 and channels["webhook:noc"]["sent"] == 0
    assert channels["log"]["sent"] >= 1  # the log channel went on meanwhile
    assert len(silent.accepted) >= 2  # both were tried, and are hanging


def test_the_kill_switch_stops_international_calls_and_lets_domestic_and_911_through(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        tmp_path: Path) -> None:
    """`sipguard lockdown on` refuses the next international call; domestic and emergency
    calls go through; `lockdown off` lets international calls through again."""
    uas = start_uas("uas_answer.xml", extra=["-m", "100"])
    guard = start_sipguard(uas.uri, policy=POLICY, sections={"admin": {"listen": "127.0.0.1:0"}})
    on = _cli(guard, "lockdown", "on", "--reason", "incident 42")
    assert on.returncode == 0 and "lockdown ON" in on.stdout, on.stderr
    status = _cli(guard, "lockdown", "status")
    assert "lockdown: ON" in status.stdout and "incident 42" in status.stdout
    assert run_uac("uac_blocked.xml", guard.target(), service=CANADA).successful == 1
    assert run_uac("uac_call_bye.xml", guard.target(), service=US).successful == 1
    assert run_uac("uac_call_bye.xml", guard.target(), service="911").successful == 1
    rejected = guard.events("call.rejected", lambda event: event.get("rule") == "lockdown")
    assert len(rejected) == 1
    metrics = _metrics(guard)
    assert metrics["sipguard_lock_refusals_total"] == 1 and metrics["sipguard_lockdown"] == 1
    off = _cli(guard, "lockdown", "off")
    assert off.returncode == 0 and "lockdown off" in off.stdout
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA).successful == 1
    assert uas.received("INVITE") == 3  # US, 911, and Canada after the lockdown
    assert _metrics(guard)["sipguard_lockdown"] == 0


def _metrics(guard: Sipguard) -> dict[str, float]:
    """The samples of GET /metrics on the admin address."""
    admin = guard.wait_for("service.started")[0]["admin"]
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_a_ban_alerts_the_webhook_and_a_snoozed_type_stays_silent(
        start_uas: StartUas, start_sipguard: StartSipguard, smtp_server: tuple[int, Mailbox],
        webhook: Webhook, tmp_path: Path) -> None:
    """`sipguard bans add` raises a ban alert that reaches the webhook; after
    `sipguard alerts snooze ban` the next ban raises none, and `alerts list` shows the
    snooze."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=POLICY,
                           sections=_alert_sections(tmp_path, smtp_server[0], webhook.url))
    banned = _cli(guard, "bans", "add", "127.0.0.9", "--reason", "scanning")
    assert banned.returncode == 0, banned.stderr
    alert = _wait(lambda: next((body for body in webhook.bodies if body["type"] == "ban"),
                               None), 20, "the ban alert")
    assert alert["level"] == "notify" and alert["details"]["address"] == "127.0.0.9"
    assert "Source address 127.0.0.9 banned for " in alert["text"] and "scanning" in alert["text"]
    snoozed = _cli(guard, "alerts", "snooze", "ban")
    assert snoozed.returncode == 0 and "ban alerts snoozed" in snoozed.stdout, snoozed.stderr
    assert _cli(guard, "bans", "add", "127.0.0.10").returncode == 0
    guard.wait_for("ban.added", count=2)
    time.sleep(1.0)  # time enough for an alert that should not come
    assert [body["details"]["address"] for body in webhook.bodies if body["type"] == "ban"] \
        == ["127.0.0.9"]
    listed = json.loads(_cli(guard, "alerts", "list", "--json").stdout)
    assert "ban" in listed["snoozed"] and listed["stats"]["suppressed"] >= 1
