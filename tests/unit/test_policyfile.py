"""The policy file loader: problems as file:line: key.path: message, warnings, version, check."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.policy import Action, CallAttempt, Mode, NumberType, evaluate
from sipguard.policy.loader import load_policy, load_policy_file
from sipguard.schema.document import ConfigError

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "tests" / "policies"
SHIPPED = REPO / "conf" / "policy.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# Each case: the file, then the line, key path and a fragment of the message expected.
ERRORS = {
    "unknown top-level key": (
        """\
        accounts:
          - name: pbx
        destinatons:
          default: deny
        """,
        3,
        "destinatons",
        "unknown key (known: version, mode, accounts, destinations",
    ),
    "bad action": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              region: US
              action: permit
        """,
        7,
        "destinations.rules[0].action",
        "'permit' is not one of allow, pin, deny",
    ),
    "bad default action": (
        """\
        accounts:
          - name: pbx
        destinations:
          default: block
        """,
        4,
        "destinations.default",
        "'block' is not one of allow, pin, deny",
    ),
    "missing action": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              region: US
        """,
        5,
        "destinations.rules[0].action",
        "required (one of allow, pin, deny)",
    ),
    "unknown region UK": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - {id: r1, region: UK, action: pin}
        """,
        5,
        "destinations.rules[0].region",
        "'UK' is not an ISO 3166 region code",
    ),
    "unknown home region": (
        """\
        accounts:
          - name: pbx
            home_region: XX
        """,
        3,
        "accounts[0].home_region",
        "'XX' is not an ISO 3166 region code",
    ),
    "unknown domestic region": (
        """\
        accounts:
          - name: pbx
            domestic_regions:
              - US
              - EU
        """,
        5,
        "accounts[0].domestic_regions[1]",
        "'EU' is not an ISO 3166 region code",
    ),
    "bad country code": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - {id: r1, country_code: 999, action: deny}
        """,
        5,
        "destinations.rules[0].country_code",
        "999 is not a country calling code",
    ),
    "country code not a number": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              country_code: "+4x"
              action: deny
        """,
        6,
        "destinations.rules[0].country_code",
        "'+4x' is not a country calling code",
    ),
    "prefix without +": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              prefix: "4420"
              action: pin
        """,
        6,
        "destinations.rules[0].prefix",
        "'4420' must be an E.164 prefix such as +1900",
    ),
    "prefix with letters": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - {id: r1, prefix: "+44ab", action: pin}
        """,
        5,
        "destinations.rules[0].prefix",
        "must be an E.164 prefix",
    ),
    "rule with two matchers": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              region: GB
              prefix: "+44"
              action: pin
        """,
        8,
        "destinations.rules[0]",
        "needs exactly one of region, country_code, prefix",
    ),
    "rule with no matcher": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              action: pin
        """,
        6,
        "destinations.rules[0]",
        "needs exactly one of region, country_code, prefix",
    ),
    "unknown rule key": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - id: r1
              region: GB
              action: pin
              note: why
        """,
        8,
        "destinations.rules[0].note",
        "unknown key",
    ),
    "bad rule mode": (
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - {id: r1, region: GB, action: pin, mode: dry-run}
        """,
        5,
        "destinations.rules[0]",
        "'dry-run' is not enforce or report",
    ),
    "bad time zone": (
        """\
        accounts:
          - name: pbx
            time_zone: Mars/Olympus_Mons
        """,
        3,
        "accounts[0].time_zone",
        "'Mars/Olympus_Mons' is not a time zone",
    ),
    "business hours start 25:00": (
        """\
        accounts:
          - name: pbx
            business_hours:
              start: "25:00"
        """,
        4,
        "accounts[0].business_hours.start",
        "'25:00' is not a time like 08:30",
    ),
    "business hours minute 60": (
        """\
        accounts:
          - name: pbx
            business_hours:
              end: "17:60"
        """,
        4,
        "accounts[0].business_hours.end",
        "'17:60' is not a time like 08:30",
    ),
    "business hours 8am": (
        """\
        accounts:
          - name: pbx
            business_hours:
              start: 8am
        """,
        4,
        "accounts[0].business_hours.start",
        "'8am' is not a time like 08:30",
    ),
    "business hours end before start": (
        """\
        accounts:
          - name: pbx
            business_hours:
              start: "18:00"
              end: "08:00"
        """,
        5,
        "accounts[0].business_hours.end",
        "must be later than start",
    ),
    "business hours bad weekday": (
        """\
        accounts:
          - name: pbx
            business_hours:
              days:
                - mon
                - funday
        """,
        6,
        "accounts[0].business_hours.days[1]",
        "'funday' is not a weekday",
    ),
    "unknown number type": (
        """\
        accounts:
          - name: pbx
        number_types:
          premium_rate: deny
          premium: deny
        """,
        5,
        "number_types.premium",
        "unknown number type (known: fixed_line",
    ),
    "bad number type action": (
        """\
        accounts:
          - name: pbx
        number_types:
          shared_cost: challenge
        """,
        4,
        "number_types.shared_cost",
        "'challenge' is not one of allow, pin, deny",
    ),
    "extension range backwards": (
        """\
        accounts:
          - name: pbx
            extension_groups:
              - name: staff
                extensions:
                  - "200"
                  - "399-300"
        """,
        7,
        "accounts[0].extension_groups[0].extensions[1]",
        "range '399-300' runs backwards",
    ),
    "extension pattern with ?": (
        """\
        accounts:
          - name: pbx
            extension_groups:
              - name: staff
                extensions: ["2X?"]
        """,
        5,
        "accounts[0].extension_groups[0].extensions[0]",
        "'2X?' is not an extension, a range or a pattern like 2XX",
    ),
    "extension pattern unclosed bracket": (
        """\
        accounts:
          - name: pbx
            extension_groups:
              - name: staff
                extensions:
                  - "_2[0-5"
        """,
        6,
        "accounts[0].extension_groups[0].extensions[0]",
        "unclosed [",
    ),
    "extension group without extensions": (
        """\
        accounts:
          - name: pbx
            extension_groups:
              - name: staff
                may_dial: [domestic]
        """,
        4,
        "accounts[0].extension_groups[0].extensions",
        "must list extensions",
    ),
    "unknown class": (
        """\
        accounts:
          - name: pbx
            may_dial:
              - domestic
              - satellite
        """,
        5,
        "accounts[0].may_dial[1]",
        "'satellite' is not one of domestic, international",
    ),
    "risk pin above deny": (
        """\
        accounts:
          - name: pbx
        risk:
          thresholds:
            pin: 95
            deny: 90
        """,
        5,
        "risk.thresholds.pin",
        "must not be above deny",
    ),
    "risk threshold out of range": (
        """\
        accounts:
          - name: pbx
        risk:
          thresholds: {pin: 60, deny: 101}
        """,
        4,
        "risk.thresholds.deny",
        "must be a number from 0 to 100",
    ),
    "risk weight above 1": (
        """\
        accounts:
          - name: pbx
        risk:
          weights:
            country: 1.5
        """,
        5,
        "risk.weights.country",
        "must be a number from 0 to 1",
    ),
    "risk unknown country": (
        """\
        accounts:
          - name: pbx
        risk:
          country_risk:
            XK: 50
            ZZ: 50
        """,
        6,
        "risk.country_risk.ZZ",
        "unknown region code",
    ),
    "blocked 911": (
        """\
        accounts:
          - name: pbx
        blocked_numbers:
          - "+442079460321"
          - "911"
        """,
        5,
        "blocked_numbers[1]",
        "'911' is an emergency number and can never be blocked",
    ),
    "blocked 911 unquoted": (
        """\
        accounts:
          - name: pbx
        blocked_numbers: [911]
        """,
        3,
        "blocked_numbers[0]",
        "911 is an emergency number and can never be blocked",
    ),
    "blocked 112 with separators": (
        """\
        accounts:
          - name: pbx
        blocked_numbers:
          - "1-1-2"
        """,
        4,
        "blocked_numbers[0]",
        "is an emergency number and can never be blocked",
    ),
    "blocked not a number": (
        """\
        accounts:
          - name: pbx
        blocked_numbers:
          - "call me"
        """,
        4,
        "blocked_numbers[0]",
        "'call me' is not a number",
    ),
    "emergency number too long": (
        """\
        accounts:
          - name: pbx
        emergency_numbers:
          - "12125550123"
        """,
        4,
        "emergency_numbers[0]",
        "is not a short emergency number",
    ),
    "duplicate account names": (
        """\
        accounts:
          - name: pbx
            time_zone: UTC
          - name: pbx
            time_zone: Europe/London
        """,
        4,
        "accounts[1].name",
        "account 'pbx' is listed twice",
    ),
    "account without a name": (
        """\
        accounts:
          - name: pbx
          - time_zone: UTC
        """,
        3,
        "accounts[1]",
        "needs a name",
    ),
    "empty accounts": (
        """\
        destinations:
          default: deny
        accounts: []
        """,
        3,
        "accounts",
        "must list at least one account (PBX)",
    ),
    "no accounts key": (
        """\
        destinations:
          default: deny
        """,
        1,
        "accounts",
        "must list at least one account (PBX)",
    ),
    "bad time rule": (
        """\
        accounts:
          - name: pbx
        time_rules:
          - id: night
            when: at_night
            action: pin
        """,
        5,
        "time_rules[0].when",
        "must be outside_business_hours or inside_business_hours",
    ),
    "bad policy mode": (
        """\
        mode: audit
        accounts:
          - name: pbx
        """,
        1,
        "mode",
        "'audit' is not enforce or report",
    ),
    "outside line not digits": (
        """\
        accounts:
          - name: pbx
            outside_line: "9#"
        """,
        3,
        "accounts[0].outside_line",
        "'9#' must be digits",
    ),
}


