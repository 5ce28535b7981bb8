"""The screening seam: the running policy, its reloads, and what it knows of usage.

The service asks :meth:`Screener.screen` for a decision on every new call.
The screener keeps the current policy (swapped whole on a valid reload,
kept on an invalid one), watches the policy file for changes, and keeps a
small in-memory picture of recent calls per account (destinations called
before, international calls in the last hour) for the risk score. The
shared, multi-node version of that picture is the state store's job.
"""

from __future__ import annotations

import collections
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sipguard.policy import CallAttempt, Decision, Policy, Usage, Verdict, clean, evaluate
from sipguard.policyfile import LoadedPolicy, load_policy_file
from sipguard.yamlfile import ConfigError

HOUR = 3600.0
MAX_REMEMBERED_DESTINATIONS = 10000  # per account; the oldest are forgotten first


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

    def __init__(self, path: Path, loaded: LoadedPolicy, log: Any) -> None:
        self.path = path
        self.policy: Policy = loaded.policy
        self.log = log
        self.usage = UsageTracker()
        self._mtime = _mtime(path)
        for warning in loaded.warnings:
            log.warning("policy.warning", warning=warning)

    def screen(self, attempt: CallAttempt, monotonic_now: float,
               wall_clock: datetime | None = None) -> Decision:
        """One decision, with usage filled in and remembered."""
        when = wall_clock or datetime.now(UTC)
        attempt = dataclasses.replace(attempt, when=when)
        destination = clean(attempt.dialled)
        usage = self.usage.usage(attempt.account, destination, monotonic_now)
        decision = evaluate(self.policy, attempt, usage)
        if decision.verdict is Verdict.FORWARD:
            self.usage.record(attempt.account, destination,
                              decision.number_class == "international", monotonic_now)
        return decision

    def reload(self, reason: str = "signal") -> bool:
        """Load the file again; a valid one replaces the policy, an invalid one is refused."""
        self._mtime = _mtime(self.path)
        try:
            loaded = load_policy_file(self.path)
        except ConfigError as error:
            self.log.error("policy.reload_failed", path=str(self.path), reason=reason,
                           problems=error.problems, version=self.policy.version)
            return False
        old = self.policy.version
        self.policy = loaded.policy
        for warning in loaded.warnings:
            self.log.warning("policy.warning", warning=warning)
        self.log.info("policy.reloaded", path=str(self.path), reason=reason,
                      version=loaded.policy.version, previous_version=old)
        return True

    def check_for_change(self) -> bool:
        """Reload when the file's modification time changed since the last load."""
        mtime = _mtime(self.path)
        if mtime is None or mtime == self._mtime:
            return False
        return self.reload("file changed")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
