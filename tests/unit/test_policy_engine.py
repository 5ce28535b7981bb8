"""The screening stages of evaluate(): specificity, report mode, risk, time, trace, fail-closed.

Each test loads a small policy from tests/policies/golden_*.yaml (or the shipped
conf/policy.yaml) and checks one behaviour of the engine with literal
expectations.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sipguard.policy import CallAttempt, Decision, Policy, Usage, Verdict, evaluate
from sipguard.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "tests" / "policies"

MONDAY_10_UTC = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MONDAY_20_UTC = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
# Monday 10:00 in New York (inside asterisk-1's business hours) and 22:00 (outside).
NEW_YORK_DAY = datetime.fromisoformat("2026-11-23T10:00:00-05:00")
NEW_YORK_NIGHT = datetime.fromisoformat("2026-11-23T22:00:00-05:00")

LONDON = "+442079460321"  # matches +442079, +4420, GB and +44
LONDON_WEST = "+442071234567"  # matches +4420, GB and +44
BIRMINGHAM = "+441212345678"  # matches GB and +44
GUERNSEY = "+441481256789"  # region GG: matches only +44
US_NUMBER = "+12015550123"
US_PREMIUM = "+19002345678"
JAMAICA = "+18765230123"
JAMAICA_MOBILE = "+18762101234"
CUBA = "+5371234567"
CORK = "+3532212345"
GERMAN_SHARED_COST = "+4918012345"
GERMAN_PREMIUM = "+499001234567"
INVALID_US = "+11234567890"

STAGES = (
    "emergency",
    "account",
    "group",
    "number",
    "blocked",
    "type",
    "destination",
    "class",
    "time",
    "risk",
)


def _policy(name: str) -> Policy:
    return load_policy(POLICIES / name)


@pytest.fixture(scope="module")
def shipped() -> Policy:
    """conf/policy.yaml."""
    return load_policy(REPO / "conf" / "policy.yaml")


def screen(
    policy: Policy,
    dialled: str,
    extension: str | None = None,
    *,
    account: str | None = None,
    when: datetime | None = MONDAY_10_UTC,
    usage: Usage | None = None,
) -> Decision:
    """Evaluate one attempt (first account, Monday 10:00 UTC unless told)."""
    attempt = CallAttempt(
        call_id="engine-test",
        account=account or policy.accounts[0].name,
        source="192.0.2.10",
        caller=extension or "",
        dialled=dialled,
        extension=extension,
        when=when,
    )
    return evaluate(policy, attempt) if usage is None else evaluate(policy, attempt, usage)


def stages_of(decision: Decision) -> list[str]:
    """The stages of the trace, each once, in the order they first appear."""
    seen: list[str] = []
    for entry in decision.trace:
        if entry.stage not in seen:
            seen.append(entry.stage)
    return seen


def opinions(decision: Decision) -> dict[str, tuple[str | None, str]]:
    """Rule id -> (action, mode) of every trace entry that had an opinion."""
    return {entry.rule: (entry.action, entry.mode) for entry in decision.trace if entry.action}


# --- Destination specificity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "dialled", "action", "rule"),
    [
        (None, BIRMINGHAM, "pin", "gb-pin"),  # region beats country code
        (None, GUERNSEY, "deny", "cc44-deny"),  # only the country code matches GG
        (None, LONDON_WEST, "allow", "p4420-allow"),  # prefix beats region
        (None, LONDON, "deny", "p442079-deny"),  # longer prefix beats shorter
        ("501", BIRMINGHAM, "allow", "group-gb-allow"),  # group rule first at equal specificity
        ("501", LONDON_WEST, "pin", "group-4420-pin"),  # equal prefix length: the group's
        ("501", LONDON, "deny", "p442079-deny"),  # a longer policy prefix beats the group's
        ("501", GUERNSEY, "deny", "cc44-deny"),  # the group's GB rule does not cover GG
        ("201", BIRMINGHAM, "pin", "gb-pin"),  # 201 is in no group
    ],
)
def test_most_specific_destination_rule_decides(
    extension: str | None, dialled: str, action: str, rule: str
):
    """A prefix beats a region beats a country code, longer prefixes win, group rules win ties."""
    decision = screen(_policy("golden_specificity.yaml"), dialled, extension)
    assert (decision.action, decision.rule) == (action, rule)


def test_specificity_does_not_depend_on_rule_order():
    """Reversing the policy's and the group's rule lists changes no decision."""
    policy = _policy("golden_specificity.yaml")
    account = policy.accounts[0]
    groups = tuple(
        dataclasses.replace(group, destinations=group.destinations[::-1])
        for group in account.groups
    )
    reversed_policy = dataclasses.replace(
        policy,
        destinations=policy.destinations[::-1],
        accounts=(dataclasses.replace(account, groups=groups),),
    )
    for extension in (None, "501"):
        for dialled in (BIRMINGHAM, GUERNSEY, LONDON_WEST, LONDON):
            first = screen(policy, dialled, extension)
            second = screen(reversed_policy, dialled, extension)
            assert (first.action, first.rule) == (second.action, second.rule), dialled


def test_destination_trace_names_the_winning_matcher():
    """The destination entry says which matcher won, and no losing rule is traced as deciding."""
    decision = screen(_policy("golden_specificity.yaml"), LONDON)
    entries = [entry for entry in decision.trace if entry.stage == "destination"]
    assert len(entries) == 1
    assert entries[0].rule == "p442079-deny" and entries[0].action == "deny"
    assert entries[0].detail.startswith("prefix +442079 matches +442079460321")


def test_no_matching_rule_falls_to_the_default():
    """A number no rule covers is decided by destinations.default (deny here)."""
    decision = screen(_policy("golden_specificity.yaml"), JAMAICA)
    assert (decision.action, decision.rule, decision.category) == (
        "deny",
        "default",
        "destination not allowed",
    )


# --- Classes an extension may dial ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "dialled", "action", "rule"),
    [
        ("601", US_NUMBER, "allow", "allow-us"),
        ("601", LONDON_WEST, "deny", "class:international"),  # allowed destination, wrong class
        (None, LONDON_WEST, "allow", "p4420-allow"),
        (None, US_PREMIUM, "deny", "class:premium"),  # nobody here may dial premium
    ],
)
def test_extension_classes(extension: str | None, dialled: str, action: str, rule: str):
    """The class of the number must be one the extension's group (or the account) may dial."""
    decision = screen(_policy("golden_specificity.yaml"), dialled, extension)
    assert (decision.action, decision.rule) == (action, rule)


