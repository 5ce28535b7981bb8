"""Alerting as the service runs it (sipguard.alerts.watch): events raise alerts, repeats are
sent once, types can be off or snoozed, an urgent alert locks the account, and the traffic
of the hour (from a real SQLite CDR database) is compared with its baseline."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sipguard.alerts import watch
from sipguard.alerts.baseline import weeks_back
from sipguard.alerts.model import Alert
from sipguard.alerts.settings import AlertSettings
from sipguard.alerts.watch import Alerting
from sipguard.policy import CallAttempt, Decision, Policy, TraceEntry, Verdict, evaluate
from sipguard.policy.alerting import AlertType, Level
from sipguard.policy.loader import load_policy
from sipguard.records import CallRecord
from sipguard.records.sqlite import SqliteSink
from sipguard.screening.locks import Locks
from sipguard.store import MemoryStore

NY = ZoneInfo("America/New_York")
THURSDAY = datetime(2024, 5, 16, 2, 0, tzinfo=NY)  # no DST change in the 4 weeks before
START = THURSDAY.timestamp()
NOW = START + 20 * 60  # Thursday 02:20 in New York

POLICY = """\
accounts:
  - name: acme
    home_region: US
    home_state: NJ
    time_zone: America/New_York
    may_dial: [domestic, international]
  - name: globex
    home_region: US
    may_dial: [domestic, international]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: allow-gb, region: GB, action: allow}
    - {id: deny-cu, region: CU, action: deny}
risk:
  country_risk: {CU: 90, GB: 10}
"""

ALERTS = """\
alerts:
  contacts: [log]
  types:
    failed_international: {threshold: 3, window: 1h}
"""

LONDON = "011442079460321"
NEW_YORK = "12125550100"
HAVANA = "0115351234567"  # CU: country risk 90
PARIS = "0113314567890"  # FR: denied by default, country risk 20 (the default)


class Log:
    """A logger that keeps (event, fields) per level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, /, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, /, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, /, **fields: Any) -> None:
        self.lines.append(("error", event, fields))

    def exception(self, event: str, /, **fields: Any) -> None:
        self.lines.append(("exception", event, fields))

    def events(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.lines if name == event]


def _policy(tmp_path: Path, alerts: str = ALERTS) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY + textwrap.dedent(alerts))
    return load_policy(path)


def _attempt(dialled: str, source: str = "127.0.0.2", account: str = "acme") -> CallAttempt:
    return CallAttempt(f"call-{dialled}-{source}@127.0.0.1", account, source, "201", dialled,
                       extension="201")


class Harness:
    """An Alerting on a MemoryStore with real Locks, no channels but the log."""

    def __init__(self, policy: Policy, reader: Callable[[], SqliteSink] | None = None) -> None:
        self.policy = policy
        self.log = Log()
        self.store = MemoryStore()
        self.locks = Locks(self.store, self.log)
        self.alerting = Alerting(AlertSettings(), lambda: self.policy, self.store, self.locks,
                                 self.log, reader=reader)
        self._keys = 0

    async def start(self) -> None:
        await self.alerting.start()
        async with asyncio.timeout(10):
            while self.alerting._sources is None:  # the known sources are being read
                await asyncio.sleep(0.001)

    def screen(self, dialled: str, source: str = "127.0.0.2",
               account: str = "acme") -> Decision:
        attempt = _attempt(dialled, source, account)
        decision = evaluate(self.policy, attempt)
        self._keys += 1
        self.alerting.screened(self._keys, attempt, decision)
        return decision

    async def settle(self) -> None:
        """Let every spawned task finish and the log channel deliver what was queued."""
        for _ in range(100):
            await asyncio.sleep(0)
            if self.alerting._tasks:
                await asyncio.gather(*list(self.alerting._tasks))
            elif all(channel.queue.empty() for channel in
                     self.alerting.dispatcher.channels.values()):
                break
        for channel in self.alerting.dispatcher.channels.values():
            await channel.queue.join()

    def alerts(self, alert_type: AlertType | None = None) -> list[Alert]:
        """The alerts raised, oldest first."""
        raised = list(reversed(self.alerting.journal.alerts))
        return [alert for alert in raised if alert_type is None or alert.type is alert_type]


