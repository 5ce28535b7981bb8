"""Account locks and the kill switch (sipguard.screening.locks) on a MemoryStore, applied to real
decisions of a loaded policy."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sipguard.policy import CallAttempt, Decision, Policy, TraceEntry, Verdict, evaluate
from sipguard.policy.loader import load_policy
from sipguard.screening.locks import Lock, Locks
from sipguard.store import MemoryStore, StoreUnavailableError

T = TypeVar("T")

POLICY = """\
accounts:
  - name: acme
    home_region: US
    may_dial: [domestic, international]
  - name: globex
    home_region: US
    may_dial: [domestic, international]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: allow-gb, region: GB, action: allow}
    - {id: deny-cu, region: CU, action: deny}
"""

LONDON = "011442079460321"
NEW_YORK = "12125550100"
HAVANA = "0115351234567"


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, /, **fields: self.lines.append((level, event, fields))


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(POLICY))
    return load_policy(path)


def _decide(policy: Policy, dialled: str, account: str = "acme") -> Decision:
    return evaluate(policy, CallAttempt(f"call-{dialled}@127.0.0.1", account, "127.0.0.1",
                                        "201", dialled, extension="201"))


def _run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await main()

    return asyncio.run(bounded())


def test_decisions_the_tests_use(policy: Policy):
    """The policy forwards London and New York and refuses Havana (what the lock tests start
    from)."""
    london, new_york = _decide(policy, LONDON), _decide(policy, NEW_YORK)
    assert (london.verdict, london.number_class, london.rule) == (
        Verdict.FORWARD, "international", "allow-gb")
    assert (new_york.verdict, new_york.number_class) == (Verdict.FORWARD, "domestic")
    assert _decide(policy, HAVANA).verdict is Verdict.REJECT
    assert _decide(policy, "911").rule == "emergency"


def test_lock_unlock_and_listing():
    """Locks are set, replaced, listed (sorted by account) and lifted."""
    async def main() -> None:
        log = Log()
        locks = Locks(MemoryStore(), log)
        assert await locks.listing() == ([], None)
        added = await locks.lock("globex", "all", "toll fraud suspected", "ops")
        assert (added.account, added.scope, added.reason, added.by) == (
            "globex", "all", "toll fraud suspected", "ops")
        await locks.lock("acme", "international", "urgent alert", "sipguard")
        listed, switch = await locks.listing()
        assert [(lock.account, lock.scope, lock.reason, lock.by) for lock in listed] == [
            ("acme", "international", "urgent alert", "sipguard"),
            ("globex", "all", "toll fraud suspected", "ops")]
        assert switch is None
        # A second lock replaces the first.
        await locks.lock("acme", "all", "worse", "ops")
        held, _ = await locks.current("acme")
        assert held is not None and (held.scope, held.reason) == ("all", "worse")
        assert await locks.unlock("acme", "ops") is True
        assert await locks.unlock("acme", "ops") is False  # it had none any more
        assert [lock.account for lock in (await locks.listing())[0]] == ["globex"]
        assert await locks.current("acme") == (None, None)
        assert locks.set == 3
        assert [event for _, event, _ in log.lines].count("lock.added") == 3
        assert [event for _, event, _ in log.lines].count("lock.removed") == 2

    _run(main)


def test_lock_refuses_bad_scope_and_account():
    """A lock's class is international or all, and it names one account."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        with pytest.raises(ValueError, match="class must be one of international, all"):
            await locks.lock("acme", "domestic", "x", "ops")
        for account in ("", "*"):
            with pytest.raises(ValueError, match="name an account"):
                await locks.lock(account, "all", "x", "ops")
        assert await locks.listing() == ([], None)

    _run(main)


