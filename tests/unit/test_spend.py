"""Spend: the rate deck's prices, budgets that cap a call's length, and used-up budgets."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from sipguard.policy import CallAttempt, Verdict
from sipguard.policy.loader import load_policy, load_policy_file
from sipguard.policy.ratedeck import RateDeck
from sipguard.screening.screener import Screener

CONF = Path(__file__).resolve().parents[2] / "conf"
MONDAY_NOON = datetime.fromisoformat("2026-11-23T12:00:00-05:00")
JAMAICA = "18765550123"  # +1 876: priced 0.27/min in the sample deck, default-denied though
LONDON = "011442079460321"  # +44 20: 0.02/min; GB needs a PIN in the example policy


def test_longest_prefix_sets_the_price():
    """+1876 beats +1, +447 beats +44, and an unpriced number gets the default."""
    deck = load_policy(CONF / "policy.yaml").limits.rate_deck
    assert deck.price("+18765550123") == (0.27, "+1876")
    assert deck.price("+12125551234") == (0.01, "+1")
    assert deck.price("+447700900123") == (0.08, "+447")
    assert deck.price("+81312345678") == (1.0, None)  # Japan is not in the sample deck
    assert RateDeck.build({"+44": 0.02}).cost("+442079460321", 90) == 0.03


def test_bad_rate_deck_line_is_reported_with_its_line(tmp_path: Path):
    """A deck line that is not prefix,price is an error naming the deck file and line."""
    (tmp_path / "deck.csv").write_text("prefix,per_minute\n+44,0.02\n+49,cheap\n")
    (tmp_path / "policy.yaml").write_text(
        "accounts: [{name: pbx}]\nlimits:\n  spend: {rate_deck: deck.csv, rules: []}\n")
    try:
        load_policy_file(tmp_path / "policy.yaml")
    except Exception as error:  # ConfigError
        assert f"{tmp_path / 'deck.csv'}:3: price:" in str(error)
    else:
        raise AssertionError("a bad rate deck line was accepted")


def _screener(tmp_path: Path, rules: str, per_call_max: str = "") -> Screener:
    (tmp_path / "deck.csv").write_text("prefix,per_minute\n+44,0.50\n+1,0.01\n")
    (tmp_path / "policy.yaml").write_text(
        "accounts: [{name: pbx, home_region: US, time_zone: UTC,"
        " may_dial: [domestic, international]}]\n"
        "destinations: {default: deny, rules: [{region: GB, action: allow},"
        " {region: US, action: allow}]}\n"
        "limits:\n  spend:\n    rate_deck: deck.csv\n"
        f"{per_call_max}"
        f"    rules:\n{rules}")
    path = tmp_path / "policy.yaml"
    return Screener(path, load_policy_file(path), structlog.get_logger())


def test_budget_caps_the_length_of_a_call(tmp_path: Path):
    """With 3.00 left at 0.50/min, the call may last 360 s; the per-call maximum can cut more."""
    screener = _screener(tmp_path, "      - {per: account, class: international, max: 3.00,"
                                   " window: 1d}\n")
    attempt = CallAttempt("c", "pbx", "", "201", LONDON, "201")
    screening = asyncio.run(screener.screen(attempt, 0.0, "call-1", MONDAY_NOON))
    assert screening.decision.verdict is Verdict.FORWARD
    assert screening.max_duration == 360.0
    capped = _screener(tmp_path, "      - {per: account, class: international, max: 3.00,"
                                 " window: 1d}\n", "    per_call_max: 1.00\n")
    screening = asyncio.run(capped.screen(attempt, 0.0, "call-2", MONDAY_NOON))
    assert screening.max_duration == 120.0


def test_spent_budget_refuses_the_next_call_and_a_new_day_frees_it(tmp_path: Path):
    """After 3.00 spent, the next international call is refused until the window passes."""
    screener = _screener(tmp_path, "      - {id: intl-day, per: account, class: international,"
                                   " max: 3.00, window: 1d}\n")
    attempt = CallAttempt("c", "pbx", "", "201", LONDON, "201")

    async def run() -> tuple[str, str, str, str]:
        first = await screener.screen(attempt, 0.0, "call-1", MONDAY_NOON)
        await screener.charge(first, 360.0, MONDAY_NOON)  # 6 minutes at 0.50: all 3.00
        second = await screener.screen(attempt, 0.0, "call-2", MONDAY_NOON)
        domestic = await screener.screen(
            CallAttempt("c", "pbx", "", "201", "12125551234", "201"), 0.0, "call-3", MONDAY_NOON)
        later = await screener.screen(attempt, 0.0, "call-4",
                                      MONDAY_NOON + timedelta(days=1, seconds=1))
        return (second.decision.action, second.decision.category, domestic.decision.action,
                later.decision.action)

    with structlog.testing.capture_logs():
        refused, category, domestic, later = asyncio.run(run())
    assert (refused, category) == ("deny", "spend limit reached")
    assert domestic == "allow"  # the rule counts international calls only
    assert later == "allow"
