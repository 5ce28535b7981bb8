"""A real PostgreSQL server for the tests: initdb in a directory of its own, started on a
free loopback port, stopped by its PID.

Theory of operation
-------------------
:class:`PostgresServer` runs Debian's ``initdb`` (trust authentication, no fsync: the
tests need a database, not durability) and then the ``postgres`` binary itself in the
foreground, so the process the test holds is the server (SIGINT: a fast shutdown). As
root it runs both as the ``postgres`` user (PostgreSQL refuses root), in a directory
under /tmp owned by that user. ``start`` waits until the server writes that it accepts
connections; ``restart`` starts it again on the same port and data directory, so a
client that kept its DSN reconnects to the same database.

Every wait has a deadline; only 127.0.0.1 is used.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
READY = "database system is ready to accept connections"


def postgres_bin() -> Path | None:
    """The directory of Debian's PostgreSQL server binaries (the newest), or $POSTGRES_BIN."""
    override = os.environ.get("POSTGRES_BIN")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda path: int(Path(path).parts[4]) if Path(path).parts[4].isdigit()
                   else 0)
    return Path(found[-1]).parent if found else None


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server on a loopback port that stays the same across restarts."""

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.binaries = binaries
        self.directory = Path(tempfile.mkdtemp(prefix="sipguard-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self.port = free_tcp_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            account = pwd.getpwnam("postgres")
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._initdb()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _initdb(self) -> None:
        completed = subprocess.run(
            [str(self.binaries / "initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            check=False, **self._user)
        if completed.returncode != 0:
            raise RuntimeError(f"initdb failed: {completed.stdout}\n{completed.stderr}")

    def start(self, timeout: float = START_TIMEOUT) -> PostgresServer:
        """Start the server and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("postgres already runs")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [str(self.binaries / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.directory}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **self._user)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}\n"
                                   + self.describe())
            if READY in self.log_path.read_text(errors="replace")[offset:]:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not start within {timeout} s\n{self.describe()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """A fast shutdown (SIGINT) by PID; SIGKILL after ``timeout``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> PostgresServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no postgres log)"
        return "\n".join(text.splitlines()[-lines:])