def _scenario(policy: Policy, body: Callable[[Harness], Awaitable[None]],
              reader: Callable[[], SqliteSink] | None = None) -> Harness:
    harness = Harness(policy, reader)

    async def main() -> None:
        async with asyncio.timeout(20):
            await harness.start()
            try:
                await body(harness)
            finally:
                await harness.alerting.stop()

    asyncio.run(main())
    return harness


# -- events -------------------------------------------------------------------------------


def test_first_call_from_a_new_source_alerts_once(tmp_path: Path):
    """A source address never seen raises first_source once; the next call from it none."""
    async def body(harness: Harness) -> None:
        harness.screen(NEW_YORK, source="127.0.0.2")
        await harness.settle()
        assert len(harness.alerts(AlertType.FIRST_SOURCE)) == 1
        harness.screen(LONDON, source="127.0.0.2")
        harness.screen(NEW_YORK, source="127.0.0.2")
        await harness.settle()
        assert len(harness.alerts(AlertType.FIRST_SOURCE)) == 1
        harness.screen(NEW_YORK, source="127.0.0.3")
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body)
    first, second = harness.alerts(AlertType.FIRST_SOURCE)
    assert first.level is Level.WARNING and first.account == "acme"
    assert first.key == "first_source:127.0.0.2"
    assert first.text == ("First call ever from source address 127.0.0.2 (account acme, "
                          "extension 201, dialling 12125550100)")
    assert first.jurisdiction == "interstate"  # NJ to a New York number
    assert second.key == "first_source:127.0.0.3"
    assert harness.alerts() == [first, second]  # nothing else: every call was allowed
    logged = harness.log.events("alert")  # the log channel delivered both
    assert [fields["key"] for fields in logged] == [first.key, second.key]
    assert harness.alerting.stats()["raised"] == {"first_source/warning": 2}


def test_sources_in_the_call_records_are_not_new(tmp_path: Path):
    """Source addresses the CDR database already knows raise no first_source alert."""
    path = tmp_path / "cdr.sqlite"
    asyncio.run(_write(path, [_record(START, 60, source="127.0.0.9", dialled=NEW_YORK,
                                      region="US", jurisdiction="interstate")]))

    async def body(harness: Harness) -> None:
        harness.screen(NEW_YORK, source="127.0.0.9")
        harness.screen(NEW_YORK, source="127.0.0.4")
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body, reader=lambda: SqliteSink(path))
    assert [alert.key for alert in harness.alerts()] == ["first_source:127.0.0.4"]


def test_denied_call_to_a_high_risk_country_alerts(tmp_path: Path):
    """A denied call to CU (country risk 90 >= 80) raises denied_high_risk, once per account
    and country; a denied call to FR (risk 20) does not."""
    async def body(harness: Harness) -> None:
        decision = harness.screen(HAVANA)
        assert decision.verdict is Verdict.REJECT
        harness.screen(HAVANA)
        harness.screen(PARIS)
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body)
    [alert] = harness.alerts(AlertType.DENIED_HIGH_RISK)
    assert alert.level is Level.WARNING and alert.key == "denied_high_risk:acme:CU"
    assert alert.text == ("Call to high-risk CU (+5351234567, country risk 90) from account "
                          "acme, extension 201 was denied by rule deny-cu")
    assert alert.jurisdiction == "international"
    assert alert.details["country_risk"] == 90 and alert.details["rule"] == "deny-cu"


def test_min_country_risk_decides_what_is_high_risk(tmp_path: Path):
    """With min_country_risk 95 a denied call to CU (90) raises nothing."""
    alerts = ALERTS + "    denied_high_risk: {min_country_risk: 95}\n"

    async def body(harness: Harness) -> None:
        harness.screen(HAVANA)
        await harness.settle()

    harness = _scenario(_policy(tmp_path, alerts), body)
    assert harness.alerts(AlertType.DENIED_HIGH_RISK) == []
    assert len(harness.alerts(AlertType.FIRST_SOURCE)) == 1  # the rest still works


