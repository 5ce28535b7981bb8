"""The alerts sections: the policy's ``alerts:`` (levels, types, contacts, locks) and
sipguard.yaml's ``alerts:`` (the channels), with problems as file:line: key.path: message."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from sipguard.alerts.settings import AlertSettings, Delivery, EmailSettings, HttpSettings
from sipguard.config.settings import Settings, load_settings
from sipguard.policy.alerting import (
    DEFAULT_EVENT_LEVELS,
    LEVELS,
    AlertPolicy,
    AlertType,
    AlertTypeSettings,
    Expectation,
    Level,
)
from sipguard.policy.alerts_section import contact_problem
from sipguard.policy.loader import load_policy_file
from sipguard.schema.document import ConfigError
from tests.unit.test_settings import MINIMAL  # the four required keys

REPO = Path(__file__).resolve().parents[2]
BASIC = (REPO / "tests" / "policies" / "basic.yaml").read_text()

# Two accounts, so that lock_accounts can name one and not the other.
ACCOUNTS = """\
accounts:
  - name: acme
    home_region: US
    time_zone: America/New_York
    may_dial: [domestic, international]
  - name: globex
    home_region: US
"""


def _write(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(ACCOUNTS + textwrap.dedent(alerts))
    return path


def _alerts(tmp_path: Path, alerts: str) -> AlertPolicy:
    return load_policy_file(_write(tmp_path, alerts)).policy.alerts


def _policy_problems(tmp_path: Path, alerts: str) -> tuple[Path, list[str]]:
    path = _write(tmp_path, alerts)
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    return path, caught.value.problems


def _line(text: str, fragment: str) -> int:
    """The line of ``text`` that holds ``fragment`` (the first one)."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if fragment in line)


# -- the policy's alerts section: defaults ---------------------------------------------------


@pytest.mark.parametrize("alerts", ["", "alerts:\n", "alerts: {}\n"],
                         ids=["absent", "empty", "empty-mapping"])
def test_alerts_section_defaults(tmp_path: Path, alerts: str):
    """Without an alerts section (or with an empty one) the documented defaults apply."""
    policy = _alerts(tmp_path, alerts)
    assert policy == AlertPolicy()
    assert policy.weeks == 4
    assert dict(policy.thresholds) == {Level.NOTIFY: 25.0, Level.WARNING: 50.0,
                                       Level.URGENT: 100.0}
    assert policy.min_minutes == 10.0 and policy.min_calls == 10
    assert policy.contacts == ("log",)
    assert policy.time_zone == "UTC"
    assert policy.lock_on_urgent is None and policy.lock_accounts is None
    assert dict(policy.types) == {}
    assert policy.expectation("international") == Expectation(15.0, 10.0)
    assert policy.expectation("interstate") == Expectation(120.0, 60.0)


def test_a_type_the_policy_does_not_name_takes_the_defaults():
    """settings() of an unnamed type: on, every level and jurisdiction, its default level."""
    policy = AlertPolicy()
    for alert_type in AlertType:
        settings = policy.settings(alert_type)
        assert settings.enabled and settings.levels == frozenset(LEVELS)
        assert settings.jurisdictions is None and settings.contacts is None
        assert settings.level == DEFAULT_EVENT_LEVELS.get(alert_type)
        assert (settings.threshold, settings.window, settings.repeat_after,
                settings.min_country_risk) == (10, 3600.0, 3600.0, 80)


# -- every field ------------------------------------------------------------------------------

FULL = """\
alerts:
  baseline:
    weeks: 6
    expected:
      international: {minutes: 30, calls: 5}
      interstate: {minutes: 200}
      default: {minutes: 90, calls: 45}
  thresholds: {notify: 20, warning: 60, urgent: 150}
  min_minutes: 5
  min_calls: 3
  contacts: [log, "email:noc@example.com", "email:root@localhost", "sms:+15551230001", "webhook:noc"]
  time_zone: Europe/London
  lock_on_urgent: international
  lock_accounts: [acme]
  types:
    traffic:
      levels: [warning, urgent]
      jurisdictions: [international]
      contacts: ["sms:+15551230002"]
    first_source:
      enabled: false
    failed_international:
      level: urgent
      threshold: 5
      window: 1h
      repeat_after: 30m
    denied_high_risk:
      min_country_risk: 70
      repeat_after: 120
    ban:
      level: warning
      contacts: ["webhook:soc"]
    pin_lockout:
"""