@pytest.mark.parametrize(
    ("text", "line", "key_path", "fragment"), list(ERRORS.values()), ids=list(ERRORS)
)
def test_problem_names_file_line_and_key_path(
    tmp_path: Path, text: str, line: int, key_path: str, fragment: str
):
    """A bad policy raises ConfigError with 'file:line: key.path: message' for the problem."""
    path = _write(tmp_path, text)
    problems = _problems(path)
    prefix = f"{path}:{line}: {key_path}: "
    matching = [problem for problem in problems if problem.startswith(prefix)]
    assert matching, problems
    assert any(fragment in problem for problem in matching), problems


def test_every_problem_in_a_file_is_reported_at_once():
    """The loader checks the whole file and lists every problem, each with its own line."""
    path = POLICIES / "loader_invalid.yaml"
    problems = _problems(path)
    assert sorted(problems) == sorted(
        [
            f"{path}:10: surprise: unknown key (known: version, mode, accounts, destinations, "
            "number_types, time_rules, risk, limits, blocked_numbers, emergency_numbers, alerts)",
            f"{path}:4: accounts[0].time_zone: 'Mars/Olympus_Mons' is not a time zone "
            "(such as America/New_York)",
            f"{path}:6: destinations.default: 'maybe' is not one of allow, pin, deny",
            f"{path}:8: destinations.rules[0].region: 'UK' is not an ISO 3166 region code with a "
            "numbering plan (such as US, GB, JM)",
            f"{path}:9: destinations.rules[1].prefix: '44' must be an E.164 prefix such as +1900",
        ]
    )


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    """A YAML syntax error is reported with the file and the line it is on."""
    path = _write(
        tmp_path,
        """\
        accounts:
          - name: pbx
        destinations:
          rules: [{id: r1, region: US
        """,
    )
    problems = _problems(path)
    assert len(problems) == 1 and re.match(rf"{re.escape(str(path))}:\d+: ", problems[0])


