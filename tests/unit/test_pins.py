"""PINs: what may be a PIN, scrypt hashes, the PIN file, and PinGuard's lockout.

PinGuard runs on a MemoryStore (the store contract covers Redis) with real
files under tmp_path; every ``now`` is explicit, so lock expiry is judged on
the times the test passes.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sipguard.pin import pins as pins_module
from sipguard.pin.pins import (
    FILE_HEADER,
    PinCheck,
    PinGuard,
    PinOutcome,
    PinSettings,
    hash_pin,
    load_pin_file,
    lookup_hash,
    pin_key,
    save_pin_file,
    validate_pin,
    verify_pin,
)
from sipguard.schema.document import ConfigError
from sipguard.store import MemoryStore, StateStore, StoreUnavailableError

NOW = 1_000_000.0
PIN = "583920"
OTHER_PIN = "719346"

_T = TypeVar("_T")


class RecordingLog:
    """A logger that keeps every line as (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return record

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]

    def text(self) -> str:
        return repr(self.lines)


def run(coroutine: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coroutine

    return asyncio.run(main())


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("pin", "extension", "expected"),
    [
        ("583920", "2001", None),
        ("58392017", None, None),
        ("520014", "2001", None),  # holds the extension, but more than padding around it
        ("58392", None, "at least 6 digits"),
        ("", None, "digits only"),
        ("58392a", None, "digits only"),
        ("５８３９２０", None, "digits only"),  # fullwidth digits
        ("583 920", None, "digits only"),
        ("000000", None, "one digit repeated"),
        ("99999999", None, "one digit repeated"),
        ("123456", None, "run of consecutive digits"),
        ("987654", None, "run of consecutive digits"),
        ("890123", None, "run of consecutive digits"),  # wraps 9 -> 0
        ("210987", None, "run of consecutive digits"),
        ("121212", None, "repeat a shorter block"),
        ("123123", None, "repeat a shorter block"),
        ("583583", None, "repeat a shorter block"),
        ("200145", "200145", "the extension"),
        ("20012001", "2001", "the extension"),
        ("200120", "2001", "the extension"),
        ("002001", "2001", "the extension"),
        ("200100", "2001", "the extension"),
        ("112233", None, "most common"),
        ("696969", None, "repeat a shorter block"),
        ("654321", None, "run of consecutive digits"),
        ("147258", None, "most common"),
        ("159753", None, "most common"),
    ],
)
def test_validation(pin: str, extension: str | None, expected: str | None) -> None:
    """Trivial, short and guessable PINs are refused with a reason; good ones pass."""
    problem = validate_pin(pin, extension)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem, problem


def test_validation_honours_a_longer_minimum() -> None:
    """min_length comes from the configuration and may be raised."""
    assert validate_pin("583920", None, min_length=8) == "a PIN has at least 8 digits"
    assert validate_pin("58392017", None, min_length=8) is None


# --------------------------------------------------------------------------- hashing


def test_hash_round_trip_and_format() -> None:
    """The hash names its parameters, is salted (two hashes differ) and verifies its PIN only."""
    first, second = hash_pin(PIN), hash_pin(PIN)
    assert first.startswith("scrypt$16384$8$1$") and len(first.split("$")) == 6
    assert first != second and PIN not in first
    assert verify_pin(PIN, first) and verify_pin(PIN, second)
    assert not verify_pin(OTHER_PIN, first)
    assert not verify_pin("", first)
    assert not verify_pin(PIN + "0", first)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "583920",
        "bcrypt$16384$8$1$AAAA$BBBB",
        "scrypt$16384$8$1$AAAA",
        "scrypt$16384$8$1$not base64!$QjVyNeve4gvSk6hABWtLD20/6wxFHkx/rLVYXXtkHbY=",
        "scrypt$16384$8$1$BGu2SG2t9dtBokrqCUi2ew==$short",
        "scrypt$16383$8$1$BGu2SG2t9dtBokrqCUi2ew==$QjVyNeve4gvSk6hABWtLD20/6wxFHkx/rLVYXXtkHbY=",
        "scrypt$1073741824$8$1$BGu2SG2t9dtBokrqCUi2ew==$QjVyNeve4gvSk6hABWtLD20/6wxFHkx/rLVYXXtkHbY=",
        "scrypt$16384$x$1$BGu2SG2t9dtBokrqCUi2ew==$QjVyNeve4gvSk6hABWtLD20/6wxFHkx/rLVYXXtkHbY=",
        "scrypt$16384$8$1$$QjVyNeve4gvSk6hABWtLD20/6wxFHkx/rLVYXXtkHbY=",
    ],
)
def test_malformed_stored_text_never_verifies_and_never_raises(stored: str) -> None:
    """Anything that is not a sane scrypt hash is simply not a match."""
    assert verify_pin(PIN, stored) is False


