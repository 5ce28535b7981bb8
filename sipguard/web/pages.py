"""The dashboard's HTML: server-rendered pages, one stylesheet, no JavaScript, nothing
fetched from anywhere else (the pages work with no internet). Bars are drawn with
CSS widths; every value from a call (numbers, addresses, rule ids) is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from sipguard.web import charts
from sipguard.web.access import Caller

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


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _problem(error: str | None) -> str:
    """What went wrong, for the top of a page (nothing when nothing did)."""
    return f'<div class="error" id="problem">{_e(error)}</div>' if error else ""


def _page(title: str, here: str, caller: Caller | None, body: str) -> str:
    links = "".join(
        f'<a href="{path}"{" class=here" if path == here else ""}>{name}</a>'
        for path, name in (("/", "Overview"), ("/widgets", "Traffic"), ("/alerts", "Alerts"),
                           ("/locks", "Bans and locks"), ("/explain", "Explain")))
    logout = ""
    if caller is not None and caller.how == "session":
        logout = (f'<form method="post" action="/logout"><span class="muted">'
                  f'{_e(caller.user)}</span> <button class="quiet">Log out</button></form>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)} · sipguard</title>'
            f'<link rel="stylesheet" href="/static/sipguard.css"></head><body>'
            f'<header><strong>sipguard</strong><nav>{links}</nav>{logout}</header>'
            f'<main><h1>{_e(title)}</h1>{body}</main></body></html>')


def _csrf(caller: Caller) -> str:
    return f'<input type="hidden" name="csrf" value="{_e(caller.csrf or "")}">'


def _table(rows: list[dict[str, Any]], key_title: str, measure: str = "minutes") -> str:
    if not rows:
        return '<p class="muted">No calls in this range.</p>'
    top = max((float(row[measure]) for row in rows), default=0.0) or 1.0
    lines = [f'<table><tr><th>{_e(key_title)}</th><th class=n>calls</th><th class=n>'
             f'answered</th><th class=n>minutes</th><th class=n>blocked</th><th></th></tr>']
    for row in rows[:25]:
        width = max(1.0, float(row[measure]) / top * 100)
        lines.append(f'<tr><td>{_e(row["key"])}</td><td class=n>{row["calls"]}</td>'
                     f'<td class=n>{row["answered"]}</td><td class=n>{row["minutes"]:.2f}</td>'
                     f'<td class=n>{row["blocked"]}</td><td class="bar"><meter min="0" max="100" '
                     f'value="{width:.0f}"></meter></td></tr>')
    lines.append("</table>")
    return "".join(lines)


def overview(data: dict[str, Any], caller: Caller) -> str:
    banner = ('<div class="banner">Kill switch ON: no international or premium calls from '
              'any account. <a href="/locks">Bans and locks</a></div>'
              if data["lockdown"] else "")
    if data.get("store_error"):
        banner += _problem(data["store_error"])
    reload = data["policy"]["last_reload"]
    reload_text = "not reloaded since start"
    if reload:
        state = ('<span class="good">taken</span>' if reload["ok"]
                 else '<span class="bad">refused</span>')
        reload_text = f"last reload {state} ({_e(reload['reason'])})" + "".join(
            f"<div class='error'>{_e(problem)}</div>" for problem in reload["problems"])
    decisions = "".join(
        f'<tr><td>{_e(row["key"])}</td><td class=n>{row["calls"]}</td>'
        f'<td class=n>{row["per_minute"]}</td></tr>' for row in data["last_hour_by_decision"])
    blocked = "".join(f'<tr><td>{_e(row["key"])}</td><td class=n>{row["blocked"]}</td></tr>'
                      for row in data["top_blocked_rules_24h"])
    alerts = "".join(f'<tr><td class="level-{_e(alert["level"])}">{_e(alert["level"])}</td>'
                     f'<td>{_e(alert["text"])}</td></tr>' for alert in data["alerts"])
    minutes = [(minute["start"], minute["by_decision"]) for minute in data["calls_per_minute"]]
    cdr = data["cdr"] or {}
    locks = "?" if data["locks"] is None else data["locks"]
    health = [("State store", data["store_up"]),
              ("Call records database", bool(cdr.get("database_up")) and
               not data["records_error"])]
    health_rows = "".join(
        f'<tr><td>{name}</td><td class="{"good" if ok else "bad"}">{"up" if ok else "DOWN"}'
        f"</td></tr>" for name, ok in health)
    body = (
        f'{banner}<div class="grid">'
        f'<div class="card"><h2>Live calls</h2><div class="figure" id="live-calls">'
        f'{data["live_calls"]}</div><div class="muted">{locks} account locks · '
        f'{data["bans"]} bans</div></div>'
        f'<div class="card"><h2>Health</h2><table>{health_rows}</table>'
        f'<div class="muted">{cdr.get("stored", 0)} records stored, '
        f'{cdr.get("spooled_batches", 0)} batches waiting in the spool</div></div>'
        f'<div class="card wide"><h2>Calls per minute, last hour</h2>'
        f'{charts.calls_per_minute(minutes)}'
        f'</div>'
        f'<div class="card"><h2>Calls in the last hour, by decision</h2><table>'
        f'<tr><th>decision</th><th class=n>calls</th><th class=n>per minute</th></tr>'
        f'{decisions or "<tr><td colspan=3 class=muted>none</td></tr>"}</table></div>'
        f'<div class="card"><h2>Top blocking rules (24 h)</h2><table><tr><th>rule</th>'
        f'<th class=n>blocked</th></tr>'
        f'{blocked or "<tr><td colspan=2 class=muted>none</td></tr>"}</table></div>'
        f'<div class="card"><h2>Policy</h2><div>version <code>'
        f'{_e(data["policy"]["version"])}</code></div><div class="muted">'
        f'{_e(data["policy"]["source"])}</div><div>{reload_text}</div></div>'
        f'<div class="card"><h2>Open alerts <span class="muted">({data["open_alerts"]})'
        f'</span> <a href="/alerts">all alerts</a></h2><table>'
        f'{alerts or "<tr><td class=muted>No open alerts.</td></tr>"}'
        f'</table></div></div>')
    return _page("Overview", "/", caller, body)


def unavailable(problem: str, caller: Caller) -> str:
    """A page that could not be made (the state store does not answer)."""
    return _page("Unavailable", "", caller,
                 f"{_problem(problem)}"
                 '<p><a href="/">Overview</a> (it shows what it can during an outage)</p>')


def widgets(tables: dict[str, list[dict[str, Any]]], given: dict[str, str], caller: Caller,
            error: str | None = None) -> str:
    """The traffic widgets for a range: ``given`` is since and until as typed (ISO 8601
    or an age such as 24h; until empty: now)."""
    since, until = given["since"], given.get("until", "")
    ranges = " ".join(
        f'<a href="/widgets?since={span}">'
        f'{f"<b>{span}</b>" if span == since and not until else span}</a>'
        for span in RANGES)
    form = (f'<form method="get" action="/widgets" class="inline"> or from '
            f'<input name="since" value="{_e(since)}" size="20" aria-label="since" '
            f'placeholder="2026-12-01T00:00 or 24h"> to <input name="until" '
            f'value="{_e(until)}" size="20" aria-label="until" placeholder="now"> '
            f"<button>Show</button></form>")
    query = f"since={quote(since)}" + (f"&amp;until={quote(until)}" if until else "")
    cards = "".join(
        f'<div class="card"><h2>{_e(TITLES[group])}</h2>'
        f'{_table(rows, group, "calls" if group in ("source", "rule") else "minutes")}'
        f'<p><a href="/api/widgets/{group}?format=csv&amp;{query}">'
        f"Export CSV</a></p></div>"
        for group, rows in tables.items())
    problem = _problem(error)
    title = f"Traffic, {since} to {until}" if until else f"Traffic, last {since}" if (
        since[:1].isdigit() and not since[:4].isdigit()) else f"Traffic since {since}"
    return _page(title, "/widgets", caller,
                 f'{problem}<p class="ranges">Range: {ranges}{form}</p>'
                 f'<div class="grid">{cards}</div>')


def alerts(data: dict[str, Any], settings: dict[str, Any], caller: Caller,
           error: str | None = None) -> str:
    snoozed = data.get("snoozed", {})
    problem = _problem(error)
    rows = "".join(_alert_row(alert, caller) for alert in data.get("alerts", []))
    acknowledge_all = (f'<form class="inline" method="post" action="/api/alerts/ack">'
                       f'{_csrf(caller)}<input type="hidden" name="id" value="all">'
                       f'<button class="quiet">Acknowledge all</button></form>'
                       if data.get("open") else "")
    body = (f'{problem}<div class="card"><h2>Recent alerts <span class="muted">'
            f'({data.get("open", 0)} open)</span> {acknowledge_all}</h2>'
            f'<table id="alerts"><tr><th>at (UTC)</th><th>level</th><th>type</th><th>what</th>'
            f'<th>state</th></tr>'
            f'{rows or "<tr><td colspan=5 class=muted>none</td></tr>"}</table></div><br>'
            f"{_alert_settings(settings, snoozed, caller)}")
    return _page("Alerts", "/alerts", caller, body)


def _alert_row(alert: dict[str, Any], caller: Caller) -> str:
    done = alert.get("acknowledged")
    if done:
        state = f'<span class="muted">acknowledged by {_e(done["by"])}</span>'
    else:
        state = (f'<form class="inline" method="post" action="/api/alerts/ack">'
                 f'{_csrf(caller)}<input type="hidden" name="id" value="{_e(alert["id"])}">'
                 f'<button class="quiet">Acknowledge</button></form>')
    at = str(alert["at"]).replace("T", " ").removesuffix("+00:00")
    return (f'<tr{"" if done else " class=open"}><td class="when">{_e(at)}</td>'
            f'<td class="level-{_e(alert["level"])}">{_e(alert["level"])}</td>'
            f'<td>{_e(alert["type"])}</td><td>{_e(alert["text"])}</td><td>{state}</td></tr>')


def _alert_settings(settings: dict[str, Any], snoozed: dict[str, float] | None,
                    caller: Caller) -> str:
    """The thresholds, contacts and types, editable in one form (written to the policy
    file; the policy version it was filled in from goes with it); each type's snooze
    button is a form of its own beside it."""
    values, policy_file = settings["values"], settings.get("policy_file")
    def field(key: str, size: int = 6) -> str:
        return (f'<input form="alert-settings" name="{key}" size="{size}" '
                f'value="{_e(_listed(values[key]))}" aria-label="{key}">')

    thresholds = " ".join(f'<label>{level} {field(f"thresholds.{level}", 4)} %</label>'
                          for level in ("notify", "warning", "urgent"))
    types = []
    for kind in TYPES:
        on = values[f"types.{kind}.enabled"]
        enabled = (f'<select form="alert-settings" name="types.{kind}.enabled" '
                   f'aria-label="types.{kind}.enabled">'
                   f'<option value="true"{" selected" if on else ""}>on</option>'
                   f'<option value="false"{"" if on else " selected"}>off</option></select>')
        snooze = ('<span class="muted">unknown (store down)</span>' if snoozed is None else
                  f'snoozed, {int(snoozed[kind]) // 60} min left' if kind in snoozed else
                  f'<form class="inline" method="post" action="/api/alerts/snooze">'
                  f'{_csrf(caller)}<input type="hidden" name="type" value="{kind}">'
                  f'<button class="quiet">Snooze for today</button></form>')
        contacts = (f'<input form="alert-settings" name="types.{kind}.contacts" size="28" '
                    f'value="{_e(_listed(values[f"types.{kind}.contacts"] or []))}" '
                    f'placeholder="the contacts above" aria-label="types.{kind}.contacts">')
        types.append(f"<tr><td>{kind}</td><td>{enabled}</td>"
                     f"<td>{field(f'types.{kind}.levels', 20)}</td><td>{contacts}</td>"
                     f"<td>{snooze}</td></tr>")
    where = (f"Saved to <code>{_e(policy_file)}</code> (comments kept, checked like "
             f"<code>sipguard check</code>, the previous text kept as .bak) and taken at once."
             if policy_file else "")
    return (f'<div class="card"><h2>Thresholds and contacts</h2>'
            f'<form id="alert-settings" method="post" action="/api/alerts/settings">'
            f'{_csrf(caller)}<input type="hidden" name="version" '
            f'value="{_e(settings.get("version", ""))}"></form>'
            f'<p>Traffic above normal by: {thresholds}</p>'
            f'<p><label>No alert below {field("min_minutes", 4)} minutes</label> '
            f'<label>or {field("min_calls", 4)} calls in the hour.</label></p>'
            f'<p><label>Contacts {field("contacts", 48)}</label> <span class="muted">'
            f"log, email:ADDRESS, sms:+NUMBER, webhook:NAME</span></p>"
            f'<table><tr><th>type</th><th>sent</th><th>levels</th><th>contacts</th><th></th></tr>'
            f'{"".join(types)}</table><p><button form="alert-settings">Save</button> '
            f'<span class="muted">{where}</span></p></div>')


def _listed(value: Any) -> str:
    return ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)


def locks(data: dict[str, Any], bans: dict[str, Any], caller: Caller,
          error: str | None) -> str:
    switch = data.get("lockdown")
    problem = _problem(error)
    if switch:
        kill = (f'<div class="banner">Kill switch ON since {_when(switch["since"])} by '
                f'{_e(switch["by"])}: '
                f'{_e(switch["reason"])}</div><form method="post" action="/api/lockdown">'
                f'{_csrf(caller)}<input type="hidden" name="on" value="off">'
                f'<button>Release the kill switch</button></form>')
    else:
        kill = (f'<form method="post" action="/api/lockdown">{_csrf(caller)}'
                f'<input type="hidden" name="on" value="on">'
                f'<p>Stops every international and premium-rate call from every account at once '
                f'(emergency calls still go through). Type <b>LOCKDOWN</b> to confirm.</p>'
                f'<input name="confirm" placeholder="LOCKDOWN" autocomplete="off"> '
                f'<input name="reason" placeholder="reason"> '
                f'<button class="danger">Switch the kill switch on</button></form>')
    lock_rows = "".join(
        f'<tr><td>{_e(lock["account"])}</td><td>{_e(lock["scope"])}</td>'
        f'<td>{_e(lock["by"])}: {_e(lock["reason"])}</td><td><form class="inline" '
        f'method="post" action="/api/unlock">{_csrf(caller)}<input type="hidden" '
        f'name="account" value="{_e(lock["account"])}"><button class="quiet">Unlock</button>'
        f"</form></td></tr>" for lock in data.get("locks", []))
    ban_rows = "".join(
        f'<tr><td>{_e(ban["address"])}</td><td class=n>{int(ban["seconds_left"]) // 60} min'
        f'</td><td>{_e(ban["by"])}: {_e(ban["reason"])}</td><td><form class="inline" '
        f'method="post" action="/api/unban">{_csrf(caller)}<input type="hidden" '
        f'name="address" value="{_e(ban["address"])}"><button class="quiet">Unban</button>'
        f"</form></td></tr>" for ban in bans.get("bans", []))
    body = (
        f'{problem}<div class="grid"><div class="card wide">'
        f"<h2>Kill switch</h2>{kill}</div>"
        f'<div class="card"><h2>Account locks</h2><table><tr><th>account</th><th>class</th>'
        f'<th>by / reason</th><th></th></tr>'
        f'{lock_rows or "<tr><td colspan=4 class=muted>none</td></tr>"}</table><br>'
        f'<form method="post" action="/api/lock">{_csrf(caller)}<input name="account" '
        f'placeholder="account" required> <select name="scope"><option>international'
        f'</option><option>all</option></select> <input name="reason" placeholder="reason"> '
        f'<button>Lock</button></form></div>'
        f'<div class="card"><h2>Bans</h2><table><tr><th>address</th><th class=n>left</th>'
        f'<th>by / reason</th><th></th></tr>'
        f'{ban_rows or "<tr><td colspan=4 class=muted>none</td></tr>"}</table></div></div>')
    return _page("Bans and locks", "/locks", caller, body)


def explain(query: dict[str, str], result: dict[str, Any] | None, error: str | None,
            caller: Caller, accounts: list[str]) -> str:
    options = "".join(f'<option{" selected" if name == query.get("account") else ""}>'
                      f"{_e(name)}</option>" for name in accounts)
    form = (f'<form method="get" action="/explain" class="card"><input name="number" '
            f'placeholder="number as dialled" value="{_e(query.get("number", ""))}" required> '
            f'<select name="account">{options}</select> <input name="extension" '
            f'placeholder="extension" value="{_e(query.get("extension", ""))}"> '
            f'<input name="at" placeholder="time (ISO 8601)" value="{_e(query.get("at", ""))}"> '
            f"<button>Explain</button></form>")
    shown = ""
    if error:
        shown = _problem(error)
    elif result is not None:
        shown = (f'<h2 id="decision">Decision: {_e(result["action"])}</h2>'
                 f'<pre id="trace">{_e(result["text"])}</pre>')
    return _page("Explain a number", "/explain", caller, form + "<br>" + shown)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def login(failed: bool) -> str:
    problem = '<div class="error">Wrong user or password.</div>' if failed else ""
    body = (f'<div class="card login">{problem}<form method="post" action="/login">'
            f'<input name="user" placeholder="user" autocomplete="username" required>'
            f'<input name="password" type="password" placeholder="password" '
            f'autocomplete="current-password" required><button>Log in</button></form></div>')
    return _page("Log in", "", None, body)