def test_every_field_of_the_alerts_section_is_read(tmp_path: Path):
    """Baseline, thresholds, minimums, contacts, time zone, locks and types all come through."""
    policy = _alerts(tmp_path, FULL)
    assert policy.weeks == 6
    assert policy.expectations["international"] == Expectation(30.0, 5.0)
    assert policy.expectations["default"] == Expectation(90.0, 45.0)
    # A jurisdiction that gives only minutes keeps the built-in default's calls.
    assert policy.expectations["interstate"] == Expectation(200.0, 60.0)
    assert policy.expectation("interstate") == Expectation(200.0, 60.0)
    assert policy.expectation("intrastate") == Expectation(90.0, 45.0)  # the policy's default
    assert dict(policy.thresholds) == {Level.NOTIFY: 20.0, Level.WARNING: 60.0,
                                       Level.URGENT: 150.0}
    assert policy.min_minutes == 5.0 and policy.min_calls == 3
    assert policy.contacts == ("log", "email:noc@example.com", "email:root@localhost",
                               "sms:+15551230001", "webhook:noc")
    assert policy.time_zone == "Europe/London"
    assert policy.lock_on_urgent == "international"
    assert policy.lock_accounts == frozenset({"acme"})
    assert policy.line == _line(ACCOUNTS + FULL, "alerts:")

    traffic = policy.settings(AlertType.TRAFFIC)
    assert traffic.levels == frozenset({Level.WARNING, Level.URGENT})
    assert traffic.jurisdictions == frozenset({"international"})
    assert traffic.contacts == ("sms:+15551230002",)
    assert traffic.level is None  # traffic alerts take their level from the thresholds
    assert policy.settings(AlertType.FIRST_SOURCE).enabled is False
    failed = policy.settings(AlertType.FAILED_INTERNATIONAL)
    assert (failed.level, failed.threshold, failed.window, failed.repeat_after) == (
        Level.URGENT, 5, 3600.0, 1800.0)
    high_risk = policy.settings(AlertType.DENIED_HIGH_RISK)
    assert (high_risk.min_country_risk, high_risk.repeat_after) == (70, 120.0)
    assert high_risk.level is Level.WARNING  # its default level, as the type is named
    assert policy.settings(AlertType.BAN).level is Level.WARNING
    assert policy.settings(AlertType.BAN).contacts == ("webhook:soc",)
    # A type named with nothing under it is on with its defaults.
    assert policy.settings(AlertType.PIN_LOCKOUT) == AlertTypeSettings(level=Level.URGENT)
    assert AlertType.LIMIT_REACHED not in policy.types


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), ("2.5m", 150.0),
     ("45", 45.0)],
)
def test_windows_are_durations(tmp_path: Path, window: str, seconds: float):
    """failed_international's window reads 90s, 5m, 1h, 1d or a bare number of seconds."""
    policy = _alerts(tmp_path, f"""\
        alerts:
          types:
            failed_international: {{window: {window}, repeat_after: {window}}}
        """)
    settings = policy.settings(AlertType.FAILED_INTERNATIONAL)
    assert (settings.window, settings.repeat_after) == (seconds, seconds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("international", "international"), ("all", "all"), ("off", None), ("false", None),
     ("none", None), ('"off"', None)],
)
def test_lock_on_urgent_values(tmp_path: Path, value: str, expected: str | None):
    """lock_on_urgent is international, all, or off (YAML's off/false, or "none")."""
    policy = _alerts(tmp_path, f"alerts:\n  lock_on_urgent: {value}\n")
    assert policy.lock_on_urgent == expected
    assert policy.locks("acme") == expected


# -- problems ---------------------------------------------------------------------------------

