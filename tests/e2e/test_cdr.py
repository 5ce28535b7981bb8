"""Call records end to end: SIPp calls through sipguard, then the records, the CSV export,
the report and the replay read back through the command line; a PostgreSQL restart and a
SIGKILL in the middle lose nothing.

The policy: Canada allowed, US numbers need a PIN, everything else (here the UK) denied;
the account's home state is New York, so a call to 212 is intrastate.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pjsua2  # noqa: F401 (fail loudly, never skip, when pjsua2 is missing)
import pytest
from harness import Sipguard, SippResult, SippUas

from sipguard.pin.pins import hash_pin, save_pin_file

pytestmark = pytest.mark.e2e

POLICY = """
accounts:
  - name: asterisk-1
    home_region: US
    home_state: NY
    time_zone: UTC
    may_dial: [domestic, international, premium]
destinations:
  default: deny
  rules:
    - {id: pin-us, region: US, action: pin}
    - {id: allow-ca, region: CA, action: allow}
"""
STRICTER = POLICY.replace("{id: allow-ca, region: CA, action: allow}",
                          "{id: deny-ca, region: CA, action: deny}")
CANADA = "14165550123"
US_PIN = "12125551234"
UK = "011442079460321"
PIN = "246810"

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]


def _cli(guard: Sipguard, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipguard", *args, "--config", str(guard.config_path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def _records(guard: Sipguard) -> list[dict[str, Any]]:
    exported = _cli(guard, "cdr", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    return list(json.loads(exported.stdout))


def _wait_stored(guard: Sipguard, count: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the stats until the recorder says ``count`` records are in the database."""
    deadline = time.monotonic() + timeout
    while True:
        cdr = guard.stats()["cdr"]
        if cdr["stored"] >= count or time.monotonic() > deadline:
            return dict(cdr)
        time.sleep(0.3)


def _pin_digits() -> list[str]:
    return [arg for index, digit in enumerate(PIN, 1) for arg in ("-set", f"d{index}", digit)]


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "pins.yaml"
    save_pin_file(path, {"asterisk-1/2001": hash_pin(PIN)})
    return path


