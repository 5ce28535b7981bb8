"""The dashboard's pages rendered from Jinja2 templates: every page renders, and whatever
came from a call or a person is escaped (autoescape), in text and in attributes."""

from __future__ import annotations

from typing import Any

from sipguard.web import pages
from sipguard.web.access import Caller

EVIL = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
ME = Caller("ops", "session", csrf='t"ok')


def _overview() -> dict[str, Any]:
    return {
        "lockdown": True, "store_error": EVIL, "live_calls": 3, "locks": 1, "bans": 2,
        "store_up": True, "records_error": None,
        "cdr": {"database_up": True, "stored": 10, "spooled_batches": 0},
        "calls_per_minute": [{"start": 1800000000.0 + 60 * n, "by_decision": {"forward": n}}
                             for n in range(60)],
        "last_hour_by_decision": [{"key": EVIL, "calls": 5, "per_minute": 0.1}],
        "top_blocked_rules_24h": [],
        "policy": {"version": "abc", "source": "/etc/p.yaml",
                   "last_reload": {"ok": False, "reason": "SIGHUP", "problems": [EVIL]}},
        "open_alerts": 1, "alerts": [{"level": "urgent", "text": EVIL}],
    }


def test_every_page_renders_and_escapes_what_it_shows() -> None:
    values = {"thresholds.notify": 50, "thresholds.warning": 100, "thresholds.urgent": 200,
              "min_minutes": 10, "min_calls": 5, "contacts": ["log", EVIL],
              **{f"types.{kind}.{key}": value for kind in pages.TYPES
                 for key, value in (("enabled", True), ("levels", ["urgent"]),
                                    ("contacts", None))}}
    rendered = {
        "overview": pages.overview(_overview(), ME),
        "unavailable": pages.unavailable(EVIL, ME),
        "widgets": pages.widgets({"country": [{"key": EVIL, "calls": 2, "answered": 1,
                                               "minutes": 1.5, "blocked": 0}]},
                                 {"since": "24h", "until": EVIL}, ME, EVIL),
        "alerts": pages.alerts({"open": 1, "snoozed": {"ban": 3600}, "alerts": [
            {"id": EVIL, "at": "2026-12-07T10:00:00+00:00", "level": "urgent",
             "type": "ban", "text": EVIL, "acknowledged": None}]},
            {"values": values, "version": "v1", "policy_file": EVIL}, ME, EVIL),
        "locks": pages.locks({"lockdown": {"since": 1800000000.0, "by": EVIL, "reason": EVIL},
                              "locks": [{"account": EVIL, "scope": "all", "by": "ops",
                                         "reason": EVIL}]},
                             {"bans": [{"address": EVIL, "seconds_left": 600, "by": "cli",
                                        "reason": EVIL}]}, ME, EVIL),
        "explain": pages.explain({"number": EVIL}, {"action": EVIL, "text": EVIL}, None, ME,
                                 ["asterisk-1", EVIL]),
        "login": pages.login(True),
    }
    for name, html in rendered.items():
        assert html.startswith("<!doctype html>") and html.endswith("</html>"), name
        assert EVIL not in html, name
        if name != "login":
            assert ESCAPED in html, name
    assert 'value="t&#34;ok"' in rendered["alerts"]  # attributes too
    assert "<svg" in rendered["overview"]  # the chart is markup, drawn by charts
    assert "Kill switch ON" in rendered["overview"] and "Log out" in rendered["overview"]
    assert "snoozed, 60 min left" in rendered["alerts"]
    assert "Wrong user or password." in rendered["login"]
    assert "10 min" in rendered["locks"]
