"""Baselines (sipguard.alerts.baseline): traffic by bucket, what is normal for a local hour
of the week, and the findings above it. Pure: every time here is an explicit timestamp."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.alerts.baseline import (
    BUCKET,
    HOUR,
    Finding,
    Normal,
    TrafficTable,
    dimensions,
    findings,
    hour_start,
    normal_for,
    slot_label,
    weeks_back,
)
from sipguard.policy.alerting import WEEK, AlertPolicy, Expectation, Level
from sipguard.records.sink import TrafficRow

NY = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
# Thursday 16 May 2024, 02:00 in New York (EDT); no DST change in the four weeks before.
THURSDAY = datetime(2024, 5, 16, 2, 0, tzinfo=NY)
START = THURSDAY.timestamp()
NOW = START + 20 * 60  # 02:20
INTL = "jurisdiction:international"


def _bucket(at: float) -> int:
    return int(at // BUCKET)


def _history(minutes: list[float], calls: list[float] | None = None,
             account: str = "acme") -> TrafficTable:
    """International traffic to GB at Thursday 02:00-03:00 New York, one entry a week back
    (minutes[0] one week back), split over two buckets of the hour, with traffic just
    before and just after the hour that must not count."""
    table = TrafficTable()
    for weeks, amount in enumerate(minutes, 1):
        start = weeks_back(THURSDAY, weeks)
        count = calls[weeks - 1] if calls is not None else 1.0
        table.add(account, "international", "GB", _bucket(start), count / 2, amount / 2)
        table.add(account, "international", "GB", _bucket(start + 45 * 60), count / 2,
                  amount / 2)
        table.add(account, "international", "GB", _bucket(start - 60), 50, 500)  # 01:59
        table.add(account, "international", "GB", _bucket(start + HOUR), 50, 500)  # 03:00
    return table


def _current(minutes: float, calls: float = 1.0, account: str = "acme",
             region: str = "GB", jurisdiction: str = "international") -> TrafficTable:
    """This hour's traffic so far (in the 02:00 and 02:15 buckets)."""
    table = TrafficTable()
    table.add(account, jurisdiction, region, _bucket(START), calls / 2, minutes / 2)
    table.add(account, jurisdiction, region, _bucket(START + 15 * 60), calls / 2, minutes / 2)
    return table


def _findings(current: TrafficTable, history: TrafficTable,
              policy: AlertPolicy | None = None,
              first_seen: float | None = START - 10 * WEEK) -> list[Finding]:
    seen = {} if first_seen is None else {"acme": first_seen}
    return list(findings(policy or AlertPolicy(), current, history, seen, {"acme": NY}, NOW))


def _by_key(found: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(finding.dimension, finding.measure): finding for finding in found}


# -- the table ----------------------------------------------------------------------------


def test_dimensions_of_a_call():
    """A call counts towards its jurisdiction, and an international one towards its country."""
    assert dimensions("international", "CU") == ["jurisdiction:international", "country:CU"]
    assert dimensions("interstate", "US") == ["jurisdiction:interstate"]
    assert dimensions("international", None) == ["jurisdiction:international"]
    assert dimensions("international", "") == ["jurisdiction:international"]


def test_table_adds_and_totals_over_buckets():
    """total() sums the buckets that start within [start, end), per account and dimension."""
    table = TrafficTable()
    base = _bucket(START)
    table.add("acme", "international", "CU", base, 2, 10.0)
    table.add("acme", "international", "CU", base, 1, 5.0)  # same bucket: added up
    table.add("acme", "international", "GB", base + 1, 3, 7.5)
    table.add("acme", "interstate", "US", base + 3, 4, 20.0)
    table.add("acme", "international", "CU", base + 4, 9, 90.0)  # the next hour
    table.add("globex", "international", "CU", base, 100, 1000.0)
    assert table.total("acme", INTL, START, START + HOUR) == (6.0, 22.5)
    assert table.total("acme", "country:CU", START, START + HOUR) == (3.0, 15.0)
    assert table.total("acme", "country:GB", START, START + HOUR) == (3.0, 7.5)
    assert table.total("acme", "jurisdiction:interstate", START, START + HOUR) == (4.0, 20.0)
    # A bucket starting exactly at the end is out; one starting at the start is in.
    assert table.total("acme", INTL, START, START + BUCKET) == (3.0, 15.0)
    assert table.total("acme", INTL, START + HOUR, START + 2 * HOUR) == (9.0, 90.0)
    # A bucket that began before the start is out, even when it overlaps.
    assert table.total("acme", INTL, START + 1, START + HOUR) == (3.0, 7.5)
    assert table.total("acme", "country:FR", START, START + HOUR) == (0.0, 0.0)
    assert table.total("initech", INTL, START, START + HOUR) == (0.0, 0.0)
    assert set(table.cells()) == {
        ("acme", INTL), ("acme", "country:CU"), ("acme", "country:GB"),
        ("acme", "jurisdiction:interstate"), ("globex", INTL), ("globex", "country:CU")}


