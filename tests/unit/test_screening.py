"""The Screener: limits counted in a MemoryStore across calls, and the store-failure rule."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import structlog
import structlog.testing

from sipguard.policy import CallAttempt, Verdict
from sipguard.policy.loader import load_policy_file
from sipguard.screening.screener import Screener
from sipguard.store import MemoryStore, StoreUnavailableError

SHIPPED = Path(__file__).resolve().parents[2] / "conf" / "policy.yaml"
MONDAY_NOON = datetime.fromisoformat("2026-11-23T12:00:00-05:00")
CANADA = "16135550123"  # domestic for asterisk-1 (US with domestic_regions US, CA)
IRELAND = "01135312345678"  # international; the sales-europe group (4XX) may call it
IRELAND_TOO = "01135312345679"  # another Dublin number: alternating never makes a run


class DownStore(MemoryStore):
    """A store whose server is down (for the fail-open/closed rule)."""

    async def try_take(self, requests, call_id, now):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("connection refused")

    async def reserve_spend(self, budgets, call_id, wanted, now):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("connection refused")

    async def spent(self, windows, now):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("connection refused")

    async def streak(self, key, number, ttl, now):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("connection refused")


def _screener(store: MemoryStore | None = None) -> Screener:
    return Screener(SHIPPED, load_policy_file(SHIPPED), structlog.get_logger(), store)


def _attempt(number: str, extension: str = "401") -> CallAttempt:
    return CallAttempt("c", "asterisk-1", "127.0.0.1", extension, number, extension)


def test_sixth_international_call_in_an_hour_is_refused():
    """extension-international-hour (5 per hour, deny) stops the sixth call to Ireland."""
    screener = _screener()

    async def run() -> list[str]:
        actions = []
        for minute in range(6):
            number = IRELAND if minute % 2 else IRELAND_TOO
            screening = await screener.screen(_attempt(number), 0.0, f"call-{minute}",
                                              MONDAY_NOON + timedelta(minutes=minute))
            actions.append(screening.decision.action)
            await screener.release(screening.lease_keys, f"call-{minute}")  # each call ended
            await screener.charge(screening, 0.0, MONDAY_NOON)  # unanswered: nothing spent
        return actions

    with structlog.testing.capture_logs():
        actions = asyncio.run(run())
    assert actions == ["allow"] * 5 + ["deny"]


def test_refused_call_holds_no_lease_and_a_later_one_counts_again():
    """Live calls hold concurrency leases; the third concurrent one is refused without one."""
    screener = _screener()

    async def run() -> tuple[str, str, str]:
        first = await screener.screen(_attempt(IRELAND), 0.0, "call-1", MONDAY_NOON)
        second = await screener.screen(_attempt(IRELAND), 0.0, "call-2", MONDAY_NOON)
        third = await screener.screen(_attempt(IRELAND), 0.0, "call-3", MONDAY_NOON)
        assert second.lease_keys != () and third.lease_keys == ()
        await screener.release(first.lease_keys, "call-1")
        fourth = await screener.screen(_attempt(IRELAND), 0.0, "call-4", MONDAY_NOON)
        return first.decision.action, third.decision.rule or "", fourth.decision.action

    with structlog.testing.capture_logs():
        first, refused_by, fourth = asyncio.run(run())
    assert (first, fourth) == ("allow", "allow")
    # Two live international calls are allowed per extension: the third is refused.
    assert refused_by == "extension-international-live"


def test_store_outage_fails_closed_for_international_and_open_for_domestic():
    """With the store down, international is refused, domestic goes through, logged once."""
    screener = _screener(DownStore())

    async def run() -> list[tuple[str, str]]:
        results = []
        for number in (IRELAND, CANADA, IRELAND):
            screening = await screener.screen(_attempt(number), 0.0, "x", MONDAY_NOON)
            results.append((screening.decision.action, screening.decision.category))
        return results

    with structlog.testing.capture_logs() as logs:
        results = asyncio.run(run())
    assert results == [("deny", "limits unavailable"), ("allow", "allowed"),
                       ("deny", "limits unavailable")]
    assert [log["event"] for log in logs].count("store.unavailable") == 1


def test_emergency_calls_never_touch_a_down_store():
    """911 goes through even while the store is down (it is never counted)."""
    screener = _screener(DownStore())
    with structlog.testing.capture_logs() as logs:
        screening = asyncio.run(screener.screen(_attempt("911", "700"), 0.0, "sos", MONDAY_NOON))
    assert screening.decision.verdict is Verdict.FORWARD
    assert not any(log["event"] == "store.unavailable" for log in logs)


def test_fourth_call_in_a_row_to_one_number_needs_a_pin():
    """same-number-in-a-row (3, pin) challenges the 4th consecutive call to one number."""
    screener = _screener()

    async def run() -> list[str]:
        actions = []
        for minute in range(4):
            screening = await screener.screen(_attempt(IRELAND), 0.0, f"call-{minute}",
                                              MONDAY_NOON + timedelta(minutes=minute * 20))
            actions.append(screening.decision.action)
            await screener.release(screening.lease_keys, f"call-{minute}")
        return actions

    with structlog.testing.capture_logs():
        actions = asyncio.run(run())
    assert actions == ["allow", "allow", "allow", "pin"]


def test_calls_without_the_extension_header_are_warned_about_once_per_peer():
    """An extension read from From (no header) in an account with groups logs one
    peer.extension_header_missing, and the trace says where the extension came from."""
    screener = _screener()
    from_user = dataclasses.replace(_attempt(CANADA, "201"), extension_source="from")
    from_header = dataclasses.replace(_attempt(CANADA, "201"), extension_source="header")

    async def run() -> list[str]:
        details = []
        for attempt in (from_header, from_user, from_user):
            screening = await screener.screen(attempt, 0.0, "call", MONDAY_NOON)
            details.append(next(e.detail for e in screening.decision.trace if e.stage == "group"))
            await screener.release(screening.lease_keys, "call")
        return details

    with structlog.testing.capture_logs() as logs:
        details = asyncio.run(run())
    warnings = [log for log in logs if log["event"] == "peer.extension_header_missing"]
    assert len(warnings) == 1, logs
    assert warnings[0]["account"] == "asterisk-1" and warnings[0]["read_from"] == "From"
    assert "no extension header" not in details[0]
    assert "from the From header: no extension header" in details[1]


def test_a_deleted_policy_file_is_reported_once_and_the_policy_stays(tmp_path: Path) -> None:
    """Issue 22: the file removed while running logs policy.reload_failed (once) and keeps
    the last good policy; the file back is loaded again."""
    path = tmp_path / "policy.yaml"
    path.write_text(SHIPPED.read_text())
    (tmp_path / "ratedeck.csv").write_text((SHIPPED.parent / "ratedeck.csv").read_text())
    screener = Screener(path, load_policy_file(path), structlog.get_logger())
    version = screener.policy.version
    path.unlink()
    with structlog.testing.capture_logs() as logs:
        assert screener.check_for_change() is False
        assert screener.check_for_change() is False  # not reported again
    failures = [log for log in logs if log["event"] == "policy.reload_failed"]
    assert len(failures) == 1 and failures[0]["reason"] == "file removed", logs
    assert "cannot read" in failures[0]["problems"][0]
    assert screener.policy.version == version
    path.write_text(SHIPPED.read_text().replace("# ", "#  ", 1))  # same rules, new text
    with structlog.testing.capture_logs() as logs:
        assert screener.check_for_change() is True
    assert [log["event"] for log in logs if log["event"].startswith("policy.")] == [
        "policy.reloaded"]