# --------------------------------------------------------------------------- the file


def test_file_round_trip_is_0600_atomic_and_holds_no_pin(tmp_path: Path) -> None:
    """The file is written with mode 0600 under a header, in a directory created as needed,
    holds hashes only, and reads back the same; no temporary file is left behind."""
    path = tmp_path / "var" / "pins.yaml"
    hashes = {"2001": hash_pin(PIN), "asterisk-1/2001": hash_pin(OTHER_PIN),
              "asterisk-1/*": hash_pin(PIN)}
    save_pin_file(path, hashes)
    text = path.read_text()
    assert text.startswith(FILE_HEADER) and "sipguard pin set" in text and "never PINs" in text
    assert PIN not in text and OTHER_PIN not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_pin_file(path) == hashes
    assert os.listdir(path.parent) == ["pins.yaml"]
    save_pin_file(path, {"2001": hashes["2001"]})  # replaced whole
    assert load_pin_file(path) == {"2001": hashes["2001"]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_or_empty_file_has_no_pins(tmp_path: Path) -> None:
    """No file, an empty file or an empty mapping: no PINs (and so no default PIN)."""
    assert load_pin_file(tmp_path / "absent.yaml") == {}
    (tmp_path / "empty.yaml").write_text("")
    assert load_pin_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "none.yaml").write_text("pins:\n")
    assert load_pin_file(tmp_path / "none.yaml") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('pins:\n  "2001": "583920"\n', "bad.yaml:2: pins.2001: is not an scrypt hash"),
        ("pins:\n  a b/2001: HASH\n", "bad.yaml:2: pins.a b/2001: must be EXTENSION"),
        ("pins:\n  '*': HASH\n", "bad.yaml:2: pins.*: must be EXTENSION"),
        ("pins: [1, 2]\n", "bad.yaml:1: pins: must map"),
        ("pin:\n  '2001': HASH\n", "bad.yaml:1: pin: unknown key"),
        ("pins: {unclosed\n", "bad.yaml:1: (syntax): while parsing a flow mapping"),
        ("- 1\n", "bad.yaml:1: (top): must be a mapping"),
    ],
)
def test_malformed_file_errors_name_file_line_and_key(tmp_path: Path, text: str,
                                                      expected: str) -> None:
    """Problems read file:line: key: message, like the rest of the configuration."""
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("HASH", hash_pin(PIN)))
    with pytest.raises(ConfigError) as caught:
        load_pin_file(path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_lookup_order() -> None:
    """ACCOUNT/EXTENSION, then EXTENSION, then ACCOUNT/*; nothing else matches."""
    table = {"asterisk-1/2001": "a", "2001": "b", "2002": "c", "asterisk-1/*": "d"}
    assert lookup_hash(table, "asterisk-1", "2001") == "a"
    assert lookup_hash(table, "asterisk-2", "2001") == "b"
    assert lookup_hash(table, "asterisk-1", "2002") == "c"
    assert lookup_hash(table, "asterisk-1", "2003") == "d"
    assert lookup_hash(table, "asterisk-1", None) == "d"
    assert lookup_hash(table, "asterisk-2", "2003") is None
    assert lookup_hash(table, "asterisk-2", None) is None


def test_pin_keys() -> None:
    """Keys are EXTENSION, ACCOUNT/EXTENSION or ACCOUNT/*; '*' alone and slashes are refused."""
    assert pin_key(None, "2001") == "2001"
    assert pin_key("asterisk-1", "2001") == "asterisk-1/2001"
    assert pin_key("asterisk-1", "*") == "asterisk-1/*"
    for account, extension in ((None, "*"), (None, "a/b"), ("a/b", "2001"), (None, ""),
                               ("x y", "2001")):
        with pytest.raises(ValueError):
            pin_key(account, extension)


# --------------------------------------------------------------------------- the guard


def make_guard(tmp_path: Path, table: dict[str, str] | None = None,
               store: StateStore | None = None, **overrides: Any) -> tuple[PinGuard, RecordingLog]:
    path = tmp_path / "pins.yaml"
    if table is not None:
        save_pin_file(path, table)
    log = RecordingLog()
    settings = PinSettings(file=path, **overrides)
    return PinGuard(settings, store if store is not None else MemoryStore(), log), log


def checks(guard: PinGuard, attempts: Sequence[tuple[str, float]],
           account: str = "asterisk-1", extension: str | None = "2001") -> list[PinCheck]:
    async def main() -> list[PinCheck]:
        return [await guard.check(account, extension, digits, now) for digits, now in attempts]

    return asyncio.run(main())


def test_right_pin_is_accepted_and_wrong_ones_counted(tmp_path: Path) -> None:
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN)})
    seen = checks(guard, [(PIN, NOW), (OTHER_PIN, NOW + 1), ("", NOW + 2), (PIN, NOW + 3)])
    assert [check.outcome for check in seen] == [PinOutcome.ACCEPTED, PinOutcome.WRONG,
                                                 PinOutcome.WRONG, PinOutcome.ACCEPTED]
    assert [check.failures for check in seen] == [0, 1, 2, 0]
    wrong = [fields for _, event, fields in log.lines if event == "pin.wrong"]
    assert wrong == [
        {"account": "asterisk-1", "extension": "2001", "pin_key": "2001", "failures": 1},
        {"account": "asterisk-1", "extension": "2001", "pin_key": "2001", "failures": 2}]