def test_class_denial_has_its_public_category():
    """A class denial carries the class category, not a rule internal."""
    decision = screen(_policy("golden_specificity.yaml"), LONDON_WEST, "601")
    assert decision.category == "destination class not allowed for this extension"
    assert decision.number_class == "international"


# --- Report mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "when", "would"),
    [
        (CUBA, MONDAY_10_UTC, "deny"),  # irsf-cu
        (JAMAICA, MONDAY_10_UTC, "deny"),  # default deny
        (US_PREMIUM, MONDAY_10_UTC, "deny"),  # premium_rate type rule and class premium
        (LONDON, NEW_YORK_DAY, "pin"),  # pin-gb
        (CORK, NEW_YORK_NIGHT, "deny"),  # default deny, and the night pin
        (US_NUMBER, NEW_YORK_NIGHT, "allow"),
    ],
)
def test_whole_policy_in_report_mode_forwards_and_says_what_it_would_do(
    dialled: str, when: datetime, would: str
):
    """With mode: report every call with an account and a number is forwarded; .would tells."""
    decision = screen(_policy("golden_report.yaml"), dialled, when=when)
    assert decision.verdict is Verdict.FORWARD and decision.action == "allow"
    assert decision.would == would
    assert decision.as_dict()["would"] == would
    with_opinion = [entry for entry in decision.trace if entry.action is not None]
    assert with_opinion and all(entry.mode == "report" for entry in with_opinion)


