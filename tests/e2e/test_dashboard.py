"""The dashboard and its JSON API end to end, over real HTTP on loopback: after SIPp has
placed allowed and blocked calls through sipguard, the widgets count them as the records
do, the CSV export matches the CDRs, explain says what `sipguard explain` says, the kill
switch stops the next international INVITE and releasing it lets the next one through,
and nothing answers without credentials or with a forged form.

Alerts are acknowledged, and their thresholds and contacts edited in the policy file,
through the API and the command line alike. (test_dashboard_browser.py drives the same
pages in a headless Chromium.)
"""

from __future__ import annotations

import base64
import getpass
import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from harness import Sipguard, SippResult, SippUas

pytestmark = pytest.mark.e2e

TOKEN = "t0ken-for-the-dashboard-tests-0123456789"
PASSWORD = "correct horse battery"
POLICY = """
accounts:
  - name: asterisk-1
    home_region: US
    home_state: NY
    time_zone: UTC
    may_dial: [domestic, international, premium]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: allow-ca, region: CA, action: allow}
"""
CANADA = "14165550123"
UK = "011442079460321"

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]


def _cli(guard: Sipguard, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipguard", *args, "--config", str(guard.config_path)],
        capture_output=True, text=True, timeout=60, input=stdin, check=False)


def _password_hash() -> str:
    done = subprocess.run([sys.executable, "-m", "sipguard", "admin-password"],
                          input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout.strip()


class Client:
    """HTTP to the admin address, with a cookie jar (the browser's session)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, final URL, body text)."""
        data = None
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent.setdefault("Referer", self.base + path)
        request = urllib.request.Request(self.base + path, data=data, headers=sent,
                                         method=method)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode()

    def json(self, path: str, token: str = TOKEN) -> Any:
        status, _, text = self.call("GET", path, token=token)
        assert status == 200, (status, text)
        return json.loads(text)


def _start(start_uas: StartUas, start_sipguard: StartSipguard,
           **sections: Any) -> tuple[Sipguard, Client]:
    uas = start_uas("uas_answer.xml", extra=["-m", "100"])
    guard = start_sipguard(uas.uri, policy=POLICY, sections={
        "admin": {"listen": "127.0.0.1:0", "token": TOKEN,
                  "users": {"ops": _password_hash()}},
        "cdr": {"batch_seconds": 0.2}, **sections})
    admin = guard.wait_for("service.started")[0]["admin"]
    return guard, Client(f"http://{admin}")


def _wait_stored(guard: Sipguard, count: int) -> None:
    deadline = time.monotonic() + 30
    while guard.stats()["cdr"]["stored"] < count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert guard.stats()["cdr"]["stored"] >= count


def test_the_widgets_and_the_csv_export_count_the_calls_as_the_records_do(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac) -> None:
    """Two allowed calls to Canada and one blocked to the UK: the country widget, the
    overview and the CSV export agree with `sipguard cdr export`."""
    guard, client = _start(start_uas, start_sipguard)
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=2,
                   rate=20).successful == 2
    assert run_uac("uac_blocked.xml", guard.target(), service=UK).successful == 1
    _wait_stored(guard, 3)

    country = {row["key"]: row for row in client.json("/api/widgets/country?since=1h")["rows"]}
    assert (country["CA"]["calls"], country["CA"]["answered"], country["CA"]["blocked"]) == (
        2, 2, 0)
    assert (country["GB"]["calls"], country["GB"]["blocked"]) == (1, 1)
    exported = json.loads(_cli(guard, "cdr", "export", "--format", "json").stdout)
    assert Counter(record["region"] for record in exported) == Counter(
        {key: row["calls"] for key, row in country.items()})
    minutes = sum(record["duration"] for record in exported if record["region"] == "CA") / 60
    assert country["CA"]["minutes"] == pytest.approx(minutes, abs=0.01)

    status, _, text = client.call("GET", "/api/widgets/country?since=1h&format=csv",
                                  token=TOKEN)
    assert status == 200
    lines = text.strip().splitlines()
    assert lines[0] == "country,calls,answered,minutes,cost,blocked"
    assert sorted(line.split(",")[:2] for line in lines[1:]) == [["CA", "2"], ["GB", "1"]]

    overview = client.json("/api/overview")
    by_decision = {row["key"]: row["calls"] for row in overview["last_hour_by_decision"]}
    assert by_decision == {"forward": 2, "reject": 1}
    assert overview["live_calls"] == 0 and overview["store_up"] is True
    assert overview["policy"]["version"] and overview["lockdown"] is False
    assert [row["key"] for row in overview["top_blocked_rules_24h"]] == ["default"]
    for group in ("extension", "jurisdiction", "source", "state", "account"):
        rows = client.json(f"/api/widgets/{group}?since=1h")["rows"]
        assert sum(row["calls"] for row in rows) == 3, group


