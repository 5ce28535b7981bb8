"""Alerting as the service runs it: what is watched, when an alert fires, what it does.

The service tells :class:`Alerting` what happens, and never waits for it:

- :meth:`screened`: every decision. A first call from a source address never
  seen before, an attempt to a denied high-risk country, a call refused by a
  limit, and a denied international attempt (counted towards the
  ``failed_international`` threshold) each raise their alert;
- :meth:`finished`: every call record. An international call that failed
  counts towards ``failed_international`` too; its minutes count as traffic;
- :meth:`pin_locked` and :meth:`banned`: a PIN lockout, a ban.

Every ``check_seconds`` the traffic of the current hour (from the call records,
plus the minutes of this node's calls still up) is compared with its baseline
(sipguard.alerts.baseline), learned again from the records each hour.

Before an alert goes out: its type must be on at that level and jurisdiction,
and not snoozed (a mark in the state store until the end of the day); the same
alert (same key and level) goes out once within ``repeat_after`` of its last sending, across
every node (a mark in the store; a claim counted there lets one node send it). An urgent
alert about an account locks its dialling when the policy says so. The alert is
then queued for its contacts (sipguard.alerts.dispatch) and kept in the list
of recent alerts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from sipguard.alerts.baseline import BUCKET, HOUR, TrafficTable, findings
from sipguard.alerts.dispatch import Dispatcher
from sipguard.alerts.journal import AlertJournal
from sipguard.alerts.model import Alert
from sipguard.alerts.settings import AlertSettings
from sipguard.policy import (
    WEEK,
    AlertType,
    CallAttempt,
    Decision,
    Level,
    Policy,
    Verdict,
    jurisdiction,
)
from sipguard.records import CallRecord, CdrSink, CdrUnavailableError
from sipguard.screening import Locks
from sipguard.store import StateStore, StoreUnavailableError

SNOOZE_PREFIX = "alert:snooze:"
SENT_PREFIX = "alert:sent:"
RECENT = 500  # alerts kept for `sipguard alerts list`
MAX_TASKS = 1000  # events being looked at; past that they are skipped (counted)
MAX_SOURCES = 1_000_000  # source addresses remembered for first-source alerts
MAX_LIVE = 200_000  # live calls remembered for their minutes so far
EVER = 10 * 365 * 86400.0
CLAIM_SECONDS = 10.0  # nodes raising the same alert at once: the first claim sends it
LiveCalls = Callable[[], Iterable[tuple[int, float, float]]]  # key, started, answered seconds


class Alerting:
    """Watches the traffic and the events; raises, dedupes, routes and acts on alerts."""

    def __init__(self, settings: AlertSettings, policy: Callable[[], Policy],
                 store: StateStore, locks: Locks, log: Any,
                 reader: Callable[[], CdrSink] | None = None,
                 live_calls: LiveCalls | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.store = store
        self.locks = locks
        self.log = log
        self.dispatcher = Dispatcher(settings, log)
        self._make_reader = reader
        self._reader: CdrSink | None = None
        self._live_calls = live_calls
        self.journal = AlertJournal(settings.journal, RECENT, log)
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.skipped = 0
        self.suppressed = 0  # off, snoozed, or a level or jurisdiction not sent
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._sources: set[str] | None = None  # every source address ever seen
        self._history = TrafficTable()
        self._first_seen: dict[str, float] = {}
        self._learned: tuple[float, int] | None = None  # (hour, weeks) of the history
        # Live calls let through: call key -> (account, jurisdiction, region, started).
        self._live: dict[int, tuple[str, str, str | None]] = {}
        # What this node sent lately (key:level -> until when), so that a flood of the
        # same event costs no store round trips.
        self._sent_here: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.journal.load()
        if self.journal.unreadable:
            self.log.warning("alert.journal_unreadable", path=str(self.journal.path),
                             lines=self.journal.unreadable, error=self.journal.read_error,
                             consequence="alerts from before this start are not listed")
        self.dispatcher.start()
        self._warn_unreachable(self.policy())
        self._loop_task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        await self.dispatcher.stop()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.close()

    def policy_changed(self, policy: Policy) -> None:
        """A new policy is in force: say which of its contacts cannot be reached."""
        self._warn_unreachable(policy)

    def _warn_unreachable(self, policy: Policy) -> None:
        missing = self.settings.unreachable(policy.alerts)
        if missing:
            self.log.error("alert.contacts_unreachable", contacts=missing,
                           consequence="sipguard.yaml's alerts section has no channel for "
                           "them: these contacts hear nothing")

    # -- what the service reports (never waits) ------------------------------------------

    def screened(self, call_key: int, attempt: CallAttempt, decision: Decision,
                 live: bool = True) -> None:
        """A decision was taken on a call attempt (``live``: the call is still up)."""
        policy = self.policy()
        where = _jurisdiction(policy, attempt.account, decision)
        number = decision.number
        region = number.region if number is not None else None
        if decision.verdict is not Verdict.REJECT and live and len(self._live) < MAX_LIVE:
            self._live[call_key] = (attempt.account, where, region)
        sources = self._sources
        if sources is not None and attempt.source not in sources and \
                len(sources) < MAX_SOURCES:
            sources.add(attempt.source)
            self._spawn(self._first_source(attempt, where))
        if decision.would != "deny" and decision.verdict is not Verdict.REJECT:
            return
        if where == "international" or decision.number_class == "international":
            # (a premium number abroad is classed premium, but it is international)
            self._spawn(self._failed_international(attempt.account, where,
                                                   f"{attempt.dialled}: {decision.reason}"))
        risk = policy.risk.country_risk.get(region or "", policy.risk.default_country_risk)
        settings = policy.alerts.settings(AlertType.DENIED_HIGH_RISK)
        if region is not None and where == "international" and \
                risk >= settings.min_country_risk:
            self._spawn(self.fire(Alert(
                AlertType.DENIED_HIGH_RISK, policy.alerts.event_level(AlertType.DENIED_HIGH_RISK),
                f"Call to high-risk {region} ({number.e164 if number else attempt.dialled}, "
                f"country risk {risk}) from account {attempt.account}"
                f"{_extension(attempt.extension)} was denied by rule {decision.rule}",
                f"denied_high_risk:{attempt.account}:{region}", attempt.account, where,
                _details(attempt, decision, country_risk=risk)), settings.repeat_after))
        if _stage_of(decision) == "limit":
            settings = policy.alerts.settings(AlertType.LIMIT_REACHED)
            self._spawn(self.fire(Alert(
                AlertType.LIMIT_REACHED, policy.alerts.event_level(AlertType.LIMIT_REACHED),
                f"Limit {decision.rule} reached for account {attempt.account}"
                f"{_extension(attempt.extension)}: {decision.reason}",
                f"limit_reached:{attempt.account}:{decision.rule}", attempt.account, where,
                _details(attempt, decision)), settings.repeat_after))

    def finished(self, call_key: int, record: CallRecord) -> None:
        """A call ended (its record)."""
        self._live.pop(call_key, None)
        if (record.jurisdiction == "international" and record.decision != "reject"
                and record.answered_at is None and (record.status or 0) >= 400
                and record.status != 487):  # 487: the caller hung up first
            self._spawn(self._failed_international(
                record.account, record.jurisdiction,
                f"{record.dialled}: failed with {record.status}"))

    def pin_locked(self, account: str, extension: str | None, seconds: float) -> None:
        """Too many wrong PINs: the extension is locked out for ``seconds``."""
        policy = self.policy()
        settings = policy.alerts.settings(AlertType.PIN_LOCKOUT)
        self._spawn(self.fire(Alert(
            AlertType.PIN_LOCKOUT, policy.alerts.event_level(AlertType.PIN_LOCKOUT),
            f"PIN locked out for account {account}{_extension(extension)} after too many "
            f"wrong PINs (for {_duration(seconds)}): someone may be guessing",
            f"pin_lockout:{account}:{extension or '-'}", account, None,
            MappingProxyType({"extension": extension, "lock_seconds": seconds})),
            settings.repeat_after))

    def banned(self, address: str, reason: str, seconds: float, by: str) -> None:
        """A source address was banned."""
        policy = self.policy()
        settings = policy.alerts.settings(AlertType.BAN)
        self._spawn(self.fire(Alert(
            AlertType.BAN, policy.alerts.event_level(AlertType.BAN),
            f"Source address {address} banned for {_duration(seconds)} ({by}): {reason}",
            f"ban:{address}", None, None,
            MappingProxyType({"address": address, "reason": reason, "seconds": seconds,
                              "by": by})), settings.repeat_after))

    # -- events ----------------------------------------------------------------------

    async def _first_source(self, attempt: CallAttempt, where: str) -> None:
        policy = self.policy()
        await self.fire(Alert(
            AlertType.FIRST_SOURCE, policy.alerts.event_level(AlertType.FIRST_SOURCE),
            f"First call ever from source address {attempt.source} (account "
            f"{attempt.account}{_extension(attempt.extension)}, dialling {attempt.dialled})",
            f"first_source:{attempt.source}", attempt.account, where,
            MappingProxyType({"source": attempt.source, "extension": attempt.extension,
                              "dialled": attempt.dialled})), EVER)

    async def _failed_international(self, account: str, where: str, last: str) -> None:
        policy = self.policy()
        settings = policy.alerts.settings(AlertType.FAILED_INTERNATIONAL)
        if not settings.enabled:
            return
        now = time.time()
        try:
            count = await self.store.count_event(f"alert:failed_intl:{account}",
                                                 settings.window, now)
        except StoreUnavailableError as error:
            self.log.warning("alert.store_unavailable", error=str(error))
            return
        if count < settings.threshold:
            return
        period = int(now // settings.window)
        await self.fire(Alert(
            AlertType.FAILED_INTERNATIONAL,
            policy.alerts.event_level(AlertType.FAILED_INTERNATIONAL),
            f"{count} denied or failed international attempts from account {account} in the "
            f"last {_duration(settings.window)} (threshold {settings.threshold}); the last: "
            f"{last}",
            f"failed_international:{account}:{period}", account, where,
            MappingProxyType({"attempts": count, "threshold": settings.threshold,
                              "window_seconds": settings.window, "last": last})),
            settings.window)

    # -- traffic ---------------------------------------------------------------------

    async def _watch(self) -> None:
        await self._load_sources()
        while True:
            await asyncio.sleep(self.settings.check_seconds)
            try:
                await self.check_traffic(time.time())
            except CdrUnavailableError as error:
                self.log.info("alert.records_unavailable", error=str(error))
                await self._drop_reader()
            except Exception:  # a bug here must not end the watching
                self.log.exception("alert.check_failed")

    async def _open_reader(self) -> CdrSink | None:
        if self._reader is None and self._make_reader is not None:
            reader = self._make_reader()
            await reader.open(read_only=True)
            self._reader = reader
        return self._reader

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.close()

    async def _load_sources(self) -> None:
        """Every source address the records know (first-source alerts start after this)."""
        known: set[str] = set()
        try:
            reader = await self._open_reader()
            if reader is not None:
                known = await reader.sources()
        except CdrUnavailableError as error:
            self.log.info("alert.records_unavailable", error=str(error),
                          consequence="first-source alerts count from now")
            await self._drop_reader()
        self._sources = known

    async def check_traffic(self, now: float) -> list[Alert]:
        """Compare this hour's traffic with its baseline; fire what is above it."""
        policy = self.policy()
        reader = await self._open_reader()
        if reader is None:
            return []
        zones = {account.name: ZoneInfo(account.time_zone) for account in policy.accounts}
        hour = now - now % HOUR
        # The earliest local hour start of any account (zones with :30 offsets included).
        since = min([datetime.fromtimestamp(now, zone).replace(minute=0, second=0,
                                                               microsecond=0).timestamp()
                     for zone in zones.values()] or [hour])
        weeks = policy.alerts.weeks
        if self._learned != (hour, weeks):
            # The same local hours up to `weeks` weeks back, a day more for DST shifts.
            self._history = TrafficTable(await reader.traffic(
                since - weeks * WEEK - 86400.0, since))
            self._first_seen = await reader.first_seen()
            self._learned = (hour, weeks)
        current = TrafficTable(await reader.traffic(since, None))
        self._add_live(current, now)
        fired = []
        for finding in findings(policy.alerts, current, self._history, self._first_seen,
                                zones, now):
            alert = Alert(AlertType.TRAFFIC, finding.level, finding.text(), finding.key,
                          finding.account, finding.jurisdiction, MappingProxyType({
                              "dimension": finding.dimension, "measure": finding.measure,
                              "current": round(finding.current, 1),
                              "normal": round(finding.normal, 1),
                              "percent_above": None if finding.percent is None
                              else round(finding.percent),
                              "hour": finding.label, "baseline_weeks": finding.weeks}))
            sent = await self.fire(alert, 2 * HOUR)
            if sent is not None:
                fired.append(sent)
        return fired

    def _add_live(self, table: TrafficTable, now: float) -> None:
        """Minutes of this node's calls still up (their records come when they end)."""
        if self._live_calls is None:
            return
        for call_key, started, answered in self._live_calls():
            where = self._live.get(call_key)
            if where is not None and answered > 0:
                table.add(where[0], where[1], where[2], int(started // BUCKET), 0,
                          answered / 60.0)

    # -- firing ----------------------------------------------------------------------

    async def fire(self, alert: Alert, repeat_after: float) -> Alert | None:
        """Send an alert unless it is off, snoozed or already sent within ``repeat_after``
        seconds; the alert as sent, or None."""
        policy = self.policy()
        settings = policy.alerts.settings(alert.type)
        if not settings.sends(alert.level, alert.jurisdiction):
            self.suppressed += 1
            await self._lock_unsent(alert, repeat_after)
            return None
        now = time.time()
        if self._done_here(f"{alert.key}:{alert.level.value}", now):
            return None  # sent by this node within repeat_after
        try:
            if await self.store.get_mark(SNOOZE_PREFIX + alert.type.value, now) is not None:
                self.suppressed += 1
                await self._lock_unsent(alert, repeat_after)
                return None
            # Once within repeat_after of the last send: a mark in the store says it was
            # sent; a claim counted in the store (atomically) lets only one node send it.
            sent = f"{SENT_PREFIX}{alert.key}:{alert.level.value}"
            if await self.store.get_mark(sent, now) is not None:
                return None  # sent already (here or by another node)
            if await self.store.count_event(sent + ":claim", min(CLAIM_SECONDS, repeat_after),
                                            now) > 1:
                return None  # another node is sending it right now
            for level in (level for level in Level if level.rank <= alert.level.rank):
                # A louder alert sent: the quieter ones of the same key are not sent later.
                await self.store.put_mark(f"{SENT_PREFIX}{alert.key}:{level.value}", alert.id,
                                          repeat_after, now)
        except StoreUnavailableError as error:
            self.log.warning("alert.store_unavailable", error=str(error),
                             consequence="sent without checking for repeats")
        for level in (level for level in Level if level.rank <= alert.level.rank):
            self._remember_here(f"{alert.key}:{level.value}", repeat_after, now)
        alert = await self._maybe_lock(alert)
        self.journal.add(alert)
        self.counts[(alert.type.value, alert.level.value)] += 1
        self.log.info("alert.raised", id=alert.id, type=alert.type.value,
                      level=alert.level.value, key=alert.key, account=alert.account)
        unserved = self.dispatcher.submit(alert, policy.alerts.contacts_for(alert.type))
        if unserved:
            self.log.warning("alert.unserved", id=alert.id, contacts=unserved)
        return alert

    def _done_here(self, key: str, now: float) -> bool:
        """Whether this node did ``key`` (sent an alert, locked for one) lately."""
        return self._sent_here.get(key, 0.0) > now

    def _remember_here(self, key: str, seconds: float, now: float) -> None:
        if len(self._sent_here) > 10_000:
            self._sent_here = {known: until for known, until in self._sent_here.items()
                               if until > now}
        self._sent_here[key] = now + seconds

    async def _lock_unsent(self, alert: Alert, repeat_after: float) -> None:
        """An urgent alert that is not sent (off, snoozed, its level not sent) still locks
        the account: silence stops the telling, not the protection. Once within
        ``repeat_after``, as a sent alert is, so that a person's unlock holds while the
        same finding goes on."""
        if alert.level is not Level.URGENT or alert.account is None:
            return
        now = time.time()
        if self._done_here(f"{alert.key}:lock", now):
            return
        self._remember_here(f"{alert.key}:lock", repeat_after, now)
        locked = await self._maybe_lock(alert)
        if "locked" in locked.details:
            self.log.warning("alert.locked_unsent", id=alert.id, type=alert.type.value,
                             key=alert.key, account=alert.account, text=locked.text)

    async def _maybe_lock(self, alert: Alert) -> Alert:
        """An urgent alert about an account locks it when the policy says so (even when
        the alert itself is not sent: switched off, snoozed, or its level not sent)."""
        if alert.level is not Level.URGENT or alert.account is None:
            return alert
        scope = self.policy().alerts.locks(alert.account)
        if scope is None:
            return alert
        try:
            held, _ = await self.locks.current(alert.account)
            if held is None or (held.scope != "all" and scope == "all"):
                await self.locks.lock(alert.account, scope, f"urgent alert: {alert.text}",
                                      f"sipguard (alert {alert.id})")
        except StoreUnavailableError as error:
            self.log.error("lock.failed", account=alert.account, error=str(error))
            return alert
        what = ("all but emergency calls" if scope == "all"
                else "international and premium calls")
        return Alert(alert.type, alert.level,
                     f"{alert.text}. Account {alert.account} is now locked ({what}) until "
                     f"someone runs: sipguard unlock {alert.account}",
                     alert.key, alert.account, alert.jurisdiction,
                     MappingProxyType({**alert.details, "locked": scope}), alert.at, alert.id)

    # -- by hand (control socket) -------------------------------------------------------

    def acknowledge(self, ids: list[str], by: str) -> list[str]:
        """Acknowledge alerts by id or a prefix of 6 characters or more that names one
        (``["all"]``: every open one); the ids acknowledged now."""
        if ids == ["all"]:
            ids = [alert.id for alert in self.journal.open_alerts()]
        found = []
        for given in ids:
            alert_id = self.journal.resolve(given)
            if alert_id is None:
                raise ValueError(f"no alert {given!r} among the recent ones (give its id as "
                                 "`sipguard alerts list` shows it)")
            found.append(alert_id)
        done = self.journal.acknowledge(found, by)
        if done:
            self.log.warning("alert.acknowledged", ids=done, by=by)
        return done

    async def snooze(self, alert_type: AlertType, by: str) -> float:
        """Snooze a type for the rest of the day (the policy's alerts.time_zone); the
        seconds it lasts."""
        zone = ZoneInfo(self.policy().alerts.time_zone)
        now = datetime.now(zone)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                     microsecond=0)
        seconds = max(midnight.timestamp() - now.timestamp(), 1.0)
        await self.store.put_mark(SNOOZE_PREFIX + alert_type.value, by, seconds, time.time())
        self.log.warning("alert.snoozed", type=alert_type.value, by=by,
                         seconds=round(seconds))
        return seconds

    async def unsnooze(self, alert_type: AlertType, by: str) -> None:
        await self.store.clear([SNOOZE_PREFIX + alert_type.value])
        self.log.warning("alert.unsnoozed", type=alert_type.value, by=by)

    async def snoozed(self) -> dict[str, float]:
        """The snoozed types and the seconds left."""
        marks = await self.store.list_marks(SNOOZE_PREFIX, time.time())
        return {key[len(SNOOZE_PREFIX):]: left for key, _, left in marks}

    def stats(self) -> dict[str, Any]:
        return {"raised": {f"{kind}/{level}": count
                           for (kind, level), count in self.counts.items()},
                "suppressed": self.suppressed, "skipped": self.skipped,
                "channels": self.dispatcher.stats()}

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        if len(self._tasks) >= MAX_TASKS:
            work.close()
            self.skipped += 1
            return
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("alert.failed", error=repr(task.exception()))


def _jurisdiction(policy: Policy, account_name: str, decision: Decision) -> str:
    number = decision.number
    account = policy.account(account_name)
    if number is None:
        return "unknown"
    return jurisdiction(account.dial_plan.home_region if account is not None else "US",
                        account.home_state if account is not None else None,
                        number.e164, number.region, number.number_type.value)


def _stage_of(decision: Decision) -> str | None:
    for entry in decision.trace:
        if entry.rule == decision.rule and entry.matched:
            return entry.stage
    return None


def _extension(extension: str | None) -> str:
    return f", extension {extension}" if extension else ""


def _details(attempt: CallAttempt, decision: Decision,
             **more: Any) -> MappingProxyType[str, Any]:
    number = decision.number
    return MappingProxyType({"extension": attempt.extension, "source": attempt.source,
                             "dialled": attempt.dialled,
                             "e164": number.e164 if number is not None else None,
                             "rule": decision.rule, "reason": decision.reason, **more})


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"