def test_top_level_must_be_a_mapping(tmp_path: Path):
    """A file that is a list, not a mapping, is refused at line 1."""
    path = _write(tmp_path, "- accounts\n")
    assert _problems(path) == [f"{path}:1: (top): must be a mapping"]


def test_business_hours_24_30_is_refused(tmp_path: Path):
    """24:30 is not a time: only 24:00 may stand for the end of the day."""
    path = _write(
        tmp_path,
        """\
        accounts:
          - name: pbx
            business_hours: {start: "08:00", end: "24:30"}
        """,
    )
    problems = _problems(path)
    assert any(": accounts[0].business_hours.end: " in problem for problem in problems)


def test_unknown_key_in_number_type_mapping_is_refused(tmp_path: Path):
    """number_types.premium_rate: {action: deny, mdoe: report} names the misspelt key."""
    path = _write(
        tmp_path,
        """\
        accounts:
          - name: pbx
        number_types:
          premium_rate: {action: deny, mdoe: report}
        """,
    )
    problems = _problems(path)
    assert any(f"{path}:4: number_types.premium_rate.mdoe: " in problem for problem in problems)


@pytest.mark.parametrize(("region", "written", "meant"), [("US", "011", "011"), ("GB", "00", "00")])
def test_unquoted_international_prefix_keeps_its_digits(
    tmp_path: Path, region: str, written: str, meant: str
):
    """international_prefix: 011 (unquoted) means 011, or the loader says to quote it."""
    path = _write(
        tmp_path,
        f"""\
        accounts:
          - name: pbx
            home_region: {region}
            international_prefix: {written}
        """,
    )
    try:
        loaded = load_policy_file(path)
    except ConfigError as error:
        assert any(
            f"{path}:4: accounts[0].international_prefix: " in problem for problem in error.problems
        )
        return
    assert loaded.policy.accounts[0].dial_plan.international_prefix == meant