def test_explain_says_what_the_command_line_says(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """The explain API and page give the decision and trace `sipguard explain` prints."""
    guard, client = _start(start_uas, start_sipguard)
    result = client.json(f"/api/explain?number={UK}&extension=2001")
    assert result["action"] == "deny" and result["rule"] == "default"
    printed = _cli(guard, "explain", "--extension", "2001", UK)
    assert printed.returncode == 0, printed.stderr
    assert result["text"] == printed.stdout.rstrip("\n")
    status, _, page = client.call("GET", f"/explain?number={CANADA}", token=TOKEN)
    assert status == 200 and "Decision: allow" in page and "allow-ca" in page


def test_the_kill_switch_stops_the_next_international_invite_until_released(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac) -> None:
    """Switching on needs the confirmation; then the next call to Canada gets 403, a US
    call goes through; released, Canada goes through again."""
    guard, client = _start(start_uas, start_sipguard)
    status, _, text = client.call("POST", "/api/lockdown", {"on": True}, token=TOKEN)
    assert status == 400 and "LOCKDOWN" in text
    status, _, _ = client.call("POST", "/api/lockdown",
                               {"on": True, "confirm": "LOCKDOWN", "reason": "drill"},
                               token=TOKEN)
    assert status == 200
    assert client.json("/api/locks")["lockdown"]["reason"] == "drill"
    assert run_uac("uac_blocked.xml", guard.target(), service=CANADA).successful == 1
    assert run_uac("uac_call_bye.xml", guard.target(), service="12125551234").successful == 1
    assert "Kill switch ON" in client.call("GET", "/", token=TOKEN)[2]
    status, _, _ = client.call("POST", "/api/lockdown", {"on": False}, token=TOKEN)
    assert status == 200 and client.json("/api/locks")["lockdown"] is None
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA).successful == 1
    # The log line is written after the answer: wait for it rather than race it.
    actions = guard.wait_for("admin.action", count=2)
    assert [(event["action"], event["user"]) for event in actions] == [
        ("lockdown", "token"), ("lockdown", "token")]