def test_three_wrong_lock_until_the_lock_expires_even_for_the_right_pin(tmp_path: Path) -> None:
    """The third wrong PIN locks the subject for lock_seconds; while locked even the right
    PIN is refused (without hashing); once the lock expires the right PIN works."""
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN)}, lock_seconds=600.0)
    seen = checks(guard, [(OTHER_PIN, NOW), (OTHER_PIN, NOW + 10), (OTHER_PIN, NOW + 20),
                          (PIN, NOW + 30), (PIN, NOW + 619), (PIN, NOW + 621)])
    assert [check.outcome for check in seen] == [
        PinOutcome.WRONG, PinOutcome.WRONG, PinOutcome.LOCKED, PinOutcome.LOCKED,
        PinOutcome.LOCKED, PinOutcome.ACCEPTED]
    assert seen[2] == PinCheck(PinOutcome.LOCKED, 3, 600.0, just_locked=True)
    assert seen[3].failures == 3 and seen[3].locked_for == pytest.approx(590.0)
    # Only the check that set the lock says so (the one alert of a lockout comes from it).
    assert [check.just_locked for check in seen] == [False, False, True, False, False, False]
    assert seen[4].locked_for == pytest.approx(1.0)
    locked = [(level, fields) for level, event, fields in log.lines if event == "pin.locked"]
    assert locked == [("warning", {"account": "asterisk-1", "extension": "2001",
                                   "pin_key": "2001", "failures": 3, "lock_seconds": 600.0})]


def test_lock_is_per_pin(tmp_path: Path) -> None:
    """The lock belongs to the PIN that was guessed at: another extension's PIN is not
    locked, an account's own PIN for the extension is not, the same shared PIN is."""
    guard, _ = make_guard(tmp_path, {"2001": hash_pin(PIN), "2002": hash_pin(PIN),
                                     "asterisk-3/2001": hash_pin(PIN)})

    async def main() -> list[PinOutcome]:
        for second in range(3):
            await guard.check("asterisk-1", "2001", OTHER_PIN, NOW + second)
        return [(await guard.check(account, extension, PIN, NOW + 5)).outcome
                for account, extension in (("asterisk-1", "2001"), ("asterisk-1", "2002"),
                                           ("asterisk-2", "2001"), ("asterisk-3", "2001"))]

    assert asyncio.run(main()) == [PinOutcome.LOCKED, PinOutcome.ACCEPTED, PinOutcome.LOCKED,
                                   PinOutcome.ACCEPTED]


def test_an_account_wide_pin_cannot_be_guessed_from_many_extensions(tmp_path: Path) -> None:
    """Rotating the extension does not buy more guesses at the account's one PIN."""
    guard, _ = make_guard(tmp_path, {"asterisk-1/*": hash_pin(PIN)})

    async def main() -> list[PinOutcome]:
        return [(await guard.check("asterisk-1", extension, digits, NOW + index)).outcome
                for index, (extension, digits) in enumerate(
                    [("3001", OTHER_PIN), ("3002", OTHER_PIN), ("3003", OTHER_PIN),
                     ("3004", PIN)])]

    assert asyncio.run(main()) == [PinOutcome.WRONG, PinOutcome.WRONG, PinOutcome.LOCKED,
                                   PinOutcome.LOCKED]