def test_unquoted_e164_blocked_number_blocks(tmp_path: Path):
    """blocked_numbers: [+442079460321] (unquoted) blocks London, or the loader refuses it."""
    (tmp_path / "ratedeck.csv").write_bytes(SHIPPED.with_name("ratedeck.csv").read_bytes())
    text = SHIPPED.read_text().replace("blocked_numbers: []", "blocked_numbers: [+442079460321]")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    try:
        policy = load_policy(path)
    except ConfigError as error:
        assert any(": blocked_numbers[0]: " in problem for problem in error.problems)
        return
    decision = evaluate(policy, CallAttempt("c", "asterisk-1", "", "", "011442079460321"))
    assert (decision.action, decision.rule) == ("deny", "blocked-number")


# --- Warnings ---------------------------------------------------------------------------------


def test_shadowed_rules_and_impossible_prefixes_are_warnings():
    """A matcher used twice and a prefix with no country code are warnings with file:line: key."""
    path = POLICIES / "loader_warnings.yaml"
    loaded = load_policy_file(path)
    shadow = (
        "warning: shadowed: rule {first!r} (line {line}) has the same {kind} and comes "
        "first, so this rule never decides"
    )
    assert list(loaded.warnings) == [
        f"{path}:12: accounts[0].extension_groups[0].destinations[1]: "
        + shadow.format(first="desk-gb", line=11, kind="region"),
        f"{path}:18: destinations.rules[2]: "
        + shadow.format(first="pin-gb", line=17, kind="region"),
        f"{path}:19: destinations.rules[3].prefix: warning: +999 starts with no country "
        "calling code: it can never match",
        f"{path}:21: destinations.rules[5]: "
        + shadow.format(first="cc-44", line=20, kind="country_code"),
        f"{path}:23: destinations.rules[7]: "
        + shadow.format(first="p-1900", line=22, kind="prefix"),
    ]


