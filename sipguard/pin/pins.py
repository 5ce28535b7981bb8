"""PINs: what a PIN may be, how it is stored (scrypt), the PIN file, and the guard.

A PIN is digits only, at least six, and not a trivial one (a repeated digit,
a run like 123456, a repeated block, the extension itself, a very common
PIN). There is no default PIN: an extension without one gets ``NO_PIN``.

The PIN file (``var/pins.yaml`` by default, mode 0600) maps a key to an
scrypt hash written by ``sipguard pin set``; it never holds a PIN::

    pins:
      "2001": scrypt$16384$8$1$<salt>$<hash>             # extension 2001, any account
      "asterisk-1/2001": scrypt$16384$8$1$<salt>$<hash>  # wins over the bare extension
      "asterisk-1/*": scrypt$16384$8$1$<salt>$<hash>     # the account's PIN for the rest

:class:`PinGuard` checks what a caller entered: a locked subject is refused
without hashing; a wrong PIN counts on a sliding window in the state store
and ``max_failures`` of them lock the subject for ``lock_seconds``. The
entered digits are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hashlib
import hmac
import itertools
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipguard.schema import ConfigError, MarkedDict, Problems, dump_yaml, line_of, load_marked
from sipguard.store import StateStore, StoreUnavailableError

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PIN_LENGTH = 6
RELOAD_EVERY = 1.0  # seconds between two looks at the PIN file's mtime

FILE_HEADER = """\
# sipguard PIN file: scrypt hashes written by `sipguard pin set`, never PINs.
# Keys: EXTENSION (any account), ACCOUNT/EXTENSION (wins over the bare extension),
# ACCOUNT/* (the account's PIN for extensions without one of their own).
# Keep it mode 0600, readable by the sipguard service's user only.
"""

# PINs that are digits, long enough and not a run or a repeat, yet guessed first.
COMMON_PINS = frozenset({
    "112233", "111222", "112211", "121314", "123321", "123654", "123789", "102030",
    "100200", "100000", "101010", "110110", "147258", "147369", "159357", "159753",
    "258456", "258369", "741852", "753951", "789456", "852456", "963852", "112358",
    "314159", "271828", "142857", "000007", "007007", "999000", "777888", "696969",
    "121212", "123123", "654321", "202020", "131313", "212121", "232323", "520520",
    "1234567890", "0987654321", "11223344", "12341234", "12344321", "19851985",
})

_KEY_PART = re.compile(r"[^\s/]+")
_HASH_PART = re.compile(r"[A-Za-z0-9+/=]+")


@dataclass(frozen=True, slots=True)
class PinSettings:
    """The ``pin`` section of the service configuration."""

    file: Path
    max_failures: int = 3
    lock_seconds: float = 900.0
    failure_window: float = 900.0
    min_length: int = MIN_PIN_LENGTH
    # pin.pepper_file's secret: PIN hashes are keyed with it (see hash_pin).
    pepper: bytes | None = field(default=None, repr=False)


class PinOutcome(enum.Enum):
    """What a PIN check came to."""

    ACCEPTED = "accepted"
    WRONG = "wrong"
    LOCKED = "locked"
    NO_PIN = "no_pin"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, slots=True)
class PinCheck:
    """The outcome, the wrong PINs counted in the window, and the seconds a lock has left."""

    outcome: PinOutcome
    failures: int = 0
    locked_for: float = 0.0
    just_locked: bool = False  # this check's wrong PIN set the lock (not one already set)


# --------------------------------------------------------------------------- validation


def _is_run(pin: str) -> bool:
    """Each digit one more (or each one less) than the last, wrapping 9 -> 0."""
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {9})


def _repeats_a_block(pin: str) -> bool:
    """The PIN is a shorter block written again and again (121212, 583583)."""
    return any(len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size)
               for size in range(1, len(pin) // 2 + 1))


def validate_pin(pin: str, extension: str | None, min_length: int = MIN_PIN_LENGTH) -> str | None:
    """Why ``pin`` may not be used (for ``extension``), or None when it may."""
    if not pin.isascii() or not pin.isdigit():
        return "a PIN is digits only"
    if len(pin) < min_length:
        return f"a PIN has at least {min_length} digits"
    if extension:
        rest = pin.replace(extension, "") if len(extension) >= 2 else pin
        if rest != pin and len(set(rest)) <= 1:
            return "a PIN may not be the extension (repeated or padded)"
        if pin == (extension * (len(pin) // len(extension) + 1))[:len(pin)]:
            return "a PIN may not be the extension (repeated or padded)"
    if len(set(pin)) == 1:
        return "a PIN may not be one digit repeated"
    if _is_run(pin):
        return "a PIN may not be a run of consecutive digits (123456, 987654)"
    if _repeats_a_block(pin):
        return "a PIN may not repeat a shorter block (121212, 123123)"
    if pin in COMMON_PINS:
        return "this PIN is among the most common ones; choose another"
    return None


# --------------------------------------------------------------------------- hashing


PEPPERED = "scrypt-pepper"  # the scheme of a hash keyed with pin.pepper_file's secret


def _secret_input(pin: str, pepper: bytes | None) -> bytes:
    """What scrypt is given: the PIN, or HMAC-SHA256(pepper, PIN) with a pepper, so that
    the PIN file without the pepper file gives nothing to guess against."""
    if pepper is None:
        return pin.encode()
    return hmac.new(pepper, pin.encode(), hashlib.sha256).digest()


def hash_pin(pin: str, pepper: bytes | None = None) -> str:
    """The self-describing scrypt hash of ``pin``: ``scrypt$N$r$p$<salt>$<hash>`` (base64),
    ``scrypt-pepper$...`` when keyed with a pepper."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(_secret_input(pin, pepper), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, dklen=HASH_BYTES)
    return "$".join(("scrypt" if pepper is None else PEPPERED, str(SCRYPT_N), str(SCRYPT_R),
                     str(SCRYPT_P), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()))


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """The parameters, salt and digest of a stored hash, or None when it is not one."""
    parts = stored.split("$") if isinstance(stored, str) else []
    if (len(parts) != 6 or parts[0] not in ("scrypt", PEPPERED)
            or not all(p.isdigit() for p in parts[1:4])):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    # Bounded so that a tampered file cannot make one check take gigabytes or minutes.
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
            and n * r <= 2**20):
        return None
    if not (_HASH_PART.fullmatch(parts[4]) and _HASH_PART.fullmatch(parts[5])):
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def is_pin_hash(stored: str) -> bool:
    """Whether ``stored`` is a hash :func:`verify_pin` can check."""
    return _parse_hash(stored) is not None


