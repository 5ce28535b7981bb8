"""Delivering alerts (sipguard.alerts.sinks, sipguard.alerts.dispatch) to real servers on
loopback: an aiohttp web server for webhooks and the SMS API, an aiosmtpd SMTP server for
email, a silent server for timeouts and a bound but closed port for refused connections."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import MappingProxyType
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from sipguard.alerts.dispatch import Dispatcher
from sipguard.alerts.model import Alert
from sipguard.alerts.settings import AlertSettings, Delivery, EmailSettings, HttpSettings
from sipguard.alerts.sinks import SMS_LENGTH, DeliveryError, LogSink, SmsSink, WebhookSink
from sipguard.policy.alerting import AlertType, Level

T = TypeVar("T")
AT = 1715839200.0  # 2024-05-16 06:00:00 UTC
FAST = Delivery(timeout=5.0, retries=3, retry_seconds=0.01)


class Log:
    """A logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _keep(self, level: str, event: str, /, fields: dict[str, Any]) -> None:
        self.lines.append((level, event, fields))

    def info(self, event: str, /, **fields: Any) -> None:
        self._keep("info", event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._keep("warning", event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self._keep("error", event, fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        self._keep("exception", event, fields)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.lines if name == event]


def _alert(number: int = 1, level: Level = Level.URGENT, text: str | None = None) -> Alert:
    return Alert(
        AlertType.TRAFFIC, level,
        text or ("International minutes for account acme are 180% above normal for a "
                 "Thursday 02:00–03:00 (42 min vs 15 min)"),
        f"traffic:acme:jurisdiction:international:minutes:{number}", "acme", "international",
        MappingProxyType({"current": 42.0, "normal": 15.0, "percent_above": 180}),
        at=AT, id=f"{number:032x}")


def _run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(30):
            return await main()

    return asyncio.run(bounded())


async def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    """Wait for a condition (a bound against hanging, not a measure of speed)."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


class Hook:
    """An HTTP endpoint that answers with the given statuses in turn, then 200."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), await request.json()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"status": status}, status=status)

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.requests]


@contextlib.asynccontextmanager
async def _web(hook: Hook) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 (port 0); yields its base URL."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _silent() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A TCP server that accepts connections and never says a word."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client gives up

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        for writer in connections:
            writer.close()
        server.close()


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but not listening: connections to it are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler that keeps every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"


@contextlib.contextmanager
def _smtp() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def _webhooks(url: str, delivery: Delivery = FAST, **more: Any) -> MappingProxyType[str, Any]:
    return MappingProxyType({"noc": HttpSettings(f"{url}/hooks/sipguard", delivery=delivery,
                                                 **more)})


async def _dispatching(settings: AlertSettings, log: Log) -> Dispatcher:
    dispatcher = Dispatcher(settings, log)
    dispatcher.start()
    return dispatcher


# -- webhook -----------------------------------------------------------------------------


def test_webhook_receives_the_alert_as_json():
    """A webhook gets Alert.as_dict() as JSON, with the channel's headers."""
    hook = Hook()
    log = Log()
    alert = _alert()

    async def main() -> None:
        async with _web(hook) as url:
            settings = AlertSettings(webhooks=_webhooks(
                url, headers=MappingProxyType({"Authorization": "Bearer s3cret"})))
            dispatcher = await _dispatching(settings, log)
            assert dispatcher.submit(alert, ["webhook:noc"]) == []
            await _until(lambda: dispatcher.channels["webhook:noc"].stats.sent == 1)
            await dispatcher.stop()
            stats = dispatcher.stats()["webhook:noc"]
            assert stats == {"sent": 1, "failed": 0, "dropped": 0, "queued": 0}

    _run(main)
    [(path, headers, body)] = hook.requests
    assert path == "/hooks/sipguard"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["User-Agent"] == "sipguard-alerts"
    assert headers["Content-Type"].startswith("application/json")
    assert body == alert.as_dict()
    assert body == {
        "id": f"{1:032x}", "type": "traffic", "level": "urgent", "text": alert.text,
        "key": "traffic:acme:jurisdiction:international:minutes:1", "account": "acme",
        "jurisdiction": "international",
        "details": {"current": 42.0, "normal": 15.0, "percent_above": 180},
        "at": "2024-05-16T06:00:00+00:00"}
    [delivered] = log.events("alert.delivered")
    assert delivered["channel"] == "webhook:noc" and delivered["attempts"] == 1


def test_same_webhook_named_twice_gets_the_alert_once():
    """A contact listed twice is one delivery."""
    hook = Hook()

    async def main() -> None:
        async with _web(hook) as url:
            dispatcher = await _dispatching(AlertSettings(webhooks=_webhooks(url)), Log())
            dispatcher.submit(_alert(), ["webhook:noc", "webhook:noc"])
            await _until(lambda: dispatcher.channels["webhook:noc"].queue.qsize() == 0
                         and dispatcher.channels["webhook:noc"].stats.sent >= 1)
            await dispatcher.stop()

    _run(main)
    assert len(hook.requests) == 1


# -- SMS -----------------------------------------------------------------------------------


def test_sms_posts_to_and_text_for_each_number():
    """The SMS channel POSTs {to, text} once per number; the text is the alert's subject."""
    hook = Hook()
    alert = _alert()

    async def main() -> None:
        async with _web(hook) as url:
            settings = AlertSettings(sms=HttpSettings(f"{url}/send", delivery=FAST))
            dispatcher = await _dispatching(settings, Log())
            assert dispatcher.submit(alert, ["sms:+15551230001", "log",
                                             "sms:+442079460321"]) == []
            await _until(lambda: dispatcher.channels["sms"].stats.sent == 1)
            await dispatcher.stop()

    _run(main)
    assert hook.bodies() == [{"to": "+15551230001", "text": alert.subject},
                             {"to": "+442079460321", "text": alert.subject}]
    assert alert.subject.startswith("[sipguard urgent] International minutes")


def test_an_sms_retry_texts_only_the_numbers_not_reached_yet():
    """When the second number fails (503) the retry sends to it alone: the first number
    is not texted twice."""
    hook = Hook(statuses=(200, 503))
    alert = _alert()

    async def main() -> None:
        async with _web(hook) as url:
            settings = AlertSettings(sms=HttpSettings(f"{url}/send", delivery=FAST))
            dispatcher = await _dispatching(settings, Log())
            dispatcher.submit(alert, ["sms:+15551230001", "sms:+442079460321"])
            await _until(lambda: dispatcher.channels["sms"].stats.sent == 1)
            await dispatcher.stop()

    _run(main)
    assert [body["to"] for body in hook.bodies()] == [
        "+15551230001", "+442079460321", "+442079460321"]


def test_sms_field_names_and_length():
    """The provider's field names are used, and a long text is cut to two SMS segments."""
    hook = Hook()
    long = _alert(text="Minutes to CU (+53) " + "x" * 600)

    async def main() -> None:
        async with _web(hook) as url:
            sink = SmsSink(HttpSettings(f"{url}/send", to_field="msisdn", text_field="body",
                                        delivery=FAST))
            try:
                await sink.send(long, ["+15551230001"])
            finally:
                await sink.close()

    _run(main)
    [body] = hook.bodies()
    assert set(body) == {"msisdn", "body"} and body["msisdn"] == "+15551230001"
    assert len(body["body"]) == SMS_LENGTH and body["body"].endswith("…")
    assert body["body"].startswith("[sipguard urgent] Minutes to CU (+53) xxx")


# -- retries, refusals and timeouts ---------------------------------------------------------


def test_retries_after_server_errors_until_success():
    """Two 500s, then 200: three attempts, the pause doubling, one alert sent."""
    hook = Hook(statuses=(500, 500))
    log = Log()

    async def main() -> None:
        async with _web(hook) as url:
            dispatcher = await _dispatching(AlertSettings(webhooks=_webhooks(url)), log)
            dispatcher.submit(_alert(), ["webhook:noc"])
            channel = dispatcher.channels["webhook:noc"]
            await _until(lambda: channel.stats.sent == 1)
            assert (channel.stats.attempts, channel.stats.failed) == (3, 0)
            await dispatcher.stop()

    _run(main)
    assert len(hook.requests) == 3
    assert all(body == hook.bodies()[0] for body in hook.bodies())  # the same alert each time
    failures = log.events("alert.delivery_failed")
    assert [(entry["attempt"], entry["retry_in"]) for entry in failures] == [(1, 0.01),
                                                                            (2, 0.02)]
    assert "HTTP 500" in failures[0]["error"]
    assert log.events("alert.undelivered") == []


@pytest.mark.parametrize(
    ("status", "requests", "sent", "failed"),
    [(400, 1, 0, 1), (404, 1, 0, 1), (401, 1, 0, 1), (408, 2, 1, 0), (429, 2, 1, 0),
     (503, 2, 1, 0)],
)
def test_client_errors_are_final_but_408_and_429_are_retried(status: int, requests: int,
                                                            sent: int, failed: int):
    """A 4xx refuses the request itself: no retry (except 408 and 429, which are retried)."""
    hook = Hook(statuses=(status,))
    log = Log()

    async def main() -> None:
        async with _web(hook) as url:
            dispatcher = await _dispatching(AlertSettings(webhooks=_webhooks(url)), log)
            dispatcher.submit(_alert(), ["webhook:noc"])
            channel = dispatcher.channels["webhook:noc"]
            await _until(lambda: channel.stats.sent + channel.stats.failed == 1)
            assert (channel.stats.sent, channel.stats.failed) == (sent, failed)
            assert channel.stats.attempts == requests
            await dispatcher.stop()

    _run(main)
    assert len(hook.requests) == requests
    if failed:
        [undelivered] = log.events("alert.undelivered")
        assert undelivered["attempts"] == 1 and undelivered["channel"] == "webhook:noc"
        assert log.events("alert.delivery_failed")[0]["retry_in"] is None


def test_a_server_that_never_answers_times_out_and_is_given_up_on():
    """Each attempt ends with its timeout; after the retries the alert counts as failed."""
    log = Log()

    async def main() -> None:
        async with _silent() as (port, connections):
            url = f"http://127.0.0.1:{port}"
            delivery = Delivery(timeout=0.3, retries=1, retry_seconds=0.01)
            sink = WebhookSink("noc", HttpSettings(f"{url}/x", delivery=delivery))
            try:
                # The sink's own timeout ends the attempt (well before this backstop).
                with pytest.raises(DeliveryError, match=r"127\.0\.0\.1"):
                    await asyncio.wait_for(sink.send(_alert(), ()), timeout=10.0)
            finally:
                await sink.close()

            dispatcher = await _dispatching(AlertSettings(webhooks=_webhooks(url, delivery)),
                                            log)
            dispatcher.submit(_alert(), ["webhook:noc"])
            channel = dispatcher.channels["webhook:noc"]
            await _until(lambda: channel.stats.failed == 1)
            assert (channel.stats.sent, channel.stats.attempts) == (0, 2)
            assert dispatcher.stats()["webhook:noc"]["failed"] == 1
            assert len(connections) >= 3  # one for the sink alone, two for the dispatcher
            await dispatcher.stop()

    _run(main)
    assert [entry["attempt"] for entry in log.events("alert.delivery_failed")] == [1, 2]
    [undelivered] = log.events("alert.undelivered")
    assert undelivered["attempts"] == 2 and undelivered["level"] == "urgent"


# -- email ---------------------------------------------------------------------------------


def test_email_reaches_a_real_smtp_server():
    """One email to every address of the alert: To, Subject, and the text in the body."""
    alert = _alert()
    log = Log()
    with _smtp() as (port, mailbox):
        async def main() -> None:
            settings = AlertSettings(email=EmailSettings(
                "127.0.0.1", port, sender="sipguard@pbx.example",
                delivery=Delivery(timeout=5.0, retries=0)))
            dispatcher = await _dispatching(settings, log)
            assert dispatcher.submit(alert, ["email:noc@example.com", "log",
                                             "email:oncall@example.com"]) == []
            await _until(lambda: dispatcher.channels["email"].stats.sent == 1)
            await dispatcher.stop()

        _run(main)
        [envelope] = mailbox.envelopes
    assert envelope.mail_from == "sipguard@pbx.example"
    assert envelope.rcpt_tos == ["noc@example.com", "oncall@example.com"]
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message["To"] == "noc@example.com, oncall@example.com"
    assert message["From"] == "sipguard@pbx.example"
    assert message["Subject"].startswith("[sipguard urgent]")
    assert message["Subject"] == alert.subject
    body = message.get_body(("plain",)).get_content()
    assert alert.text in body
    assert f"alert id: {alert.id}" in body and "account: acme" in body
    assert "percent_above: 180" in body
    assert "sipguard alerts snooze traffic" in body
    # The log channel had the alert too.
    [line] = log.events("alert")
    assert line["text"] == alert.text and json.loads(line["details"])["normal"] == 15.0


def test_refused_smtp_fails_and_is_counted_while_the_webhook_delivers():
    """A dead SMTP port fails the email (counted) and the webhook still gets the alert."""
    hook = Hook()
    log = Log()

    async def main() -> None:
        with _refusing_port() as dead:
            async with _web(hook) as url:
                settings = AlertSettings(
                    email=EmailSettings("127.0.0.1", dead,
                                        delivery=Delivery(timeout=2.0, retries=1,
                                                          retry_seconds=0.01)),
                    webhooks=_webhooks(url))
                dispatcher = await _dispatching(settings, log)
                assert dispatcher.submit(_alert(), ["email:noc@example.com",
                                                    "webhook:noc"]) == []
                await _until(lambda: dispatcher.channels["email"].stats.failed == 1
                             and dispatcher.channels["webhook:noc"].stats.sent == 1)
                stats = dispatcher.stats()
                assert stats["email"]["sent"] == 0 and stats["email"]["failed"] == 1
                assert stats["webhook:noc"]["sent"] == 1
                await dispatcher.stop()

    _run(main)
    assert len(hook.requests) == 1
    [undelivered] = log.events("alert.undelivered")
    assert undelivered["channel"] == "email" and undelivered["attempts"] == 2
    assert "SMTP 127.0.0.1" in log.events("alert.delivery_failed")[0]["error"]


def test_a_stuck_channel_fills_its_own_queue_and_holds_up_no_other():
    """An SMTP server that never answers: email has one alert in flight, its queue fills and
    the rest are dropped (counted), while the webhook delivers every alert."""
    hook = Hook()
    log = Log()

    async def main() -> None:
        async with _silent() as (port, _connections), _web(hook) as url:
            settings = AlertSettings(
                queue=2,
                email=EmailSettings("127.0.0.1", port,
                                    delivery=Delivery(timeout=20.0, retries=0)),
                webhooks=_webhooks(url))
            dispatcher = await _dispatching(settings, log)
            for number in range(1, 6):
                dispatcher.submit(_alert(number), ["email:noc@example.com", "webhook:noc"])
                await _until(lambda number=number: len(hook.requests) == number)
            email_stats = dispatcher.channels["email"].stats
            assert (email_stats.sent, email_stats.failed, email_stats.dropped) == (0, 0, 2)
            assert dispatcher.stats()["email"]["queued"] == 2
            assert dispatcher.stats()["webhook:noc"] == {"sent": 5, "failed": 0, "dropped": 0,
                                                         "queued": 0}
            await dispatcher.stop(grace=0.05)

    _run(main)
    assert [body["id"] for body in hook.bodies()] == [f"{number:032x}" for number in range(1, 6)]
    [dropped] = log.events("alert.dropped")  # logged on the first drop, not every one
    assert dropped["channel"] == "email" and dropped["dropped"] == 1


# -- routing ---------------------------------------------------------------------------------


def test_full_queue_drops_and_counts():
    """Past the queue's size alerts are dropped for that channel and counted; the queued ones
    still go out once the channel runs."""
    log = Log()

    async def main() -> None:
        dispatcher = Dispatcher(AlertSettings(queue=2), log)  # not started: nothing drains
        for number in range(1, 6):
            assert dispatcher.submit(_alert(number, Level.WARNING), ["log"]) == []
        assert dispatcher.stats()["log"] == {"sent": 0, "failed": 0, "dropped": 3, "queued": 2}
        dispatcher.start()
        await _until(lambda: dispatcher.channels["log"].stats.sent == 2)
        await dispatcher.stop()

    _run(main)
    assert [fields["id"] for fields in log.events("alert")] == [f"{1:032x}", f"{2:032x}"]


def test_submit_returns_the_contacts_no_channel_serves():
    """Email, SMS and webhook contacts without a configured channel come back unserved."""
    async def main() -> None:
        hooks = MappingProxyType({"noc": HttpSettings("http://127.0.0.1:9/x")})
        dispatcher = Dispatcher(AlertSettings(webhooks=hooks), Log())
        unserved = dispatcher.submit(_alert(), [
            "log", "email:noc@example.com", "sms:+15551230001", "webhook:noc",
            "email:oncall@example.com", "webhook:pager"])
        assert unserved == ["email:noc@example.com", "email:oncall@example.com",
                            "sms:+15551230001", "webhook:pager"]
        assert dispatcher.stats()["log"]["queued"] == 1
        assert dispatcher.stats()["webhook:noc"]["queued"] == 1
        assert set(dispatcher.channels) == {"log", "webhook:noc"}
        assert Dispatcher(AlertSettings(), Log()).submit(_alert(), ["log"]) == []

    _run(main)


def test_log_sink_level_follows_the_alert():
    """An urgent alert is an error line, the others warnings; every field but details is a
    field of its own, details as JSON."""
    log = Log()

    async def main() -> None:
        sink = LogSink(log)
        await sink.send(_alert(1, Level.URGENT), ())
        await sink.send(_alert(2, Level.NOTIFY), ())

    _run(main)
    (urgent_level, urgent_event, urgent), (notify_level, _, notify) = log.lines
    assert (urgent_level, urgent_event, notify_level) == ("error", "alert", "warning")
    assert urgent["level"] == "urgent" and notify["level"] == "notify"
    assert urgent["account"] == "acme" and urgent["at"] == "2024-05-16T06:00:00+00:00"
    assert json.loads(urgent["details"]) == {"current": 42.0, "normal": 15.0,
                                             "percent_above": 180}