def test_warned_policy_still_loads_and_the_first_rule_decides():
    """Warnings do not stop loading; of two identical matchers the first one decides."""
    policy = load_policy(POLICIES / "loader_warnings.yaml")
    assert [rule.id for rule in policy.destinations][:3] == ["allow-us", "pin-gb", "deny-gb"]
    decision = evaluate(policy, CallAttempt("c", "pbx", "", "", "+442079460321"))
    assert decision.rule == "pin-gb"


def test_shipped_policy_loads_without_warnings():
    """conf/policy.yaml is valid and earns no warning."""
    loaded = load_policy_file(SHIPPED)
    assert loaded.warnings == ()
    assert [account.name for account in loaded.policy.accounts] == ["asterisk-1"]
    assert loaded.policy.mode is Mode.ENFORCE and loaded.policy.default_action is Action.DENY


def test_shipped_policy_reads_as_documented():
    """The shipped dial plan, groups and type rules are what the golden table assumes."""
    policy = load_policy(SHIPPED)
    account = policy.accounts[0]
    assert (
        account.dial_plan.outside_line,
        account.dial_plan.international_prefix,
        account.dial_plan.national_prefix,
    ) == ("9", "011", "1")
    assert account.time_zone == "America/New_York"
    assert account.domestic_regions == frozenset({"US", "CA"})
    assert [group.name for group in account.groups] == [
        "staff",
        "sales-europe",
        "voicemail-and-disa",
    ]
    assert account.groups[2].may_dial == frozenset()
    assert policy.type_rule(NumberType.PREMIUM_RATE).action is Action.DENY  # type: ignore[union-attr]
    assert policy.type_rule(NumberType.SHARED_COST).action is Action.PIN  # type: ignore[union-attr]
    assert (policy.risk.pin_at, policy.risk.deny_at) == (60, 90)


def test_report_mode_is_read_per_rule_and_per_type(tmp_path: Path):
    """mode: report is kept on a destination rule, a number type rule and the risk section."""
    path = _write(
        tmp_path,
        """\
        accounts:
          - name: pbx
        destinations:
          rules:
            - {id: r1, region: GB, action: deny, mode: report}
        number_types:
          premium_rate: {action: deny, mode: report}
          shared_cost: pin
        risk:
          mode: report
        """,
    )
    policy = load_policy(path)
    assert policy.destinations[0].mode is Mode.REPORT
    assert policy.type_rule(NumberType.PREMIUM_RATE).mode is Mode.REPORT  # type: ignore[union-attr]
    assert policy.type_rule(NumberType.SHARED_COST).mode is Mode.ENFORCE  # type: ignore[union-attr]
    assert policy.risk.mode is Mode.REPORT and policy.mode is Mode.ENFORCE


# --- Version ----------------------------------------------------------------------------------


def test_version_is_a_12_hex_content_hash(tmp_path: Path):
    """The version is 12 hex digits, the same for the same bytes wherever the file lives."""
    version = load_policy(SHIPPED).version
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    copy = tmp_path / "copy.yaml"
    copy.write_bytes(SHIPPED.read_bytes())
    (tmp_path / "ratedeck.csv").write_bytes(SHIPPED.with_name("ratedeck.csv").read_bytes())
    assert load_policy(copy).version == version
    assert load_policy(SHIPPED).version == version


def test_version_changes_when_the_file_changes(tmp_path: Path):
    """Any edit, even a comment, gives a new version; two different files differ."""
    original = load_policy(SHIPPED).version
    (tmp_path / "ratedeck.csv").write_bytes(SHIPPED.with_name("ratedeck.csv").read_bytes())
    edited = tmp_path / "policy.yaml"
    edited.write_text(SHIPPED.read_text() + "# reviewed\n")
    assert load_policy(edited).version != original
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        SHIPPED.read_text().replace(
            "thresholds: {pin: 60, deny: 90}", "thresholds: {pin: 50, deny: 90}"
        )
    )
    assert load_policy(changed).version not in (original, load_policy(edited).version)


# --- sipguard check ---------------------------------------------------------------------------


