"""Fixtures for the end-to-end tests: a real sipguard process between SIPp processes.

Theory of operation
-------------------
Each test builds its own little network on loopback, on ports the kernel picks:

    SIPp UAC (the PBX)  --UDP-->  sipguard  --UDP-->  SIPp UAS (the carrier trunk)

- ``start_uas`` starts a SIPp UAS scenario from ``tests/sip_fixtures/`` in the
  foreground (no screen, no stdin) and waits until its port is bound. SIPp writes
  every message it sends or receives to a message log, which the test reads to
  learn what reached the trunk.
- ``start_sipguard`` writes a configuration and a policy into ``tmp_path``, starts
  ``python -m sipguard run`` and reads its stdout (one JSON object per line) in a
  background thread. ``service.started`` says which port it bound.
- ``run_uac`` runs a SIPp UAC scenario to completion and returns its exit code and
  the final row of its ``-trace_stat`` statistics.
- ``black_hole`` is a UDP socket that swallows everything: a trunk that never answers.

The classes behind the fixtures (and the log readers) are in harness.py.
Every process is stopped by the fixture that started it, by its PID (SIGTERM, then
SIGKILL after a timeout). Every wait has a deadline. Only 127.0.0.1 and ::1 are used.

Set ``SIPGUARD_E2E_COMMAND`` (shell words) to test another build of sipguard than
``python -m sipguard`` from this interpreter; ``SIPP`` to use another SIPp binary.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from harness import (
    FIXTURES_DIR,
    PROCESS_STOP_TIMEOUT,
    SIPGUARD_START_TIMEOUT,
    SIPP,
    TEST_POLICY,
    BlackHole,
    Sipguard,
    SippResult,
    SippRun,
    SippUas,
    free_port,
    free_udp_port,
    sipguard_command,
    sipguard_config,
    sipp_common_args,
    stop_process,
    wait_until_bound,
)

from sipguard.schema import dump_yaml

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def sipp_binary() -> str:
    """The SIPp executable (the e2e tests are skipped without one)."""
    if not SIPP:
        pytest.fail("sipp is not installed: ./dev test installs it (apt-get install sip-tester)")
    return SIPP


@pytest.fixture
def start_uas(sipp_binary: str, tmp_path: Path) -> Iterator[Callable[..., SippUas]]:
    """Start a SIPp UAS scenario on a free loopback port; stopped at the end of the test."""
    started: list[SippUas] = []

    def start(scenario: str, host: str = "127.0.0.1", extra: Sequence[str] = (),
              transport: str = "udp") -> SippUas:
        """``transport`` "tcp" runs SIPp with -t t1 (one connection for all calls)."""
        port = free_port(host) if transport == "tcp" else free_udp_port(host)
        name = f"{Path(scenario).stem}-{len(started)}"
        message_log = tmp_path / f"{name}.msg.log"
        error_log = tmp_path / f"{name}.err.log"
        screen_log = tmp_path / f"{name}.screen.log"
        args = [
            sipp_binary,
            "-sf", str(FIXTURES_DIR / scenario),
            *sipp_common_args(host),
            "-p", str(port),
            "-timeout", "300",  # never outlives a runaway test by much
            "-trace_msg", "-message_file", str(message_log),
            "-trace_err", "-error_file", str(error_log),
            *(["-t", "t1"] if transport == "tcp" else []),
            *extra,
        ]  # fmt: skip
        with screen_log.open("wb") as screen:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=screen, stderr=subprocess.STDOUT
            )
        uas = SippUas(scenario, host, port, process, message_log, error_log, screen_log)
        started.append(uas)
        wait_until_bound(host, port, process, timeout=5.0,
                         kind=socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM)
        return uas

    yield start
    for uas in started:
        uas.stop()


@pytest.fixture
def start_uac(sipp_binary: str, tmp_path: Path) -> Iterator[Callable[..., SippRun]]:
    """Start a SIPp UAC scenario against ``target`` (host:port) without waiting for it.

    The dialled number is ``service``; ``calls`` calls are placed at ``rate`` per
    second; SIPp gives up (and fails) after ``timeout`` seconds.
    """
    runs: list[SippRun] = []

    def start(
        scenario: str,
        target: str,
        *,
        service: str = "12125551234",
        calls: int = 1,
        rate: float = 10,
        timeout: float = 30,
        host: str = "127.0.0.1",
        extra: Sequence[str] = (),
    ) -> SippRun:
        name = f"{Path(scenario).stem}-uac-{len(runs)}"
        files = {
            "stats": tmp_path / f"{name}.stats.csv",
            "errors": tmp_path / f"{name}.err.log",
            "messages": tmp_path / f"{name}.msg.log",
            "screen": tmp_path / f"{name}.screen.log",
        }
        args = [
            sipp_binary,
            "-sf", str(FIXTURES_DIR / scenario),
            target,
            *sipp_common_args(host),
            "-p", str(free_port(host)),  # free for TCP too (-t t1)
            "-s", service,
            "-m", str(calls),
            "-r", str(rate),
            "-timeout", str(timeout),
            "-timeout_error",
            "-trace_stat", "-stf", str(files["stats"]),
            "-trace_err", "-error_file", str(files["errors"]),
            "-trace_msg", "-message_file", str(files["messages"]),
            *extra,
        ]  # fmt: skip
        run = SippRun(scenario, args, files, timeout)
        runs.append(run)
        return run

    yield start
    for run in runs:
        stop_process(run.process)


@pytest.fixture
def run_uac(start_uac: Callable[..., SippRun]) -> Callable[..., SippResult]:
    """Run a SIPp UAC scenario to completion (same arguments as ``start_uac``)."""

    def run(scenario: str, target: str, **options: Any) -> SippResult:
        return start_uac(scenario, target, **options).finish()

    return run


@pytest.fixture
def start_sipguard(tmp_path: Path) -> Iterator[Callable[..., Sipguard]]:
    """Start sipguard with a configuration written for this test; stopped at the end."""
    started: list[Sipguard] = []

    def start(trunk_uri: str, policy: str | None = None, **options: Any) -> Sipguard:
        directory = tmp_path / f"sipguard-{len(started)}"
        directory.mkdir()
        (directory / "policy.yaml").write_text(policy or TEST_POLICY.read_text())
        config_path = directory / "sipguard.yaml"
        config_path.write_text(dump_yaml(sipguard_config(trunk_uri, **options)))
        config_path.chmod(0o600)  # may hold secrets: sipguard will not start on a file others can read
        service = Sipguard(sipguard_command(), config_path, directory / "stderr.log")
        started.append(service)
        service.wait_for("service.started", timeout=SIPGUARD_START_TIMEOUT)
        return service

    yield start
    hung = [service for service in started if not service.stop()]
    if hung:
        pytest.fail(
            "sipguard did not exit within "
            f"{PROCESS_STOP_TIMEOUT} s of SIGTERM:\n{hung[0].describe()}"
        )


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    """A trunk that never answers (the port is open, so there is no ICMP error either)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    hole = BlackHole("127.0.0.1", sock)
    reader = threading.Thread(target=hole.run, name="black-hole", daemon=True)
    reader.start()
    yield hole
    hole.stopping.set()
    reader.join(timeout=5)
    sock.close()


