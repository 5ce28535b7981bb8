"""Who may use the dashboard and its JSON API, and the defence against forged requests.

Three ways in, all from the configuration (``admin.token``, ``admin.users``); there
are no default credentials, and without any the dashboard and the API are closed:

- ``Authorization: Bearer TOKEN``: scripts and the JSON API. A browser never sends
  it by itself, so such requests need nothing more.
- ``Authorization: Basic user:password``: curl. A browser may send these on its own
  once it has them, so a POST must also carry an ``X-Sipguard-CSRF`` header, which
  no other site's page can add without a CORS preflight sipguard never grants.
- a session cookie, after the login form: the browser. Every POST must carry the
  session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``). The cookie
  is HttpOnly and SameSite=Strict.

Failed logins (the form, a wrong token, a wrong Basic password) are counted per
remote address: past ``MAX_FAILURES`` within ``FAILURE_WINDOW`` seconds that address
gets 429 for the rest of the window, whatever credentials it then sends.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from sipguard.config import AdminSettings
from sipguard.pin import verify_pin

COOKIE = "sipguard_session"
MAX_FAILURES = 5
FAILURE_WINDOW = 600.0
MAX_SESSIONS = 1000


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    csrf: str
    expires: float


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, and how."""

    user: str
    how: str  # token | basic | session
    csrf: str | None = None  # the session's token


class Access:
    """Checks credentials, keeps sessions, counts failed logins."""

    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}

    @property
    def configured(self) -> bool:
        return self.settings.has_credentials

    async def caller(self, request: web.Request) -> Caller | None:
        """Who is asking (None: nobody the configuration knows)."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = self.settings.token
        remote = request.remote or "?"
        if scheme.lower() in ("bearer", "basic") and self.blocked(remote):
            # Guessing through the API is stopped as guessing through the login form is.
            raise web.HTTPTooManyRequests(text="too many failed logins; try later")
        if scheme.lower() == "bearer" and token is not None:
            if hmac.compare_digest(value.strip().encode(), token.encode()):
                return Caller("token", "token")
            self.failed(remote)
            return None
        if scheme.lower() == "basic":
            import base64  # noqa: PLC0415 - only for Basic

            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeError):
                self.failed(remote)
                return None
            if await self.password_ok(user, password):
                return Caller(user, "basic")
            self.failed(remote)
            return None
        session_id = request.cookies.get(COOKIE)
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if session.expires < time.time():
            self._sessions.pop(session_id or "", None)
            return None
        return Caller(session.user, "session", session.csrf)

    async def password_ok(self, user: str, password: str) -> bool:
        stored = self.settings.users.get(user)
        if stored is None:
            await asyncio.to_thread(verify_pin, password, _DUMMY)  # the same time either way
            return False
        return await asyncio.to_thread(verify_pin, password, stored)

    def forged(self, request: web.Request, caller: Caller, form_csrf: str | None) -> bool:
        """Whether a POST lacks what proves it came from sipguard's own page."""
        if caller.how == "token":
            return False
        if caller.how == "basic":
            return "X-Sipguard-CSRF" not in request.headers
        given = form_csrf or request.headers.get("X-CSRF-Token") or ""
        return caller.csrf is None or not hmac.compare_digest(given.encode(),
                                                              caller.csrf.encode())

    def blocked(self, remote: str) -> bool:
        now = time.time()
        recent = [at for at in self._failures.get(remote, []) if at > now - FAILURE_WINDOW]
        self._failures[remote] = recent
        return len(recent) >= MAX_FAILURES

    def failed(self, remote: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()
        self._failures.setdefault(remote, []).append(time.time())

    def open_session(self, user: str) -> str:
        now = time.time()
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions = {key: value for key, value in self._sessions.items()
                              if value.expires > now}
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(user, secrets.token_urlsafe(24),
                                             now + self.settings.session_hours * 3600)
        return session_id

    def close_session(self, request: web.Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE) or "", None)


# A hash of nothing anyone types, checked for unknown users so that they take as long.
_DUMMY = ("scrypt$16384$8$1$c2lwZ3VhcmQtZHVtbXktc2FsdA==$"
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
