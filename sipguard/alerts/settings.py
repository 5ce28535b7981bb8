"""The ``alerts`` section of sipguard.yaml: where alerts can be sent.

The policy says which alerts go to whom (``email:ADDRESS``, ``sms:+NUMBER``,
``webhook:NAME``, ``log``); this section says how to reach them: the SMTP
server, the SMS provider's HTTP API, and the named webhooks. Every delivery
has a timeout and a number of retries, and runs beside the calls, never in
their way.

    alerts:
      check_seconds: 30          # how often traffic is compared with its baseline
      journal: ../var/alerts.jsonl   # the alerts raised and acknowledged, kept across restarts
      email: {host: 127.0.0.1, port: 25, sender: sipguard@pbx.example, starttls: false}
      sms: {url: "https://sms.example/send", headers: {Authorization: "Bearer ..."}}
      webhooks:
        noc: {url: "https://noc.example/hooks/sipguard", timeout: 5, retries: 3}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from sipguard.policy import AlertPolicy, AlertType
from sipguard.schema import Problems, choice, integer, line_of, number, section_of, unknown_keys

SECTION_KEYS = ("enabled", "check_seconds", "queue", "journal", "email", "sms", "webhooks")
DEFAULT_JOURNAL = "../var/alerts.jsonl"  # relative to the configuration file
DELIVERY_KEYS = ("timeout", "retries", "retry_seconds")
EMAIL_KEYS = ("host", "port", "sender", "username", "password", "security", *DELIVERY_KEYS)
HTTP_KEYS = ("url", "headers", *DELIVERY_KEYS)
SMS_KEYS = (*HTTP_KEYS, "to_field", "text_field")


@dataclass(frozen=True, slots=True)
class Delivery:
    """How hard a channel tries: seconds per attempt, retries after the first, first pause
    (doubled after each retry)."""

    timeout: float = 10.0
    retries: int = 3
    retry_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """The SMTP server alerts are mailed through."""

    host: str
    port: int = 25
    sender: str = "sipguard@localhost"
    username: str | None = None
    password: str | None = None
    security: str = "none"  # none | starttls | tls
    delivery: Delivery = field(default_factory=Delivery)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """A webhook, or the SMS provider's API: JSON POSTed to a URL."""

    url: str
    headers: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    delivery: Delivery = field(default_factory=Delivery)
    to_field: str = "to"  # SMS: the JSON field of the phone number
    text_field: str = "text"  # SMS: the JSON field of the message


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """The whole section."""

    enabled: bool = True
    check_seconds: float = 30.0
    queue: int = 1000  # alerts waiting per channel; past that new ones are dropped (counted)
    email: EmailSettings | None = None
    sms: HttpSettings | None = None
    webhooks: MappingProxyType[str, HttpSettings] = field(
        default_factory=lambda: MappingProxyType({}))
    journal: Path | None = None  # None: recent alerts in memory only

    def unknown_contacts(self, contacts: tuple[str, ...]) -> list[str]:
        """The contacts this configuration cannot reach."""
        missing = []
        for contact in contacts:
            kind, _, name = contact.partition(":")
            if ((kind == "email" and self.email is None) or (kind == "sms" and self.sms is None)
                    or (kind == "webhook" and name not in self.webhooks)):
                missing.append(contact)
        return missing

    def unreachable(self, alerts: AlertPolicy) -> list[str]:
        """The contacts a policy's alerts section names (its own and its types') that
        this configuration has no channel for."""
        contacts = {*alerts.contacts, *(contact for alert_type in AlertType
                                        for contact in alerts.contacts_for(alert_type))}
        return self.unknown_contacts(tuple(sorted(contacts)))

    def unreachable_problems(self, alerts: AlertPolicy, config: Path) -> list[str]:
        """``unreachable`` as problems that refuse an edit of the policy's contacts."""
        return [f"alerts: no channel in {config} for {contact} (add it to that file's "
                "alerts section first)" for contact in self.unreachable(alerts)]