def is_peppered(stored: str) -> bool:
    """Whether ``stored`` was keyed with a pepper (``scrypt-pepper$...``)."""
    return stored.startswith(PEPPERED + "$")


def verify_pin(pin: str, stored: str, pepper: bytes | None = None) -> bool:
    """Whether ``pin`` is the one ``stored`` was made from (constant-time comparison).

    A peppered hash needs the pepper; a hash made before the pepper was set still
    checks without it. A malformed or unknown ``stored`` gives False; this never raises.
    """
    parsed = _parse_hash(stored)
    if parsed is None:
        return False
    peppered = is_peppered(stored)
    if peppered and pepper is None:
        return False
    n, r, p, salt, digest = parsed
    try:
        secret_input = _secret_input(pin, pepper if peppered else None)
        candidate = hashlib.scrypt(secret_input, salt=salt, n=n, r=r, p=p, dklen=len(digest),
                                   maxmem=256 * n * r * p + (1 << 24))
    except (ValueError, MemoryError, UnicodeError):
        return False
    return hmac.compare_digest(candidate, digest)


# --------------------------------------------------------------------------- the PIN file


def pin_key(account: str | None, extension: str) -> str:
    """The file key: ``EXTENSION``, ``ACCOUNT/EXTENSION`` or ``ACCOUNT/*``."""
    if extension == "*" and not account:
        raise ValueError("'*' (every extension) needs an account")
    for part in (account, extension) if account else (extension,):
        if not _KEY_PART.fullmatch(part):
            raise ValueError(f"{part!r} may not be empty or hold spaces or '/'")
    return f"{account}/{extension}" if account else extension