def test_attempts_at_once_cannot_get_past_the_limit(tmp_path: Path) -> None:
    """Five guesses at the same moment: two are judged wrong, the rest find the PIN
    locked; no more than max_failures hashes are ever compared."""
    guard, _ = make_guard(tmp_path, {"2001": hash_pin(PIN)})

    async def main() -> list[PinOutcome]:
        checks = await asyncio.gather(*[guard.check("asterisk-1", "2001", OTHER_PIN, NOW)
                                        for _ in range(5)])
        return [check.outcome for check in checks]

    outcomes = asyncio.run(main())
    assert outcomes.count(PinOutcome.WRONG) == 2
    assert outcomes.count(PinOutcome.LOCKED) == 3


def test_accepted_pin_clears_the_failures(tmp_path: Path) -> None:
    """Two wrong, one right, two wrong: the count started again, so no lock."""
    guard, _ = make_guard(tmp_path, {"2001": hash_pin(PIN)})
    seen = checks(guard, [(OTHER_PIN, NOW), (OTHER_PIN, NOW + 1), (PIN, NOW + 2),
                          (OTHER_PIN, NOW + 3), (OTHER_PIN, NOW + 4)])
    assert [(check.outcome, check.failures) for check in seen][-2:] == [
        (PinOutcome.WRONG, 1), (PinOutcome.WRONG, 2)]


def test_failures_leave_their_window(tmp_path: Path) -> None:
    """Wrong PINs further apart than failure_window never add up to a lock."""
    guard, _ = make_guard(tmp_path, {"2001": hash_pin(PIN)}, failure_window=60.0)
    seen = checks(guard, [(OTHER_PIN, NOW + 100 * n) for n in range(5)])
    assert {(check.outcome, check.failures) for check in seen} == {(PinOutcome.WRONG, 1)}


def test_no_pin_for_the_caller(tmp_path: Path) -> None:
    """No file, or no key for this caller: NO_PIN, whatever was entered."""
    guard, _ = make_guard(tmp_path)
    assert checks(guard, [(PIN, NOW)])[0].outcome is PinOutcome.NO_PIN
    guard, _ = make_guard(tmp_path, {"asterisk-2/*": hash_pin(PIN)})
    assert checks(guard, [(PIN, NOW)])[0].outcome is PinOutcome.NO_PIN
    assert checks(guard, [(PIN, NOW)], account="asterisk-2")[0].outcome is PinOutcome.ACCEPTED
    assert checks(guard, [(PIN, NOW)], account="asterisk-2",
                  extension=None)[0].outcome is PinOutcome.ACCEPTED


class FailingStore(MemoryStore):
    """A store whose server is down."""

    async def get_mark(self, key: str, now: float) -> tuple[str, float] | None:
        raise StoreUnavailableError("ConnectionError: down")

    async def count_event(self, key: str, window: float, now: float) -> int:
        raise StoreUnavailableError("ConnectionError: down")


def test_store_outage_fails_closed(tmp_path: Path) -> None:
    """Without the store no lock can be checked: STORE_UNAVAILABLE, logged at warning."""
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN)}, store=FailingStore())
    seen = checks(guard, [(PIN, NOW), (OTHER_PIN, NOW + 1)])
    assert [check.outcome for check in seen] == [PinOutcome.STORE_UNAVAILABLE] * 2
    assert [level for level, event, _ in log.lines if event == "pin.store_unavailable"] == [
        "warning", "warning"]


def test_digits_never_reach_the_log(tmp_path: Path) -> None:
    """Right, wrong, locked and refused-while-locked: no line carries what was entered."""
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN)})
    checks(guard, [(PIN, NOW), *[(OTHER_PIN, NOW + n) for n in range(1, 5)], (PIN, NOW + 6)])
    assert {"pin.accepted", "pin.wrong", "pin.locked", "pin.still_locked"} <= set(log.events())
    assert PIN not in log.text() and OTHER_PIN not in log.text()