def test_report_policy_traces_every_opinion_it_did_not_enforce():
    """A premium number in a report policy shows the type deny and the class deny, both reported."""
    decision = screen(_policy("golden_report.yaml"), US_PREMIUM)
    seen = opinions(decision)
    assert seen["type:premium_rate"] == ("deny", "report")
    assert seen["class:premium"] == ("deny", "report")


@pytest.mark.parametrize(
    ("account", "dialled", "extension", "rule"),
    [
        ("nobody", US_NUMBER, None, "unknown-account"),
        ("pbx", US_NUMBER, "700", "group:voicemail"),
        ("pbx", "2015550123#", None, "not-dialable"),
    ],
)
def test_report_mode_still_fails_closed(
    account: str, dialled: str, extension: str | None, rule: str
):
    """Unknown accounts, extensions that may not dial out and undialable strings are denied in report mode."""
    decision = screen(_policy("golden_report.yaml"), dialled, extension, account=account)
    assert (decision.verdict, decision.rule, decision.would) == (Verdict.REJECT, rule, "deny")
    assert opinions(decision)[rule] == ("deny", "enforce")


def test_emergency_is_forwarded_in_report_mode():
    """911 is forwarded by the emergency stage, not by report mode."""
    decision = screen(_policy("golden_report.yaml"), "9911", "700")
    assert (decision.verdict, decision.rule, decision.would) == (
        Verdict.FORWARD,
        "emergency",
        "allow",
    )


def test_report_mode_deny_rule_lets_the_call_through():
    """A deny prefix in report mode forwards the call, traced as a reported deny."""
    decision = screen(_policy("golden_rule_report.yaml"), "+12125550123")
    assert decision.verdict is Verdict.FORWARD
    assert decision.would == "deny"
    assert opinions(decision)["block-212"] == ("deny", "report")


def test_report_mode_type_rule_lets_the_call_through():
    """premium_rate: {action: deny, mode: report} forwards a US 900 call and would deny it."""
    decision = screen(_policy("golden_rule_report.yaml"), US_PREMIUM)
    assert (decision.verdict, decision.would) == (Verdict.FORWARD, "deny")
    assert opinions(decision)["type:premium_rate"] == ("deny", "report")
    assert opinions(decision)["allow-us"] == ("allow", "enforce")


def test_enforced_rules_still_act_beside_reported_ones():
    """The enforced shared_cost pin challenges while the reported risk deny only shows in .would."""
    decision = screen(_policy("golden_rule_report.yaml"), GERMAN_SHARED_COST)
    assert (decision.action, decision.rule) == ("pin", "type:shared_cost")
    assert decision.would == "deny"
    assert opinions(decision)["risk-score"] == ("deny", "report")


def test_report_mode_risk_and_time_rules_only_trace():
    """A reported risk deny and a reported time deny leave an allowed call forwarded."""
    decision = screen(
        _policy("golden_rule_report.yaml"), LONDON, usage=Usage(international_calls_last_hour=10)
    )
    assert (decision.action, decision.rule, decision.would) == ("allow", "allow-gb", "deny")
    assert decision.risk_score == 30
    seen = opinions(decision)
    assert seen["risk-score"] == ("deny", "report")
    assert seen["office-hours-watch"] == ("deny", "report")


def test_report_mode_rule_does_not_open_a_denied_destination():
    """A report-mode pin rule for JM leaves JM denied by the default; the rule is traced as report.

    .would is deny here because this policy's other report-mode rules (the office-hours
    watch and the risk threshold) would deny the call too if they were enforced.
    """
    decision = screen(_policy("golden_rule_report.yaml"), JAMAICA)
    assert (decision.action, decision.rule) == ("deny", "default")
    assert opinions(decision)["pin-jm"] == ("pin", "report")
    assert decision.would == "deny"


