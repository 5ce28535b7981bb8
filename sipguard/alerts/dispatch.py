"""Delivering alerts: one queue and one worker per channel, so nothing waits on a sink.

:meth:`Dispatcher.submit` only puts the alert on the queue of each channel its
contacts name and returns at once: a call never waits for an SMTP server or a
webhook. Each channel's worker delivers its alerts one after the other, with
the channel's timeout per attempt and its retries after a pause that doubles.
A dead channel holds up only itself: its queue fills up, and alerts past the
queue's size are dropped for that channel (counted, and logged once in a
while) while every other channel goes on delivering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sipguard.alerts.model import Alert
from sipguard.alerts.settings import AlertSettings, Delivery
from sipguard.alerts.sinks import AlertSink, DeliveryError, EmailSink, LogSink, SmsSink, WebhookSink


@dataclass(slots=True)
class ChannelStats:
    """What a channel has done."""

    sent: int = 0
    failed: int = 0  # alerts given up on after every retry
    dropped: int = 0  # alerts refused because the queue was full
    attempts: int = 0


class Channel:
    """One sink, its queue and its worker."""

    def __init__(self, sink: AlertSink, delivery: Delivery, queue_size: int, log: Any) -> None:
        self.sink = sink
        self.delivery = delivery
        self.log = log
        self.queue: asyncio.Queue[tuple[Alert, tuple[str, ...]]] = asyncio.Queue(queue_size)
        self.stats = ChannelStats()
        self._task: asyncio.Task[None] | None = None

    def offer(self, alert: Alert, recipients: tuple[str, ...]) -> bool:
        """Queue an alert; False when the queue is full (the alert is dropped here)."""
        try:
            self.queue.put_nowait((alert, recipients))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if self.stats.dropped in (1, 10) or self.stats.dropped % 100 == 0:
                self.log.error("alert.dropped", channel=self.sink.name,
                               dropped=self.stats.dropped, queued=self.queue.qsize(),
                               consequence="this channel is behind; others are not")
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            alert, recipients = await self.queue.get()
            try:
                await self._deliver(alert, recipients)
            except Exception:  # a bug in one delivery must not stop the channel
                self.log.exception("alert.delivery_bug", channel=self.sink.name, id=alert.id)
            finally:
                self.queue.task_done()

    async def _deliver(self, alert: Alert, recipients: tuple[str, ...]) -> None:
        delivery = self.delivery
        pause = delivery.retry_seconds
        for attempt in range(delivery.retries + 1):
            self.stats.attempts += 1
            try:
                # The sink has its own timeout; this one is the backstop.
                async with asyncio.timeout(delivery.timeout + 1.0):
                    await self.sink.send(alert, recipients)
            except (DeliveryError, TimeoutError) as error:
                final = isinstance(error, DeliveryError) and error.final
                last = final or attempt == delivery.retries
                self.log.warning("alert.delivery_failed", channel=self.sink.name, id=alert.id,
                                 attempt=attempt + 1, error=str(error) or repr(error),
                                 retry_in=None if last else pause)
                if last:
                    self.stats.failed += 1
                    self.log.error("alert.undelivered", channel=self.sink.name, id=alert.id,
                                   type=alert.type.value, level=alert.level.value,
                                   text=alert.text, attempts=attempt + 1)
                    return
                await asyncio.sleep(pause)
                pause *= 2
                continue
            self.stats.sent += 1
            if self.sink.name != "log":
                self.log.info("alert.delivered", channel=self.sink.name, id=alert.id,
                              recipients=len(recipients), attempts=attempt + 1)
            return

    async def stop(self, grace: float) -> None:
        """Let queued alerts go out for up to ``grace`` seconds, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(Exception):
            await self.sink.close()


class Dispatcher:
    """The channels the configuration has, and the routing of contacts to them."""

    def __init__(self, settings: AlertSettings, log: Any) -> None:
        self.log = log
        self.channels: dict[str, Channel] = {
            "log": Channel(LogSink(log), Delivery(timeout=1.0, retries=0), settings.queue, log)}
        if settings.email is not None:
            self.channels["email"] = Channel(EmailSink(settings.email), settings.email.delivery,
                                             settings.queue, log)
        if settings.sms is not None:
            self.channels["sms"] = Channel(SmsSink(settings.sms), settings.sms.delivery,
                                           settings.queue, log)
        for name, hook in settings.webhooks.items():
            self.channels[f"webhook:{name}"] = Channel(WebhookSink(name, hook), hook.delivery,
                                                       settings.queue, log)

    def start(self) -> None:
        for channel in self.channels.values():
            channel.start()

    def submit(self, alert: Alert, contacts: Sequence[str]) -> list[str]:
        """Queue the alert for its contacts; return the contacts no channel serves."""
        emails = tuple(contact[6:] for contact in contacts if contact.startswith("email:"))
        numbers = tuple(contact[4:] for contact in contacts if contact.startswith("sms:"))
        routes: list[tuple[str, tuple[str, ...]]] = []
        if emails:
            routes.append(("email", emails))
        if numbers:
            routes.append(("sms", numbers))
        routes += [(contact, ()) for contact in dict.fromkeys(contacts)
                   if contact == "log" or contact.startswith("webhook:")]
        unserved = []
        for name, recipients in routes:
            channel = self.channels.get(name)
            if channel is None:
                unserved += ([f"{name}:{recipient}" for recipient in recipients]
                             if recipients else [name])
                continue
            channel.offer(alert, recipients)
        return unserved

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: {"sent": channel.stats.sent, "failed": channel.stats.failed,
                       "dropped": channel.stats.dropped, "queued": channel.queue.qsize()}
                for name, channel in self.channels.items()}

    async def stop(self, grace: float = 2.0) -> None:
        for channel in self.channels.values():
            await channel.stop(grace)