def test_failed_international_fires_at_the_threshold(tmp_path: Path):
    """Three denied international attempts within the hour raise failed_international once."""
    async def body(harness: Harness) -> None:
        for _ in range(2):
            harness.screen(PARIS)
        harness.screen(PARIS, account="globex")  # another account's count
        await harness.settle()
        assert harness.alerts(AlertType.FAILED_INTERNATIONAL) == []
        harness.screen(PARIS)
        await harness.settle()
        assert len(harness.alerts(AlertType.FAILED_INTERNATIONAL)) == 1
        harness.screen(PARIS)  # four: the same alert, not sent again
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body)
    [alert] = harness.alerts(AlertType.FAILED_INTERNATIONAL)
    assert alert.level is Level.WARNING and alert.account == "acme"
    assert alert.text.startswith("3 denied or failed international attempts from account acme "
                                 "in the last 1 h (threshold 3); the last: 0113314567890: ")
    assert alert.details["attempts"] == 3 and alert.details["window_seconds"] == 3600.0


def test_failed_international_counts_calls_the_trunk_failed(tmp_path: Path):
    """International calls that failed (a 503, never answered) count; a 487 does not."""
    async def body(harness: Harness) -> None:
        harness.screen(PARIS)
        harness.alerting.finished(100, _record(time.time(), 0, status=487, answered=False))
        harness.alerting.finished(101, _record(time.time(), 0, status=503, answered=False))
        await harness.settle()
        assert harness.alerts(AlertType.FAILED_INTERNATIONAL) == []
        harness.alerting.finished(102, _record(time.time(), 0, status=480, answered=False))
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body)
    [alert] = harness.alerts(AlertType.FAILED_INTERNATIONAL)
    assert alert.details["attempts"] == 3
    assert alert.details["last"] == f"{LONDON}: failed with 480"


def test_a_type_that_is_off_raises_nothing(tmp_path: Path):
    """enabled: false turns a type off; so do levels and jurisdictions it does not send."""
    alerts = """\
        alerts:
          types:
            first_source: {enabled: false}
            failed_international: {enabled: false, threshold: 1}
            denied_high_risk: {jurisdictions: [interstate]}
            ban: {levels: [urgent]}
        """

    async def body(harness: Harness) -> None:
        harness.screen(HAVANA, source="127.0.0.5")
        harness.screen(PARIS, source="127.0.0.6")
        harness.alerting.banned("127.0.0.7", "scanner", 3600, "edge")
        await harness.settle()

    harness = _scenario(_policy(tmp_path, alerts), body)
    assert harness.alerts() == []
    assert harness.log.events("alert") == []
    # Two first sources, one high-risk call and one ban were looked at and not sent.
    assert harness.alerting.suppressed == 4


def test_snooze_suppresses_that_type_for_the_rest_of_the_day(tmp_path: Path):
    """A snoozed type raises nothing until unsnoozed; other types go on."""
    async def body(harness: Harness) -> None:
        seconds = await harness.alerting.snooze(AlertType.FIRST_SOURCE, "ops")
        assert 0 < seconds <= 25 * 3600
        assert set(await harness.alerting.snoozed()) == {"first_source"}
        harness.screen(HAVANA, source="127.0.0.5")
        await harness.settle()
        assert harness.alerts(AlertType.FIRST_SOURCE) == []
        assert len(harness.alerts(AlertType.DENIED_HIGH_RISK)) == 1
        await harness.alerting.unsnooze(AlertType.FIRST_SOURCE, "ops")
        assert await harness.alerting.snoozed() == {}
        harness.screen(NEW_YORK, source="127.0.0.6")
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body)
    assert [alert.key for alert in harness.alerts(AlertType.FIRST_SOURCE)] == [
        "first_source:127.0.0.6"]
    assert harness.alerting.suppressed == 1
    assert [fields["by"] for fields in harness.log.events("alert.snoozed")] == ["ops"]