def test_lockdown_on_and_off():
    """The kill switch is listed while on and gone once off; stats() says so."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        switch = await locks.lockdown(True, "fraud wave", "ops")
        assert switch is not None and (switch.account, switch.scope) == ("*", "international")
        listed, current = await locks.listing()
        assert listed == [] and current is not None
        assert (current.account, current.reason, current.by) == ("*", "fraud wave", "ops")
        assert locks.stats()["lockdown"] is True
        assert await locks.lockdown(False, "", "ops") is None
        assert (await locks.listing())[1] is None
        assert locks.stats()["lockdown"] is False

    _run(main)


def test_a_lock_set_on_one_node_is_seen_by_another():
    """Locks live in the store: another Locks on the same store reads them."""
    async def main() -> None:
        store = MemoryStore()
        await Locks(store, Log()).lock("acme", "international", "fraud", "node-a")
        held, switch = await Locks(store, Log()).current("acme")
        assert held is not None and (held.account, held.by) == ("acme", "node-a")
        assert switch is None

    _run(main)


def test_international_call_of_a_locked_account_is_refused(policy: Policy):
    """A forwarded international call of a locked account becomes a REJECT by lock:ACCOUNT,
    with the lock's stage in the trace."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lock("acme", "international", "fraud suspected", "ops")
        decision = _decide(policy, LONDON)
        locked = await locks.apply("acme", decision)
        assert locked.verdict is Verdict.REJECT
        assert locked.rule == "lock:acme" and locked.would == "deny"
        assert locked.category == "dialling locked"
        assert locked.reason == ("account acme locked (international and premium calls; by ops: "
                                 "fraud suspected)")
        assert locked.trace[:-1] == decision.trace  # the screening's trace is kept
        assert locked.trace[-1] == TraceEntry("lock:acme", True, locked.reason, "lock", "deny")
        assert locked.number == decision.number and locked.number_class == "international"
        assert locked.as_dict()["action"] == "deny"
        assert locks.refused == 1

    _run(main)


def test_international_lock_lets_domestic_and_other_accounts_through(policy: Policy):
    """An international lock leaves domestic calls, and other accounts' calls, alone."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lock("acme", "international", "fraud", "ops")
        domestic = _decide(policy, NEW_YORK)
        assert await locks.apply("acme", domestic) is domestic
        other = _decide(policy, LONDON, account="globex")
        assert await locks.apply("globex", other) is other
        assert locks.refused == 0

    _run(main)


def test_scope_all_refuses_domestic_too(policy: Policy):
    """A lock of all dialling refuses domestic calls as well."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lock("acme", "all", "compromised", "ops")
        for dialled in (NEW_YORK, LONDON):
            locked = await locks.apply("acme", _decide(policy, dialled))
            assert locked.verdict is Verdict.REJECT and locked.rule == "lock:acme"
            assert "(all calls; by ops: compromised)" in locked.reason
        assert locks.refused == 2

    _run(main)


def test_kill_switch_refuses_international_for_every_account(policy: Policy):
    """With the kill switch on no account dials internationally; domestic calls go on."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lockdown(True, "fraud wave", "ops")
        for account in ("acme", "globex"):
            locked = await locks.apply(account, _decide(policy, LONDON, account=account))
            assert locked.verdict is Verdict.REJECT and locked.rule == "lockdown"
            assert locked.trace[-1].stage == "lock" and locked.trace[-1].rule == "lockdown"
            assert locked.reason.startswith("kill switch on: no international or premium calls")
            domestic = _decide(policy, NEW_YORK, account=account)
            assert await locks.apply(account, domestic) is domestic
        # The switch decides before an account's own lock.
        await locks.lock("acme", "international", "fraud", "ops")
        assert (await locks.apply("acme", _decide(policy, LONDON))).rule == "lockdown"
        await locks.lockdown(False, "", "ops")
        assert (await locks.apply("acme", _decide(policy, LONDON))).rule == "lock:acme"
        assert (await locks.apply("globex", _decide(policy, LONDON, "globex"))).verdict is (
            Verdict.FORWARD)

    _run(main)


def test_emergency_calls_are_never_refused(policy: Policy):
    """An emergency call goes through a lock of all dialling and the kill switch."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lock("acme", "all", "compromised", "ops")
        await locks.lockdown(True, "fraud wave", "ops")
        emergency = _decide(policy, "911")
        assert emergency.rule == "emergency" and emergency.verdict is Verdict.FORWARD
        assert await locks.apply("acme", emergency) is emergency
        # Even one that would look international to a lock.
        international = dataclasses.replace(emergency, number_class="international")
        assert await locks.apply("acme", international) is international
        assert locks.refused == 0

    _run(main)


