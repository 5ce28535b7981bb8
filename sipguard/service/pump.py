"""The service: sockets and timers around the sans-IO endpoint and controller.

This is the pump of ../shared/DESIGN.md. Each received datagram (or message
framed from a TCP/TLS stream) goes into ``Endpoint.receive_datagram``; the
events go to the controller; its commands are carried out (screening,
logging); what the endpoint wants sent is sent, on the UDP socket or the
stream connection of its local address; the single timer is re-armed for
the endpoint's next deadline. The per-datagram path creates no task and no
extra queue entry.

The transports themselves live in ``sipguard/transports/``: UDP sockets with
a bounded receive queue, and TCP/TLS listeners whose connections call back
into :class:`Service` (``stream_admit``, ``stream_message``, ``stream_closed``).
ICMP errors (a trunk that is down answers "port unreachable") are logged and
the socket keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncio_dgram

from sipguard import logs
from sipguard.alerts import Alerting, alert_handlers, lock_handlers
from sipguard.b2bua import (
    Authenticator,
    CheckPin,
    Command,
    Controller,
    InstructIvr,
    IvrLink,
    LogEvent,
    ScreenAttempt,
    SourceFailure,
)
from sipguard.config import Settings, make_store
from sipguard.control import ControlServer
from sipguard.edge import Bans, Drop, EdgeFilter, EdgeGuard, exempt_networks, known_networks
from sipguard.pin import TOKEN_HEADER, IvrPool, IvrResult, PinGuard
from sipguard.policy import LoadedPolicy
from sipguard.records import CallRecords, Recorder, Spool, WriterProcess, make_sink
from sipguard.screening import Charge, Screener, Screening, failed_closed
from sipguard.service.sockets import Wire
from sipguard.sip import Address, Endpoint, Local
from sipguard.transports import UdpListener
from sipguard.web import Access, AdminServer, Dashboard, Metrics, Parts

ShutdownTrigger = Callable[[], Awaitable[None]]
RELEASE_BATCH_SECONDS = 0.02  # finished calls' leases go to the store together


class Service:
    """Runs the B2BUA until told to stop."""

    def __init__(self, settings: Settings, policy: LoadedPolicy) -> None:
        self.settings = settings
        self.log = logs.get_logger()
        self.screener = Screener(settings.policy_path, policy, self.log, make_store(settings),
                                 extension_header=settings.extension_header)
        # Leases held by live calls: call key -> (lease id, counter keys).
        self._leases: dict[int, tuple[str, tuple[str, ...]]] = {}
        # Calls to charge to spend counters when they end: call key -> screening.
        self._charges: dict[int, Charge] = {}
        # Leases of finished calls waiting to be released in one batch.
        self._to_release: list[tuple[tuple[str, ...], str]] = []
        self._release_handle: asyncio.TimerHandle | None = None
        # Unique per process start: a restarted container reuses its host name and pid.
        self._node = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.wire = Wire(settings, self, self.log)
        self.endpoint: Endpoint | None = None
        self.controller: Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.icmp_errors = 0
        self._background: set[asyncio.Future[None]] = set()
        # The PIN challenge: the IVR (started with the service when enabled) and the PINs.
        self.ivr: IvrPool | None = None
        self.pins = PinGuard(settings.pin, self.screener.store, self.log)
        # The edge: drops before parsing, bans shared through the store.
        edge = settings.edge
        edge_filter = EdgeFilter(exempt_networks(list(settings.peers), list(settings.trunks)),
                                 edge.rate, edge.burst, edge.max_sources, edge.scanner_agents)
        self.edge = EdgeGuard(edge_filter, Bans(edge.bans, self.screener.store, edge_filter,
                                                self.log),
                              self.log, edge.blocklist, edge.unknown_sources, edge.sync_seconds,
                              known_networks(list(settings.peers), list(settings.trunks),
                                             (settings.ivr.sip_host,) if settings.ivr.enabled
                                             else ()))
        self.control: ControlServer | None = None
        # Call records: built from the calls and their decisions, written in the background.
        self.records = CallRecords(self._node)
        cdr = settings.cdr
        self.recorder: Recorder | None = (
            Recorder(make_sink(cdr), Spool(cdr.spool), self.log, cdr.batch_seconds,
                     writer=(WriterProcess(settings.path, self.log)
                             if cdr.writer == "process" else None))
            if cdr.enabled else None)
        self.metrics = Metrics(self.stats)
        self.admin: AdminServer | None = None
        # Alerts: baselines from the records, events from the calls; never in a call's way.
        self.alerting: Alerting | None = None
        if settings.alerts.enabled:
            self.alerting = Alerting(
                settings.alerts, lambda: self.screener.policy, self.screener.store,
                self.screener.locks, self.log,
                reader=(lambda: make_sink(cdr)) if cdr.enabled else None,
                live_calls=self._answered_calls)
            self.edge.bans.on_ban = self.alerting.banned

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, shutdown_trigger: ShutdownTrigger | None = None) -> int:
        """Serve until SIGTERM/SIGINT (or ``shutdown_trigger``), then drain and stop."""
        self._loop = asyncio.get_running_loop()
        settings = self.settings
        await self.wire.bind()
        if self.recorder is not None:
            await self.recorder.start()  # a database that is down only delays the records
        if self.alerting is not None:
            await self.alerting.start()
        self.endpoint = Endpoint(self.wire.locals,
                                 settings.timers, settings.max_message_size,
                                 server_name=settings.user_agent)
        ivr_config = settings.ivr
        self.controller = Controller(
            self.endpoint, list(settings.peers), list(settings.trunks),
            extension_header=settings.extension_header,
            ring_timeout=settings.ring_timeout,
            max_call_duration=settings.max_call_duration,
            ivrs=await self._start_ivr(),
            pin_attempts=ivr_config.attempts_per_call,
            # Every round of the IVR, then time for the refusal prompt.
            challenge_timeout=ivr_config.overall_timeout * ivr_config.attempts_per_call + 30.0,
            authenticator=Authenticator(settings.realm, secrets.token_bytes(32),
                                        self.endpoint.new_token,
                                        algorithms=settings.auth_algorithms),
            register_expires=settings.register_expires)
        self._after_pump()  # arms the controller's first timers (trunk registrations)
        admin = await self._start_admin()
        readers = [asyncio.create_task(self._read(listener))
                   for listener in self.wire.listeners]
        self._install_signals()
        logs.lifecycle_logger().warning(
            "service.started",
            listen=[str(local) for local in self.endpoint.local_addresses],
            peers=[peer.name for peer in settings.peers],
            trunks=[trunk.name for trunk in settings.trunks],
            event_loop=type(self._loop).__module__.split(".")[0],
            policy=str(settings.policy_path),
            policy_version=self.screener.policy.version,
            ivr=[] if self.ivr is None else [str(Local(*address))
                                             for address, _, _ in self.ivr.links],
            ivr_capacity=0 if self.ivr is None else self.ivr.capacity,
            admin=admin,
        )
        for peer in settings.peers:
            if self.screener.policy.account(peer.name) is None:
                self.log.warning("policy.account_missing", peer=peer.name,
                                 consequence="calls from this peer are denied")
        watcher = asyncio.create_task(self._watch_policy())
        renewer = asyncio.create_task(self._renew_leases())
        self.edge.load_blocklist()
        edge_task = asyncio.create_task(self.edge.run(self._loop))
        await self._start_control()
        self.started.set()
        waiter = asyncio.create_task(self._stop.wait())
        waits: list[asyncio.Future[Any]] = [waiter]
        if shutdown_trigger is not None:
            waits.append(asyncio.ensure_future(shutdown_trigger()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for pending in waits:
            pending.cancel()
        await self._drain()
        if self.ivr is not None:
            await self.ivr.stop()
        watcher.cancel()
        renewer.cancel()
        edge_task.cancel()
        if self.control is not None:
            await self.control.stop()
        if self.admin is not None:
            await self.admin.stop()
        await self.edge.settle()
        for reader in readers:
            reader.cancel()
        await self.wire.stop()
        if self._timer is not None:
            self._timer.cancel()
        if self._release_handle is not None:
            self._release_handle.cancel()
        if self._background:  # charges and releases under way finish before the store closes
            await asyncio.wait(list(self._background), timeout=2.0)
        for charge in self._charges.values():  # calls cut off by the stop: give budgets back
            await self.screener.charge(charge, 0.0)
        if self.alerting is not None:
            await self.alerting.stop()
        if self.recorder is not None:
            await self.recorder.stop()
        await self.screener.release_many(
            [*self._to_release, *((keys, lease_id) for lease_id, keys in self._leases.values())])
        await self.screener.store.close()
        logs.lifecycle_logger().warning("service.stopped", **self.stats())
        return 0

    async def _start_admin(self) -> str | None:
        """The admin address (metrics), when configured; its address, for the log."""
        settings = self.settings.admin
        if not settings.enabled:
            return None
        cdr = self.settings.cdr
        dashboard = Dashboard(Parts(
            stats=self.stats, policy=lambda: self.screener.policy,
            last_reload=lambda: self.screener.last_reload, locks=self.screener.locks,
            alerting=self.alerting, edge=self.edge,
            reader=(lambda: make_sink(cdr)) if cdr.enabled else None, log=self.log,
            policy_path=self.settings.policy_path, reload_policy=self.reload_policy,
            unreachable=lambda policy: self.settings.alerts.unreachable_problems(
                policy.alerts, self.settings.path),
            usage=lambda account, dialled: self.screener.usage_of(
                account, dialled, asyncio.get_running_loop().time())),
            Access(settings))
        if not settings.has_credentials:
            self.log.warning("admin.dashboard_closed",
                             detail="no admin.token or admin.users: the dashboard and the "
                                    "JSON API answer 503 until one is configured")
        server = AdminServer(settings.host, settings.port, self.metrics, self.log, dashboard)
        try:
            host, port = await server.start()
        except OSError as error:
            self.log.error("admin.unavailable", error=str(error),
                           listen=f"{settings.host}:{settings.port}")
            return None
        self.admin = server
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def _start_ivr(self) -> list[IvrLink]:
        """Start the PIN IVR; without it, calls that need a PIN are refused (fail closed)."""
        config = self.settings.ivr
        if not config.enabled:
            return []
        # The workers log to the service's own stream (stdout), in its format.
        pool = IvrPool(config, config.workers, log_level=self.settings.log_level,
                       log_format=self.settings.log_format, log_stream=sys.stdout)
        try:
            await pool.start(self._on_ivr_result)
        except Exception as error:  # pjsua2 missing or failing: the service still screens
            self.log.error("ivr.unavailable", error=str(error),
                           consequence="calls that need a PIN are refused")
            return []
        pool.on_links_changed = self._ivr_links_changed
        self.ivr = pool
        return self._ivr_links()

    def _ivr_links(self) -> list[IvrLink]:
        pool = self.ivr
        if pool is None:
            return []
        return [IvrLink(address, token, capacity, TOKEN_HEADER)
                for address, token, capacity in pool.links]

    def _ivr_links_changed(self) -> None:
        """An IVR worker died or came back: calls at a dead one are ended."""
        controller, loop = self.controller, self._loop
        if controller is None or loop is None:
            return
        links = self._ivr_links()
        self.log.warning("ivr.workers_changed", workers=len(links),
                         capacity=sum(link.capacity for link in links))
        now = loop.time()
        try:
            self._run(controller.set_ivrs(links, now), now)
        except Exception:
            self.log.exception("sip.internal_error", during="ivr_links_changed")
        self._after_pump()

    async def _start_control(self) -> None:
        """The control socket for `sipguard bans …` (the service runs on without it)."""
        loop = self._loop
        assert loop is not None

        async def stats(_: dict[str, Any]) -> dict[str, Any]:
            return {"stats": self.stats()}

        async def usage(request: dict[str, Any]) -> dict[str, Any]:
            known = self.screener.usage_of(str(request["account"]), str(request["dialled"]),
                                           loop.time())
            return {"international_calls_last_hour": known.international_calls_last_hour,
                    "destination_seen_before": known.destination_seen_before}

        handlers = {**self.edge.handlers(loop.time), "stats": stats, "usage": usage,
                    **lock_handlers(self.screener.locks, lambda: self.screener.policy),
                    **(alert_handlers(self.alerting) if self.alerting is not None else {})}
        server = ControlServer(self.settings.control_socket, handlers, self.log)
        try:
            await server.start()
        except (OSError, RuntimeError) as error:
            self.log.warning("control.unavailable", path=str(self.settings.control_socket),
                             error=str(error))
            return
        self.control = server

    def stop(self) -> None:
        """Ask the service to drain and stop."""
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        """Live counts for the stats log line and tests."""
        controller, endpoint = self.controller, self.endpoint
        return {
            "calls": controller.live_calls if controller else 0,
            "dialogs": controller.dialog_count if controller else 0,
            "transactions": endpoint.transaction_count if endpoint else 0,
            **self.wire.stats(),
            "icmp_errors": self.icmp_errors,
            "ivr_sessions": self.ivr.active_sessions if self.ivr is not None else 0,
            "cdr": self.recorder.stats() if self.recorder is not None else None,
            "store_down": self.screener.store_down,
            "alerts": self.alerting.stats() if self.alerting is not None else None,
            "locks": self.screener.locks.stats(),
            **self.edge.stats(),
        }

    def _install_signals(self) -> None:
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload_policy)
            loop.add_signal_handler(signal.SIGUSR1, self._log_stats)

    def _log_stats(self) -> None:
        controller, endpoint = self.controller, self.endpoint
        details: dict[str, Any] = {}
        if controller is not None and endpoint is not None:
            details = {"calls_by_state": controller.calls_by_state(),
                       "transactions_by_state": endpoint.transactions_by_state()}
        logs.lifecycle_logger().info("service.stats", **self.stats(), **details)

    def reload_policy(self, reason: str = "SIGHUP") -> bool:
        """Load the policy file again; keep the running policy when it is invalid."""
        taken = self.screener.reload(reason)
        if taken:
            self._policy_changed()
        self.edge.load_blocklist()
        return taken

    def _policy_changed(self) -> None:
        if self.alerting is not None:
            self.alerting.policy_changed(self.screener.policy)

    async def _watch_policy(self) -> None:
        """Reload the policy when its file changes (checked every policy_poll seconds)."""
        while True:
            await asyncio.sleep(self.settings.policy_poll)
            if self.screener.check_for_change():
                self._policy_changed()

    async def _drain(self) -> None:
        """Refuse new calls, wait for calls in progress, then hang up what is left."""
        controller, loop = self.controller, self._loop
        assert controller is not None and loop is not None
        controller.draining = True
        grace = self.settings.drain_grace
        self.log.info("service.draining", calls=controller.live_calls, grace=grace)
        deadline = loop.time() + grace
        while controller.live_calls and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if controller.live_calls:
            self._run(controller.hang_up_all(loop.time()), loop.time())
            self._after_pump()  # sends the BYEs and arms their retransmissions
            settle = loop.time() + 2.0  # let the BYEs be answered
            while controller.live_calls and loop.time() < settle:
                await asyncio.sleep(0.05)
        if controller.live_calls:  # unanswered BYEs: the calls are over all the same
            self._run(controller.abandon_all(loop.time()), loop.time())
            self._after_pump()

    # -- the pump ------------------------------------------------------------------

    async def _read(self, listener: UdpListener) -> None:
        queue = listener.queue
        while True:
            try:
                data, source = await listener.stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError as error:
                # An ICMP error (port unreachable from a dead trunk) surfaces here.
                self.icmp_errors += 1
                self.log.warning("transport.icmp_error", error=str(error),
                                 local=str(listener.local))
                continue
            self._receive(data, source, listener.local)
            while not queue.empty():
                data, source = queue.get_nowait()
                if data is None:
                    return
                self._receive(data, source, listener.local)

    def _receive(self, data: bytes, source: Any, local: Local,
                 too_large: bool = False) -> Drop | None:
        endpoint, controller, loop = self.endpoint, self.controller, self._loop
        assert endpoint is not None and controller is not None and loop is not None
        now = loop.time()
        address = (source[0], source[1])
        drop: Drop | None = None
        try:
            drop = self.edge.check(source[0], data, now)
            if drop is not None:
                return drop  # banned, blocklisted, flooding, a scanner: not worth parsing
            events = endpoint.receive_datagram(data, address, local, now, too_large)
            for event in events:
                self._run(controller.handle(event, now), now)
        except Exception:  # the last line of defence: one bad datagram must not stop the service
            self.log.exception("sip.internal_error", source=str(Local(*address)),
                               size=len(data))
        self._after_pump()
        return drop

    # -- TCP and TLS connections (sipguard.transports.stream.StreamHandler) ------------

    def stream_admit(self, host: str) -> bool:
        """A connection from a banned or blocklisted source is refused at once."""
        loop = self._loop
        return loop is None or self.edge.admit(host, loop.time())

    def stream_message(self, data: bytes, source: Address, local: Local,
                       too_large: bool) -> bool:
        """One message framed from a stream; a source banned meanwhile loses its connection."""
        if self.controller is None:
            return True  # accepted before the controller is up (starting): dropped
        return self._receive(data, source, local, too_large) not in (Drop.BANNED,
                                                                    Drop.BLOCKLISTED)

    def stream_closed(self, local: Local, remote: Address, reason: str) -> None:
        """A connection ended or failed: requests waiting on it fail now (RFC 3261 §8.1.3.1)."""
        endpoint, controller, loop = self.endpoint, self.controller, self._loop
        if endpoint is None or controller is None or loop is None:
            return
        now = loop.time()
        try:
            for event in endpoint.transport_failed(local, remote, now, reason):
                self._run(controller.handle(event, now), now)
        except Exception:
            self.log.exception("sip.internal_error", during="stream_closed", reason=reason)
        endpoint.connection_closed(local.transport, remote)  # after: failures use the aliases
        self._after_pump()

    def _on_timer(self) -> None:
        endpoint, controller, loop = self.endpoint, self.controller, self._loop
        assert endpoint is not None and controller is not None and loop is not None
        self._timer = None
        self._timer_deadline = None
        now = loop.time()
        try:
            for event in endpoint.handle_timer(now):
                self._run(controller.handle(event, now), now)
            self._run(controller.handle_timer(now), now)
        except Exception:
            self.log.exception("sip.internal_error", during="timer")
        self._after_pump()

    def _rearm(self) -> None:
        endpoint, controller, loop = self.endpoint, self.controller, self._loop
        assert endpoint is not None and controller is not None and loop is not None
        # Transaction timers and the controller's own (ring timeout, longest call).
        deadlines = [when for when in (endpoint.get_timer(), controller.get_timer())
                     if when is not None]
        if not deadlines:
            return
        deadline = min(deadlines)
        if self._timer is not None and self._timer_deadline is not None:
            if self._timer_deadline <= deadline:
                return
            self._timer.cancel()
        self._timer_deadline = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _run(self, commands: list[Command], now: float) -> None:
        controller = self.controller
        assert controller is not None
        pending = list(commands)
        while pending:
            command = pending.pop(0)
            if isinstance(command, ScreenAttempt):
                task = asyncio.ensure_future(self._screen(command))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            elif isinstance(command, LogEvent):
                self.records.observe(command.event, command.fields)
                getattr(self.log, command.level)(command.event, **command.fields)
            elif isinstance(command, CheckPin):
                self._background_task(self._check_pin(command))
            elif isinstance(command, InstructIvr) and self.ivr is not None:
                self.ivr.instruct(command.call_id, command.action)
            elif isinstance(command, SourceFailure):
                self.edge.report(command.host, command.reason, now)

    def _on_ivr_result(self, result: IvrResult) -> None:
        """What the IVR collected on one leg (called on the loop's thread)."""
        controller, loop = self.controller, self._loop
        if controller is None or loop is None:
            return
        now = loop.time()
        try:
            self._run(controller.pin_entered(result.call_id, result.outcome, result.digits, now),
                      now)
        except Exception:
            self.log.exception("sip.internal_error", during="ivr_result")
        self._after_pump()

    async def _check_pin(self, command: CheckPin) -> None:
        """Check a PIN (scrypt off the loop, the lock in the store), then let the call go on."""
        controller, loop = self.controller, self._loop
        assert controller is not None and loop is not None
        try:
            check = await self.pins.check(command.account, command.extension, command.digits,
                                          time.time())
            outcome = check.outcome.value
            if check.just_locked and self.alerting is not None:  # one alert per lockout
                self.alerting.pin_locked(command.account, command.extension, check.locked_for)
        except Exception:  # a bug in the check must refuse the call, not hang it
            self.log.exception("pin.check_failed", account=command.account,
                               extension=command.extension)
            outcome = "store_unavailable"
        try:
            now = loop.time()
            self._run(controller.pin_checked(command.call_key, outcome, now), now)
        except Exception:
            self.log.exception("sip.internal_error", during="pin_checked")
        self._after_pump()

    async def _screen(self, command: ScreenAttempt) -> None:
        """Screen one attempt (the store may take a round trip), then let the call go on."""
        controller, loop = self.controller, self._loop
        assert controller is not None and loop is not None
        lease_id = f"{self._node}-{command.call_key}"
        began = loop.time()
        try:
            screening = await self.screener.screen(command.attempt, loop.time(), lease_id)
        except Exception:  # a bug in screening must fail the call closed, not hang it
            self.log.exception("call.screening_failed", call_id=command.attempt.call_id)
            screening = Screening(failed_closed(command.attempt))
        self.metrics.screened(screening.decision, loop.time() - began)
        live = controller.is_live(command.call_key)
        try:
            now = loop.time()
            if (self.recorder is not None or self.alerting is not None) and live:
                # The call's record carries the decision and its trace.
                self.records.screened(command.call_key, screening.decision)
            commands = controller.screened(command.call_key, screening.decision, now,
                                           screening.max_duration)
            if controller.is_live(command.call_key):
                if screening.lease_keys:
                    self._leases[command.call_key] = (lease_id, screening.lease_keys)
                if screening.charge:
                    self._charges[command.call_key] = Charge.of(screening)
            else:  # the call ended while it was screened: give back what it held
                if screening.lease_keys:
                    self._release(lease_id, screening.lease_keys)
                if screening.charge:
                    self._background_task(self.screener.charge(Charge.of(screening), 0.0))
            self._run(commands, now)
        except Exception:  # the last line of defence, as for datagrams
            self.log.exception("sip.internal_error", during="screened",
                               call_id=command.attempt.call_id)
        if self.alerting is not None:
            try:  # after the call has gone on: an alerting bug never holds a call up
                self.alerting.screened(command.call_key, command.attempt, screening.decision,
                                       live)
            except Exception:
                self.log.exception("alert.failed", call_id=command.attempt.call_id)
        self._after_pump()

    def _background_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _release(self, lease_id: str, keys: tuple[str, ...]) -> None:
        """Queue a finished call's leases; they go to the store in one batch shortly."""
        self._to_release.append((keys, lease_id))
        if self._release_handle is None and self._loop is not None:
            self._release_handle = self._loop.call_later(RELEASE_BATCH_SECONDS,
                                                         self._flush_releases)

    def _flush_releases(self) -> None:
        self._release_handle = None
        batch, self._to_release = self._to_release, []
        if batch:
            task = asyncio.ensure_future(self.screener.release_many(batch))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _after_pump(self) -> None:
        """Release the leases of calls that ended, send, re-arm the timer."""
        controller, loop = self.controller, self._loop
        assert controller is not None and loop is not None
        for call_key, answered, call in controller.take_finished():
            held = self._leases.pop(call_key, None)
            if held is not None:
                self._release(*held)
            charge = self._charges.pop(call_key, None)
            if charge is not None:  # unanswered calls give their reservation back
                self._background_task(self.screener.charge(charge, answered))
            if self.recorder is not None or self.alerting is not None:
                try:
                    record = self.records.finished(call, answered, loop.time(),
                                                   self.screener.policy)
                    if self.recorder is not None:
                        self.recorder.record(record)
                    if self.alerting is not None:
                        self.alerting.finished(call_key, record)
                except Exception:  # a bug in a record must not stop the pump
                    self.log.exception("cdr.record_failed", call_id=call.attempt.call_id)
        self._flush()
        self._rearm()

    def _answered_calls(self) -> list[tuple[int, float, float]]:
        """This node's answered calls: (call key, started wall-clock, seconds answered)."""
        controller, loop = self.controller, self._loop
        if controller is None or loop is None:
            return []
        now = loop.time()
        offset = time.time() - now
        return [(call.key, call.started_at + offset, now - (call.answered_at or now))
                for call in controller.answered_calls()]

    async def _renew_leases(self) -> None:
        """Renew the leases of live calls, a third of a lease's life at a time."""
        while True:
            await asyncio.sleep(self.screener.policy.limits.lease_seconds / 3)
            if self._leases:
                await self.screener.renew(dict(self._leases.values()))

    def _flush(self) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        datagrams = endpoint.datagrams_to_send()
        if datagrams:
            self.wire.send(datagrams)