def test_table_from_traffic_rows():
    """A table built from the CDR sink's TrafficRows counts them like add() does."""
    rows = [TrafficRow("acme", "international", "CU", _bucket(START), 2, 12.5),
            TrafficRow("acme", "international", "CU", _bucket(START) + 2, 1, 3.0),
            TrafficRow("acme", "intrastate", "", _bucket(START), 5, 9.0)]
    table = TrafficTable(rows)
    assert table.total("acme", "country:CU", START, START + HOUR) == (3.0, 15.5)
    assert table.total("acme", "jurisdiction:intrastate", START, START + HOUR) == (5.0, 9.0)
    assert ("acme", "country:") not in table.cells()


# -- hours of the week ------------------------------------------------------------------------


def test_hour_start_and_slot_label():
    """The local hour's start (zones with :30 offsets too) and its label."""
    assert hour_start(NOW, NY) == THURSDAY
    assert slot_label(THURSDAY) == "Thursday 02:00–03:00"
    assert slot_label(datetime(2024, 5, 16, 23, 0, tzinfo=NY)) == "Thursday 23:00–00:00"
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30
    at = datetime(2024, 5, 16, 10, 50, tzinfo=UTC).timestamp()  # 16:20 in Kolkata
    start = hour_start(at, kolkata)
    assert (start.hour, start.minute) == (16, 0)
    assert start.timestamp() == datetime(2024, 5, 16, 10, 30, tzinfo=UTC).timestamp()


def test_weeks_back_is_the_same_local_hour():
    """Without a DST change, N weeks back is exactly N * 168 hours back."""
    for weeks in range(1, 5):
        earlier = weeks_back(THURSDAY, weeks)
        assert START - earlier == weeks * WEEK
        assert datetime.fromtimestamp(earlier, NY).strftime("%A %H:%M") == "Thursday 02:00"


def test_weeks_back_across_dst_changes():
    """Across a DST change the same local hour a week back is 167 h (the week clocks went
    forward) or 169 h (the week they went back) earlier, and still reads Thursday 02:00."""
    spring = datetime(2024, 3, 14, 2, 0, tzinfo=NY)  # EDT; 7 March was EST
    earlier = weeks_back(spring, 1)
    assert spring.timestamp() - earlier == 167 * 3600
    assert datetime.fromtimestamp(earlier, NY).strftime("%A %H:%M %Z") == "Thursday 02:00 EST"
    autumn = datetime(2024, 11, 7, 2, 0, tzinfo=NY)  # EST; 31 October was EDT
    earlier = weeks_back(autumn, 1)
    assert autumn.timestamp() - earlier == 169 * 3600
    assert datetime.fromtimestamp(earlier, NY).strftime("%A %H:%M %Z") == "Thursday 02:00 EDT"


# -- what is normal ---------------------------------------------------------------------------


def test_normal_is_the_mean_of_the_same_hour_over_the_past_weeks():
    """Thursday 02:00 over four weeks of 10, 20, 12 and 18 minutes is 15 minutes normal."""
    history = _history([10, 20, 12, 18], calls=[2, 4, 6, 8])
    normal = normal_for(AlertPolicy(), history, "acme", INTL, THURSDAY, START - 10 * WEEK)
    assert normal == Normal(calls=5.0, minutes=15.0, weeks=4)
    assert normal_for(AlertPolicy(), history, "acme", "country:GB", THURSDAY,
                      START - 10 * WEEK) == normal


def test_normal_uses_only_the_policy_weeks():
    """With baseline.weeks 2 only the last two weeks count."""
    history = _history([10, 20, 12, 18])
    normal = normal_for(AlertPolicy(weeks=2), history, "acme", INTL, THURSDAY, START - 10 * WEEK)
    assert normal == Normal(calls=1.0, minutes=15.0, weeks=2)


