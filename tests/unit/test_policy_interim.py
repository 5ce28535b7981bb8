"""The interim prefix policy: emergency bypass first, longest blocked prefix wins."""

from __future__ import annotations

import pytest

from sipguard.policy import CallAttempt, PrefixPolicy, Verdict, evaluate


def _attempt(number: str) -> CallAttempt:
    return CallAttempt(call_id="c", account="a", source="127.0.0.1", caller="201", dialled=number)


@pytest.mark.parametrize(
    ("prefixes", "number", "verdict", "rule"),
    [
        (("1900", "1976"), "19005551234", Verdict.REJECT, "blocked_prefix:1900"),
        (("1900", "1976"), "+1-976-555-1234", Verdict.REJECT, "blocked_prefix:1976"),
        (("1900",), "15551234567", Verdict.FORWARD, "default"),
        (("1", "1900"), "19005551234", Verdict.REJECT, "blocked_prefix:1900"),
        (("9", "1"), "911", Verdict.FORWARD, "emergency"),
        (("1",), "112", Verdict.FORWARD, "emergency"),
        (("0",), "000", Verdict.FORWARD, "emergency"),
        (("99",), "999", Verdict.FORWARD, "emergency"),
    ],
)
def test_prefix_decisions(prefixes: tuple[str, ...], number: str, verdict: Verdict, rule: str):
    """Each number gets the expected verdict and names the rule that decided it."""
    decision = evaluate(PrefixPolicy(prefixes), _attempt(number))
    assert decision.verdict is verdict
    assert decision.rule == rule
    assert decision.trace[-1].matched


def test_trace_lists_every_rule_consulted():
    """A forwarded call's trace shows the emergency check, the prefix check and the default."""
    decision = evaluate(PrefixPolicy(("1900",)), _attempt("15551234567"))
    assert [entry.rule for entry in decision.trace] == ["emergency", "blocked_prefix", "default"]
    assert decision.rule_ids == ("default",)
