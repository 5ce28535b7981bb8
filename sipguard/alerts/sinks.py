"""Where alerts go: the AlertSink Protocol and its backends.

- :class:`WebhookSink`: the alert as JSON, POSTed to a URL (aiohttp);
- :class:`SmsSink`: a short text POSTed as JSON to an SMS provider's HTTP API,
  one request per phone number;
- :class:`EmailSink`: a plain-text email through an SMTP server (aiosmtplib);
- :class:`LogSink`: a log line.

A sink makes one attempt with a timeout and raises :class:`DeliveryError` when
it fails; retrying is the dispatcher's business (sipguard.alerts.dispatch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import aiohttp
import aiosmtplib

from sipguard.alerts.model import Alert
from sipguard.alerts.settings import EmailSettings, HttpSettings

SMS_LENGTH = 320  # characters: two SMS segments at most
USER_AGENT = "sipguard-alerts"


class DeliveryError(Exception):
    """One attempt to deliver an alert failed. ``final`` when trying again cannot help
    (the other side refused the request itself)."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


class AlertSink(Protocol):
    """One way of telling people."""

    name: str

    async def send(self, alert: Alert, recipients: Sequence[str]) -> None:
        """Deliver ``alert`` to ``recipients`` (addresses, numbers; none for a webhook)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class _Http:
    """A lazily made aiohttp session with the channel's timeout."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.delivery.timeout),
                headers={"User-Agent": USER_AGENT, **self.settings.headers})
        return self._session

    async def post(self, payload: dict[str, Any]) -> None:
        try:
            async with self.session().post(self.settings.url, json=payload) as response:
                if 200 <= response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:200]
                # 4xx other than 408/429: the request itself is refused; sending it again
                # will not help.
                final = 400 <= response.status < 500 and response.status not in (408, 429)
                raise DeliveryError(f"HTTP {response.status} from {self.settings.url}: {text}",
                                    final=final)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise DeliveryError(f"{self.settings.url}: {error!r}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class WebhookSink:
    """POSTs the alert as JSON (``Alert.as_dict``)."""

    def __init__(self, name: str, settings: HttpSettings) -> None:
        self.name = f"webhook:{name}"
        self._http = _Http(settings)

    async def send(self, alert: Alert, recipients: Sequence[str]) -> None:
        await self._http.post(alert.as_dict())

    async def close(self) -> None:
        await self._http.close()


class SmsSink:
    """POSTs ``{to_field: number, text_field: text}`` for each number."""

    name = "sms"

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._http = _Http(settings)
        # Numbers an alert has reached, while it is being retried: a retry after the
        # second number failed does not text the first one again.
        self._reached: dict[str, set[str]] = {}

    async def send(self, alert: Alert, recipients: Sequence[str]) -> None:
        text = alert.subject
        if len(text) > SMS_LENGTH:
            text = text[:SMS_LENGTH - 1] + "…"
        if len(self._reached) > 1000:
            self._reached.pop(next(iter(self._reached)))
        reached = self._reached.setdefault(alert.id, set())
        for number in recipients:
            if number in reached:
                continue
            await self._http.post({self.settings.to_field: number,
                                   self.settings.text_field: text})
            reached.add(number)
        self._reached.pop(alert.id, None)

    async def close(self) -> None:
        await self._http.close()


class EmailSink:
    """One plain-text email to every recipient of the alert."""

    name = "email"

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings

    def message(self, alert: Alert, recipients: Sequence[str]) -> EmailMessage:
        """The email (kept separate for the tests)."""
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = alert.subject
        message["Date"] = formatdate(alert.at, usegmt=True)
        message["Message-ID"] = make_msgid("sipguard-alert")
        details = "\n".join(f"  {name}: {value}" for name, value in alert.details.items())
        message.set_content(
            f"{alert.text}\n\nlevel: {alert.level.value}\ntype: {alert.type.value}\n"
            f"account: {alert.account or '-'}\njurisdiction: {alert.jurisdiction or '-'}\n"
            f"at: {alert.as_dict()['at']}\nalert id: {alert.id}\n"
            + (f"\ndetails:\n{details}\n" if details else "")
            + "\n-- \nsipguard: snooze this type for the rest of the day with "
            f"`sipguard alerts snooze {alert.type.value}`\n")
        return message

    async def send(self, alert: Alert, recipients: Sequence[str]) -> None:
        settings = self.settings
        try:
            await aiosmtplib.send(
                self.message(alert, recipients), hostname=settings.host, port=settings.port,
                username=settings.username, password=settings.password,
                use_tls=settings.security == "tls", start_tls=settings.security == "starttls",
                timeout=settings.delivery.timeout)
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise DeliveryError(f"SMTP {settings.host}:{settings.port}: {error}",
                                final=True) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryError(f"SMTP {settings.host}:{settings.port}: {error!r}") from error

    async def close(self) -> None:
        return None


class LogSink:
    """The alert as one log line (``alert.sent``)."""

    name = "log"

    def __init__(self, log: Any) -> None:
        self.log = log

    async def send(self, alert: Alert, recipients: Sequence[str]) -> None:
        method = self.log.error if alert.level.value == "urgent" else self.log.warning
        method("alert", **{name: value for name, value in alert.as_dict().items()
                           if name != "details"}, details=json.dumps(dict(alert.details)))

    async def close(self) -> None:
        return None