def test_normal_counts_only_the_weeks_after_first_seen():
    """Weeks before the account's first record are not zeros: they are left out."""
    history = _history([10, 20, 12, 18])
    # First seen between two and three weeks ago: weeks 1 and 2 count.
    first_seen = START - 2 * WEEK - 3 * 86400
    normal = normal_for(AlertPolicy(), history, "acme", INTL, THURSDAY, first_seen)
    assert normal == Normal(calls=1.0, minutes=15.0, weeks=2)
    # First seen at the very start of the hour two weeks back: that week counts.
    at_start = normal_for(AlertPolicy(), history, "acme", INTL, THURSDAY,
                          weeks_back(THURSDAY, 2))
    assert at_start.weeks == 2


def test_normal_across_a_dst_change_reads_the_same_local_hour():
    """The Thursday after clocks went forward is compared with 02:00-03:00 EST the week
    before, not with 01:00-02:00 (exactly 168 h earlier)."""
    spring = datetime(2024, 3, 14, 2, 0, tzinfo=NY)
    history = TrafficTable()
    history.add("acme", "international", "GB", _bucket(weeks_back(spring, 1)), 3, 30.0)
    history.add("acme", "international", "GB", _bucket(spring.timestamp() - WEEK), 99, 990.0)
    normal = normal_for(AlertPolicy(weeks=1), history, "acme", INTL, spring,
                        spring.timestamp() - 10 * WEEK)
    assert normal == Normal(calls=3.0, minutes=30.0, weeks=1)


def test_no_week_of_history_falls_back_to_the_expectation():
    """A new account (no record, or none a week old) is compared with the policy's expectations:
    international (countries too) or the jurisdiction's, else the default."""
    history = _history([10, 20, 12, 18])
    policy = AlertPolicy()
    for first_seen in (None, START - 3 * 86400):
        assert normal_for(policy, history, "acme", INTL, THURSDAY, first_seen) == Normal(
            10.0, 15.0, 0)
        assert normal_for(policy, history, "acme", "country:CU", THURSDAY, first_seen) == Normal(
            10.0, 15.0, 0)
        assert normal_for(policy, history, "acme", "jurisdiction:interstate", THURSDAY,
                          first_seen) == Normal(60.0, 120.0, 0)
    own = AlertPolicy(expectations={"interstate": Expectation(30.0, 3.0),
                                    "default": Expectation(7.0, 2.0)})
    assert normal_for(own, history, "acme", "jurisdiction:interstate", THURSDAY,
                      None) == Normal(3.0, 30.0, 0)
    assert normal_for(own, history, "acme", "jurisdiction:toll-free", THURSDAY,
                      None) == Normal(2.0, 7.0, 0)


# -- findings ---------------------------------------------------------------------------------


def test_no_finding_below_min_minutes():
    """9 minutes against a normal of 1 is far above normal but below min_minutes (10)."""
    found = _findings(_current(9), _history([1, 1, 1, 1]))
    assert found == []
    assert _findings(_current(9), _history([1, 1, 1, 1]),
                     AlertPolicy(min_minutes=5.0)) != []


def test_levels_at_25_50_and_100_percent_above_normal():
    """Against 20 minutes normal: 24 is nothing, 25 notify, 30 warning, 40 urgent."""
    history = _history([20, 20, 20, 20])
    expected = {24.0: None, 25.0: Level.NOTIFY, 29.0: Level.NOTIFY, 30.0: Level.WARNING,
                39.0: Level.WARNING, 40.0: Level.URGENT, 400.0: Level.URGENT}
    for minutes, level in expected.items():
        found = _by_key(_findings(_current(minutes), history))
        international = found.get((INTL, "minutes"))
        country = found.get(("country:GB", "minutes"))
        if level is None:
            assert international is None and country is None, minutes
            continue
        assert international is not None and international.level is level, minutes
        assert country is not None and country.level is level, minutes
        assert international.percent == (minutes - 20.0) / 20.0 * 100.0
        assert (international.current, international.normal, international.weeks) == (
            minutes, 20.0, 4)


def test_urgent_with_no_percent_when_nothing_is_normal():
    """Traffic where the baseline is 0 is urgent, with percent None."""
    found = _by_key(_findings(_current(12), _history([0, 0, 0, 0])))
    finding = found[(INTL, "minutes")]
    assert finding.level is Level.URGENT and finding.percent is None
    assert finding.normal == 0.0
    assert finding.text() == ("International minutes for account acme: 12 min where none are "
                              "normal for a Thursday 02:00–03:00")