# Each case: the alerts section, a fragment of the line the problem is on, the key path and
# a fragment of the message.
POLICY_ERRORS = {
    "bad contact": (
        'alerts:\n  contacts: [log, "email:noc"]\n',
        "contacts:", "alerts.contacts[1]", "'email:noc' is not a contact",
    ),
    "sms contact not E.164": (
        'alerts:\n  contacts:\n    - log\n    - "sms:5551230001"\n',
        "sms:5551230001", "alerts.contacts[1]", "'sms:5551230001' is not a contact",
    ),
    "bad contact of a type": (
        'alerts:\n  types:\n    ban:\n      contacts: ["pager:42"]\n',
        "pager:42", "alerts.types.ban.contacts[0]", "'pager:42' is not a contact",
    ),
    "contacts not a list": (
        "alerts:\n  contacts: log\n",
        "contacts:", "alerts.contacts", "must be a list",
    ),
    "unknown type": (
        "alerts:\n  types:\n    fraud: {enabled: false}\n",
        "fraud:", "alerts.types.fraud", "unknown alert type (known: traffic, first_source",
    ),
    "unknown key": (
        "alerts:\n  contact: [log]\n",
        "contact:", "alerts.contact", "unknown key (known: baseline, thresholds",
    ),
    "unknown key in a type": (
        "alerts:\n  types:\n    ban:\n      enable: false\n",
        "enable:", "alerts.types.ban.enable", "unknown key (known: enabled, levels",
    ),
    "unknown key in baseline": (
        "alerts:\n  baseline:\n    week: 4\n",
        "week:", "alerts.baseline.week", "unknown key (known: weeks, expected)",
    ),
    "thresholds not rising": (
        "alerts:\n  thresholds:\n    notify: 50\n    warning: 40\n",
        "thresholds:", "alerts.thresholds",
        "notify, warning and urgent must rise in that order (they are 50%, 40%, 100%)",
    ),
    "thresholds equal": (
        "alerts:\n  thresholds: {warning: 100}\n",
        "thresholds:", "alerts.thresholds", "must rise in that order (they are 25%, 100%, 100%)",
    ),
    "threshold not a number": (
        "alerts:\n  thresholds: {urgent: lots}\n",
        "thresholds:", "alerts.thresholds.urgent", "'lots' is not a number of 0 or more",
    ),
    "threshold not a finite number": (
        "alerts:\n  thresholds: {urgent: .nan}\n",
        "thresholds:", "alerts.thresholds.urgent", "nan is not a number of 0 or more",
    ),
    "min_minutes infinite": (
        "alerts:\n  min_minutes: .inf\n",
        "min_minutes:", "alerts.min_minutes", "inf is not a number of 0 or more",
    ),
    "min_calls with 400 digits": (
        "alerts:\n  min_calls: 1" + "0" * 400 + "\n",
        "min_calls:", "alerts.min_calls", "is too large (at most 1e+12)",
    ),
    "bad time zone": (
        "alerts:\n  time_zone: America/Gotham\n",
        "America/Gotham", "alerts.time_zone", "'America/Gotham' is not a time zone",
    ),
    "lock_accounts names an unknown account": (
        "alerts:\n  lock_on_urgent: all\n  lock_accounts:\n    - acme\n    - initech\n",
        "- initech", "alerts.lock_accounts[1]", "'initech' is not an account of this policy",
    ),
    "bad lock_on_urgent": (
        "alerts:\n  lock_on_urgent: domestic\n",
        "lock_on_urgent:", "alerts.lock_on_urgent", "'domestic' is not off, international or all",
    ),
    "weeks 0": (
        "alerts:\n  baseline:\n    weeks: 0\n",
        "weeks:", "alerts.baseline.weeks", "must be 1 to 52",
    ),
    "weeks 53": (
        "alerts:\n  baseline:\n    weeks: 53\n",
        "weeks:", "alerts.baseline.weeks", "must be 1 to 52",
    ),
    "weeks not whole": (
        "alerts:\n  baseline:\n    weeks: 2.5\n",
        "weeks:", "alerts.baseline.weeks", "2.5 is not a whole number of 0 or more",
    ),
    "unknown jurisdiction expected": (
        "alerts:\n  baseline:\n    expected:\n      offshore: {minutes: 5}\n",
        "offshore:", "alerts.baseline.expected.offshore", "unknown jurisdiction",
    ),
    "negative expected minutes": (
        "alerts:\n  baseline:\n    expected:\n      international:\n        minutes: -5\n",
        "minutes:", "alerts.baseline.expected.international.minutes",
        "-5 is not a number of 0 or more",
    ),
    "level on the traffic type": (
        "alerts:\n  types:\n    traffic:\n      level: urgent\n",
        "level:", "alerts.types.traffic.level",
        "traffic alerts take their level from the thresholds",
    ),
    "bad level": (
        "alerts:\n  types:\n    ban:\n      level: loud\n",
        "level:", "alerts.types.ban.level", "'loud' is not notify, warning or urgent",
    ),
    "bad level in levels": (
        "alerts:\n  types:\n    ban:\n      levels: [notify, critical]\n",
        "levels:", "alerts.types.ban.levels[1]", "'critical' is not notify, warning or urgent",
    ),
    "bad jurisdiction": (
        "alerts:\n  types:\n    traffic:\n      jurisdictions: [international, offshore]\n",
        "jurisdictions:", "alerts.types.traffic.jurisdictions[1]",
        "'offshore' is not one of interstate",
    ),
    "bad window": (
        "alerts:\n  types:\n    failed_international:\n      window: an hour\n",
        "window:", "alerts.types.failed_international.window",
        "'an hour' is not a duration such as 90s, 5m, 1h, 1d",
    ),
    "enabled not a boolean": (
        'alerts:\n  types:\n    ban:\n      enabled: "yes"\n',
        "enabled:", "alerts.types.ban.enabled", "must be true or false",
    ),
    "type not a mapping": (
        "alerts:\n  types:\n    ban: off\n",
        "ban:", "alerts.types.ban", "must be a mapping such as {enabled: false}",
    ),
    "negative min_minutes": (
        "alerts:\n  min_minutes: -1\n",
        "min_minutes:", "alerts.min_minutes", "-1 is not a number of 0 or more",
    ),
    "section not a mapping": (
        "alerts: [log]\n",
        "alerts:", "alerts", "must be a mapping",
    ),
}


