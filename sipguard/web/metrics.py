"""Prometheus metrics (prometheus-client), on the service's own registry.

Two kinds: what the service counts as it goes (decisions by verdict, rule and
class, and how long screening took), and what it already keeps count of,
read at each scrape from :meth:`Service.stats` (live calls, dialogs, bans,
what the edge dropped, connections, the call records' recorder, the state
store's failures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sipguard.policy import Decision

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Screening is a few hundred microseconds in memory, a round trip more with Redis.
DECISION_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The service's metrics; ``stats`` is read at every scrape."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "sipguard_calls", "Calls screened, by decision, deciding rule and class",
            ("decision", "rule", "number_class"), registry=self.registry)
        self.decision_seconds = Histogram(
            "sipguard_decision_seconds", "Time to screen a call (policy and limits)",
            buckets=DECISION_BUCKETS, registry=self.registry)
        self.store_failures = Counter(
            "sipguard_store_failures", "Decisions taken while the state store was unavailable",
            registry=self.registry)
        self.registry.register(_StatsCollector(stats))

    def screened(self, decision: Decision, seconds: float) -> None:
        """Count one decision."""
        self.decisions.labels(decision.verdict.value, decision.rule or "-",
                              decision.number_class or "-").inc()
        self.decision_seconds.observe(seconds)
        if (decision.rule or "").startswith("store-failure:"):
            self.store_failures.inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class _StatsCollector(Collector):
    """Gauges and counters from the service's stats, read when Prometheus scrapes."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, key, text in (("sipguard_live_calls", "calls", "Calls in progress"),
                                ("sipguard_dialogs", "dialogs", "Dialogs in progress"),
                                ("sipguard_transactions", "transactions", "Live transactions"),
                                ("sipguard_bans", "bans", "Sources banned now"),
                                ("sipguard_ivr_sessions", "ivr_sessions",
                                 "PIN challenges at the IVR")):
            yield GaugeMetricFamily(name, text, value=float(stats.get(key) or 0))
        dropped = CounterMetricFamily("sipguard_dropped_before_parsing",
                                      "Datagrams dropped by the edge, by reason",
                                      labels=("reason",))
        for reason, count in (stats.get("dropped_before_parsing") or {}).items():
            dropped.add_metric((reason,), float(count))
        yield dropped
        yield CounterMetricFamily("sipguard_dropped_datagrams",
                                  "Datagrams dropped because the receive queue was full",
                                  value=float(stats.get("dropped_datagrams") or 0))
        connections = GaugeMetricFamily("sipguard_connections", "Open TCP/TLS connections",
                                        labels=("listen",))
        for listen, counts in (stats.get("streams") or {}).items():
            connections.add_metric((listen,), float(counts.get("connections", 0)))
        yield connections
        cdr = stats.get("cdr")
        if cdr:
            for name, key, text in (
                    ("sipguard_cdr_recorded", "recorded", "Call records taken"),
                    ("sipguard_cdr_acknowledged", "acknowledged", "Call records in the spool"),
                    ("sipguard_cdr_stored", "stored", "Call records in the database"),
                    ("sipguard_cdr_dropped", "dropped", "Call records lost before the spool"),
                    ("sipguard_cdr_errors", "errors", "Failed writes to the CDR database")):
                yield CounterMetricFamily(name, text, value=float(cdr.get(key) or 0))
            yield GaugeMetricFamily("sipguard_cdr_spooled_batches",
                                    "Batches waiting in the spool for the database",
                                    value=float(cdr.get("spooled_batches") or 0))
            yield GaugeMetricFamily("sipguard_cdr_database_up", "1 when the CDR database answers",
                                    value=1.0 if cdr.get("database_up") else 0.0)
        yield GaugeMetricFamily("sipguard_store_up", "1 when the state store answers",
                                value=0.0 if stats.get("store_down") else 1.0)
        yield from _alert_metrics(stats)


def _alert_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    """Alerts raised by type and level, deliveries by channel, locks."""
    alerts = stats.get("alerts")
    if alerts:
        raised = CounterMetricFamily("sipguard_alerts", "Alerts raised, by type and level",
                                     labels=("type", "level"))
        for name, count in alerts.get("raised", {}).items():
            kind, _, level = name.partition("/")
            raised.add_metric((kind, level), float(count))
        yield raised
        deliveries = CounterMetricFamily("sipguard_alert_deliveries",
                                         "Alert deliveries by channel and outcome",
                                         labels=("channel", "outcome"))
        for channel, counts in alerts.get("channels", {}).items():
            for outcome in ("sent", "failed", "dropped"):
                deliveries.add_metric((channel, outcome), float(counts.get(outcome, 0)))
        yield deliveries
    locks = stats.get("locks") or {}
    yield CounterMetricFamily("sipguard_lock_refusals",
                              "Calls refused by an account lock or the kill switch",
                              value=float(locks.get("refused") or 0))
    yield CounterMetricFamily("sipguard_locks_set", "Account locks set (by hand or by alerts)",
                              value=float(locks.get("set") or 0))
    yield GaugeMetricFamily("sipguard_lockdown", "1 while the kill switch is on (as last read)",
                            value=1.0 if locks.get("lockdown") else 0.0)