def test_check_accepts_a_valid_policy(capsys: pytest.CaptureFixture[str]):
    """`sipguard check --policy conf/policy.yaml` exits 0 and prints the version."""
    assert main(["check", "--policy", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert f"{SHIPPED}: valid (version {load_policy(SHIPPED).version};" in out
    assert "0 warnings" in out


def test_check_prints_warnings_and_still_exits_0(capsys: pytest.CaptureFixture[str]):
    """A policy with warnings is valid: warnings go to stderr, the exit status is 0."""
    path = POLICIES / "loader_warnings.yaml"
    assert main(["check", "--policy", str(path)]) == 0
    captured = capsys.readouterr()
    assert "5 warnings" in captured.out
    assert f"{path}:19: destinations.rules[3].prefix: warning:" in captured.err


def test_check_refuses_an_invalid_policy(capsys: pytest.CaptureFixture[str]):
    """An invalid policy exits 1 with one file:line: key: message line per problem."""
    path = POLICIES / "loader_invalid.yaml"
    assert main(["check", "--policy", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5
    assert all(re.match(rf"{re.escape(str(path))}:\d+: [\w.\[\]]+: ", line) for line in lines)


@pytest.mark.parametrize(
    ("policy", "status"), [(SHIPPED, 0), (POLICIES / "loader_invalid.yaml", 1)]
)
def test_python_m_sipguard_check_exit_status(policy: Path, status: int):
    """`python -m sipguard check --policy FILE` exits 0 on a valid file and 1 on an invalid one."""
    result = subprocess.run(
        [sys.executable, "-m", "sipguard", "check", "--policy", str(policy)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == status, result.stderr
    if status:
        assert f"{policy}:6: destinations.default: " in result.stderr


def test_misspelt_weekday_is_refused(tmp_path: Path):
    """days: [monkey] is not Monday: the loader names the item."""
    path = _write(tmp_path, """\
        accounts:
          - name: pbx
            business_hours: {days: [mon, monkey], start: "08:00", end: "18:00"}
        """)
    problems = _problems(path)
    assert any("accounts[0].business_hours.days[1]: 'monkey' is not a weekday" in problem
               for problem in problems), problems


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ("  rate: [{per: planet, max: 3, window: 1h}]", ":4: limits.rate[0].per: 'planet' is not"),
        ("  rate: [{per: extension, max: 3, window: soon}]",
         ":4: limits.rate[0].window: 'soon' is not a duration"),
        ("  concurrency: [{per: account, max: -1}]", ":4: limits.concurrency[0].max: must be"),
        ("  consecutive: [{per: system, max: 3}]",
         ":4: limits.consecutive[0].per: 'system' is not extension or account"),
        ("  spend: {rules: [{per: account, max: 10, window: 1d, class: cheap}]}",
         ":4: limits.spend.rules[0].class: 'cheap' is not a class"),
        ("  spend: {rate_deck: missing.csv}", ":4: limits.spend.rate_deck: cannot read"),
        ("  on_store_failure: {domestic: maybe}", ":4: limits.on_store_failure.domestic: must be"),
    ],
)
def test_limit_problems_name_file_line_and_key(tmp_path: Path, limits: str, expected: str):
    """Every mistake in the limits section is reported as file:line: key.path: message."""
    path = _write(tmp_path, "accounts: [{name: pbx}]\nmode: enforce\nlimits:\n" + limits + "\n")
    problems = _problems(path)
    assert any(f"{path}{expected}" in problem for problem in problems), problems


def test_two_spend_rules_with_one_id_are_refused(tmp_path: Path):
    """Spend rule ids name store counters, so a repeated id is an error, not a shared counter."""
    path = _write(tmp_path, """\
        accounts: [{name: pbx}]
        limits:
          spend:
            rules:
              - {id: budget, per: account, max: 10, window: 1d}
              - {id: budget, per: country, max: 5, window: 5m}
        """)
    problems = _problems(path)
    assert any(": limits.spend.rules[1].id: limit id 'budget' is used twice" in problem
               for problem in problems), problems