# --- Risk score -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "when", "usage", "score", "action"),
    [
        (US_NUMBER, MONDAY_10_UTC, Usage(), 0, "allow"),
        (US_NUMBER, MONDAY_20_UTC, Usage(), 0, "allow"),  # no hours points at home
        (US_NUMBER, MONDAY_10_UTC, Usage(10, None), 20, "allow"),  # velocity counts on any call
        (JAMAICA, MONDAY_10_UTC, Usage(), 30, "allow"),  # JM 60 x 0.5
        (JAMAICA, MONDAY_10_UTC, Usage(0, True), 30, "allow"),  # seen before: no points
        (JAMAICA, MONDAY_10_UTC, Usage(0, None), 30, "allow"),  # unknown: no points
        (JAMAICA, MONDAY_20_UTC, Usage(), 40, "pin"),  # +10 outside hours: pin at 40
        (JAMAICA, MONDAY_10_UTC, Usage(0, False), 45, "pin"),  # +15 never called
        (JAMAICA_MOBILE, MONDAY_10_UTC, Usage(1, None), 39, "allow"),  # 5 + 30 + 4
        (JAMAICA_MOBILE, MONDAY_10_UTC, Usage(2, None), 43, "pin"),  # 5 + 30 + 8
        (JAMAICA, MONDAY_10_UTC, Usage(100, None), 50, "pin"),  # velocity capped at 20
        (JAMAICA_MOBILE, MONDAY_20_UTC, Usage(2, False), 68, "pin"),  # 5 + 30 + 10 + 15 + 8
        (JAMAICA_MOBILE, MONDAY_10_UTC, Usage(5, False), 70, "deny"),  # deny at 70 exactly
        (JAMAICA_MOBILE, MONDAY_20_UTC, Usage(3, False), 72, "deny"),
        (US_PREMIUM, MONDAY_20_UTC, Usage(), 60, "pin"),  # premium 50 + hours 10
        (GERMAN_PREMIUM, MONDAY_20_UTC, Usage(10, False), 100, "deny"),  # 105 capped at 100
        (LONDON, MONDAY_20_UTC, Usage(), 10, "allow"),  # GB risk 0: only hours
        (INVALID_US, MONDAY_10_UTC, Usage(), 40, "pin"),  # invalid 40 by default
    ],
)
def test_risk_score_arithmetic_and_thresholds(
    dialled: str, when: datetime, usage: Usage, score: int, action: str
):
    """The score sums type, country, new-destination, hours and velocity points, capped at 100."""
    decision = screen(_policy("golden_risk.yaml"), dialled, when=when, usage=usage)
    assert decision.risk_score == score
    assert decision.action == action
    assert decision.rule == ("default" if action == "allow" else "risk-score")


def test_risk_detail_lists_its_parts():
    """The risk trace entry names each contribution and the threshold it reached."""
    decision = screen(
        _policy("golden_risk.yaml"), JAMAICA_MOBILE, when=MONDAY_20_UTC, usage=Usage(3, False)
    )
    entry = next(entry for entry in decision.trace if entry.stage == "risk")
    for part in (
        "mobile +5",
        "country JM risk 60 x 0.5 +30",
        "never called before +15",
        "outside business hours +10",
        "3 international calls in the last hour +12",
        ">= deny threshold 70",
    ):
        assert part in entry.detail, entry.detail
    assert decision.category == "risk score too high"


def test_shipped_policy_risk_uses_country_risk():
    """In conf/policy.yaml Cuba scores 50 for its country risk alone, plus 15 at night."""
    policy = load_policy(REPO / "conf" / "policy.yaml")
    assert screen(policy, CUBA, when=NEW_YORK_DAY).risk_score == 50
    assert screen(policy, CUBA, when=NEW_YORK_NIGHT).risk_score == 65