def test_nothing_answers_without_credentials_or_to_a_forged_form(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """No credentials: 401 from the API and the login page for a browser; a wrong token
    401; a logged-in session's POST without its CSRF token 403, with it done and logged."""
    guard, client = _start(start_uas, start_sipguard)
    assert client.call("GET", "/api/overview")[0] == 401
    assert client.call("GET", "/api/overview", token="not-the-token-at-all-0000000")[0] == 401
    status, url, _ = client.call("GET", "/")
    assert status == 200 and url.endswith("/login")
    assert client.call("POST", "/api/lock", {"account": "asterisk-1"})[0] == 401

    status, url, _ = client.call("POST", "/login", form={"user": "ops", "password": "wrong"})
    assert url.endswith("/login?failed=1")
    status, url, page = client.call("POST", "/login", form={"user": "ops",
                                                             "password": PASSWORD})
    assert status == 200 and url == client.base + "/" and "Live calls" in page
    status, _, _ = client.call("POST", "/api/lock", form={"account": "asterisk-1"},
                               headers={"Referer": client.base + "/locks"})
    assert status == 403
    status, _, locks_page = client.call("GET", "/locks")
    csrf = re.search(r'name="csrf" value="([^"]+)"', locks_page)
    assert status == 200 and csrf is not None
    status, url, page = client.call("POST", "/api/lock", form={
        "account": "asterisk-1", "scope": "international", "reason": "test",
        "csrf": csrf.group(1)}, headers={"Referer": client.base + "/locks"})
    assert status == 200 and url.endswith("/locks") and "asterisk-1" in page
    (lock,) = client.json("/api/locks")["locks"]
    assert lock["by"] == "web:ops" and lock["scope"] == "international"
    assert guard.wait_for("admin.action", where=lambda event: event.get("user") == "ops")
    assert guard.events("admin.forged")
    for path in ("/widgets", "/alerts", "/explain"):
        assert client.call("GET", path)[0] == 200, path


def _wait_alert(client: Client, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts: list[dict[str, Any]] = client.json("/api/alerts")["alerts"]
        if len(alerts) >= count:
            return alerts
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} alerts after 20 s")


def test_alerts_are_acknowledged_by_id_from_the_api_and_the_cli_and_kept_across_a_restart(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """Two bans raise two open alerts; one acknowledged through the API by a prefix of
    its id, the other by `sipguard alerts ack all`; a restarted service still lists both
    as acknowledged, and an unknown id is a 400."""
    guard, client = _start(start_uas, start_sipguard)
    for address in ("127.0.0.9", "127.0.0.10"):
        assert _cli(guard, "bans", "add", address, "--reason", "scanning").returncode == 0
    alerts = _wait_alert(client, 2)
    assert client.json("/api/overview")["open_alerts"] == 2
    first = alerts[0]["id"]
    status, _, text = client.call("POST", "/api/alerts/ack", {"id": first[:8]}, token=TOKEN)
    assert status == 200 and json.loads(text)["acknowledged"] == [first]
    listed = {alert["id"]: alert["acknowledged"] for alert in client.json("/api/alerts")["alerts"]}
    assert listed[first]["by"] == "web:token" and list(listed.values()).count(None) == 1
    assert client.json("/api/overview")["open_alerts"] == 1
    status, _, text = client.call("POST", "/api/alerts/ack", {"id": "nosuchalert"}, token=TOKEN)
    assert status == 400 and "no alert 'nosuchalert'" in text

    done = _cli(guard, "alerts", "ack", "all")
    assert done.returncode == 0 and done.stdout.startswith("acknowledged 1 alert:"), done.stderr
    printed = _cli(guard, "alerts", "list").stdout
    assert "0 open" in printed and printed.count("ack by ") == 2
    assert guard.events("alert.acknowledged")

    assert guard.stop()
    again = start_sipguard(start_uas("uas_answer.xml").uri, policy=POLICY, sections={
        "admin": {"listen": "127.0.0.1:0", "token": TOKEN}})
    admin = again.wait_for("service.started")[0]["admin"]
    kept = Client(f"http://{admin}").json("/api/alerts")
    assert kept["open"] == 0
    assert {alert["id"]: alert["acknowledged"]["by"] for alert in kept["alerts"]} == {
        alerts[0]["id"]: "web:token", alerts[1]["id"]: f"cli:{getpass.getuser()}"}


def test_alert_thresholds_and_contacts_are_written_to_the_policy_file_and_taken_at_once(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """The API changes thresholds and a type's switch in the policy file (its comments
    kept, the previous text as .bak) and the running policy takes them at once; a change
    that breaks the policy, or names a contact with no channel, is refused with the file's
    name and changes nothing; `sipguard alerts set` goes through the same function."""
    guard, client = _start(start_uas, start_sipguard)
    policy_file = guard.config_path.parent / "policy.yaml"
    policy_file.write_text("# ops' own note\n" + policy_file.read_text())
    guard.process.send_signal(signal.SIGHUP)
    guard.wait_for("policy.reloaded")
    before = client.json("/api/overview")["policy"]["version"]
    assert client.json("/api/alerts/settings")["values"]["thresholds.notify"] == 25

    status, _, text = client.call("POST", "/api/alerts/settings", {
        "thresholds.notify": "30", "types.ban.enabled": "off", "min_calls": 10}, token=TOKEN)
    assert status == 200, text
    result = json.loads(text)
    assert result["changed"] == {"thresholds.notify": {"before": 25, "after": 30},
                                 "types.ban.enabled": {"before": True, "after": False}}
    written = policy_file.read_text()
    assert written.startswith("# ops' own note\n") and "notify: 30" in written
    assert policy_file.with_name("policy.yaml.bak").read_text().startswith("# ops' own note")
    values = client.json("/api/alerts/settings")["values"]
    assert values["thresholds.notify"] == 30 and values["types.ban.enabled"] is False
    overview = client.json("/api/overview")
    assert overview["policy"]["version"] == result["version"] != before
    assert overview["policy"]["last_reload"]["reason"] == "web:token"
    (edited,) = guard.events("policy.edited")
    assert edited["by"] == "web:token" and edited["changed"]["thresholds.notify"] == 30

    for change, expected in (({"thresholds.urgent": "20"}, ": alerts.thresholds: notify, "
                              "warning and urgent must rise"),
                             ({"contacts": "log, webhook:pager"}, "no channel in "),
                             ({"thresholds.loud": "1"}, "alerts.thresholds.loud: not a key")):
        status, _, text = client.call("POST", "/api/alerts/settings", change, token=TOKEN)
        assert status == 400 and expected in text and str(policy_file) in text, text
        assert policy_file.read_text() == written
    assert client.json("/api/overview")["policy"]["version"] == result["version"]

    done = _cli(guard, "alerts", "set", "types.ban.enabled=on", "contacts=log")
    assert done.returncode == 0, done.stderr
    assert "alerts.types.ban.enabled: false -> true" in done.stdout
    assert "alerts.contacts" not in done.stdout  # already log: no change
    refused = _cli(guard, "alerts", "set", "min_calls=1.5")
    assert refused.returncode == 1 and "alerts.min_calls: '1.5' is not a whole number" in \
        refused.stderr
    guard.wait_for("policy.reloaded", count=3, timeout=10)  # SIGHUP, the API, its file watcher
    assert client.json("/api/alerts/settings")["values"]["types.ban.enabled"] is True


def test_a_state_store_outage_shows_on_the_overview_and_fails_actions_with_503(
        start_uas: StartUas, start_sipguard: StartSipguard, redis_server: Any) -> None:
    """With the Redis store stopped the overview still answers (the store DOWN, the kill
    switch as last read), the pages and API that need the store answer 503 with the
    reason, and nothing answers 500; with Redis back, locks work again."""
    _, client = _start(start_uas, start_sipguard, store={
        "backend": "redis", "url": redis_server.url, "timeout": 0.2})
    assert client.call("POST", "/api/lock", {"account": "asterisk-1", "reason": "test"},
                       token=TOKEN)[0] == 200
    redis_server.stop()

    overview = client.json("/api/overview")
    assert overview["store_up"] is False and "does not answer" in overview["store_error"]
    assert overview["locks"] is None and overview["lockdown"] is False
    status, _, page = client.call("GET", "/", token=TOKEN)
    assert status == 200 and "does not answer" in page and "DOWN" in page
    for path in ("/api/locks", "/api/bans"):
        status, _, text = client.call("GET", path, token=TOKEN)
        assert status == 503 and "state store does not answer" in json.loads(text)["error"]
    status, _, page = client.call("GET", "/locks", token=TOKEN)
    assert status == 503 and "state store does not answer" in page
    # The alerts are this node's own: listed all the same, the snoozes unknown.
    listed = client.json("/api/alerts")
    assert listed["snoozed"] is None and isinstance(listed["alerts"], list)
    status, _, page = client.call("GET", "/alerts", token=TOKEN)
    assert status == 200 and "unknown (store down)" in page
    status, _, text = client.call("POST", "/api/unlock", {"account": "asterisk-1"}, token=TOKEN)
    assert status == 503, text

    redis_server.start()
    deadline = time.monotonic() + 10
    while client.call("GET", "/api/locks", token=TOKEN)[0] != 200:
        assert time.monotonic() < deadline, "locks not listed after Redis came back"
        time.sleep(0.2)
    # (the test's Redis keeps nothing across its restart: lock again, and it is listed)
    assert client.call("POST", "/api/lock", {"account": "asterisk-1", "reason": "again"},
                       token=TOKEN)[0] == 200
    assert [lock["reason"] for lock in client.json("/api/locks")["locks"]] == ["again"]
    assert client.json("/api/overview")["store_up"] is True


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_authentication_needs_the_csrf_header_to_act_and_is_locked_after_guessing(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """Basic credentials read the API, act only with the X-Sipguard-CSRF header, and five
    wrong passwords from an address get it 429 for a while, the right password too."""
    _, client = _start(start_uas, start_sipguard)
    right = _basic("ops", PASSWORD)
    assert client.call("GET", "/api/locks", headers=right)[0] == 200
    lock = {"account": "asterisk-1", "reason": "basic"}
    assert client.call("POST", "/api/lock", lock, headers=right)[0] == 403
    assert client.call("POST", "/api/lock", lock,
                       headers={**right, "X-Sipguard-CSRF": "1"})[0] == 200
    assert client.json("/api/locks")["locks"][0]["by"] == "web:ops"
    for _ in range(5):
        assert client.call("GET", "/api/locks", headers=_basic("ops", "guess"))[0] == 401
    status, _, text = client.call("GET", "/api/locks", headers=right)
    assert status == 429 and "too many failed logins" in text


def test_the_traffic_page_takes_a_range_and_says_what_is_wrong_with_a_bad_one(
        start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac) -> None:
    """since and until typed in the Traffic page's form choose the range (the CSV links
    carry both); a range that ended before the calls shows none; a bad time is named."""
    guard, client = _start(start_uas, start_sipguard)
    assert run_uac("uac_blocked.xml", guard.target(), service=UK).successful == 1
    _wait_stored(guard, 1)
    status, _, page = client.call("GET", "/widgets?since=2h&until=1h", token=TOKEN)
    assert status == 200 and "Traffic, 2h to 1h" in page and "GB" not in page
    assert "format=csv&amp;since=2h&amp;until=1h" in page
    status, _, page = client.call("GET", "/widgets?since=2h", token=TOKEN)
    assert status == 200 and "<td>GB</td>" in page
    status, _, page = client.call("GET", "/widgets?since=yesterday-ish", token=TOKEN)
    assert status == 200 and 'id="problem"' in page and "yesterday-ish" in page


def test_unban_unlock_and_snooze_from_the_api_act_as_the_command_line_does(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """A ban added by the CLI is listed and lifted through the API, a lock on a name that is
    no account is refused, a lock set through the API is lifted through it, and a snooze
    set through it shows in `sipguard alerts list`."""
    guard, client = _start(start_uas, start_sipguard)
    assert _cli(guard, "bans", "add", "127.0.0.9", "--reason", "scanner").returncode == 0
    (ban,) = client.json("/api/bans")["bans"]
    assert ban["address"] == "127.0.0.9" and ban["reason"] == "scanner"
    status, _, text = client.call("POST", "/api/unban", {"address": "127.0.0.9"}, token=TOKEN)
    assert status == 200 and json.loads(text)["removed"] is True
    assert client.json("/api/bans")["bans"] == []
    assert "127.0.0.9" not in _cli(guard, "bans", "list").stdout

    status, _, text = client.call("POST", "/api/lock", {"account": "asterisk-9"}, token=TOKEN)
    assert status == 400 and "no account named 'asterisk-9'" in text  # a typo locks nothing
    typo = _cli(guard, "lock", "asterisk-9")
    assert typo.returncode == 1 and "no account named 'asterisk-9'" in typo.stderr
    assert client.call("POST", "/api/lock", {"account": "asterisk-1", "scope": "all"},
                       token=TOKEN)[0] == 200
    assert "asterisk-1" in _cli(guard, "locks").stdout
    assert client.call("POST", "/api/unlock", {"account": "asterisk-1"}, token=TOKEN)[0] == 200
    assert client.json("/api/locks")["locks"] == []

    assert client.call("POST", "/api/alerts/snooze", {"type": "ban"}, token=TOKEN)[0] == 200
    listed = json.loads(_cli(guard, "alerts", "list", "--json").stdout)
    assert "ban" in listed["snoozed"]
    assert [event["action"] for event in guard.wait_for("admin.action", count=4)] == [
        "unban", "lock", "unlock", "snooze"]


def test_without_credentials_configured_the_dashboard_is_closed(
        start_uas: StartUas, start_sipguard: StartSipguard) -> None:
    """An admin section with no token and no users serves /metrics but answers 503 to the
    dashboard and the API: there are no default credentials."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=POLICY, sections={
        "admin": {"listen": "127.0.0.1:0"}})
    client = Client(f"http://{guard.wait_for('service.started')[0]['admin']}")
    assert guard.events("admin.dashboard_closed")
    for path in ("/", "/api/overview", "/alerts"):
        status, _, text = client.call("GET", path)
        assert status == 503 and "no credentials configured" in text, path
    assert client.call("GET", "/metrics")[0] == 200