def test_scrypt_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifying goes through asyncio.to_thread, so the loop never waits on scrypt."""
    guard, _ = make_guard(tmp_path, {"2001": hash_pin(PIN)})
    offloaded: list[str] = []
    real = asyncio.to_thread

    async def to_thread(function: Callable[..., _T], *args: Any) -> _T:
        offloaded.append(function.__name__)
        return await real(function, *args)

    monkeypatch.setattr(pins_module.asyncio, "to_thread", to_thread)
    checks(guard, [(PIN, NOW)])
    assert offloaded == ["verify_pin"]


def test_file_changes_are_picked_up_and_a_bad_file_keeps_the_pins(tmp_path: Path) -> None:
    """A new PIN works within a second, without a restart; an invalid file is logged and
    the PINs in force stay; a fixed file is read again."""
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN)})
    path = tmp_path / "pins.yaml"

    async def main() -> list[PinOutcome]:
        seen = [(await guard.check("asterisk-1", "2002", PIN, NOW)).outcome]
        save_pin_file(path, {"2001": hash_pin(PIN), "2002": hash_pin(PIN)})
        seen.append((await guard.check("asterisk-1", "2002", PIN, NOW + 0.5)).outcome)  # too soon
        seen.append((await guard.check("asterisk-1", "2002", PIN, NOW + 2)).outcome)
        path.write_text("pins: {'2002': not-a-hash}\n")
        seen.append((await guard.check("asterisk-1", "2002", PIN, NOW + 4)).outcome)
        save_pin_file(path, {"2001": hash_pin(PIN)})
        seen.append((await guard.check("asterisk-1", "2002", PIN, NOW + 6)).outcome)
        return seen

    assert asyncio.run(main()) == [PinOutcome.NO_PIN, PinOutcome.NO_PIN, PinOutcome.ACCEPTED,
                                   PinOutcome.ACCEPTED, PinOutcome.NO_PIN]
    invalid = [(level, fields) for level, event, fields in log.lines
               if event == "pin.file_invalid"]
    assert len(invalid) == 1 and invalid[0][0] == "error"
    assert "pins.2002: is not an scrypt hash" in invalid[0][1]["problems"][0]
    assert log.events().count("pin.file_reloaded") == 2


def test_invalid_file_at_start_means_no_pins_and_is_logged(tmp_path: Path) -> None:
    """Started on a broken file, the guard has no PIN (fails closed) and says why."""
    path = tmp_path / "pins.yaml"
    path.write_text("pins: [\n")
    guard, log = make_guard(tmp_path)
    assert checks(guard, [(PIN, NOW)])[0].outcome is PinOutcome.NO_PIN
    assert "pin.file_invalid" in log.events()
    assert not guard.has_pin("asterisk-1", "2001")


def test_a_pin_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN)})
    (tmp_path / "pins.yaml").chmod(0o644)
    guard._reload()  # read it again, as a change of the file would
    warned = [fields for level, event, fields in log.lines if event == "pin.file_permissions"]
    assert warned and warned[-1]["mode"] == "0o644"


def test_right_pins_entered_at_once_are_all_accepted(tmp_path: Path) -> None:
    """Several calls with the account's right PIN at the same moment: none is locked out."""
    guard, _ = make_guard(tmp_path, {"asterisk-1/*": hash_pin(PIN)})

    async def main() -> list[PinOutcome]:
        checks = await asyncio.gather(*[guard.check("asterisk-1", f"30{index:02d}", PIN, NOW)
                                        for index in range(6)])
        return [check.outcome for check in checks]

    assert asyncio.run(main()) == [PinOutcome.ACCEPTED] * 6


# --------------------------------------------------------------------------- the pepper

PEPPER = b"p" * 32


def test_a_peppered_hash_needs_the_pepper() -> None:
    """Issue 22: with pin.pepper_file, scrypt is given HMAC-SHA256(pepper, PIN): the PIN
    file alone (a leak) cannot be brute-forced, and a wrong pepper verifies nothing."""
    stored = hash_pin(PIN, PEPPER)
    assert stored.startswith("scrypt-pepper$16384$8$1$")
    assert verify_pin(PIN, stored, PEPPER)
    assert not verify_pin(PIN, stored)  # without the pepper
    assert not verify_pin(PIN, stored, b"q" * 32)  # with another one
    assert not verify_pin(OTHER_PIN, stored, PEPPER)
    # A hash made before the pepper was set still checks (set it again to pepper it).
    assert verify_pin(PIN, hash_pin(PIN), PEPPER)


def test_the_guard_checks_peppered_pins_and_names_the_plain_ones(tmp_path: Path) -> None:
    guard, log = make_guard(tmp_path, {"2001": hash_pin(PIN, PEPPER), "2002": hash_pin(PIN)},
                            pepper=PEPPER)
    assert [check.outcome for check in checks(guard, [(PIN, NOW)])] == [PinOutcome.ACCEPTED]
    guard._reload()
    plain = [fields for _, event, fields in log.lines if event == "pin.not_peppered"]
    assert plain and plain[-1]["keys"] == ["2002"]
    (tmp_path / "without").mkdir()  # the pepper lost (or the PIN file alone, elsewhere)
    unpeppered, _ = make_guard(tmp_path / "without", {"2001": hash_pin(PIN, PEPPER)})
    assert [check.outcome for check in checks(unpeppered, [(PIN, NOW)])] == [PinOutcome.WRONG]