def load_alert_settings(data: dict[str, Any], problems: Problems,
                        path: Path | None = None) -> AlertSettings:
    """Read the section (defaults when absent: alerts go to the log only). ``path`` is the
    configuration file's, which the journal's path is relative to."""
    section = section_of(data, "alerts", problems)
    unknown_keys(section, "alerts", SECTION_KEYS, problems)
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(line_of(section, "enabled"), "alerts.enabled", "must be true or false")
        enabled = True
    webhooks: dict[str, HttpSettings] = {}
    raw_hooks = section_of(section, "webhooks", problems, "alerts.webhooks")
    for name, item in raw_hooks.items():
        where = f"alerts.webhooks.{name}"
        if not isinstance(item, dict):
            problems.add(line_of(raw_hooks, name), where, "must be a mapping with a url")
            continue
        hook = _http(item, where, HTTP_KEYS, problems)
        if hook is not None:
            webhooks[str(name)] = hook
    sms = email = None
    raw_sms = section_of(section, "sms", problems, "alerts.sms")
    if raw_sms:
        sms = _http(raw_sms, "alerts.sms", SMS_KEYS, problems)
    raw_email = section_of(section, "email", problems, "alerts.email")
    if raw_email:
        email = _email(raw_email, problems)
    journal = None
    raw_journal = section.get("journal", DEFAULT_JOURNAL)
    if not isinstance(raw_journal, str) or not raw_journal:
        problems.add(line_of(section, "journal"), "alerts.journal", "must be a file path")
    elif path is not None:
        journal = (path.parent / raw_journal).resolve()
    return AlertSettings(
        journal=journal,
        enabled=enabled,
        check_seconds=number(section, "check_seconds", 30.0, problems, "alerts", minimum=0.1),
        queue=integer(section, "queue", 1000, problems, "alerts", minimum=1),
        email=email, sms=sms, webhooks=MappingProxyType(webhooks))


def _delivery(section: dict[str, Any], where: str, problems: Problems) -> Delivery:
    defaults = Delivery()
    return Delivery(
        timeout=number(section, "timeout", defaults.timeout, problems, where, minimum=0.1),
        retries=integer(section, "retries", defaults.retries, problems, where, minimum=0,
                        maximum=10),
        retry_seconds=number(section, "retry_seconds", defaults.retry_seconds, problems, where,
                             minimum=0.0))


def _http(section: dict[str, Any], where: str, keys: tuple[str, ...],
          problems: Problems) -> HttpSettings | None:
    unknown_keys(section, where, keys, problems)
    url = section.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.add(line_of(section, "url"), f"{where}.url",
                     "must be an http:// or https:// URL")
        return None
    headers = section_of(section, "headers", problems, f"{where}.headers")
    for name, value in headers.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            problems.add(line_of(headers, name), f"{where}.headers.{name}", "must be text")
    fields = {}
    for key in ("to_field", "text_field"):
        value = section.get(key, key.split("_")[0])
        if not isinstance(value, str) or not value:
            problems.add(line_of(section, key), f"{where}.{key}", "must be a JSON field name")
            value = key.split("_")[0]
        fields[key] = value
    return HttpSettings(
        url=str(url),
        headers=MappingProxyType({str(name): str(value) for name, value in headers.items()}),
        delivery=_delivery(section, where, problems), **fields)


def _email(section: dict[str, Any], problems: Problems) -> EmailSettings | None:
    where = "alerts.email"
    unknown_keys(section, where, EMAIL_KEYS, problems)
    host = section.get("host")
    if not isinstance(host, str) or not host:
        problems.add(line_of(section, "host"), f"{where}.host",
                     "must name the SMTP server (host name or IP address)")
        return None
    texts: dict[str, str | None] = {}
    for key in ("sender", "username", "password"):
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            problems.add(line_of(section, key), f"{where}.{key}", "must be text")
            value = None
        texts[key] = value
    if (texts["username"] is None) != (texts["password"] is None):
        problems.add(line_of(section, "username" if texts["username"] is not None
                             else "password"),
                     where, "username and password go together")
    security = choice(section, "security", "none", ("none", "starttls", "tls"), problems, where)
    return EmailSettings(
        host=host,
        port=integer(section, "port", 465 if security == "tls" else 25, problems, where,
                     minimum=1, maximum=65535),
        sender=texts["sender"] or "sipguard@localhost",
        username=texts["username"], password=texts["password"], security=security,
        delivery=_delivery(section, where, problems))