def test_a_reject_stays_as_it_is(policy: Policy):
    """A call the policy already refused keeps its own rule and reason."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lock("acme", "all", "compromised", "ops")
        refused = _decide(policy, HAVANA)
        assert refused.verdict is Verdict.REJECT and refused.rule == "deny-cu"
        assert await locks.apply("acme", refused) is refused
        assert locks.refused == 0

    _run(main)


def test_challenged_calls_are_refused_by_a_lock():
    """A call that would be challenged for a PIN is stopped by a lock too."""
    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lock("acme", "international", "fraud", "ops")
        challenge = Decision(Verdict.CHALLENGE, "PIN required", rule="pin-intl",
                             number_class="international", would="pin")
        locked = await locks.apply("acme", challenge)
        assert locked.verdict is Verdict.REJECT and locked.rule == "lock:acme"
        assert [entry.stage for entry in locked.trace] == ["lock"]

    _run(main)


class FailingStore:
    """A MemoryStore whose get_marks stops answering after the first read."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.reads = 0

    async def get_marks(self, keys: Sequence[str],
                        now: float) -> list[tuple[str, float] | None]:
        self.reads += 1
        if self.reads > 1:
            raise StoreUnavailableError("store down")
        return await self.inner.get_marks(keys, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_last_read_locks_apply_while_the_store_is_down(policy: Policy):
    """When the store does not answer, the locks last read still refuse calls (a lock set by
    another node, read once, does not lapse in an outage)."""
    async def main() -> None:
        shared = MemoryStore()
        await Locks(shared, Log()).lock("acme", "international", "fraud", "node-b")
        await Locks(shared, Log()).lockdown(True, "fraud wave", "node-b")
        store = FailingStore(shared)
        locks = Locks(store, Log())  # type: ignore[arg-type]
        first = await locks.apply("acme", _decide(policy, LONDON))
        assert first.rule == "lockdown" and store.reads == 1
        for _ in range(3):
            again = await locks.apply("acme", _decide(policy, LONDON))
            assert again.verdict is Verdict.REJECT and again.rule == "lockdown"
        assert store.reads == 4  # the store was asked, and failed, each time
        held, switch = await locks.current("acme")
        assert isinstance(held, Lock) and held.by == "node-b"
        assert isinstance(switch, Lock) and switch.reason == "fraud wave"
        assert locks.stats() == {"refused": 4, "set": 0, "lockdown": True}

    _run(main)


def test_an_account_lock_read_once_holds_through_an_outage(policy: Policy):
    """The same for an account's own lock: international refused, domestic forwarded."""
    async def main() -> None:
        shared = MemoryStore()
        await Locks(shared, Log()).lock("acme", "international", "fraud", "node-b")
        store = FailingStore(shared)
        locks = Locks(store, Log())  # type: ignore[arg-type]
        assert (await locks.apply("acme", _decide(policy, LONDON))).rule == "lock:acme"
        assert (await locks.apply("acme", _decide(policy, LONDON))).rule == "lock:acme"
        domestic = _decide(policy, NEW_YORK)
        assert await locks.apply("acme", domestic) is domestic
        assert store.reads == 3

    _run(main)


PREMIUM_POLICY = """\
accounts:
  - name: acme
    home_region: US
    may_dial: [domestic, international, premium]
destinations:
  default: deny
  rules:
    - {id: allow-us, region: US, action: allow}
    - {id: allow-gb, region: GB, action: allow}
"""
UK_PREMIUM = "011449098790000"
US_PREMIUM = "19005550123"


def test_kill_switch_and_international_lock_stop_premium_numbers_too(tmp_path: Path):
    """A premium number abroad is classed premium, not international: the kill switch and
    an account's international lock stop it (and a domestic 1-900 number) all the same,
    while an ordinary domestic call goes on."""
    path = tmp_path / "policy.yaml"
    path.write_text(PREMIUM_POLICY)
    policy = load_policy(path)
    uk_premium, us_premium = _decide(policy, UK_PREMIUM), _decide(policy, US_PREMIUM)
    assert uk_premium.number_class == us_premium.number_class == "premium"
    assert uk_premium.verdict is not Verdict.REJECT and us_premium.verdict is not Verdict.REJECT

    async def main() -> None:
        locks = Locks(MemoryStore(), Log())
        await locks.lockdown(True, "fraud wave", "ops")
        for decision in (uk_premium, us_premium):
            assert (await locks.apply("acme", decision)).rule == "lockdown"
        domestic = _decide(policy, NEW_YORK)
        assert await locks.apply("acme", domestic) is domestic
        await locks.lockdown(False, "", "ops")
        await locks.lock("acme", "international", "fraud", "ops")
        assert (await locks.apply("acme", uk_premium)).rule == "lock:acme"
        assert await locks.apply("acme", domestic) is domestic

    _run(main)