def _check_key(key: str) -> bool:
    account, slash, extension = key.partition("/")
    try:
        pin_key(account if slash else None, extension if slash else account)
    except ValueError:
        return False
    return True


def find_pin(pins: Mapping[str, str], account: str,
             extension: str | None) -> tuple[str, str] | None:
    """(key, hash) of a caller's PIN: ACCOUNT/EXTENSION, else EXTENSION, else ACCOUNT/*."""
    keys = [f"{account}/{extension}", extension] if extension else []
    for key in [*keys, f"{account}/*"]:
        found = pins.get(key)
        if found:
            return key, found
    return None


def lookup_hash(pins: Mapping[str, str], account: str, extension: str | None) -> str | None:
    """The hash for a caller: ACCOUNT/EXTENSION, else EXTENSION, else ACCOUNT/*."""
    found = find_pin(pins, account, extension)
    return None if found is None else found[1]


def load_pin_file(path: Path) -> dict[str, str]:
    """The file's keys and hashes; a missing file has none.

    Raises :class:`ConfigError` with ``file:line: key: message`` problems.
    """
    if not path.exists():
        return {}
    data = load_marked(path, allow_empty=True)
    problems = Problems(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: (top): must be a mapping with a 'pins' key"])
    for key in data:
        if key != "pins":
            problems.add(line_of(data, key), key, "unknown key (only 'pins')")
    raw = data.get("pins")
    pins: dict[str, str] = {}
    if raw is None:
        raw = MarkedDict()
    if not isinstance(raw, dict):
        problems.add(line_of(data, "pins"), "pins", "must map EXTENSION, ACCOUNT/EXTENSION "
                     "or ACCOUNT/* to a hash")
        raw = MarkedDict()
    for key, value in raw.items():
        where = f"pins.{key}"
        if not _check_key(key):
            problems.add(line_of(raw, key), where,
                         "must be EXTENSION, ACCOUNT/EXTENSION or ACCOUNT/*")
        elif not isinstance(value, str) or not is_pin_hash(value):
            problems.add(line_of(raw, key), where,
                         "is not an scrypt hash written by `sipguard pin set`")
        else:
            pins[key] = value
    problems.raise_if_any()
    return pins


def save_pin_file(path: Path, pins: Mapping[str, str]) -> None:
    """Write the file atomically (a temporary file beside it, then a rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dump_yaml({"pins": dict(sorted(pins.items()))})
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(FILE_HEADER + body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (mtime, size, inode); None when missing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


# --------------------------------------------------------------------------- the guard


class PinGuard:
    """Checks entered PINs against the PIN file, with lockout through the state store."""

    def __init__(self, settings: PinSettings, store: StateStore, log: Any) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self.pins: dict[str, str] = {}
        self._signature: tuple[int, int, int] | None = None
        self._looked_at: float | None = None
        # PIN key -> [the lock its checks take in turn, how many hold or wait for it]
        self._serial: dict[str, list[Any]] = {}
        self._reload(log_success=False)

    def has_pin(self, account: str, extension: str | None) -> bool:
        """Whether this caller has a PIN (so a challenge can succeed)."""
        return lookup_hash(self.pins, account, extension) is not None

    def _reload(self, log_success: bool = True) -> None:
        """Read the file again; on an error keep the PINs in force and log why."""
        path = self.settings.file
        try:
            signature = _signature(path)
            pins = load_pin_file(path)
        except ConfigError as error:
            self._signature = _safe_signature(path)
            self.log.error("pin.file_invalid", path=str(path), problems=error.problems,
                           kept=len(self.pins))
            return
        except OSError as error:
            self._signature = None
            self.log.error("pin.file_invalid", path=str(path), problems=[str(error)],
                           kept=len(self.pins))
            return
        self.pins, self._signature = pins, signature
        if log_success:
            self.log.info("pin.file_reloaded", path=str(path), pins=len(pins))
        if self.settings.pepper is not None:
            plain = sorted(key for key, stored in pins.items() if not is_peppered(stored))
            if plain:  # set before the pepper: they still work; set them again to pepper them
                self.log.warning("pin.not_peppered", path=str(path), keys=plain,
                                 advice="sipguard pin set each again")
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                # Hashes slow guessing down; they are still not for other users to read.
                self.log.warning("pin.file_permissions", path=str(path), mode=oct(mode),
                                 advice="chmod 600 (sipguard pin set writes it so)")

    async def _maybe_reload(self, now: float) -> None:
        """Look at the file's mtime at most once a second; re-read it when it changed."""
        if self._looked_at is not None and abs(now - self._looked_at) < RELOAD_EVERY:
            return
        self._looked_at = now
        if _safe_signature(self.settings.file) != self._signature:
            await asyncio.to_thread(self._reload)

    async def check(self, account: str, extension: str | None, digits: str,
                    now: float) -> PinCheck:
        """Check what the caller entered; ``now`` is the wall clock (shared by every node)."""
        await self._maybe_reload(now)
        where = {"account": account, "extension": extension}
        found = find_pin(self.pins, account, extension)
        if found is None:
            self.log.info("pin.none", **where)
            return PinCheck(PinOutcome.NO_PIN)
        # Failures and the lock belong to the PIN that was tried (an account-wide PIN
        # is one secret, whichever extension guesses at it), not to the extension.
        pin_key, stored = found
        where["pin_key"] = pin_key
        # Checks of one PIN run one at a time on this node, so that guesses made at
        # once find the lock the third wrong one set (calls placed at once with the
        # right PIN just wait for each other, about one scrypt each).
        serial = self._serial.setdefault(pin_key, [asyncio.Lock(), 0])
        serial[1] += 1
        try:
            async with serial[0]:
                return await self._check_serially(pin_key, stored, digits, where, now)
        finally:
            serial[1] -= 1
            if serial[1] == 0:
                del self._serial[pin_key]

    async def _check_serially(self, pin_key: str, stored: str, digits: str,
                              where: dict[str, Any], now: float) -> PinCheck:
        subject = f"pin:{pin_key}"
        failures_key, lock_key = f"{subject}:failures", f"{subject}:lock"
        try:
            lock = await self.store.get_mark(lock_key, now)
            if lock is not None:
                value, left = lock
                self.log.info("pin.still_locked", **where, locked_for=round(left, 1))
                return PinCheck(PinOutcome.LOCKED, _int(value), left)
            if await asyncio.to_thread(verify_pin, digits, stored, self.settings.pepper):
                if await self.store.get_mark(lock_key, now) is not None:
                    # Locked meanwhile by wrong guesses on another node.
                    self.log.info("pin.still_locked", **where)
                    return PinCheck(PinOutcome.LOCKED)
                self.log.info("pin.accepted", **where)
                try:
                    await self.store.clear([failures_key])
                except StoreUnavailableError as error:  # the lock was checked: accept anyway
                    self.log.warning("pin.store_unavailable", **where, error=str(error))
                return PinCheck(PinOutcome.ACCEPTED)
            failures = await self.store.count_event(failures_key, self.settings.failure_window,
                                                    now)
            self.log.info("pin.wrong", **where, failures=failures)
            if failures < self.settings.max_failures:
                return PinCheck(PinOutcome.WRONG, failures)
            return await self._lock(lock_key, failures_key, failures, where, now)
        except StoreUnavailableError as error:
            self.log.warning("pin.store_unavailable", **where, error=str(error))
            return PinCheck(PinOutcome.STORE_UNAVAILABLE)

    async def _lock(self, lock_key: str, failures_key: str, failures: int,
                    where: dict[str, Any], now: float) -> PinCheck:
        lock_seconds = self.settings.lock_seconds
        await self.store.put_mark(lock_key, str(failures), lock_seconds, now)
        await self.store.clear([failures_key])  # after the lock, a fresh set of tries
        self.log.warning("pin.locked", **where, failures=failures, lock_seconds=lock_seconds)
        return PinCheck(PinOutcome.LOCKED, failures, lock_seconds, just_locked=True)


def _safe_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        return _signature(path)
    except OSError:
        return None


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0