def test_same_key_and_level_is_sent_once(tmp_path: Path):
    """An alert with the key and level of one already sent is not sent again; a louder one
    is, and after it the quieter one is not."""
    def ban(level: Level) -> Alert:
        return Alert(AlertType.BAN, level, "Source address 127.0.0.7 banned", "ban:127.0.0.7")

    async def body(harness: Harness) -> None:
        harness.alerting.banned("127.0.0.7", "scanner", 3600, "edge")
        harness.alerting.banned("127.0.0.7", "scanner", 3600, "edge")
        await harness.settle()
        assert len(harness.alerts(AlertType.BAN)) == 1
        assert await harness.alerting.fire(ban(Level.NOTIFY), 3600) is None
        assert await harness.alerting.fire(ban(Level.URGENT), 3600) is not None
        assert await harness.alerting.fire(ban(Level.URGENT), 3600) is None
        assert await harness.alerting.fire(ban(Level.WARNING), 3600) is None
        other = Alert(AlertType.BAN, Level.NOTIFY, "Source address 127.0.0.8 banned",
                      "ban:127.0.0.8")
        assert await harness.alerting.fire(other, 3600) is not None
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body)
    first, urgent, other = harness.alerts(AlertType.BAN)
    assert first.level is Level.NOTIFY
    assert first.text == "Source address 127.0.0.7 banned for 1 h (edge): scanner"
    assert (urgent.level, urgent.key, other.key) == (Level.URGENT, "ban:127.0.0.7",
                                                     "ban:127.0.0.8")
    assert len(harness.log.events("alert")) == 3