# --- Time rules across time zones -------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "dialled", "when", "action", "rule"),
    [
        # 10:00 UTC Monday: 19:00 in Tokyo, 10:00 in London, 02:00 in Los Angeles.
        ("tokyo", US_NUMBER, MONDAY_10_UTC, "deny", "intl-after-hours"),
        ("london", US_NUMBER, MONDAY_10_UTC, "allow", "allow-us"),
        ("los-angeles", US_NUMBER, MONDAY_10_UTC, "allow", "allow-us"),
        ("london", "02079460321", MONDAY_10_UTC, "pin", "domestic-office-pin"),
        ("tokyo", "0312345678", MONDAY_10_UTC, "allow", "allow-jp"),
        # 01:00 UTC Monday: 10:00 in Tokyo, 01:00 in London, 17:00 Sunday in Los Angeles.
        ("tokyo", US_NUMBER, datetime(2026, 11, 23, 1, 0, tzinfo=UTC), "allow", "allow-us"),
        (
            "tokyo",
            "0312345678",
            datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
            "pin",
            "domestic-office-pin",
        ),
        ("london", US_NUMBER, datetime(2026, 11, 23, 1, 0, tzinfo=UTC), "deny", "intl-after-hours"),
        (
            "los-angeles",
            "+81312345678",
            datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
            "deny",
            "intl-after-hours",
        ),
        # 17:30 UTC Monday: 09:30 in Los Angeles.
        (
            "los-angeles",
            "+81312345678",
            datetime(2026, 11, 23, 17, 30, tzinfo=UTC),
            "allow",
            "allow-jp",
        ),
        (
            "los-angeles",
            "2015550123",
            datetime(2026, 11, 23, 17, 30, tzinfo=UTC),
            "pin",
            "domestic-office-pin",
        ),
        # 08:30 UTC: 09:30 BST in July (inside), 08:30 GMT in November (outside).
        ("london", US_NUMBER, datetime(2026, 7, 15, 8, 30, tzinfo=UTC), "allow", "allow-us"),
        (
            "london",
            US_NUMBER,
            datetime(2026, 11, 25, 8, 30, tzinfo=UTC),
            "deny",
            "intl-after-hours",
        ),
        # A naive time is read as UTC.
        ("tokyo", US_NUMBER, datetime(2026, 11, 23, 10, 0), "deny", "intl-after-hours"),
        ("london", US_NUMBER, datetime(2026, 11, 23, 10, 0), "allow", "allow-us"),
    ],
)
def test_time_rules_use_each_accounts_time_zone(
    account: str, dialled: str, when: datetime, action: str, rule: str
):
    """Business hours are read in the account's own zone, daylight saving included."""
    decision = screen(_policy("golden_time_zones.yaml"), dialled, account=account, when=when)
    assert (decision.action, decision.rule) == (action, rule)


def test_unknown_time_counts_as_outside_business_hours():
    """when=None is the stricter case: the after-hours rule applies and the trace says why."""
    decision = screen(_policy("golden_time_zones.yaml"), US_NUMBER, account="tokyo", when=None)
    assert (decision.action, decision.rule) == ("deny", "intl-after-hours")
    hours = next(entry for entry in decision.trace if entry.rule == "business-hours")
    assert not hours.matched and "unknown" in hours.detail


def test_business_hours_entry_shows_local_time():
    """The business-hours trace entry shows the local weekday and time in the account's zone."""
    decision = screen(_policy("golden_time_zones.yaml"), US_NUMBER, account="tokyo")
    hours = next(entry for entry in decision.trace if entry.rule == "business-hours")
    assert hours.detail == "Mon 19:00 Asia/Tokyo: outside business hours"


