"""The dashboard's HTML: server-rendered pages, one stylesheet, no JavaScript, nothing
fetched from anywhere else (the pages work with no internet). The pages are Jinja2
templates (``web/templates/``) with autoescape on, so every value from a call (numbers,
addresses, rule ids, display names) is escaped unless a template is told otherwise;
only the server-drawn chart is passed as markup. Bars are drawn with CSS widths."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from sipguard.web import charts
from sipguard.web.access import Caller
from sipguard.web.render import TEMPLATES, render

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TITLES = {"country": "Minutes by country", "extension": "Minutes per extension",
          "jurisdiction": "Minutes per jurisdiction", "source": "Top source addresses",
          "state": "Minutes per state", "account": "Minutes per customer (account)",
          "rule": "Calls by deciding rule"}
RANGES = ("1h", "24h", "7d", "30d")
TYPES = ("traffic", "first_source", "failed_international", "denied_high_risk",
         "limit_reached", "pin_lockout", "ban")

CSS = """
:root { --ink: #1d2430; --muted: #5b6576; --line: #d9dee7; --bg: #f5f7fa;
        --accent: #2457c5; --bad: #b3261e; --warn: #a15c00; --good: #1e7b34; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #1d2430; color: #fff; padding: 10px 24px; display: flex;
         align-items: center; gap: 24px; }
header strong { font-size: 17px; letter-spacing: .02em; }
header nav a { color: #cfd8e8; text-decoration: none; margin-right: 16px; }
header nav a.here { color: #fff; border-bottom: 2px solid #fff; }
header form { margin-left: auto; }
main { padding: 20px 24px; max-width: 1200px; }
h1 { font-size: 20px; margin: 0 0 16px; }
h2 { font-size: 16px; margin: 0 0 10px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr));
        gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
        overflow-x: auto; }
.figure { font-size: 30px; font-weight: 600; }
.muted { color: var(--muted); }
.bad { color: var(--bad); } .warn { color: var(--warn); } .good { color: var(--good); }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 13px; }
td.n, th.n { text-align: right; }
td.bar { width: 22%; min-width: 70px; } td.bar meter { width: 100%; height: 10px; }
td:first-child { word-break: break-all; }
td.when, td.level-notify, td.level-warning, td.level-urgent { white-space: nowrap;
  word-break: normal; }
.wide { grid-column: 1 / -1; }
.level-urgent { color: var(--bad); font-weight: 600; }
.level-warning { color: var(--warn); font-weight: 600; }
.banner a { color: #fff; }
.banner { background: var(--bad); color: #fff; padding: 10px 16px; border-radius: 8px;
          margin-bottom: 16px; font-weight: 600; }
.error { background: #fdecea; border: 1px solid #f5c2bd; padding: 8px 12px;
         border-radius: 6px; margin-bottom: 12px; }
form.inline { display: inline; }
input, select, button { font: inherit; padding: 5px 8px; border: 1px solid var(--line);
                        border-radius: 6px; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
button.danger { background: var(--bad); border-color: var(--bad); }
button.quiet { background: #fff; color: var(--ink); }
pre { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px;
      overflow-x: auto; font-size: 13px; }
.ranges a { margin-right: 10px; }
svg.chart { display: block; max-height: 220px; }
.legend { font-size: 13px; color: var(--muted); margin-top: 4px; }
.legend .key { margin-right: 14px; }
.login { max-width: 360px; margin: 80px auto; }
.login input { width: 100%; margin-bottom: 10px; }
"""


def _listed(value: Any) -> str:
    return ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)


TEMPLATES.globals["listed"] = _listed


def _render(template: str, title: str, here: str, caller: Caller | None,
            **context: Any) -> str:
    # "who", not "caller": Jinja2 keeps that name for macros' call blocks.
    return render(template, title=title, here=here, who=caller, **context)


def overview(data: dict[str, Any], caller: Caller) -> str:
    cdr = data["cdr"] or {}
    health = [("State store", data["store_up"]),
              ("Call records database", bool(cdr.get("database_up"))
               and not data["records_error"])]
    minutes = [(minute["start"], minute["by_decision"]) for minute in data["calls_per_minute"]]
    return _render("overview.html", "Overview", "/", caller, data=data, cdr=cdr,
                   health=health, chart=Markup(charts.calls_per_minute(minutes)))


def unavailable(problem: str, caller: Caller) -> str:
    """A page that could not be made (the state store does not answer)."""
    return _render("unavailable.html", "Unavailable", "", caller, problem=problem)


def widgets(tables: dict[str, list[dict[str, Any]]], given: dict[str, str], caller: Caller,
            error: str | None = None) -> str:
    """The traffic widgets for a range: ``given`` is since and until as typed (ISO 8601
    or an age such as 24h; until empty: now)."""
    since, until = given["since"], given.get("until", "")
    query = f"since={quote(since)}" + (f"&until={quote(until)}" if until else "")
    cards = []
    for group, rows in tables.items():
        measure = "calls" if group in ("source", "rule") else "minutes"
        top = max((float(row[measure]) for row in rows), default=0.0) or 1.0
        cards.append({"group": group, "title": TITLES[group], "key_title": group,
                      "rows": [{**row, "width": max(1.0, float(row[measure]) / top * 100)}
                               for row in rows[:25]]})
    title = f"Traffic, {since} to {until}" if until else f"Traffic, last {since}" if (
        since[:1].isdigit() and not since[:4].isdigit()) else f"Traffic since {since}"
    return _render("widgets.html", title, "/widgets", caller, error=error, ranges=RANGES,
                   since=since, until=until, cards=cards, query=query)


def alerts(data: dict[str, Any], settings: dict[str, Any], caller: Caller,
           error: str | None = None) -> str:
    """The recent alerts, and the thresholds, contacts and types, editable in one form
    (written to the policy file; the policy version it was filled in from goes with
    it); each type's snooze button is a form of its own beside it."""
    rows = [{**alert, "done": alert.get("acknowledged"),
             "at": str(alert["at"]).replace("T", " ").removesuffix("+00:00")}
            for alert in data.get("alerts", [])]
    return _render("alerts.html", "Alerts", "/alerts", caller, error=error, data=data,
                   rows=rows, settings=settings, values=settings["values"],
                   policy_file=settings.get("policy_file"), types=TYPES,
                   snoozed=data.get("snoozed", {}))


def locks(data: dict[str, Any], bans: dict[str, Any], caller: Caller,
          error: str | None) -> str:
    switch = data.get("lockdown")
    return _render("locks.html", "Bans and locks", "/locks", caller, error=error,
                   switch=switch, since=_when(switch["since"]) if switch else "",
                   lock_rows=data.get("locks", []), ban_rows=bans.get("bans", []))


def explain(query: dict[str, str], result: dict[str, Any] | None, error: str | None,
            caller: Caller, accounts: list[str]) -> str:
    return _render("explain.html", "Explain a number", "/explain", caller, query=query,
                   result=result, error=error, accounts=accounts)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def login(failed: bool) -> str:
    return _render("login.html", "Log in", "", None, failed=failed)