@pytest.mark.parametrize(("alerts", "at", "key_path", "fragment"), list(POLICY_ERRORS.values()),
                         ids=list(POLICY_ERRORS))
def test_alerts_problem_names_file_line_and_key_path(tmp_path: Path, alerts: str, at: str,
                                                     key_path: str, fragment: str):
    """A bad value in the alerts section is reported as 'file:line: alerts....: message'."""
    path, problems = _policy_problems(tmp_path, alerts)
    line = _line(ACCOUNTS + alerts, at)
    prefix = f"{path}:{line}: {key_path}: "
    matching = [problem for problem in problems if problem.startswith(prefix)]
    assert matching, problems
    assert any(fragment in problem for problem in matching), problems


def test_every_alerts_problem_is_reported_at_once(tmp_path: Path):
    """Several bad values in one section are all listed, each on its own line."""
    alerts = """\
        alerts:
          baseline: {weeks: 99}
          time_zone: Nowhere/Land
          contacts: ["sms:+1"]
          types:
            nonsense: {}
        """
    path, problems = _policy_problems(tmp_path, alerts)
    text = ACCOUNTS + textwrap.dedent(alerts)
    assert {problem.split(": ")[0] for problem in problems} == {
        f"{path}:{_line(text, 'baseline:')}", f"{path}:{_line(text, 'Nowhere/Land')}",
        f"{path}:{_line(text, 'contacts:')}", f"{path}:{_line(text, 'nonsense:')}"}
    assert len(problems) == 4, problems