# --- Trace order and fail-closed stages -------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "dialled", "extension", "expected"),
    [
        (
            "asterisk-1",
            "011442079460321",
            "201",
            ["emergency", "group", "number", "type", "destination", "class", "time", "risk"],
        ),
        (
            "asterisk-1",
            "+3532212345",
            "401",
            ["emergency", "group", "number", "type", "destination", "class", "time", "risk"],
        ),
        ("asterisk-1", "9911", "700", ["emergency"]),
        ("nobody", "2015550123", None, ["emergency", "account"]),
        ("asterisk-1", "2015550123", "800", ["emergency", "group"]),
        ("asterisk-1", "2015550123#", None, ["emergency", "group", "number"]),
    ],
)
def test_trace_lists_stages_in_order(
    shipped: Policy, account: str, dialled: str, extension: str | None, expected: list[str]
):
    """Stages appear in the fixed order and each stage's entries are contiguous."""
    decision = screen(shipped, dialled, extension, account=account, when=NEW_YORK_NIGHT)
    assert stages_of(decision) == expected
    positions = [STAGES.index(entry.stage) for entry in decision.trace]
    assert positions == sorted(positions)


def test_blocked_stage_sits_between_number_and_type(shipped: Policy):
    """A blocked number is traced after the number stage and before the type stage."""
    policy = dataclasses.replace(shipped, blocked_numbers=frozenset({LONDON}))
    decision = screen(policy, "9011442079460321", when=NEW_YORK_DAY)
    assert (decision.action, decision.rule) == ("deny", "blocked-number")
    assert stages_of(decision) == [
        "emergency",
        "group",
        "number",
        "blocked",
        "type",
        "destination",
        "class",
        "time",
        "risk",
    ]


def test_first_deny_in_stage_order_decides(shipped: Policy):
    """A UK premium number is denied by the type rule although the class stage also denies."""
    decision = screen(shipped, "+449012345678", when=NEW_YORK_DAY)
    assert decision.rule == "type:premium_rate"
    assert opinions(decision)["class:premium"] == ("deny", "enforce")
    assert opinions(decision)["pin-gb"] == ("pin", "enforce")
    assert decision.category == "premium rate"


def test_deny_beats_an_earlier_pin(shipped: Policy):
    """A Cuban shared-cost number: the type stage pins first, the irsf deny still wins."""
    decision = screen(shipped, "+538071234567", when=NEW_YORK_DAY)
    assert opinions(decision)["type:shared_cost"] == ("pin", "enforce")
    assert (decision.action, decision.rule) == ("deny", "irsf-cu")


def test_unknown_account_is_denied(shipped: Policy):
    """An account the policy does not name is rejected before its number is looked at."""
    decision = screen(shipped, "2015550123", account="asterisk-2")
    assert (decision.verdict, decision.rule, decision.category) == (
        Verdict.REJECT,
        "unknown-account",
        "unknown account",
    )
    assert decision.number is None


def test_decision_as_dict_is_plain_data(shipped: Policy):
    """as_dict() round-trips through JSON with the number, the class and every trace entry."""
    decision = screen(shipped, "9011442079460321", "201", when=NEW_YORK_NIGHT)
    data = json.loads(json.dumps(decision.as_dict()))
    assert data["action"] == "pin" and data["rule"] == "pin-gb"
    assert data["number"] == {
        "dialled": "9011442079460321",
        "cleaned": "9011442079460321",
        "e164": LONDON,
        "region": "GB",
        "type": "fixed_line",
        "class": "international",
    }
    assert len(data["trace"]) == len(decision.trace)
    assert data["policy_version"] == shipped.version


def test_usage_defaults_to_nothing_known(shipped: Policy):
    """evaluate() without a Usage scores as if nothing were known about recent calls."""
    attempt = CallAttempt("c", "asterisk-1", "", "", CORK, "401", NEW_YORK_DAY)
    assert evaluate(shipped, attempt).risk_score == evaluate(shipped, attempt, Usage()).risk_score


# --- Blocked numbers and emergency numbers ----------------------------------------------------


