"""The pure side of limits: which counters a call touches and what their counts decide."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from sipguard.policy import CallAttempt, Policy, Verdict, evaluate
from sipguard.policy.limits import LimitResult, apply_limits, limit_checks, max_duration
from sipguard.policy.loader import load_policy

SHIPPED = Path(__file__).resolve().parents[2] / "conf" / "policy.yaml"
MONDAY_NOON = datetime.fromisoformat("2026-11-23T12:00:00-05:00")


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(SHIPPED)


def _decide(policy: Policy, dialled: str, extension: str = "201"):
    attempt = CallAttempt("c", "asterisk-1", "", extension, dialled, extension, MONDAY_NOON)
    return evaluate(policy, attempt)


def test_international_call_touches_the_shipped_international_limits(shipped: Policy):
    """A staff call to London touches the extension, account, system, number and live counters."""
    decision = _decide(shipped, "011442079460321")
    keys = [check.key for check in limit_checks(shipped, decision, "asterisk-1", "201")]
    assert keys == [
        "rate:extension-international-hour:asterisk-1/201",
        "rate:account-international-day:asterisk-1",
        "rate:system-international-minute:*",
        "rate:same-number-hour:+442079460321",
        "concurrency:extension-international-live:asterisk-1/201",
    ]


def test_domestic_call_touches_only_the_any_class_limits(shipped: Policy):
    """A call to New York counts only on the same-number limit (class any)."""
    decision = _decide(shipped, "12125551234")
    checks = limit_checks(shipped, decision, "asterisk-1", "201")
    assert [check.rule.id for check in checks] == ["same-number-hour"]
    assert [check.hard for check in checks] == [False]  # a pin limit never refuses the take


def test_counts_over_a_deny_limit_refuse_the_call(shipped: Policy):
    """When the store refused the take, a deny limit at its maximum rejects: limit reached."""
    decision = _decide(shipped, "011442079460321")
    checks = limit_checks(shipped, decision, "asterisk-1", "201")
    counts = [5, 3, 1, 1, 0]  # the current counts: 5 international calls this hour already
    result = apply_limits(shipped, decision, [LimitResult(c, n) for c, n in zip(checks, counts, strict=True)],
                          taken=False)
    assert result.verdict is Verdict.REJECT
    assert (result.rule, result.category) == ("extension-international-hour", "limit reached")
    assert any(entry.stage == "limit" and entry.matched for entry in result.trace)


def test_counts_over_a_pin_limit_ask_for_a_pin(shipped: Policy):
    """The 11th call to one number within the hour needs a PIN (same-number-hour is a pin limit)."""
    decision = _decide(shipped, "12125551234")
    (check,) = limit_checks(shipped, decision, "asterisk-1", "201")
    result = apply_limits(shipped, decision, [LimitResult(check, 11)], taken=True)
    assert (result.verdict, result.rule, result.would) == (Verdict.CHALLENGE, "same-number-hour",
                                                           "pin")


def test_counts_under_every_limit_change_nothing(shipped: Policy):
    """Counts within every limit leave an allowed call allowed, with each counter traced."""
    decision = _decide(shipped, "12125551234")
    (check,) = limit_checks(shipped, decision, "asterisk-1", "201")
    result = apply_limits(shipped, decision, [LimitResult(check, 3)], taken=True)
    assert result.verdict is Verdict.FORWARD
    assert result.trace[-1].detail == "rate:same-number-hour:+12125551234: 3 calls in 1h, limit 10"


def test_duration_limit_of_the_shipped_policy(shipped: Policy):
    """International calls may last 3600 s; domestic ones have no duration limit."""
    assert max_duration(shipped, "international") == 3600
    assert max_duration(shipped, "domestic") is None


def test_emergency_calls_touch_no_counter(shipped: Policy):
    """911 and 9911 (outside line) are never counted: emergency is never limited."""
    for dialled in ("911", "9911"):
        decision = _decide(shipped, dialled)
        assert (decision.verdict, decision.rule) == (Verdict.FORWARD, "emergency")
        assert limit_checks(shipped, decision, "asterisk-1", "201") == []
