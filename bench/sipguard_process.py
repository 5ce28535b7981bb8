"""A sipguard process for the benchmarks: started on a configuration written for the
run, its JSON log lines collected as they come, stopped by its PID."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench_calls import stop_process

START_TIMEOUT = 30.0


class SipguardProcess:
    """``python -m sipguard run`` on ``config`` (written to DIRECTORY/sipguard.yaml)."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = directory
        self.config_path = directory / "sipguard.yaml"
        self.config_path.write_text(json.dumps(config))
        self.config_path.chmod(0o600)  # may hold secrets: sipguard will not start on a file others can read
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.stderr = (directory / "sipguard.stderr.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sipguard", "run", "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL,
            cwd=directory)
        self.pid = self.process.pid
        threading.Thread(target=self._read, daemon=True).start()
        if not self.wait("service.started", START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"sipguard did not start; see {directory}/sipguard.stderr.log")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for event in self.events if event.get("event") == name]

    def wait(self, name: str, timeout: float, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.named(name)) >= count:
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, Any] | None:
        """SIGUSR1, then the service.stats line it logs (None when none comes)."""
        before = len(self.named("service.stats"))
        self.process.send_signal(signal.SIGUSR1)
        if not self.wait("service.stats", 5.0, before + 1):
            return None
        return self.named("service.stats")[-1]

    def stop(self) -> None:
        stop_process(self.process)
        self.stderr.close()


def write_results(name: str, results: dict[str, Any], also: str | None) -> None:
    """Results as JSON in bench/results/NAME-<time>.json (and in ``also`` when given)."""
    directory = Path(__file__).resolve().parent / "results"
    directory.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{name}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: bench/results/{path.name}")
    if also:
        Path(also).write_text(json.dumps(results, indent=2))