@pytest.mark.parametrize(
    "dialled",
    [
        LONDON,
        "011442079460321",
        "9011442079460321",
        "00442079460321",
        "%2B44 20 7946 0321",
        "+442079460321;isub=1",
    ],
)
def test_blocked_e164_number_is_denied_in_every_spelling(shipped: Policy, dialled: str):
    """A blocked E.164 number is denied however the PBX spells it."""
    policy = dataclasses.replace(shipped, blocked_numbers=frozenset({LONDON}))
    decision = screen(policy, dialled, when=NEW_YORK_DAY)
    assert (decision.action, decision.rule) == ("deny", "blocked-number")


@pytest.mark.parametrize("dialled", ["+44２079460321", "%2B44%EF%BC%92079460321", "+44٢079460321"])
def test_blocked_number_with_non_ascii_digits_is_denied(shipped: Policy, dialled: str):
    """A blocked number spelled with a fullwidth or Arabic-Indic digit is still denied."""
    policy = dataclasses.replace(shipped, blocked_numbers=frozenset({LONDON}))
    decision = screen(policy, dialled, when=NEW_YORK_DAY)
    assert decision.action == "deny"


def _shipped_with_blocked(tmp_path: Path, entry: str) -> Policy:
    """conf/policy.yaml with one blocked_numbers entry, loaded through the policy loader."""
    text = (REPO / "conf" / "policy.yaml").read_text()
    assert "blocked_numbers: []" in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("blocked_numbers: []", f"blocked_numbers: [{entry}]"))
    (tmp_path / "ratedeck.csv").write_bytes((REPO / "conf" / "ratedeck.csv").read_bytes())
    return load_policy(path)


@pytest.mark.parametrize("dialled", [LONDON, "011442079460321", "9 011 44 20 7946 0321"])
def test_blocked_number_from_the_file_is_denied(tmp_path: Path, dialled: str):
    """blocked_numbers: ['+442079460321'] in the file denies the number however it is dialled."""
    policy = _shipped_with_blocked(tmp_path, '"+442079460321"')
    decision = screen(policy, dialled, when=NEW_YORK_DAY)
    assert (decision.action, decision.rule) == ("deny", "blocked-number")


@pytest.mark.parametrize("dialled", [LONDON, "00442079460321", "9011442079460321"])
def test_blocked_number_as_dialled_blocks_other_spellings(tmp_path: Path, dialled: str):
    """blocked_numbers: ['011442079460321'] also blocks +44…, 0044… and 9 011 44…."""
    policy = _shipped_with_blocked(tmp_path, '"011442079460321"')
    decision = screen(policy, dialled, when=NEW_YORK_DAY)
    assert (decision.action, decision.rule) == ("deny", "blocked-number")


def test_extra_emergency_number_is_forwarded_from_voicemail(shipped: Policy):
    """A number listed in emergency_numbers is forwarded like 911, even from voicemail."""
    policy = dataclasses.replace(shipped, extra_emergency_numbers=frozenset({"7777"}))
    decision = screen(policy, "7-777", "700")
    assert (decision.verdict, decision.rule) == (Verdict.FORWARD, "emergency")


def test_extra_emergency_number_with_outside_line_is_forwarded(shipped: Policy):
    """An emergency_numbers entry dialled after the outside line 9 is forwarded like 9911."""
    policy = dataclasses.replace(shipped, extra_emergency_numbers=frozenset({"7777"}))
    decision = screen(policy, "97777", "201")
    assert (decision.verdict, decision.rule) == (Verdict.FORWARD, "emergency")


@pytest.mark.parametrize("extension", ["７００", "٧٠٠", "８５０"])
def test_voicemail_extension_in_other_scripts_digits_is_still_voicemail(shipped: Policy,
                                                                        extension: str):
    """An extension written with fullwidth or Arabic-Indic digits is the same extension."""
    decision = screen(shipped, "12125551234", extension, when=NEW_YORK_DAY)
    assert (decision.action, decision.rule) == ("deny", "group:voicemail-and-disa")