def test_an_alert_is_sent_again_after_repeat_after(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """repeat_after is the time before the same alert is sent again: a high-risk call every
    half hour alerts at the start and again once an hour has passed since that alert."""
    clock = [time.time()]
    monkeypatch.setattr(watch, "time", SimpleNamespace(time=lambda: clock[0]))
    alerts = ALERTS + "    denied_high_risk: {repeat_after: 1h}\n"

    counts: list[int] = []

    async def body(harness: Harness) -> None:
        for _ in range(4):  # at 0, 30, 60 and 90 minutes
            harness.screen(HAVANA)
            await harness.settle()
            counts.append(len(harness.alerts(AlertType.DENIED_HIGH_RISK)))
            clock[0] += 1800 + 1

    _scenario(_policy(tmp_path, alerts), body)
    # Sent at 0; not at 30 (within the hour); again at 60; not at 90 (within the hour of 60).
    assert counts == [1, 1, 2, 2]


def test_an_urgent_alert_locks_the_account(tmp_path: Path):
    """lock_on_urgent: international: a PIN lockout (urgent) locks acme's international
    dialling, and the alert says so."""
    alerts = ALERTS + "  lock_on_urgent: international\n"
    policy = _policy(tmp_path, alerts)

    async def body(harness: Harness) -> None:
        harness.alerting.pin_locked("acme", "201", 900)
        await harness.settle()
        held, switch = await harness.locks.current("acme")
        assert held is not None and switch is None
        assert held.scope == "international"
        assert held.by.startswith("sipguard (alert ")
        assert held.reason.startswith("urgent alert: PIN locked out for account acme")
        locked = await harness.locks.apply("acme", evaluate(policy, _attempt(LONDON)))
        assert locked.verdict is Verdict.REJECT and locked.rule == "lock:acme"
        domestic = evaluate(policy, _attempt(NEW_YORK))
        assert await harness.locks.apply("acme", domestic) is domestic
        assert await harness.locks.current("globex") == (None, None)

    harness = _scenario(policy, body)
    [alert] = harness.alerts(AlertType.PIN_LOCKOUT)
    assert alert.level is Level.URGENT
    assert alert.text == (
        "PIN locked out for account acme, extension 201 after too many wrong PINs (for "
        "15 min): someone may be guessing. Account acme is now locked (international and "
        "premium calls) until someone runs: sipguard unlock acme")
    assert alert.details["locked"] == "international"
    [logged] = harness.log.events("alert")
    assert logged["text"] == alert.text
    assert [level for level, event, _ in harness.log.lines if event == "alert"] == ["error"]


def test_a_snoozed_or_silenced_urgent_alert_still_locks_the_account(tmp_path: Path):
    """Snoozing a type, or not sending its urgent level, silences the alert but not the
    lock: the account is locked all the same and nothing is sent."""
    locking = ALERTS + "  lock_on_urgent: international\n"
    # One types: section (a second would be a duplicate key): the failed_international
    # type of ALERTS and the silenced pin_lockout.
    silenced = locking.replace("  types:\n", "  types:\n    pin_lockout: {levels: [notify]}\n")

    async def locked_out(harness: Harness, snooze: bool) -> None:
        if snooze:
            await harness.alerting.snooze(AlertType.PIN_LOCKOUT, "ops")
        harness.alerting.pin_locked("acme", "201", 900)
        await harness.settle()
        held, _ = await harness.locks.current("acme")
        assert held is not None and held.scope == "international"
        # A person unlocks it: the same finding again within repeat_after does not
        # lock it again behind their back.
        await harness.locks.unlock("acme", "ops")
        harness.alerting.pin_locked("acme", "201", 900)
        await harness.settle()
        assert await harness.locks.current("acme") == (None, None)

    for alerts, snooze in ((locking, True), (silenced, False)):
        harness = _scenario(_policy(tmp_path, alerts),
                            lambda harness, snooze=snooze: locked_out(harness, snooze))
        assert harness.alerts(AlertType.PIN_LOCKOUT) == []
        assert harness.alerting.suppressed == 2


def test_lock_on_urgent_all_and_lock_accounts(tmp_path: Path):
    """lock_on_urgent: all locks all dialling, and only the accounts in lock_accounts."""
    alerts = ALERTS + "  lock_on_urgent: all\n  lock_accounts: [globex]\n"

    async def body(harness: Harness) -> None:
        await harness.locks.lock("globex", "international", "by hand", "ops")
        harness.alerting.pin_locked("acme", "201", 900)
        harness.alerting.pin_locked("globex", "301", 900)
        await harness.settle()
        assert await harness.locks.current("acme") == (None, None)
        held, _ = await harness.locks.current("globex")
        assert held is not None and held.scope == "all"  # widened from international

    harness = _scenario(_policy(tmp_path, alerts), body)
    by_account = {alert.account: alert for alert in harness.alerts(AlertType.PIN_LOCKOUT)}
    assert "locked" not in by_account["acme"].details
    assert "is now locked" not in by_account["acme"].text
    assert by_account["globex"].text.endswith(
        "Account globex is now locked (all but emergency calls) until someone runs: "
        "sipguard unlock globex")


def test_limit_refusals_alert(tmp_path: Path):
    """A call a limit refused raises limit_reached (notify) naming the limit."""
    policy = _policy(tmp_path)
    attempt = _attempt(LONDON, source="127.0.0.2")
    allowed = evaluate(policy, attempt)
    refused = Decision(Verdict.REJECT, "3 international calls in 1 h (max 3)",
                       (*allowed.trace, TraceEntry("intl-rate", True, "max 3", "limit", "deny")),
                       "intl-rate", "limit reached", "deny", allowed.number,
                       allowed.number_class)

    async def body(harness: Harness) -> None:
        harness.alerting.screened(1, attempt, refused)
        await harness.settle()

    harness = _scenario(policy, body)
    [alert] = harness.alerts(AlertType.LIMIT_REACHED)
    assert alert.level is Level.NOTIFY and alert.key == "limit_reached:acme:intl-rate"
    assert alert.text == ("Limit intl-rate reached for account acme, extension 201: "
                          "3 international calls in 1 h (max 3)")


def test_contacts_without_a_channel_are_reported(tmp_path: Path):
    """Contacts sipguard.yaml has no channel for are logged at start and per alert."""
    alerts = 'alerts:\n  contacts: [log, "webhook:noc", "email:noc@example.com"]\n'

    async def body(harness: Harness) -> None:
        harness.alerting.banned("127.0.0.7", "scanner", 60, "edge")
        await harness.settle()

    harness = _scenario(_policy(tmp_path, alerts), body)
    [unreachable] = harness.log.events("alert.contacts_unreachable")
    assert unreachable["contacts"] == ["email:noc@example.com", "webhook:noc"]
    [unserved] = harness.log.events("alert.unserved")
    assert unserved["contacts"] == ["email:noc@example.com", "webhook:noc"]
    assert len(harness.log.events("alert")) == 1  # the log still had it


# -- traffic --------------------------------------------------------------------------------


def _record(started: float, minutes: float, source: str = "127.0.0.1",
            dialled: str = LONDON, region: str = "GB", jurisdiction: str = "international",
            status: int = 200, answered: bool = True, account: str = "acme") -> CallRecord:
    seconds = minutes * 60
    return CallRecord(
        call_id=f"call-{started}-{minutes}@127.0.0.1", started_at=started, account=account,
        source=source, dialled=dialled, decision="forward", region=region,
        number_class="international" if jurisdiction == "international" else "domestic",
        jurisdiction=jurisdiction, answered_at=started + 5 if answered else None,
        ended_at=started + 5 + seconds, duration=seconds, status=status)


async def _write(path: Path, records: list[CallRecord]) -> None:
    sink = SqliteSink(path)
    await sink.open()
    try:
        await sink.write(records)
    finally:
        await sink.close()


def _traffic_database(path: Path, current: float) -> None:
    """Four past Thursdays 02:00 New York of 10, 20, 12 and 18 international minutes to GB
    (15 normal), traffic outside that hour, and ``current`` minutes so far this hour."""
    records = []
    for weeks, minutes in enumerate([10, 20, 12, 18], 1):
        hour = weeks_back(THURSDAY, weeks)
        records.append(_record(hour + 300, minutes / 2))
        records.append(_record(hour + 2400, minutes / 2))
        records.append(_record(hour - 1800, 300))  # 01:30: not this hour
    records.append(_record(START + 30, current / 2))
    records.append(_record(START + 600, current / 2))
    asyncio.run(_write(path, records))


@pytest.mark.parametrize(
    ("minutes", "level", "percent"),
    [(42, Level.URGENT, 180), (24, Level.WARNING, 60), (20, Level.NOTIFY, 33), (17, None, None)],
)
def test_traffic_above_its_baseline_alerts_at_its_level(tmp_path: Path, minutes: float,
                                                        level: Level | None,
                                                        percent: int | None):
    """check_traffic compares this hour's minutes (from the CDR database) with the mean of the
    same local hour in the past four weeks, and fires at the level the excess reaches."""
    path = tmp_path / "cdr.sqlite"
    _traffic_database(path, minutes)
    fired: list[list[Alert]] = []

    async def body(harness: Harness) -> None:
        fired.append(await harness.alerting.check_traffic(NOW))
        fired.append(await harness.alerting.check_traffic(NOW + 60))  # the same: not again
        await harness.settle()

    harness = _scenario(_policy(tmp_path), body, reader=lambda: SqliteSink(path))
    first, again = fired
    assert again == []
    if level is None:
        assert first == [] and harness.alerts() == []
        return
    by_dimension = {alert.details["dimension"]: alert for alert in first}
    assert set(by_dimension) == {"jurisdiction:international", "country:GB"}
    for alert in first:
        assert alert.type is AlertType.TRAFFIC and alert.level is level
        assert alert.account == "acme" and alert.jurisdiction == "international"
        assert alert.details["percent_above"] == percent
        assert alert.details["normal"] == 15.0 and alert.details["baseline_weeks"] == 4
        assert alert.details["hour"] == "Thursday 02:00–03:00"
    amount = f"{minutes:g}"
    assert by_dimension["jurisdiction:international"].text == (
        f"International minutes for account acme are {percent}% above normal for a "
        f"Thursday 02:00–03:00 ({amount} min vs 15 min)")
    assert by_dimension["country:GB"].text == (
        f"Minutes to GB (+44) for account acme are {percent}% above normal for a "
        f"Thursday 02:00–03:00 ({amount} min vs 15 min)")
    assert harness.alerts() == first
    assert len(harness.log.events("alert")) == 2


def test_urgent_traffic_locks_the_account(tmp_path: Path):
    """Traffic 180% above normal with lock_on_urgent: international locks the account."""
    path = tmp_path / "cdr.sqlite"
    _traffic_database(path, 42)

    async def body(harness: Harness) -> None:
        await harness.alerting.check_traffic(NOW)
        await harness.settle()
        held, _ = await harness.locks.current("acme")
        assert held is not None and held.scope == "international"

    harness = _scenario(_policy(tmp_path, ALERTS + "  lock_on_urgent: international\n"), body,
                        reader=lambda: SqliteSink(path))
    assert harness.alerts(AlertType.TRAFFIC)
    assert all("is now locked (international and premium calls)" in alert.text
               for alert in harness.alerts(AlertType.TRAFFIC))
