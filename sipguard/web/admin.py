"""The admin HTTP server (aiohttp): GET /metrics for Prometheus, GET /health, and the
dashboard with its JSON API (sipguard.web.dashboard) behind authentication."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from sipguard.web.dashboard import Dashboard
from sipguard.web.metrics import CONTENT_TYPE, Metrics


class AdminServer:
    """Serves the metrics on ``host:port`` (port 0: a free one, see ``address``)."""

    def __init__(self, host: str, port: int, metrics: Metrics, log: Any,
                 dashboard: Dashboard | None = None) -> None:
        self.dashboard = dashboard
        self.host = host
        self.port = port
        self.metrics = metrics
        self.log = log
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        if self.dashboard is not None:
            self.dashboard.add_routes(app)
        return app

    async def start(self) -> tuple[str, int]:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0] if runner.addresses else (self.host, self.port)
        self.address = (str(bound[0]), int(bound[1]))
        if not ipaddress.ip_address(self.host).is_loopback:
            self.log.warning("admin.exposed", listen=f"{self.host}:{self.address[1]}",
                             detail="/metrics carries no authentication (the dashboard does): "
                                    "keep this address behind a firewall")
        return self.address

    async def stop(self) -> None:
        if self.dashboard is not None:
            await self.dashboard.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