# --------------------------------------------------------------------------- state store
#
# tests/store_server.py is loaded by its path: this directory is on sys.path as the
# conftest's root, but the repository root may not be, and a ``tests`` package from
# site-packages (sippy ships one) may stand in for ours. It is registered as the
# top-level module ``store_server`` so test modules here can import its types.


def _load_helper(name: str) -> Any:
    """tests/NAME.py, loaded by its path and registered as the top-level module NAME."""
    import importlib.util
    import sys

    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    path = Path(__file__).resolve().parents[1] / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


store_server = _load_helper("store_server")


@pytest.fixture
def postgres() -> Iterator[Any]:
    """A PostgreSQL server on a free loopback port, for this test alone (it may be stopped
    and restarted); stopped by its PID and removed at the end."""
    module = _load_helper("postgres_server")
    if module.postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed: ./dev test installs it (apt-get install postgresql)")
    server = module.PostgresServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    """A redis-server on a free loopback port, for this test alone (skipped without one).

    The test may stop and restart it (same port); it is stopped by its PID at the end.
    """
    if not store_server.REDIS_SERVER:
        pytest.fail("redis-server is not installed: ./dev test installs it (apt-get install redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = store_server.RedisServer(directory=directory).start()
    yield server
    server.close()


# --------------------------------------------------------------------------- TLS


@pytest.fixture
def certificates(tmp_path: Path) -> Any:
    """A test CA and the certificates signed with it (and one that is not)."""
    from tls_harness import make_certificates

    return make_certificates(tmp_path / "certificates")


@pytest.fixture
def tunnels(tmp_path: Path) -> Iterator[list[Any]]:
    """stunnel processes a test starts (see tls_harness); stopped by PID at the end."""
    started: list[Any] = []
    yield started
    for tunnel in started:
        tunnel.stop()


# --------------------------------------------------------------------------- pjsua2 agents


@pytest.fixture
def agents() -> Iterator[Callable[..., Any]]:
    """Start pjsua2 agents (tests/agents/); each is stopped (by its PID) at the end."""
    from harness import load_agent_client

    agent_class = load_agent_client().Agent
    started: list[Any] = []

    def start(**options: Any) -> Any:
        agent = agent_class(**options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
