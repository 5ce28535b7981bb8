"""IvrPool: PIN IVRs in worker processes, called by pjsua2 test user agents.

The pool runs on an asyncio loop in a helper thread; its workers are subprocesses
(``python -m sipguard.pin.ivr.worker``), one pjsua2 library each, so this process only
imports pjsua2 (no skip: if pjsua2 cannot be imported these tests fail). The callers
are tests/agents/pjsua_agent.py subprocesses. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pjsua2  # noqa: F401 (fail loudly, never skip, when pjsua2 is missing)
import pytest
from harness import load_agent_client

from sipguard.pin.ivr.pool import IvrPool, Link
from sipguard.pin.ivr.port import TOKEN_HEADER, IvrConfig, IvrResult, config_line
from sipguard.pin.ivr.worker import TEST_HOOKS_ENV

pytestmark = pytest.mark.e2e




Agent = load_agent_client().Agent

CALL_TIMEOUT = 5.0
RESULT_TIMEOUT = 8.0
TEST_CONFIG = IvrConfig(digit_timeout=3.0, overall_timeout=15.0, max_digits=12, max_sessions=4)


class PoolRunner:
    """An asyncio loop in a thread with an IvrPool on it; results in a queue."""

    def __init__(self, workers: int = 2, config: IvrConfig = TEST_CONFIG) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.results: queue.Queue[IvrResult] = queue.Queue()
        self.links_changed = threading.Event()
        self.pool = IvrPool(config, workers)
        self.pool.on_links_changed = self.links_changed.set

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the loop's thread (the pool is not thread-safe)."""

        async def run() -> Any:
            return function()

        return self.run(run(), 5.0)

    def start(self) -> None:
        self.run(self.pool.start(self.results.put))

    def result(self, timeout: float = RESULT_TIMEOUT) -> IvrResult:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no IvrResult within {timeout} s") from None

    def links(self) -> list[Link]:
        links: list[Link] = self.call(lambda: self.pool.links)
        return links

    def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            time.sleep(0.1)

    def close(self) -> None:
        try:
            self.run(self.pool.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def runner() -> Iterator[PoolRunner]:
    runner = PoolRunner()
    try:
        runner.start()
        yield runner
    finally:
        runner.close()


def call_link(agent: Any, link: Link, token: str | None = None) -> str:
    """Call one worker; the SIP Call-ID of the call."""
    (host, port), link_token, _capacity = link
    agent.call(f"sip:pin@{host}:{port}", {TOKEN_HEADER: link_token if token is None else token})
    call_id: str = agent.wait_for("calling", CALL_TIMEOUT)["call_id"]
    return call_id


def answered(agent: Any, link: Link) -> str:
    call_id = call_link(agent, link)
    agent.wait_for("state", CALL_TIMEOUT, state="CONFIRMED")
    agent.wait_for("media", CALL_TIMEOUT)
    return call_id


def alive(pid: int) -> bool:
    """Whether ``pid`` is still a live process (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def worker_children() -> list[int]:
    """The live IVR worker processes that are children of this test process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if (int(fields[1]) == os.getpid() and fields[0] != "Z"
                and b"sipguard.pin.ivr.worker" in command):
            found.append(int(entry))
    return found


def test_each_worker_collects_its_digits(runner: PoolRunner) -> None:
    links = runner.links()
    assert len(links) == 2
    assert links[0][0] != links[1][0] and links[0][1] != links[1][1]
    assert [capacity for _, _, capacity in links] == [4, 4]
    assert runner.call(lambda: runner.pool.capacity) == 8
    assert runner.call(lambda: runner.pool.address) == links[0][0]
    with Agent() as first, Agent() as second:
        first_id = answered(first, links[0])
        second_id = answered(second, links[1])
        first.send_dtmf("111111#", method="rfc4733")
        second.send_dtmf("2222222#", method="rfc4733")
        results = {r.call_id: r for r in (runner.result(), runner.result())}
        assert {k: (r.outcome, r.digits) for k, r in results.items()} == {
            first_id: ("entered", "111111"), second_id: ("entered", "2222222")}
        runner.until(lambda: runner.pool.active_sessions == 2, 3.0, "2 sessions reported")
        # refuse goes to the second worker only: its caller hears the refusal, then BYE
        runner.call(lambda: runner.pool.instruct(second_id, "refuse"))
        assert second.wait_for("disconnected", 10.0)["status"] == 200
        first.clear()
        with pytest.raises(AssertionError):
            first.wait_for("disconnected", 0.5)
        runner.until(lambda: runner.pool.active_sessions == 1, 3.0, "1 session reported")
        # retry goes to the first worker, which collects again
        runner.call(lambda: runner.pool.instruct(first_id, "retry"))
        first.send_dtmf("333333#", method="rfc4733")
        again = runner.result()
        assert (again.call_id, again.outcome, again.digits) == (first_id, "entered", "333333")
        first.hangup()
        first.wait_for("disconnected", CALL_TIMEOUT)
    runner.until(lambda: runner.pool.active_sessions == 0, 3.0, "no session reported")


def test_unknown_call_id_is_sent_to_every_worker(runner: PoolRunner) -> None:
    # No result yet for this call: the pool does not know its worker and asks them all.
    with Agent() as agent:
        call_id = answered(agent, runner.links()[1])
        runner.call(lambda: runner.pool.instruct(call_id, "refuse"))
        assert agent.wait_for("disconnected", 10.0)["status"] == 200


def test_wrong_token_is_refused(runner: PoolRunner) -> None:
    links = runner.links()
    with Agent() as agent:
        call_link(agent, links[0], token=links[1][1])  # the other worker's token
        assert agent.wait_for("disconnected", CALL_TIMEOUT)["status"] == 403


def test_fifth_call_to_one_worker_is_busy(runner: PoolRunner) -> None:
    links = runner.links()
    agents = [Agent() for _ in range(6)]
    try:
        for agent in agents[:4]:
            answered(agent, links[0])
        call_link(agents[4], links[0])
        assert agents[4].wait_for("disconnected", CALL_TIMEOUT)["status"] == 486
        answered(agents[5], links[1])  # the other worker still answers
        runner.until(lambda: runner.pool.active_sessions == 5, 3.0, "5 sessions reported")
    finally:
        for agent in agents:
            agent.stop()


def test_killed_worker_is_restarted(runner: PoolRunner) -> None:
    before = runner.links()
    pids = runner.call(lambda: runner.pool.pids)
    with Agent() as agent:
        answered(agent, before[1])
        runner.until(lambda: runner.pool.active_sessions == 1, 3.0, "1 session reported")
        os.kill(pids[1], signal.SIGKILL)
        # first the dead worker leaves the links, then it is back on a new port and token
        runner.until(lambda: len(runner.pool.links) == 1, 5.0, "the dead worker left")
        assert runner.links() == before[:1]
        assert runner.call(lambda: runner.pool.active_sessions) == 0
        runner.links_changed.clear()
        assert runner.links_changed.wait(10.0), "on_links_changed was not called"
    after = runner.links()
    assert len(after) == 2 and after[0] == before[0]
    assert after[1][0] != before[1][0] and after[1][1] != before[1][1]
    new_pids = runner.call(lambda: runner.pool.pids)
    assert new_pids[0] == pids[0] and new_pids[1] != pids[1]
    with Agent() as agent:  # the new worker answers and collects
        call_id = answered(agent, after[1])
        agent.send_dtmf("444444#", method="rfc4733")
        result = runner.result()
        assert (result.call_id, result.digits) == (call_id, "444444")


def test_stop_leaves_no_worker_behind(runner: PoolRunner) -> None:
    pids = runner.call(lambda: runner.pool.pids)
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    with Agent() as agent:  # a call in progress does not hold the stop up
        answered(agent, runner.links()[0])
        started = time.monotonic()
        runner.run(runner.pool.stop())
        assert time.monotonic() - started < 6.0
        assert agent.wait_for("disconnected", CALL_TIMEOUT)["status"] == 200  # the IVR hung up
    assert not any(alive(pid) for pid in pids)
    assert worker_children() == []
    assert runner.call(lambda: runner.pool.links) == []


def test_a_worker_that_cannot_start_fails_the_pool(tmp_path: Path) -> None:
    config = IvrConfig(prompts={"enter_pin": tmp_path / "missing.wav"})
    runner = PoolRunner(workers=2, config=config)
    try:
        with pytest.raises(RuntimeError, match=r"missing\.wav"):
            runner.start()
        assert runner.call(lambda: runner.pool.pids) == []
        assert worker_children() == []
    finally:
        runner.close()


def _worker(hooks: bool) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != TEST_HOOKS_ENV}
    if hooks:
        env[TEST_HOOKS_ENV] = "1"
    process = subprocess.Popen([sys.executable, "-m", "sipguard.pin.ivr.worker"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(config_line(TEST_CONFIG))
    process.stdin.flush()
    assert '"ready": true' in process.stdout.readline()
    return process


def _finish(process: subprocess.Popen[str], *commands: str) -> tuple[int, str]:
    """Send ``commands`` (stdin left open: its EOF would stop the worker), then
    wait (bounded) for the exit: (status, stderr)."""
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write("".join(c + "\n" for c in commands))
        process.stdin.flush()
        process.wait(10.0)
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5.0)
        for stream in (process.stdin, process.stdout, process.stderr):
            with contextlib.suppress(OSError):
                stream.close()
    return process.returncode, stderr


def test_worker_exits_nonzero_when_its_pjsua_thread_fails() -> None:
    # No stop command: the worker exits on its own once its pjsua2 thread failed.
    status, stderr = _finish(_worker(hooks=True), '{"crash_for_test": true}')
    assert status == 1
    assert "ivr.loop_failed" in stderr and "Traceback" in stderr and "crash_for_test" in stderr
    assert "ivr.worker_failed" in stderr


def test_crash_hook_is_ignored_without_the_environment_variable() -> None:
    status, stderr = _finish(_worker(hooks=False), '{"crash_for_test": true}',
                             '{"stop": true}')
    assert status == 0
    lines = [json.loads(line) for line in stderr.splitlines()]  # one JSON line per event
    assert {"event": "ivr.worker_bad_command", "reason": "test_hooks_disabled"}.items() <= \
        next(line for line in lines if line["event"] == "ivr.worker_bad_command").items()
    assert all(line["process"] == "ivr-worker" and line["pid"] > 0 for line in lines)
    assert "Traceback" not in stderr


def test_worker_whose_pjsua_thread_fails_is_restarted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_HOOKS_ENV, "1")  # the workers inherit it
    runner = PoolRunner(workers=1)
    try:
        runner.start()
        before = runner.links()
        pids = runner.call(lambda: runner.pool.pids)
        worker = runner.pool._workers[0]  # the test hook's way in
        runner.call(lambda: runner.pool._send(worker, {"crash_for_test": True}))
        runner.until(lambda: not runner.pool.links, 5.0, "the failed worker left")
        assert not alive(pids[0])
        runner.until(lambda: len(runner.pool.links) == 1, 10.0, "the worker is back")
        after = runner.links()
        assert after[0][1] != before[0][1]
        assert runner.call(lambda: runner.pool.pids) != pids
        with Agent() as agent:
            call_id = answered(agent, after[0])
            agent.send_dtmf("555555#", method="rfc4733")
            result = runner.result()
            assert (result.call_id, result.digits) == (call_id, "555555")
    finally:
        runner.close()