@pytest.mark.parametrize(
    ("contact", "valid"),
    [("log", True), ("email:noc@example.com", True), ("email:root@localhost", True),
     ("sms:+15551230001", True), ("sms:+442079460321", True), ("webhook:noc", True),
     ("webhook:soc-2.eu_west", True), ("LOG", False), ("email:noc", False),
     ("email:", False), ("sms:15551230001", False), ("sms:+0155512300", False),
     ("sms:+1", False), ("webhook:", False), ("webhook:no c", False), ("pager:42", False)],
)
def test_contact_kinds(contact: str, valid: bool):
    """Contacts are log, email:ADDRESS, sms:+E164 and webhook:NAME; anything else is refused."""
    assert (contact_problem(contact) is None) is valid


# -- AlertPolicy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "level"),
    [(-50.0, None), (0.0, None), (24.9, None), (25.0, Level.NOTIFY), (49.99, Level.NOTIFY),
     (50.0, Level.WARNING), (99.9, Level.WARNING), (100.0, Level.URGENT),
     (1000.0, Level.URGENT)],
)
def test_level_for_the_default_thresholds(percent: float, level: Level | None):
    """level_for gives the highest level whose threshold the percentage reaches."""
    assert AlertPolicy().level_for(percent) is level


def test_level_for_the_policy_thresholds(tmp_path: Path):
    """The policy's own thresholds decide the levels."""
    policy = _alerts(tmp_path, FULL)  # 20 / 60 / 150
    assert [policy.level_for(percent) for percent in (19, 20, 59, 60, 149, 150)] == [
        None, Level.NOTIFY, Level.NOTIFY, Level.WARNING, Level.WARNING, Level.URGENT]


def test_sends_honours_enabled_levels_and_jurisdictions():
    """sends() is False when the type is off, the level not chosen or the jurisdiction not named."""
    settings = AlertTypeSettings(levels=frozenset({Level.WARNING, Level.URGENT}),
                                 jurisdictions=frozenset({"international"}))
    assert settings.sends(Level.URGENT, "international")
    assert not settings.sends(Level.NOTIFY, "international")
    assert not settings.sends(Level.URGENT, "interstate")
    assert settings.sends(Level.WARNING, None)  # an alert about no jurisdiction (a ban)
    assert not AlertTypeSettings(enabled=False).sends(Level.URGENT, None)
    assert AlertTypeSettings().sends(Level.NOTIFY, "toll-free")
    assert not AlertTypeSettings(levels=frozenset()).sends(Level.URGENT, None)


def test_contacts_for_and_event_level(tmp_path: Path):
    """A type's own contacts replace the section's; event levels follow the policy or defaults."""
    policy = _alerts(tmp_path, FULL)
    assert policy.contacts_for(AlertType.TRAFFIC) == ("sms:+15551230002",)
    assert policy.contacts_for(AlertType.BAN) == ("webhook:soc",)
    assert policy.contacts_for(AlertType.LIMIT_REACHED) == policy.contacts
    assert policy.event_level(AlertType.FAILED_INTERNATIONAL) is Level.URGENT
    assert policy.event_level(AlertType.BAN) is Level.WARNING  # the policy's
    assert policy.event_level(AlertType.LIMIT_REACHED) is Level.NOTIFY  # the default
    assert policy.event_level(AlertType.PIN_LOCKOUT) is Level.URGENT

    defaults = AlertPolicy()
    assert defaults.contacts_for(AlertType.PIN_LOCKOUT) == ("log",)
    assert {alert_type: defaults.event_level(alert_type) for alert_type in AlertType} == {
        AlertType.TRAFFIC: Level.WARNING,  # no event level of its own: the fallback
        AlertType.FIRST_SOURCE: Level.WARNING, AlertType.FAILED_INTERNATIONAL: Level.WARNING,
        AlertType.DENIED_HIGH_RISK: Level.WARNING, AlertType.LIMIT_REACHED: Level.NOTIFY,
        AlertType.PIN_LOCKOUT: Level.URGENT, AlertType.BAN: Level.NOTIFY}


def test_locks_only_the_accounts_named(tmp_path: Path):
    """locks() gives the class for lock_accounts (every account when absent), None when off."""
    named = _alerts(tmp_path, FULL)  # international, for acme only
    assert named.locks("acme") == "international"
    assert named.locks("globex") is None
    everyone = _alerts(tmp_path, "alerts:\n  lock_on_urgent: all\n")
    assert everyone.locks("acme") == everyone.locks("globex") == "all"
    assert AlertPolicy().locks("acme") is None


