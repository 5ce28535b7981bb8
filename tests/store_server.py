"""A real redis-server for the tests: started on a free loopback port, stopped by its PID.

Theory of operation
-------------------
:class:`RedisServer` runs ``redis-server --port P --bind 127.0.0.1 --save "" --appendonly no``
in a directory of its own (nothing is persisted, so a restart comes back empty) and
waits until the server answers ``PING`` on a plain socket. ``stop`` sends SIGTERM to
that PID and SIGKILL after a timeout; ``restart`` starts it again on the same port, so
a client that kept its URL can reconnect. ``pause`` and ``resume`` (SIGSTOP/SIGCONT)
make a server that accepts connections but never answers.

The port is the kernel's choice for port 0 at the moment of the first start. Every
wait has a deadline; only 127.0.0.1 is used.

The module imports nothing from the tests, so the unit tests (``tests.store_server``)
and the end-to-end conftest (loaded by path) can both use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds for a started server to answer PING
STOP_TIMEOUT = 5.0  # seconds a server gets after SIGTERM before SIGKILL


def free_tcp_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago on ``host`` (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ping(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """Whether something on ``host:port`` answers a Redis inline ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a loopback port that stays the same across restarts."""

    def __init__(self, binary: str | None = None, directory: Path | None = None) -> None:
        binary = binary or REDIS_SERVER
        if not binary:
            raise FileNotFoundError("redis-server is not installed (set REDIS_SERVER)")
        self.binary = binary
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="sipguard-redis-"))
        self.port = free_tcp_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / "redis.log"
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The URL a client uses (database 0)."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may still be paused)."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start the server and wait until it answers PING; fail if it exits or times out."""
        if self.running:
            raise RuntimeError(f"redis-server already runs on port {self.port}")
        if self._log is None:
            self._log = (self.directory / "redis.log").open("ab")
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode} on port {self.port}:\n"
                    + self.describe()
                )
            if ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer PING within {timeout} s\n{self.describe()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM the server by its PID, SIGKILL it after ``timeout``; True if it exited itself."""
        process = self.process
        if process is None or process.poll() is not None:
            return True
        self.resume()  # a paused process cannot act on SIGTERM
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            return False
        return True

    def restart(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Stop the server (if it runs) and start it again on the same port."""
        self.stop()
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP the server: connections are accepted by the kernel, nothing is answered."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server (harmless on a running one)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory if this object made it."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self, lines: int = 20) -> str:
        """The end of the server's log, for assertion messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no redis log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
