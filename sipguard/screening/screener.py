"""The screening seam: the running policy, its reloads, limits and what they count.

The service asks :meth:`Screener.screen` for a decision on every new call.
The screener keeps the current policy (swapped whole on a valid reload,
kept on an invalid one), watches the policy file for changes, counts the
call on its limits in the state store, and keeps a small in-memory picture
of recent calls per account (destinations called before, international
calls in the last hour) for the risk score.

When the state store does not answer, each class of destination fails
open or closed as the policy says; the outage is logged once, and its end
once.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipguard.policy import (
    CallAttempt,
    Decision,
    LimitKind,
    LimitResult,
    LoadedPolicy,
    Mode,
    Policy,
    TraceEntry,
    Usage,
    Verdict,
    apply_consecutive,
    apply_limits,
    apply_spend,
    clean,
    consecutive_checks,
    evaluate,
    limit_checks,
    load_policy_file,
    max_duration,
    spend_checks,
)
from sipguard.schema import ConfigError
from sipguard.screening.locks import Locks
from sipguard.store import CounterRequest, MemoryStore, StateStore, StoreUnavailableError

HOUR = 3600.0
MAX_REMEMBERED_DESTINATIONS = 10000  # per account; the oldest are forgotten first


@dataclass(frozen=True, slots=True)
class Screening:
    """A decision, and what the call holds in the store until it ends."""

    decision: Decision
    lease_keys: tuple[str, ...] = ()
    lease_id: str = ""
    max_duration: float | None = None
    # Spend counters to charge when the call ends: (key, window), and the number.
    charge: tuple[tuple[str, float], ...] = ()
    e164: str | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """What a live call will be charged to when it ends (kept instead of its decision)."""

    charge: tuple[tuple[str, float], ...]
    e164: str | None
    lease_id: str

    @classmethod
    def of(cls, screening: Screening) -> Charge:
        """The charge of a screening."""
        return cls(screening.charge, screening.e164, screening.lease_id)


class UsageTracker:
    """Per account: destinations already called, and recent international calls."""

    def __init__(self) -> None:
        self._seen: dict[str, collections.OrderedDict[str, None]] = {}
        self._international: dict[str, collections.deque[float]] = {}

    def usage(self, account: str, destination: str, now: float) -> Usage:
        """What the risk score should know about this attempt."""
        seen = self._seen.get(account)
        recent = self._international.get(account)
        if recent is not None:
            while recent and recent[0] < now - HOUR:
                recent.popleft()
        return Usage(
            international_calls_last_hour=len(recent) if recent is not None else 0,
            destination_seen_before=seen is not None and destination in seen,
        )

    def record(self, account: str, destination: str, international: bool, now: float) -> None:
        """Remember a call that was let through."""
        seen = self._seen.setdefault(account, collections.OrderedDict())
        seen[destination] = None
        seen.move_to_end(destination)
        while len(seen) > MAX_REMEMBERED_DESTINATIONS:
            seen.popitem(last=False)
        if international:
            self._international.setdefault(account, collections.deque()).append(now)


class Screener:
    """Holds the policy in force and screens attempts against it."""

    def __init__(self, path: Path, loaded: LoadedPolicy, log: Any,
                 store: StateStore | None = None,
                 extension_header: str = "X-Sipguard-Extension") -> None:
        self.path = path
        self.extension_header = extension_header
        # Accounts already warned that their calls come without the extension header.
        self._warned_no_header: set[str] = set()
        self.policy: Policy = loaded.policy
        self.log = log
        self.store: StateStore = store if store is not None else MemoryStore()
        # Account locks and the kill switch (never for emergency calls).
        self.locks = Locks(self.store, log)
        self.usage = UsageTracker()
        self.store_down = False
        # The last reload: when, whether it was taken, and the problems of a refused one.
        self.last_reload: dict[str, Any] | None = None
        self._mtime = _mtime(path)
        for warning in loaded.warnings:
            log.warning("policy.warning", warning=warning)

    async def screen(self, attempt: CallAttempt, monotonic_now: float, lease_id: str,
                     wall_clock: datetime | None = None) -> Screening:
        """One decision, with usage filled in, limits counted and remembered."""
        policy = self.policy
        if attempt.extension_source in ("identity", "from"):
            self._warn_no_header(policy, attempt)
        when = wall_clock or datetime.now(UTC)
        attempt = dataclasses.replace(attempt, when=when)
        destination = clean(attempt.dialled)
        usage = self.usage.usage(attempt.account, destination, monotonic_now)
        decision = await self.locks.apply(attempt.account, evaluate(policy, attempt, usage))
        screening = Screening(decision)
        if decision.verdict is not Verdict.REJECT and decision.rule != "emergency":
            screening = await self._count(policy, attempt, decision, lease_id, when)
            if screening.decision.verdict is not Verdict.REJECT and policy.limits.consecutive:
                screening = await self._runs(policy, attempt, screening, when)
            if screening.decision.verdict is not Verdict.REJECT and policy.limits.spend:
                screening = await self._budget(policy, attempt, screening, when)
        if screening.decision.verdict is Verdict.FORWARD:
            self.usage.record(attempt.account, destination,
                              screening.decision.number_class == "international", monotonic_now)
        return screening

    def usage_of(self, account: str, dialled: str, monotonic_now: float) -> Usage:
        """What the risk score of a call from ``account`` to ``dialled`` would know now
        (``sipguard explain`` asks the running service for it)."""
        return self.usage.usage(account, clean(dialled), monotonic_now)

    def _warn_no_header(self, policy: Policy, attempt: CallAttempt) -> None:
        """Warn once per peer whose calls carry no extension header while its account has
        extension groups: the fallback (P-Asserted-Identity, From) is what the caller
        says it is, so a DISA or voicemail group may never match."""
        if attempt.account in self._warned_no_header:
            return
        account = policy.account(attempt.account)
        if account is None or not account.groups:
            return
        self._warned_no_header.add(attempt.account)
        read_from = "P-Asserted-Identity" if attempt.extension_source == "identity" else "From"
        self.log.warning(
            "peer.extension_header_missing", account=attempt.account,
            source=attempt.source, header=self.extension_header, read_from=read_from,
            extension=attempt.extension, call_id=attempt.call_id,
            detail=(f"calls from {attempt.account} carry no {self.extension_header} header, "
                    f"so extension groups match the {read_from} user, which the caller "
                    "controls; set the header in a pre-dial handler (README: Asterisk)"))

    async def _count(self, policy: Policy, attempt: CallAttempt, decision: Decision,
                     lease_id: str, when: datetime) -> Screening:
        extension = clean(attempt.extension) if attempt.extension else None
        checks = limit_checks(policy, decision, attempt.account, extension)
        longest = max_duration(policy, decision.number_class)
        if not checks:
            return Screening(decision, lease_id=lease_id, max_duration=longest)
        lease_seconds = policy.limits.lease_seconds
        requests = [
            CounterRequest(check.key, "rate" if check.rule.kind is LimitKind.RATE else "lease",
                           check.rule.maximum,
                           check.rule.window if check.rule.kind is LimitKind.RATE
                           else lease_seconds, check.hard)
            for check in checks
        ]
        try:
            taken, counts = await self.store.try_take(requests, lease_id, when.timestamp())
        except StoreUnavailableError as error:
            # A timed-out script may still have run on the server: drop any leases it took
            # (best effort; rate entries it left only over-count, which fails safe).
            leases = tuple(request.key for request in requests if request.kind == "lease")
            if leases:
                await self.release(leases, lease_id)
            return Screening(self._store_failed(policy, decision, str(error)),
                             lease_id=lease_id, max_duration=longest)
        self._store_ok()
        results = [LimitResult(check, count) for check, count in zip(checks, counts, strict=True)]
        decision = apply_limits(policy, decision, results, taken)
        leases = tuple(request.key for request in requests if request.kind == "lease")
        if not taken:
            leases = ()
        elif decision.verdict is not Verdict.FORWARD and leases:
            await self.release(leases, lease_id)  # counted, but the call will not happen
            leases = ()
        return Screening(decision, leases, lease_id, longest)

    async def _runs(self, policy: Policy, attempt: CallAttempt, screening: Screening,
                    when: datetime) -> Screening:
        """Count the call on its runs of consecutive calls to one number."""
        decision = screening.decision
        extension = clean(attempt.extension) if attempt.extension else None
        checks = consecutive_checks(policy, decision, attempt.account, extension)
        number = decision.number
        if not checks or number is None or number.e164 is None:
            return screening
        runs = []
        try:
            for rule, key in checks:
                runs.append((rule, key, await self.store.streak(key, number.e164, rule.window,
                                                                when.timestamp())))
        except StoreUnavailableError as error:
            failed = self._store_failed(policy, decision, str(error))
            return dataclasses.replace(screening, decision=failed)
        self._store_ok()
        decision = apply_consecutive(policy, decision, runs)
        if decision.verdict is not Verdict.FORWARD and screening.lease_keys:
            await self.release(screening.lease_keys, screening.lease_id)
            screening = dataclasses.replace(screening, lease_keys=())
        return dataclasses.replace(screening, decision=decision)

    async def _budget(self, policy: Policy, attempt: CallAttempt, screening: Screening,
                      when: datetime) -> Screening:
        """Apply the spend budgets: refuse a used-up budget, else reserve and cap the call.

        The budget a call may use is set aside atomically in the store, so that
        concurrent calls (on any node) cannot each spend the same remainder;
        the reservation is replaced by the real cost when the call ends.
        """
        decision = screening.decision
        checks = spend_checks(policy, decision, attempt.account)
        if not checks:
            return screening
        windows = tuple((check.key, check.rule.window) for check in checks)
        number = decision.number
        price = (policy.limits.rate_deck.price(number.e164)[0]
                 if number is not None and number.e164 else None)
        enforcing = policy.mode is Mode.ENFORCE
        enforced = [check for check in checks if enforcing and check.rule.mode is Mode.ENFORCE]
        budgets = [(check.key, check.rule.window, check.rule.maximum) for check in enforced]
        granted = 0.0
        try:
            if price and budgets:
                # Reserve no more than the call can cost: the per-call maximum, and
                # its price for the longest duration its class allows.
                caps = [cap for cap in (
                    policy.limits.per_call_max,
                    None if screening.max_duration is None
                    else price * screening.max_duration / 60.0) if cap is not None]
                granted, enforced_totals = await self.store.reserve_spend(
                    budgets, screening.lease_id, min(caps) if caps else None, when.timestamp())
                by_key = dict(zip([key for key, _, _ in budgets], enforced_totals, strict=True))
                others = [window for window in windows if window[0] not in by_key]
                other_totals = await self.store.spent(others, when.timestamp()) if others else []
                by_key.update(zip([key for key, _ in others], other_totals, strict=True))
                totals = [by_key[key] for key, _ in windows]
            else:
                totals = await self.store.spent(list(windows), when.timestamp())
        except StoreUnavailableError as error:
            # The reservation may have been made (or the script may still run on the
            # server): give it back, best effort; settling is idempotent.
            if price and budgets:
                await self.charge(dataclasses.replace(screening, charge=windows,
                                                      e164=number.e164 if number else None),
                                  0.0, when)
            failed = self._store_failed(policy, decision, str(error))
            return dataclasses.replace(screening, decision=failed)
        self._store_ok()
        decision, seconds = apply_spend(policy, decision, checks, totals)
        if granted > 0 and price:
            seconds = granted / price * 60.0  # what the reservation pays for
        if not enforced:
            seconds = None  # report mode: spend is traced, never caps a call
        longest = screening.max_duration
        if seconds is not None:
            longest = seconds if longest is None else min(longest, seconds)
        screening = dataclasses.replace(screening, decision=decision, max_duration=longest,
                                        charge=windows,
                                        e164=number.e164 if number is not None else None)
        if decision.verdict is not Verdict.FORWARD:
            if screening.lease_keys:
                await self.release(screening.lease_keys, screening.lease_id)
            if granted > 0:
                await self.charge(screening, 0.0, when)  # give the reservation back
            screening = dataclasses.replace(screening, lease_keys=(), charge=())
        return screening

    async def charge(self, screening: Screening | Charge, seconds: float,
                     wall_clock: datetime | None = None) -> None:
        """Replace a call's reservation by what it really cost (nothing if unanswered)."""
        if not screening.charge or screening.e164 is None:
            return
        cost = (self.policy.limits.rate_deck.cost(screening.e164, seconds)
                if seconds > 0 else 0.0)
        try:
            await self.store.settle_spend(screening.charge, screening.lease_id, cost,
                                          (wall_clock or datetime.now(UTC)).timestamp())
        except StoreUnavailableError as error:
            self.log.warning("store.charge_failed", error=str(error), cost=cost,
                             lease_id=screening.lease_id)

    def _store_ok(self) -> None:
        """The store answered: end an outage, once."""
        if self.store_down:
            self.store_down = False
            self.log.warning("store.recovered")

    def _store_failed(self, policy: Policy, decision: Decision, error: str) -> Decision:
        if not self.store_down:
            self.store_down = True
            self.log.error("store.unavailable", error=error,
                           on_failure=dict(policy.limits.on_store_failure))
        number_class = decision.number_class or "international"
        rule = f"store-failure:{number_class}"
        if policy.limits.on_store_failure.get(number_class, "closed") == "open":
            entry = TraceEntry(rule, True, "state store unavailable: limits skipped (fail open)",
                               "limit", "allow")
            return dataclasses.replace(decision, trace=(*decision.trace, entry))
        entry = TraceEntry(rule, True, "state store unavailable: refused (fail closed)",
                           "limit", "deny")
        return dataclasses.replace(decision, verdict=Verdict.REJECT, rule=rule,
                                   category="limits unavailable", would="deny",
                                   reason="state store unavailable",
                                   trace=(*decision.trace, entry))

    async def release(self, lease_keys: tuple[str, ...], lease_id: str) -> None:
        """Drop a finished call's leases (an outage only delays it: leases expire)."""
        try:
            await self.store.release(lease_keys, lease_id)
        except StoreUnavailableError as error:
            self.log.info("store.release_failed", error=str(error), lease_id=lease_id)

    async def release_many(self, releases: list[tuple[tuple[str, ...], str]]) -> None:
        """Drop the leases of several finished calls in one go."""
        try:
            await self.store.release_many(releases)
        except StoreUnavailableError as error:
            self.log.info("store.release_failed", error=str(error), calls=len(releases))

    async def renew(self, leases: dict[str, tuple[str, ...]]) -> None:
        """Keep the leases of live calls from expiring."""
        now = datetime.now(UTC).timestamp()
        ttl = self.policy.limits.lease_seconds
        for lease_id, keys in leases.items():
            try:
                await self.store.renew(keys, lease_id, ttl, now)
            except StoreUnavailableError as error:
                self.log.info("store.renew_failed", error=str(error))
                return  # the next round renews (and re-creates) them

    def reload(self, reason: str = "signal") -> bool:
        """Load the file again; a valid one replaces the policy, an invalid one is refused."""
        self._mtime = _mtime(self.path)
        try:
            loaded = load_policy_file(self.path)
        except ConfigError as error:
            self.log.error("policy.reload_failed", path=str(self.path), reason=reason,
                           problems=error.problems, version=self.policy.version)
            self.last_reload = {"at": time.time(), "ok": False, "reason": reason,
                                "problems": list(error.problems)}
            return False
        self.last_reload = {"at": time.time(), "ok": True, "reason": reason, "problems": []}
        old = self.policy.version
        self.policy = loaded.policy
        for warning in loaded.warnings:
            self.log.warning("policy.warning", warning=warning)
        self.log.info("policy.reloaded", path=str(self.path), reason=reason,
                      version=loaded.policy.version, previous_version=old)
        return True

    def check_for_change(self) -> bool:
        """Reload when the file's modification time changed since the last load. A file
        that went away is reported once (``policy.reload_failed``); the policy in force
        stays until a valid file is back."""
        mtime = _mtime(self.path)
        if mtime == self._mtime:
            return False
        return self.reload("file changed" if mtime is not None else "file removed")


def failed_closed(attempt: CallAttempt) -> Decision:
    """The decision when screening itself failed: refuse (never forward unscreened)."""
    return Decision(Verdict.REJECT, "screening failed", (), "screening-failed",
                    category="destination not allowed", would="deny")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