# -- sipguard.yaml's alerts section ---------------------------------------------------------


def _load(tmp_path: Path, extra: str = "") -> Settings:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "policy.yaml").write_text(BASIC)
    path = conf / "sipguard.yaml"
    path.write_text(MINIMAL + textwrap.dedent(extra))
    return load_settings(path)


def _problems(tmp_path: Path, extra: str) -> tuple[Path, list[str]]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, extra)
    return tmp_path / "conf" / "sipguard.yaml", caught.value.problems


def test_channels_default_to_the_log_only(tmp_path: Path):
    """Without an alerts section there is no email, SMS or webhook: alerts go to the log
    (and to the journal under var/)."""
    settings = _load(tmp_path)
    alerts = settings.alerts
    # The journal of alerts raised sits in var/ beside the configuration's folder.
    assert alerts.journal == (settings.path.parent / "../var/alerts.jsonl").resolve()
    assert dataclasses.replace(alerts, journal=None) == AlertSettings()
    assert alerts.email is None and alerts.sms is None and dict(alerts.webhooks) == {}
    assert (alerts.enabled, alerts.check_seconds, alerts.queue) == (True, 30.0, 1000)


CHANNELS = """\
alerts:
  check_seconds: 5
  queue: 50
  email:
    host: 127.0.0.1
    port: 2525
    sender: sipguard@pbx.example
    username: alerts
    password: secret
    security: starttls
    timeout: 4
    retries: 2
    retry_seconds: 0.5
  sms:
    url: "https://sms.example/send"
    headers: {Authorization: "Bearer abc", X-Account: 42}
    to_field: msisdn
    text_field: body
    timeout: 3
  webhooks:
    noc: {url: "https://noc.example/hooks/sipguard", timeout: 5, retries: 0}
    soc:
      url: "http://127.0.0.1:8081/alerts"
"""


def test_channels_are_read(tmp_path: Path):
    """email, sms and webhooks are read with their delivery settings."""
    alerts = _load(tmp_path, CHANNELS).alerts
    assert (alerts.check_seconds, alerts.queue) == (5.0, 50)
    assert alerts.email == EmailSettings(
        host="127.0.0.1", port=2525, sender="sipguard@pbx.example", username="alerts",
        password="secret", security="starttls", delivery=Delivery(4.0, 2, 0.5))
    assert alerts.sms is not None
    assert alerts.sms.url == "https://sms.example/send"
    assert dict(alerts.sms.headers) == {"Authorization": "Bearer abc", "X-Account": "42"}
    assert (alerts.sms.to_field, alerts.sms.text_field) == ("msisdn", "body")
    assert alerts.sms.delivery == Delivery(3.0, 3, 1.0)
    assert dict(alerts.webhooks) == {
        "noc": HttpSettings("https://noc.example/hooks/sipguard", delivery=Delivery(5.0, 0, 1.0)),
        "soc": HttpSettings("http://127.0.0.1:8081/alerts")}


@pytest.mark.parametrize(("security", "port"), [("tls", 465), ("starttls", 25), ("none", 25)])
def test_email_port_follows_security(tmp_path: Path, security: str, port: int):
    """Without a port, TLS means 465 and the others 25."""
    email = _load(tmp_path, f"alerts:\n  email: {{host: mail.example, security: {security}}}\n"
                  ).alerts.email
    assert email is not None and (email.port, email.security) == (port, security)
    assert email.sender == "sipguard@localhost"