def test_allowed_blocked_and_pin_calls_each_leave_one_record(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        pin_file: Path) -> None:
    """Two allowed calls, one blocked and one PIN call give four records with the decision,
    number, jurisdiction, status, times, trunk and PIN outcome of each."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=POLICY, pin={"file": str(pin_file)},
                           ivr={"digit_timeout": 3.0, "overall_timeout": 10.0})
    allowed = run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=2,
                      extra=["-d", "300"])
    assert allowed.successful == 2, allowed.describe()
    blocked = run_uac("uac_blocked.xml", guard.target(), service=UK)
    assert blocked.successful == 1, blocked.describe()
    challenged = run_uac("uac_pin.xml", guard.target(), service=US_PIN, extra=_pin_digits())
    assert challenged.successful == 1, challenged.describe()
    assert _wait_stored(guard, 4)["stored"] == 4

    records = _records(guard)
    assert len(records) == 4 and len({record["id"] for record in records}) == 4
    by_number: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_number.setdefault(record["dialled"], []).append(record)
        assert record["account"] == "asterisk-1" and record["source"] == "127.0.0.1"
        assert record["extension"] == "2001" and record["policy_version"]
        assert record["started_at"] <= record["ended_at"]
        assert record["trace"] and record["node"]
    for record in by_number[CANADA]:
        assert (record["decision"], record["action"], record["rule"]) == (
            "forward", "allow", "allow-ca")
        assert (record["e164"], record["region"], record["jurisdiction"]) == (
            "+14165550123", "CA", "international")
        assert record["status"] == 200 and record["trunk"] == "carrier"
        assert record["answered_at"] is not None and 0.2 < record["duration"] < 5
        assert record["ended_by"] == "pbx" and record["end_reason"] == "BYE from pbx"
        assert "allow-ca" in record["rules"].split()
    (uk,) = by_number[UK]
    assert (uk["decision"], uk["action"], uk["status"], uk["region"]) == (
        "reject", "deny", 403, "GB")
    assert uk["answered_at"] is None and uk["duration"] == 0 and uk["trunk"] is None
    (pin,) = by_number[US_PIN]
    assert (pin["decision"], pin["rule"], pin["pin_outcome"]) == ("challenge", "pin-us",
                                                                 "accepted")
    assert (pin["state"], pin["jurisdiction"], pin["trunk"]) == ("NY", "intrastate", "carrier")
    assert pin["status"] == 200 and pin["trunk_status"] == 200
    assert uas.received("INVITE") == 3  # the two allowed calls and the PIN call


def test_the_csv_export_and_the_report_agree_with_what_was_sent(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac) -> None:
    """The CSV export lists every call placed, and the report counts them by country,
    jurisdiction and decision as they were sent."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=POLICY)
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=3,
                   rate=20).successful == 3
    assert run_uac("uac_blocked.xml", guard.target(), service=UK, calls=2,
                   rate=20).successful == 2
    _wait_stored(guard, 5)
    exported = _cli(guard, "cdr", "export", "--format", "csv", "--since", "1h")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 5
    assert sorted(row["region"] for row in rows) == ["CA", "CA", "CA", "GB", "GB"]
    assert sorted(row["status"] for row in rows) == ["200", "200", "200", "403", "403"]
    minutes = sum(float(row["duration"]) for row in rows) / 60
    report = _cli(guard, "report", "--since", "1h")
    assert report.returncode == 0, report.stderr
    text = report.stdout
    assert text.splitlines()[0].endswith(": 5")
    country = _section(text, "By country")
    assert country["CA"][:3] == ["3", "3", f"{minutes:.2f}"] and country["GB"][:2] == ["2", "0"]
    assert country["GB"][-1] == "2"  # blocked
    jurisdiction = _section(text, "By jurisdiction")
    assert jurisdiction["international"][:2] == ["5", "3"]
    assert _section(text, "By source")["127.0.0.1"][0] == "5"
    future = _cli(guard, "cdr", "export", "--since", "2099-01-01")
    assert future.returncode == 0 and future.stdout.strip().count("\n") == 0  # header only


def _section(report: str, title: str) -> dict[str, list[str]]:
    """The rows of one table of `sipguard report`: key -> the other columns."""
    lines = report.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[1:] if line.strip()}


