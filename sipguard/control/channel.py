"""The control socket: how the command line reaches the running service.

A Unix socket (``service.control_socket``, mode 0600) that takes one JSON
object a line, ``{"command": "bans.list", ...}``, and answers one JSON
object a line: ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
With the memory store the bans live in the service, so `sipguard bans`
must go through here; with Redis it works on the store when the service is
not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
LINE_LIMIT = 64 * 1024
REQUEST_TIMEOUT = 5.0


class ControlServer:
    """Serves the control socket for the service."""

    def __init__(self, path: Path, handlers: dict[str, Handler], log: Any) -> None:
        self.path = path
        self.handlers = handlers
        self.log = log
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind the socket (replacing a stale one), readable by this user only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if await _answers(self.path):
                raise RuntimeError(f"another sipguard serves {self.path}")
            self.path.unlink()
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=LINE_LIMIT)
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            reply = await self._answer(line)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not a JSON request"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": "a request is {\"command\": ..., ...}"}
        handler = self.handlers.get(request["command"])
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command (known: {known})"}
        try:
            return {"ok": True, **await handler(request)}
        except (ValueError, KeyError, TypeError) as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:
            self.log.exception("control.command_failed", command=request["command"])
            return {"ok": False, "error": f"internal error: {error}"}


async def request(path: Path, command: str, **fields: Any) -> dict[str, Any]:
    """Send one command to the running service; ConnectionError when none answers."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=LINE_LIMIT), REQUEST_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(f"no sipguard answers on {path}: {error}") from error
    try:
        writer.write(json.dumps({"command": command, **fields}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise ConnectionError(f"sipguard on {path} did not answer: {error}") from error
    finally:
        writer.close()
    reply = json.loads(line) if line else {"ok": False, "error": "no answer"}
    if not isinstance(reply, dict):
        return {"ok": False, "error": "a malformed answer"}
    return reply


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