# Each case: the section, a fragment of the line the problem is on, the key path and message.
# A missing key is reported on the line its mapping starts on.
SETTINGS_ERRORS = {
    "webhook url not http": (
        'alerts:\n  webhooks:\n    noc:\n      url: "ftp://noc.example/x"\n',
        "url:", "alerts.webhooks.noc.url: must be an http:// or https:// URL",
    ),
    "webhook url without host": (
        'alerts:\n  webhooks:\n    noc: {url: "http:///hooks"}\n',
        "noc:", "alerts.webhooks.noc.url: must be an http:// or https:// URL",
    ),
    "sms url missing": (
        "alerts:\n  sms:\n    headers: {}\n",
        "headers: {}", "alerts.sms.url: must be an http:// or https:// URL",
    ),
    "bad security": (
        "alerts:\n  email:\n    host: 127.0.0.1\n    security: ssl\n",
        "security:", "alerts.email.security: must be one of none, starttls, tls",
    ),
    "username without password": (
        "alerts:\n  email:\n    host: 127.0.0.1\n    username: alerts\n",
        "username:", "alerts.email: username and password go together",
    ),
    "password without username": (
        "alerts:\n  email:\n    host: 127.0.0.1\n    port: 2525\n    password: secret\n",
        "password:", "alerts.email: username and password go together",
    ),
    "email without host": (
        "alerts:\n  email:\n    port: 25\n",
        "port: 25", "alerts.email.host: must name the SMTP server",
    ),
    "too many retries": (
        'alerts:\n  webhooks:\n    noc:\n      url: "http://127.0.0.1/x"\n      retries: 11\n',
        "retries:", "alerts.webhooks.noc.retries: must be a whole number from 0 to 10",
    ),
    "zero timeout": (
        "alerts:\n  email:\n    host: 127.0.0.1\n    timeout: 0\n",
        "timeout:", "alerts.email.timeout: must be a number >= 0.1",
    ),
    "unknown webhook key": (
        'alerts:\n  webhooks:\n    noc:\n      url: "http://127.0.0.1/x"\n      to_field: x\n',
        "to_field:", "alerts.webhooks.noc.to_field: unknown setting",
    ),
    "unknown section key": (
        "alerts:\n  slack: {}\n",
        "slack:", "alerts.slack: unknown setting",
    ),
    "enabled not a boolean": (
        "alerts:\n  enabled: sometimes\n",
        "enabled:", "alerts.enabled: must be true or false",
    ),
    "queue zero": (
        "alerts:\n  queue: 0\n",
        "queue:", "alerts.queue: must be a whole number >= 1",
    ),
    "webhooks not a mapping": (
        "alerts:\n  webhooks: [noc]\n",
        "webhooks:", "alerts.webhooks: must be a mapping",
    ),
    "headers not a mapping": (
        'alerts:\n  webhooks:\n    noc:\n      url: "http://127.0.0.1/x"\n      headers: [a]\n',
        "headers:", "alerts.webhooks.noc.headers: must be a mapping",
    ),
    "email not a mapping": (
        "alerts:\n  email: smtp.example\n",
        "email:", "alerts.email: must be a mapping",
    ),
    "sms not a mapping": (
        'alerts:\n  sms: "https://sms.example/send"\n',
        "sms:", "alerts.sms: must be a mapping",
    ),
}


@pytest.mark.parametrize(("extra", "at", "expected"), list(SETTINGS_ERRORS.values()),
                         ids=list(SETTINGS_ERRORS))
def test_channel_problem_names_file_line_and_key(tmp_path: Path, extra: str, at: str,
                                                 expected: str):
    """Every problem in sipguard.yaml's alerts section says file:line: key.path: message."""
    path, problems = _problems(tmp_path, extra)
    line = _line(MINIMAL + extra, at)
    assert any(problem.startswith(f"{path}:{line}: {expected}") for problem in problems), problems


def test_unknown_contacts_are_those_without_a_channel(tmp_path: Path):
    """unknown_contacts lists the email, SMS and webhook contacts no channel reaches."""
    contacts = ("log", "email:noc@example.com", "sms:+15551230001", "webhook:noc",
                "webhook:pager")
    assert AlertSettings().unknown_contacts(contacts) == list(contacts[1:])
    configured = _load(tmp_path, CHANNELS).alerts
    assert configured.unknown_contacts(contacts) == ["webhook:pager"]
    only_hooks = AlertSettings(webhooks=configured.webhooks)
    assert only_hooks.unknown_contacts(contacts) == ["email:noc@example.com",
                                                     "sms:+15551230001", "webhook:pager"]