def test_replay_of_a_stricter_policy_lists_exactly_the_calls_it_would_stop(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        tmp_path: Path) -> None:
    """Replaying the records through a policy that denies Canada lists the Canadian calls,
    and nothing else, as stopped; replaying the current policy changes nothing."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=POLICY)
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=2,
                   rate=20).successful == 2
    assert run_uac("uac_blocked.xml", guard.target(), service=UK).successful == 1
    _wait_stored(guard, 3)
    canadian = {record["id"] for record in _records(guard) if record["region"] == "CA"}
    strict = tmp_path / "strict.yaml"
    strict.write_text(STRICTER)
    replayed = _cli(guard, "replay", "--policy", str(strict), "--json")
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout)
    assert result["records"] == 3
    assert {item["id"] for item in result["stopped"]} == canadian
    assert all(item["candidate"]["rule"] == "deny-ca" for item in result["stopped"])
    assert result["released"] == []
    same = _cli(guard, "replay", "--policy", str(guard.config_path.parent / "policy.yaml"),
                "--json")
    assert json.loads(same.stdout)["stopped"] == []
    text = _cli(guard, "replay", "--policy", str(strict)).stdout
    assert "The candidate stops 2 the current policy let through" in text


def test_records_acknowledged_to_the_spool_survive_a_sigkill(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac,
        tmp_path: Path) -> None:
    """With the database unreachable, records wait in the spool; sipguard killed with
    SIGKILL and started again writes every acknowledged record, once."""
    uas = start_uas("uas_answer.xml", extra=["-m", "100"])
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the database cannot be created under a file\n")
    spool = tmp_path / "spool"
    first = start_sipguard(uas.uri, policy=POLICY, sections={
        "cdr": {"path": str(blocker / "cdr.sqlite"), "spool": str(spool)}})
    calls = run_uac("uac_call_bye.xml", first.target(), service=CANADA, calls=8, rate=20)
    assert calls.successful == 8, calls.describe()
    # The writer says the database is down once its first attempt failed: wait for that
    # (on a loaded machine it can come after the records are acknowledged).
    first.wait_for("cdr.unavailable")
    deadline = time.monotonic() + 10
    while ((cdr := first.stats()["cdr"])["acknowledged"] < 8 or cdr["database_up"]) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cdr["acknowledged"] == 8 and cdr["stored"] == 0 and not cdr["database_up"], cdr
    first.process.kill()  # SIGKILL: no drain, no last write
    first.process.wait(timeout=10)
    assert len(list(spool.glob("*.jsonl"))) >= 1

    second = start_sipguard(uas.uri, policy=POLICY, sections={
        "cdr": {"path": str(tmp_path / "cdr.sqlite"), "spool": str(spool)}})
    assert _wait_stored(second, 8)["stored"] == 8
    records = _records(second)
    assert len(records) == 8 and len({record["id"] for record in records}) == 8
    assert list(spool.glob("*.jsonl")) == []


def test_a_postgresql_restart_in_the_middle_loses_no_record(
        start_uas: StartUas, start_sipguard: StartSipguard, start_uac: Callable[..., Any],
        postgres: Any) -> None:
    """Records go to PostgreSQL; stopped and started again while calls go on, it ends up with
    every call's record, once, and the outage and the recovery are logged."""
    uas = start_uas("uas_answer.xml", extra=["-m", "100"])
    guard = start_sipguard(uas.uri, policy=POLICY, sections={
        "cdr": {"backend": "postgresql", "dsn": postgres.dsn, "timeout": 2.0}})
    run = start_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=40, rate=10,
                    timeout=60)
    time.sleep(1.0)
    postgres.stop()
    time.sleep(2.0)
    postgres.start()
    result = run.finish()
    assert result.successful == 40, result.describe()
    assert _wait_stored(guard, 40, timeout=60)["stored"] == 40
    guard.wait_for("cdr.unavailable")
    guard.wait_for("cdr.recovered")
    records = _records(guard)
    assert len(records) == 40 and len({record["call_id"] for record in records}) == 40


def test_prometheus_metrics_count_the_calls_on_the_admin_address(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac) -> None:
    """GET /metrics on the admin address counts decisions by rule and class, times them,
    and shows live calls and the call records' progress."""
    import urllib.request

    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=POLICY, sections={"admin": {"listen": "127.0.0.1:0"}})
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=2,
                   rate=20).successful == 2
    assert run_uac("uac_blocked.xml", guard.target(), service=UK).successful == 1
    _wait_stored(guard, 3)
    admin = guard.wait_for("service.started")[0]["admin"]
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line and not line.startswith("#")}
    assert samples['sipguard_calls_total{decision="forward",number_class="international",'
                   'rule="allow-ca"}'] == 2
    assert samples['sipguard_calls_total{decision="reject",number_class="international",'
                   'rule="default"}'] == 1
    assert samples["sipguard_decision_seconds_count"] == 3
    assert samples["sipguard_live_calls"] == 0
    assert samples["sipguard_cdr_stored_total"] == 3
    assert samples["sipguard_cdr_database_up"] == 1
    assert samples["sipguard_store_up"] == 1


def test_calls_cut_off_by_the_stop_are_recorded(
        start_sipguard: StartSipguard, start_uac: Callable[..., Any], black_hole: Any) -> None:
    """A call still waiting for a silent trunk when sipguard stops is recorded all the same,
    ended by sipguard, with the 503 the PBX got."""
    guard = start_sipguard(black_hole.uri, policy=POLICY, drain_grace=0.5)
    run = start_uac("uac_timeout.xml", guard.target(), service=CANADA, timeout=15)
    deadline = time.monotonic() + 10
    while black_hole.requests("INVITE") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert black_hole.requests("INVITE") >= 1
    assert guard.stop()  # SIGTERM: drain, hang up what is left, record it, stop
    run.finish()
    (record,) = _records(guard)
    assert (record["decision"], record["status"], record["ended_by"]) == (
        "forward", 503, "sipguard")
    assert record["answered_at"] is None and record["trunk_status"] is None