def test_calls_measure_needs_min_calls():
    """Calls are a measure of their own, with min_calls (10) as their floor."""
    history = _history([1, 1, 1, 1], calls=[4, 4, 4, 4])
    few = _by_key(_findings(_current(1, calls=9), history))
    assert (INTL, "calls") not in few  # 125% above, but only 9 calls
    assert (INTL, "minutes") not in few  # 1 minute: below min_minutes
    many = _by_key(_findings(_current(1, calls=10), history))
    finding = many[(INTL, "calls")]
    assert (finding.level, finding.percent, finding.current, finding.normal) == (
        Level.URGENT, 150.0, 10.0, 4.0)
    assert finding.text() == ("International calls for account acme are 150% above normal "
                              "for a Thursday 02:00–03:00 (10 calls vs 4 calls)")


def test_traffic_before_the_hour_is_not_this_hours():
    """Only the buckets of the current local hour count towards it."""
    current = _current(5)
    current.add("acme", "international", "GB", _bucket(START - 60), 0, 500)  # 01:59
    assert _findings(current, _history([20, 20, 20, 20])) == []


def test_finding_text_for_a_jurisdiction():
    """The text reads like the documentation's example (42 min against 15 min normal)."""
    found = _by_key(_findings(_current(42), _history([10, 20, 12, 18])))
    finding = found[(INTL, "minutes")]
    assert (finding.level, finding.percent) == (Level.URGENT, 180.0)
    assert finding.text() == ("International minutes for account acme are 180% above normal "
                              "for a Thursday 02:00–03:00 (42 min vs 15 min)")
    assert finding.jurisdiction == "international"
    assert finding.label == "Thursday 02:00–03:00" and finding.hour == START
    assert finding.key == f"traffic:acme:{INTL}:minutes:{int(START)}"


def test_finding_text_for_a_country():
    """A country's text names it with its calling code."""
    current = _current(42, region="CU")
    history = TrafficTable()
    for weeks in range(1, 5):
        history.add("acme", "international", "CU", _bucket(weeks_back(THURSDAY, weeks)), 1, 15)
    finding = _by_key(_findings(current, history))[("country:CU", "minutes")]
    assert finding.text() == ("Minutes to CU (+53) for account acme are 180% above normal "
                              "for a Thursday 02:00–03:00 (42 min vs 15 min)")
    assert finding.jurisdiction == "international"
    assert finding.key == f"traffic:acme:country:CU:minutes:{int(START)}"


def test_finding_text_without_history_says_so():
    """Against the policy's expectation the text says there is no history yet."""
    finding = _by_key(_findings(_current(42), TrafficTable(), first_seen=None))[
        (INTL, "minutes")]
    assert finding.weeks == 0
    assert finding.text() == ("International minutes for account acme are 180% above normal "
                              "for a Thursday 02:00–03:00 (42 min vs 15 min expected (no "
                              "history yet))")


def test_findings_use_each_accounts_time_zone():
    """An account in UTC is compared over its own local hour, labelled in its own time."""
    table = TrafficTable()
    table.add("globex", "interstate", "US", _bucket(NOW), 0, 500)
    found = list(findings(AlertPolicy(), table, TrafficTable(), {}, {"acme": NY}, NOW))
    assert [(finding.account, finding.label) for finding in found] == [
        ("globex", "Thursday 06:00–07:00")]  # 02:20 EDT is 06:20 UTC; no zone: UTC
    assert found[0].level is Level.URGENT  # 500 against the default expectation of 120


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0, max_value=500, allow_nan=False),
       st.floats(min_value=0, max_value=500, allow_nan=False),
       st.sampled_from([0.0, 3.0, 15.0, 40.0]))
def test_level_never_decreases_as_traffic_grows(first: float, second: float, normal: float):
    """For a fixed normal, more traffic never gives a lower level (no finding ranks lowest)."""
    history = _history([normal] * 4)
    low, high = sorted((first, second))

    def rank(minutes: float) -> int:
        found = _by_key(_findings(_current(minutes), history)).get((INTL, "minutes"))
        return -1 if found is None else found.level.rank

    assert rank(low) <= rank(high)
