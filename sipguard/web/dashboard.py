"""The fraud dashboard and its JSON API, on the admin address (never a SIP listener).

Everything the pages show comes from the JSON API's functions, under the same
authentication (sipguard.web.access); every action goes through the same
functions as the command line (sipguard.alerts.control, the edge's bans) and is
logged with who did it (``admin.action``).

    GET  /api/overview                     live calls, decisions, alerts, policy, health
    GET  /api/widgets/GROUP?since=&until=  minutes and calls by country, extension,
                                           jurisdiction, source, state, account, rule
                                           (add format=csv for a CSV file)
    GET  /api/alerts   POST /api/alerts/ack {id: ID or "all"}   POST /api/alerts/snooze {type}
    GET  /api/alerts/settings   POST /api/alerts/settings {KEY: VALUE, ...}  thresholds and
                       contacts, written to the policy file (sipguard.policy.edit), then reloaded
    GET  /api/locks    POST /api/lock {account, scope, reason}   POST /api/unlock {account}
                       POST /api/lockdown {on, confirm: "LOCKDOWN" to switch it on}
    GET  /api/bans     POST /api/unban {address}
    GET  /api/explain?number=&account=&extension=&at=
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from sipguard.alerts import Alerting, alert_handlers, lock_handlers
from sipguard.b2bua import dialled_from_text
from sipguard.edge import EdgeGuard
from sipguard.policy import (
    EDITABLE,
    CallAttempt,
    Policy,
    Usage,
    current_values,
    edit_alerts,
    evaluate,
    format_decision,
)
from sipguard.records import CdrSink, CdrUnavailableError, csv_cell, parse_time
from sipguard.schema import ConfigError
from sipguard.screening import Locks
from sipguard.store import StoreUnavailableError
from sipguard.web import charts, pages
from sipguard.web.access import COOKIE, Access, Caller

WIDGETS = ("country", "extension", "jurisdiction", "source", "state", "account", "rule")
BY_CALLS = ("source", "rule")  # ranked by calls; the others by minutes
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Parts:
    """What the dashboard reads and acts on (the service's own objects)."""

    stats: Callable[[], dict[str, Any]]
    policy: Callable[[], Policy]
    last_reload: Callable[[], dict[str, Any] | None]
    locks: Locks
    alerting: Alerting | None
    edge: EdgeGuard
    reader: Callable[[], CdrSink] | None
    log: Any
    policy_path: Path | None = None  # None: alert settings cannot be changed here
    reload_policy: Callable[[str], bool] = lambda _reason: False
    unreachable: Callable[[Policy], list[str]] = lambda _policy: []
    # The call history the risk score uses (account, dialled) -> Usage, as a call now.
    usage: Callable[[str, str], Usage] = lambda _account, _dialled: Usage()


class Dashboard:
    """The routes; ``add_routes`` puts them on the admin server's application."""

    def __init__(self, parts: Parts, access: Access) -> None:
        self.parts = parts
        self.access = access
        self._reader: CdrSink | None = None
        self._editing = asyncio.Lock()
        self._locks = lock_handlers(parts.locks, parts.policy)
        self._alerts = alert_handlers(parts.alerting) if parts.alerting is not None else {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._page(self._overview_page))
        app.router.add_get("/widgets", self._page(self._widgets_page))
        app.router.add_get("/alerts", self._page(self._alerts_page))
        app.router.add_get("/locks", self._page(self._locks_page))
        app.router.add_get("/explain", self._page(self._explain_page))
        app.router.add_get("/static/sipguard.css", self._css)
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        for path, handler in (("/api/overview", self.overview), ("/api/alerts", self.alerts),
                              ("/api/alerts/settings", self.alert_settings),
                              ("/api/locks", self.locks), ("/api/bans", self.bans)):
            app.router.add_get(path, self._api(handler))
        app.router.add_get("/api/widgets/{group}", self._widget)
        app.router.add_get("/api/explain", self._api(self.explain))
        for path, action in (("/api/lock", self._lock), ("/api/unlock", self._unlock),
                             ("/api/lockdown", self._lockdown), ("/api/unban", self._unban),
                             ("/api/alerts/snooze", self._snooze),
                             ("/api/alerts/ack", self._acknowledge),
                             ("/api/alerts/settings", self._edit_alert_settings)):
            app.router.add_post(path, self._action(action))

    # -- what the API and the pages show -----------------------------------------------

    async def overview(self, _: web.Request) -> dict[str, Any]:
        stats = self.parts.stats()
        now = time.time()
        decisions, blocked, timeline = [], [], []
        records_error = None
        try:
            reader = await self._open_reader()
            if reader is not None:
                timeline = [(row.bucket, row.decision, row.calls)
                            for row in await reader.timeline(now - 3600, None, 60.0)]
                decisions = [asdict(row) for row in await reader.summary("decision", now - 3600)]
                blocked = [asdict(row) for row in sorted(
                    (row for row in await reader.summary("rule", now - 86400) if row.blocked),
                    key=lambda row: (-row.blocked, row.key))][:10]
        except CdrUnavailableError as error:
            records_error = str(error)
            await self._drop_reader()
        store_error = None
        try:
            held, switch = await self.parts.locks.listing()
        except StoreUnavailableError as error:  # the page ops open in an outage: no 500
            store_error = _unavailable(error)
            held, switch = [], self.parts.locks.last_lockdown()
        policy = self.parts.policy()
        journal = self.parts.alerting.journal if self.parts.alerting else None
        alerts = journal.open_alerts() if journal is not None else []
        return {
            "live_calls": stats.get("calls", 0),
            "last_hour_by_decision": [{**row, "per_minute": round(row["calls"] / 60, 2)}
                                      for row in decisions],
            "calls_per_minute": [
                {"minute": datetime.fromtimestamp(start, UTC).isoformat(timespec="minutes"),
                 "start": start, "by_decision": counts}
                for start, counts in charts.minutes_of_the_hour(timeline, now)],
            "top_blocked_rules_24h": blocked,
            "open_alerts": len(alerts),
            "alerts": [alert.as_dict() for alert in alerts[:10]],
            "policy": {"version": policy.version, "source": policy.source,
                       "last_reload": self.parts.last_reload()},
            "store_up": not stats.get("store_down") and store_error is None,
            "store_error": store_error,
            "cdr": stats.get("cdr"), "records_error": records_error,
            "locks": len(held) if store_error is None else None,
            "lockdown": switch is not None,
            "bans": stats.get("bans", 0),
        }

    async def widget(self, group: str, since: float | None,
                     until: float | None) -> list[dict[str, Any]]:
        if group not in WIDGETS:
            raise web.HTTPNotFound(text=f"no widget {group!r} (known: {', '.join(WIDGETS)})")
        reader = await self._open_reader()
        if reader is None:
            return []
        try:
            rows = await reader.summary(group, since, until)
        except CdrUnavailableError:
            await self._drop_reader()
            raise
        if group in BY_CALLS:  # a scanner's thousands of refused calls have no minutes
            rows = sorted(rows, key=lambda row: (-row.calls, -row.blocked, row.key))
        return [{**asdict(row), "minutes": round(row.minutes, 2), "cost": round(row.cost, 4)}
                for row in rows]

    async def alerts(self, request: web.Request) -> dict[str, Any]:
        if "alerts.list" not in self._alerts:
            return {"alerts": [], "snoozed": {}, "stats": None}
        return await self._alerts["alerts.list"]({"limit": 200})

    async def alert_settings(self, _: web.Request) -> dict[str, Any]:
        policy = self.parts.policy()
        return {"values": current_values(policy.alerts), "version": policy.version,
                "editable": list(EDITABLE),
                "policy_file": None if self.parts.policy_path is None
                else str(self.parts.policy_path)}

    async def locks(self, _: web.Request) -> dict[str, Any]:
        return await self._locks["locks.list"]({})

    async def bans(self, _: web.Request) -> dict[str, Any]:
        return {"bans": [asdict(ban) for ban in await self.parts.edge.list()]}

    async def explain(self, request: web.Request) -> dict[str, Any]:
        number = request.query.get("number", "").strip()
        if not number:
            raise web.HTTPBadRequest(text="give a number")
        policy = self.parts.policy()
        name = request.query.get("account") or policy.accounts[0].name
        account = policy.account(name)
        if account is None:
            raise web.HTTPBadRequest(text=f"no account named {name!r} in the policy")
        extension = request.query.get("extension") or None
        when = datetime.now(UTC)
        if request.query.get("at"):
            try:
                when = datetime.fromisoformat(request.query["at"])
            except ValueError:
                raise web.HTTPBadRequest(text="at: not an ISO 8601 time") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=ZoneInfo(account.time_zone))
        dialled = dialled_from_text(number)  # as the SIP path reads a Request-URI
        attempt = CallAttempt(call_id="explain", account=account.name, source="",
                              caller=extension or "", dialled=dialled, extension=extension,
                              when=when)
        decision = evaluate(policy, attempt, self.parts.usage(account.name, dialled))
        return {"account": account.name, "extension": extension, "at": when.isoformat(),
                "text": format_decision(attempt, decision), **decision.as_dict()}

    # -- actions (the CLI's functions; logged with who) -----------------------------------

    async def _lock(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return await self._locks["locks.lock"]({**body, "by": f"web:{caller.user}"})

    async def _unlock(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return await self._locks["locks.unlock"]({**body, "by": f"web:{caller.user}"})

    async def _lockdown(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        on = str(body.get("on", "")).lower() in ("true", "on", "1")
        if on and body.get("confirm") != "LOCKDOWN":
            raise ValueError('switching the kill switch on needs confirm: "LOCKDOWN"')
        return await self._locks["locks.lockdown"]({"on": on, "reason": body.get("reason"),
                                                    "by": f"web:{caller.user}"})

    async def _unban(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return {"removed": await self.parts.edge.unban(str(body["address"]),
                                                       f"web:{caller.user}")}

    async def _acknowledge(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        ids = body.get("ids") or body.get("id")
        return await self._alert_command("alerts.ack", {"ids": ids}, caller)

    async def _edit_alert_settings(self, body: dict[str, Any],
                                   caller: Caller) -> dict[str, Any]:
        path = self.parts.policy_path
        if path is None:
            raise ValueError("the policy file is not known here")
        expected = body.pop("version", None)
        async with self._editing:  # one edit at a time: each sees the file the last wrote
            try:
                edit = await asyncio.to_thread(
                    edit_alerts, path, body, self.parts.unreachable,
                    None if expected in (None, "") else str(expected))
            except ConfigError as error:
                raise ValueError("; ".join(error.problems)) from None
        if edit.changed:
            self.parts.log.warning("policy.edited", path=str(path), by=f"web:{caller.user}",
                                   changed={key: after for key, (_, after)
                                            in edit.changed.items()},
                                   version=edit.version)
            if not self.parts.reload_policy(f"web:{caller.user}"):
                raise ValueError("the policy file was written but the service refused to "
                                 "load it; see the overview's policy card")
        return edit.as_dict()

    async def _snooze(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return await self._alert_command("alerts.snooze", body, caller)

    async def _alert_command(self, name: str, request: dict[str, Any],
                             caller: Caller) -> dict[str, Any]:
        """An alert command of the CLI's, as the web user who asked."""
        if name not in self._alerts:
            raise ValueError("alerts are switched off")
        return await self._alerts[name]({**request, "by": f"web:{caller.user}"})

    # -- plumbing ------------------------------------------------------------------

    async def _open_reader(self) -> CdrSink | None:
        if self._reader is None and self.parts.reader is not None:
            reader = self.parts.reader()
            await reader.open(read_only=True)
            self._reader = reader
        return self._reader

    async def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()

    async def close(self) -> None:
        await self._drop_reader()

    async def _who(self, request: web.Request) -> Caller | None:
        if not self.access.configured:
            raise web.HTTPServiceUnavailable(
                text="no credentials configured: set admin.token or admin.users")
        return await self.access.caller(request)

    def _api(self, handler: Callable[[web.Request], Awaitable[dict[str, Any]]]) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            if await self._who(request) is None:
                return _unauthorized()
            try:
                return web.json_response(await handler(request))
            except (CdrUnavailableError, StoreUnavailableError) as error:
                return web.json_response({"error": _unavailable(error)}, status=503)
        return serve

    async def _widget(self, request: web.Request) -> web.StreamResponse:
        if await self._who(request) is None:
            return _unauthorized()
        since, until = _range(request)
        group = request.match_info["group"]
        try:
            rows = await self.widget(group, since, until)
        except CdrUnavailableError as error:
            return web.json_response({"error": str(error)}, status=503)
        if request.query.get("format") != "csv":
            return web.json_response({"group": group, "since": since, "until": until,
                                      "rows": rows})
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([group, "calls", "answered", "minutes", "cost", "blocked"])
        for row in rows:
            writer.writerow([csv_cell(str(row["key"])), row["calls"], row["answered"],
                             row["minutes"], row["cost"], row["blocked"]])
        return web.Response(text=out.getvalue(), content_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="sipguard-{group}.csv"'})

    def _action(self, action: Callable[[dict[str, Any], Caller],
                                       Awaitable[dict[str, Any]]]) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            caller = await self._who(request)
            if caller is None:
                return _unauthorized()
            form = request.content_type != "application/json"
            try:
                body = dict(await request.post()) if form else await request.json()
            except ValueError:
                return web.json_response({"error": "not JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "a JSON object, please"}, status=400)
            body = {str(key): _plain(value) for key, value in body.items()}
            given = body.pop("csrf", None)
            if self.access.forged(request, caller, given if isinstance(given, str) else None):
                self.parts.log.warning("admin.forged", path=request.path, user=caller.user,
                                       remote=request.remote)
                return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
            try:
                result = await action(body, caller)
            except StoreUnavailableError as error:
                if form:
                    raise web.HTTPSeeOther(
                        f"{_back(request)}?error={quote(_unavailable(error))}") from None
                return web.json_response({"error": _unavailable(error)}, status=503)
            except (ValueError, KeyError) as error:
                if form:
                    raise web.HTTPSeeOther(
                        f"{_back(request)}?error={quote(str(error))}") from None
                return web.json_response({"error": str(error)}, status=400)
            self.parts.log.warning("admin.action", action=request.path.rsplit("/", 1)[1],
                                   user=caller.user, how=caller.how, remote=request.remote,
                                   **{key: value for key, value in body.items()
                                      if key in ("account", "scope", "on", "address", "type",
                                                 "reason", "id", "ids")})
            if form:
                raise web.HTTPSeeOther(_back(request))
            return web.json_response(result)
        return serve

    # -- pages ---------------------------------------------------------------------

    def _page(self, render: Callable[[web.Request, Caller],
                                     Awaitable[str]]) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            caller = await self._who(request)
            if caller is None:
                if request.headers.get("Authorization"):
                    return _unauthorized()
                raise web.HTTPSeeOther("/login")
            try:
                text = await render(request, caller)
            except StoreUnavailableError as error:
                return web.Response(text=pages.unavailable(_unavailable(error), caller),
                                    status=503, content_type="text/html",
                                    headers=pages.SECURITY_HEADERS)
            return web.Response(text=text, content_type="text/html",
                                headers=pages.SECURITY_HEADERS)
        return serve

    async def _overview_page(self, request: web.Request, caller: Caller) -> str:
        return pages.overview(await self.overview(request), caller)

    async def _widgets_page(self, request: web.Request, caller: Caller) -> str:
        given = {key: request.query.get(key, "") for key in ("since", "until")}
        given["since"] = given["since"] or "24h"
        try:
            since, until = _range(request)
        except web.HTTPBadRequest as problem:
            return pages.widgets({}, given, caller, problem.text)
        tables = {}
        for group in WIDGETS:
            try:
                tables[group] = await self.widget(group, since, until)
            except CdrUnavailableError as error:
                tables[group] = [{"key": f"records unavailable: {error}", "calls": 0,
                                  "answered": 0, "minutes": 0, "cost": 0, "blocked": 0}]
        return pages.widgets(tables, given, caller)

    async def _alerts_page(self, request: web.Request, caller: Caller) -> str:
        return pages.alerts(await self.alerts(request), await self.alert_settings(request),
                            caller, request.query.get("error"))

    async def _locks_page(self, request: web.Request, caller: Caller) -> str:
        return pages.locks(await self.locks(request), await self.bans(request), caller,
                           request.query.get("error"))

    async def _explain_page(self, request: web.Request, caller: Caller) -> str:
        result, error = None, None
        if request.query.get("number"):
            try:
                result = await self.explain(request)
            except web.HTTPBadRequest as problem:
                error = problem.text
        return pages.explain(dict(request.query), result, error, caller,
                             [account.name for account in self.parts.policy().accounts])

    async def _css(self, _: web.Request) -> web.Response:
        return web.Response(text=pages.CSS, content_type="text/css",
                            headers={"Cache-Control": "max-age=3600"})

    async def _login_form(self, request: web.Request) -> web.Response:
        return web.Response(text=pages.login(request.query.get("failed") is not None),
                            content_type="text/html", headers=pages.SECURITY_HEADERS)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if not self.access.configured or not self.access.settings.users:
            raise web.HTTPServiceUnavailable(text="no users configured (admin.users)")
        remote = request.remote or "?"
        if self.access.blocked(remote):
            return web.Response(status=429, text="too many failed logins; try later")
        form = await request.post()
        user, password = str(form.get("user", "")), str(form.get("password", ""))
        if not await self.access.password_ok(user, password):
            self.access.failed(remote)
            self.parts.log.warning("admin.login_failed", user=user, remote=remote)
            raise web.HTTPSeeOther("/login?failed=1")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, self.access.open_session(user), httponly=True,
                            samesite="Strict", path="/")
        self.parts.log.info("admin.login", user=user, remote=remote)
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        self.access.close_session(request)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def _plain(value: Any) -> Any:
    """A form's or a JSON body's value as text, a number, true/false or a list of text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list):
        return [str(item) for item in value]
    return str(value)


def _unavailable(error: Exception) -> str:
    if isinstance(error, StoreUnavailableError):
        return f"the state store does not answer ({error or 'unavailable'}); try again"
    return str(error)


def _unauthorized() -> web.Response:
    return web.json_response({"error": "authentication required"}, status=401, headers={
        "WWW-Authenticate": 'Bearer realm="sipguard", Basic realm="sipguard"'})


def _back(request: web.Request) -> str:
    """The page a form came from (sipguard's own pages only)."""
    referer = request.headers.get("Referer", "")
    for page in ("/locks", "/alerts"):
        if referer.endswith(page) or f"{page}?" in referer:
            return page
    return "/locks"


def _range(request: web.Request) -> tuple[float | None, float | None]:
    """``since`` and ``until`` as the CLI reads them (ISO 8601 or an age such as 24h)."""
    now = time.time()
    try:
        since = parse_time(request.query.get("since") or "24h", now)
        until = parse_time(request.query.get("until") or None, now)
    except ValueError as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    return since, until
