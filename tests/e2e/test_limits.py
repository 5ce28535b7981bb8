"""Limits end to end: rate, concurrency and duration limits in a real sipguard, driven by SIPp.

The PBX is a SIPp UAC (its From user, so the extension, is 2001 in every fixture);
the trunk is a SIPp UAS that answers. The policies are tests/policies/limits_*.yaml:
account asterisk-1 (the e2e peer), US, allowed to call the US, Canada and Britain.

Calls through are ``uac_call_bye.xml`` (200 expected); calls a limit refuses are
``uac_blocked.xml`` (403 expected, then ACK). Two tests count in a real redis-server
on a free loopback port: two sipguard nodes sharing it, and an outage in the middle
of a test (stopped by its PID, restarted on the same port).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
import redis
from harness import Event, Sipguard, SippResult, SippRun, SippUas

pytestmark = pytest.mark.e2e

POLICIES = Path(__file__).resolve().parents[1] / "policies"
# London numbers dialled the US way (011 44 ...): international for account asterisk-1.
BRITAIN = [f"01144207946{n:04d}" for n in range(321, 330)]
DOMESTIC = "12125551234"
EXTENSION_COUNTER = "sipguard:rate:ext-intl:asterisk-1/2001"  # the Redis key of ext-intl

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]
StartUac = Callable[..., SippRun]


def policy(name: str) -> str:
    """The text of tests/policies/limits_<name>.yaml."""
    return (POLICIES / f"limits_{name}.yaml").read_text()


def call_ids(result: SippResult) -> set[str | None]:
    """The Call-IDs of the INVITEs a SIPp run sent."""
    return {message.header("Call-ID") for message in result.messages("sent", "INVITE ")}


def call_through(run_uac: RunUac, guard: Sipguard, number: str, calls: int = 1) -> SippResult:
    """Place ``calls`` calls to ``number`` that must be answered and hung up normally."""
    result = run_uac("uac_call_bye.xml", guard.target(), service=number, calls=calls, timeout=15)
    assert result.returncode == 0, result.describe() + "\n" + guard.describe()
    assert result.successful == calls, result.describe()
    return result


def call_refused(run_uac: RunUac, guard: Sipguard, number: str) -> tuple[SippResult, Event]:
    """Place one call that sipguard must refuse with 403; return the run and its call.rejected."""
    result = run_uac("uac_blocked.xml", guard.target(), service=number, timeout=15)
    assert result.returncode == 0, result.describe() + "\n" + guard.describe()
    ids = call_ids(result)
    (rejected,) = guard.wait_for("call.rejected", where=lambda event: event.get("call_id") in ids)
    assert rejected["status"] == 403
    (forbidden,) = result.messages("received", "SIP/2.0 403")[:1]
    assert f'text="{rejected["category"]}"' in (forbidden.header("Reason") or ""), forbidden.text
    return result, rejected


def wait_for_no_calls(guard: Sipguard, timeout: float = 5.0) -> None:
    """Poll SIGUSR1 stats until sipguard holds no call (so a finished call's leases are released)."""
    deadline = time.monotonic() + timeout
    while guard.stats()["calls"] != 0:
        assert time.monotonic() < deadline, guard.describe()
        time.sleep(0.05)


def test_the_dialled_numbers_are_valid_where_the_tests_say() -> None:
    """Every number dialled here is a valid British (or US) number, so only limits can refuse it."""
    for dialled in BRITAIN:
        number = phonenumbers.parse("+" + dialled.removeprefix("011"))
        assert phonenumbers.is_valid_number(number), dialled
        assert phonenumbers.region_code_for_number(number) == "GB", dialled
    assert phonenumbers.region_code_for_number(phonenumbers.parse("+" + DOMESTIC)) == "US"


def test_rate_limit_refuses_the_fourth_international_call_in_the_hour(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """With at most 3 international calls per extension per hour (memory store), the 4th gets
    403 "limit reached" from rule ext-intl, while a domestic call still goes through."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=policy("rate"))

    call_through(run_uac, guard, BRITAIN[0], calls=3)
    _, rejected = call_refused(run_uac, guard, BRITAIN[1])  # another number, same extension
    call_through(run_uac, guard, DOMESTIC)

    assert rejected["category"] == "limit reached", rejected
    assert rejected["rule"] == "ext-intl", rejected
    assert "4 calls in 1h, limit 3" in rejected["reason"], rejected
    assert uas.wait_for_received("INVITE ", 4) == 4, uas.describe()
    uas.stop()
    reached = [message.start_line for message in uas.messages("received", "INVITE ")]
    assert sum(BRITAIN[0][3:] in line for line in reached) == 3, reached
    assert not any(BRITAIN[1][3:] in line for line in reached), reached


def test_concurrency_limit_refuses_a_second_live_international_call(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac, start_uac: StartUac
) -> None:
    """With one live international call per extension, a second one while the first is up gets
    403 "limit reached", and once the first has ended a new one goes through."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=policy("concurrency"))

    held = start_uac(
        "uac_call_bye.xml", guard.target(), service=BRITAIN[0], timeout=15, extra=["-d", "3000"]
    )
    guard.wait_for("call.answered", timeout=10)
    _, rejected = call_refused(run_uac, guard, BRITAIN[1])
    assert held.process.poll() is None, "the first call should still be up (it holds 3 s)"
    first = held.finish()
    assert first.returncode == 0 and first.successful == 1, first.describe()
    wait_for_no_calls(guard)
    call_through(run_uac, guard, BRITAIN[2])

    assert rejected["category"] == "limit reached", rejected
    assert rejected["rule"] == "ext-intl-live", rejected
    assert "2 calls at once, limit 1" in rejected["reason"], rejected
    assert len(guard.events("call.forwarded")) == 2, guard.describe()


def test_two_nodes_on_one_redis_share_the_rate_limit(
    start_uas: StartUas,
    start_sipguard: StartSipguard,
    run_uac: RunUac,
    redis_server: Any,
) -> None:
    """Two sipguard processes counting in one Redis: 3 calls through node A and 3 through node B
    forward exactly 5 in total; the 6th gets 403 "limit reached" (ext-intl, max 5 per hour)."""
    uas = start_uas("uas_answer.xml")
    store = {"backend": "redis", "url": redis_server.url, "timeout": 0.2}
    node_a = start_sipguard(uas.uri, policy=policy("shared"), store=store)
    node_b = start_sipguard(uas.uri, policy=policy("shared"), store=store)

    call_through(run_uac, node_a, BRITAIN[0], calls=3)
    call_through(run_uac, node_b, BRITAIN[1], calls=2)
    _, rejected = call_refused(run_uac, node_b, BRITAIN[2])

    assert rejected["category"] == "limit reached", rejected
    assert rejected["rule"] == "ext-intl", rejected
    assert "6 calls in 1h, limit 5" in rejected["reason"], rejected
    node_a.wait_for("call.forwarded", count=3)
    node_b.wait_for("call.forwarded", count=2)
    assert len(node_a.events("call.forwarded")) + len(node_b.events("call.forwarded")) == 5
    # Node B's first call already counted node A's three.
    first_on_b = node_b.events("call.screened")[0]
    assert any("4 calls in 1h, limit 5" in entry for entry in first_on_b["trace"]), first_on_b
    assert uas.wait_for_received("INVITE ", 5) == 5, uas.describe()
    with redis.Redis.from_url(redis_server.url, socket_timeout=2.0) as client:
        assert client.zcard(EXTENSION_COUNTER) == 5


def test_store_outage_fails_international_closed_and_domestic_open_then_recovers(
    start_uas: StartUas,
    start_sipguard: StartSipguard,
    run_uac: RunUac,
    redis_server: Any,
) -> None:
    """With redis-server stopped, international calls get 403 "limits unavailable", domestic ones
    complete, store.unavailable is logged once; after a restart on the same port calls are
    counted again and store.recovered is logged once."""
    uas = start_uas("uas_answer.xml")
    store = {"backend": "redis", "url": redis_server.url, "timeout": 0.2}
    guard = start_sipguard(uas.uri, policy=policy("outage"), store=store)
    counter = redis.Redis.from_url(redis_server.url, socket_timeout=2.0)

    call_through(run_uac, guard, BRITAIN[0])
    assert counter.zcard(EXTENSION_COUNTER) == 1
    counter.close()

    redis_server.stop()
    _, first_refusal = call_refused(run_uac, guard, BRITAIN[1])
    domestic = call_through(run_uac, guard, DOMESTIC)
    _, second_refusal = call_refused(run_uac, guard, BRITAIN[2])

    for rejected in (first_refusal, second_refusal):
        assert rejected["category"] == "limits unavailable", rejected
        assert rejected["rule"] == "store-failure:international", rejected
    domestic_ids = call_ids(domestic)
    (screened,) = guard.events("call.screened", where=lambda e: e.get("call_id") in domestic_ids)
    assert any("fail open" in entry for entry in screened["trace"]), screened
    assert len(guard.events("store.unavailable")) == 1, guard.describe()
    assert guard.events("store.recovered") == []

    redis_server.start()
    call_through(run_uac, guard, BRITAIN[3])
    guard.wait_for("store.recovered")
    call_through(run_uac, guard, BRITAIN[4])

    # The restarted server kept nothing, so these two are the only calls it has counted.
    with redis.Redis.from_url(redis_server.url, socket_timeout=2.0) as client:
        assert client.zcard(EXTENSION_COUNTER) == 2
    assert len(guard.events("store.recovered")) == 1, guard.describe()
    assert len(guard.events("store.unavailable")) == 1, guard.describe()
    assert uas.wait_for_received("INVITE ", 4) == 4, uas.describe()


def test_duration_limit_ends_an_answered_international_call_after_two_seconds(
    start_uas: StartUas, start_sipguard: StartSipguard, run_uac: RunUac
) -> None:
    """An answered international call under a 2 s duration limit gets BYE on both legs about
    2 s after the answer, and call.ended says the longest call was reached."""
    uas = start_uas("uas_answer.xml")
    guard = start_sipguard(uas.uri, policy=policy("duration"))

    result = run_uac("uac_call_wait_bye.xml", guard.target(), service=BRITAIN[0], timeout=8)

    assert result.returncode == 0 and result.successful == 1, result.describe()
    answer = result.messages("received", "SIP/2.0 200")[0]
    bye = result.messages("received", "BYE ")[0]
    assert 1.8 <= bye.timestamp - answer.timestamp <= 3.0, (answer.timestamp, bye.timestamp)
    ended = guard.wait_for("call.ended")[0]
    assert ended["ended_by"] == "sipguard", ended
    assert "longest call" in ended["reason"], ended
    assert uas.wait_for_received("BYE ", 1) == 1, uas.describe()
