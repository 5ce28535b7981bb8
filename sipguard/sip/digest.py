"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

MD5 and SHA-256 with ``qop=auth``; the ``-sess`` algorithms and
``auth-int`` are not supported (a header naming them does not parse, or
does not verify). Pure like the rest of the SIP core: the time (``now``)
and the randomness (nonce salts, client nonces) come in as arguments.

Server side, for a request carrying ``Authorization`` (or
``Proxy-Authorization``)::

    credentials = parse_credentials(value)            # RemoteProtocolError -> 400
    state = nonces.check(credentials.nonce, now)      # "invalid" -> new challenge
    if not verify(credentials, method, ha1=stored_ha1):
        ...                                           # 401/407, fresh nonce
    elif state == "stale":
        ...                                           # 401/407 with stale=TRUE
    elif not replays.accept(credentials.nonce, credentials.nc or ""):
        ...                                           # replayed: 401/407, fresh nonce
    else:
        ...                                           # authenticated

Call :meth:`ReplayGuard.accept` only after :func:`verify` succeeded, or
anyone could burn a legitimate client's nonce counts. Retransmissions of
one request carry the same ``nc``; the transaction layer absorbs them
before they get here.

Client side, answering a carrier's 401/407: :func:`best_challenge` over the
``WWW-Authenticate`` / ``Proxy-Authenticate`` values, then
:func:`authorization`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from sipguard.sip.errors import LocalProtocolError, RemoteProtocolError
from sipguard.sip.grammar import is_token, quote, split_outside_quotes, unquote

ALGORITHMS = ("SHA-256", "MD5")
"""Supported algorithms, the preferred one first."""

_HASHES = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_HEX_LENGTHS = {"SHA-256": 64, "MD5": 32}

_WHITESPACE = " \t"
_SCHEME = re.compile(r"[ \t]*([^ \t]+)(?:[ \t]+(.*))?\Z", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"\Z', re.DOTALL)
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
_NC = re.compile(r"[0-9a-fA-F]{8}\Z")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+\Z")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The parameters of an ``Authorization`` / ``Proxy-Authorization`` value.

    ``response`` and ``nc`` are lower-case hex, ``qop`` lower case and
    ``algorithm`` one of :data:`ALGORITHMS` as spelled there.
    """

    scheme: str
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """The parameters of a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value.

    ``qop`` holds the options offered, lower case (empty when the challenge
    named none: RFC 2069 style).
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def _canonical_algorithm(name: str) -> str | None:
    upper = name.upper()
    return upper if upper in _HASHES else None


def _hash(algorithm: str, text: str) -> str:
    try:
        data = text.encode("utf-8", "surrogateescape")  # bytes as they came off the wire
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
    return _HASHES[algorithm](data).hexdigest()


def _split_scheme(value: str) -> tuple[str, str]:
    """``(scheme, parameter text)``; the scheme must be Digest."""
    if _CONTROL.search(value):
        raise RemoteProtocolError("Control character in an authentication header")
    match = _SCHEME.match(value)
    if match is None:
        raise RemoteProtocolError("Empty authentication header")
    scheme, rest = match.group(1), match.group(2) or ""
    if scheme.lower() != "digest":
        raise RemoteProtocolError(f"Unsupported authentication scheme {scheme[:32]!r}")
    return "Digest", rest


def _parse_parameters(text: str) -> dict[str, str]:
    """``name=value, name="quoted value", …`` as lower-case names to values."""
    if not text.strip(_WHITESPACE):
        raise RemoteProtocolError("Digest without parameters")
    params: dict[str, str] = {}
    for raw_item in split_outside_quotes(text, ","):
        item = raw_item.strip(_WHITESPACE)
        if not item:
            raise RemoteProtocolError("Empty element in a digest parameter list")
        name, equals, raw_value = item.partition("=")
        name = name.strip(_WHITESPACE)
        raw_value = raw_value.strip(_WHITESPACE)
        if not equals or not is_token(name):
            raise RemoteProtocolError(f"Bad digest parameter {item[:32]!r}")
        if raw_value.startswith('"'):
            if _QUOTED.match(raw_value) is None:
                raise RemoteProtocolError(f"Bad quoted value of digest parameter {name!r}")
            value = unquote(raw_value)
        elif is_token(raw_value):
            value = raw_value
        else:
            raise RemoteProtocolError(f"Bad value of digest parameter {name!r}")
        key = name.lower()
        if key in params:
            raise RemoteProtocolError(f"Duplicated digest parameter {name!r}")
        params[key] = value
    return params


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise RemoteProtocolError(f"Digest parameter {name!r} missing")
    return value


def _algorithm(params: dict[str, str]) -> str:
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    if algorithm is None:
        raise RemoteProtocolError("Unsupported digest algorithm")
    return algorithm


def parse_credentials(value: str) -> Credentials:
    """Parse an ``Authorization`` / ``Proxy-Authorization`` value.

    Raises :class:`RemoteProtocolError`, and nothing else, on anything
    malformed: another scheme, a missing or duplicated parameter, an
    unsupported algorithm, a bad ``nc``, ``response`` or ``qop``.
    """
    scheme, rest = _split_scheme(value)
    params = _parse_parameters(rest)
    username = _required(params, "username")
    realm = _required(params, "realm")
    nonce = _required(params, "nonce")
    uri = _required(params, "uri")
    response = _required(params, "response")
    algorithm = _algorithm(params)
    if not nonce:
        raise RemoteProtocolError("Empty digest nonce")
    if not uri:
        raise RemoteProtocolError("Empty digest uri")
    if len(response) != _HEX_LENGTHS[algorithm] or _HEX.match(response) is None:
        raise RemoteProtocolError(f"Digest response is not {algorithm} hex")
    nc = params.get("nc")
    if nc is not None and _NC.match(nc) is None:
        raise RemoteProtocolError("Digest nc is not 8 hex digits")
    qop = params.get("qop")
    cnonce = params.get("cnonce")
    if qop is not None:
        if not is_token(qop):
            raise RemoteProtocolError("Bad digest qop")
        if cnonce is None or nc is None:
            raise RemoteProtocolError("Digest qop without cnonce and nc")
    return Credentials(
        scheme=scheme,
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response.lower(),
        algorithm=algorithm,
        cnonce=cnonce,
        nc=None if nc is None else nc.lower(),
        qop=None if qop is None else qop.lower(),
        opaque=params.get("opaque"),
    )


def format_credentials(credentials: Credentials) -> str:
    """An ``Authorization`` / ``Proxy-Authorization`` value."""
    parts = [
        f"username={quote(credentials.username)}",
        f"realm={quote(credentials.realm)}",
        f"nonce={quote(credentials.nonce)}",
        f"uri={quote(credentials.uri)}",
        f"response={quote(credentials.response)}",
        f"algorithm={credentials.algorithm}",
    ]
    if credentials.cnonce is not None:
        parts.append(f"cnonce={quote(credentials.cnonce)}")
    if credentials.qop is not None:
        parts.append(f"qop={credentials.qop}")
    if credentials.nc is not None:
        parts.append(f"nc={credentials.nc}")
    if credentials.opaque is not None:
        parts.append(f"opaque={quote(credentials.opaque)}")
    return f"{credentials.scheme} " + ", ".join(parts)


def challenge(
    realm: str,
    nonce: str,
    algorithm: str,
    *,
    stale: bool = False,
    opaque: str | None = None,
) -> str:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` value with ``qop="auth"``."""
    canonical = _canonical_algorithm(algorithm)
    if canonical is None:
        raise LocalProtocolError(f"Unsupported digest algorithm {algorithm!r}")
    parts = [
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"algorithm={canonical}",
        'qop="auth"',
    ]
    if opaque is not None:
        parts.append(f"opaque={quote(opaque)}")
    if stale:
        parts.append("stale=TRUE")
    return "Digest " + ", ".join(parts)


def parse_challenge(value: str) -> Challenge:
    """Parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value.

    Raises :class:`RemoteProtocolError`, and nothing else, when it is
    malformed, not Digest, or names an unsupported algorithm.
    """
    _, rest = _split_scheme(value)
    params = _parse_parameters(rest)
    realm = _required(params, "realm")
    nonce = _required(params, "nonce")
    algorithm = _algorithm(params)
    if not nonce:
        raise RemoteProtocolError("Empty digest nonce")
    options: tuple[str, ...] = ()
    qop = params.get("qop")
    if qop is not None:
        options = tuple(option.strip(_WHITESPACE).lower() for option in qop.split(","))
        if not all(is_token(option) for option in options):
            raise RemoteProtocolError("Bad digest qop options")
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=options,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def best_challenge(values: list[str],
                   answerable: Callable[[Challenge], bool] | None = None) -> Challenge | None:
    """The challenge to answer among several: SHA-256 before MD5, then the first.

    Values that do not parse, or offer qop options without ``auth``, are
    skipped, and so are those ``answerable`` refuses (a realm or algorithm we hold
    no HA1 for); None when none is left.
    """
    usable: list[Challenge] = []
    for value in values:
        try:
            parsed = parse_challenge(value)
        except RemoteProtocolError:
            continue
        if parsed.qop and "auth" not in parsed.qop:
            continue
        if answerable is not None and not answerable(parsed):
            continue
        usable.append(parsed)
    if not usable:
        return None
    return min(usable, key=lambda item: ALGORITHMS.index(item.algorithm))


def ha1_for(username: str, realm: str, password: str, algorithm: str) -> str:
    """``H(username:realm:password)``, to store instead of the password."""
    canonical = _canonical_algorithm(algorithm)
    if canonical is None:
        raise LocalProtocolError(f"Unsupported digest algorithm {algorithm!r}")
    return _hash(canonical, f"{username}:{realm}:{password}")


def response_for(
    credentials: Credentials,
    method: str,
    password: str | None = None,
    ha1: str | None = None,
) -> str:
    """The ``response`` expected for ``credentials`` on a ``method`` request.

    RFC 7616 §3.4.1: with ``qop=auth``,
    ``H(HA1:nonce:nc:cnonce:qop:HA2)``; without qop (RFC 2069),
    ``H(HA1:nonce:HA2)``; ``HA2 = H(method:uri)``. Give exactly one of
    ``password`` and ``ha1`` (the stored ``H(username:realm:password)``).
    """
    algorithm = _canonical_algorithm(credentials.algorithm)
    if algorithm is None:
        raise LocalProtocolError(f"Unsupported digest algorithm {credentials.algorithm!r}")
    if password is not None and ha1 is None:
        h1 = ha1_for(credentials.username, credentials.realm, password, algorithm)
    elif ha1 is not None and password is None:
        h1 = ha1.lower()
    else:
        raise ValueError("give exactly one of password and ha1")
    h2 = _hash(algorithm, f"{method}:{credentials.uri}")
    if credentials.qop is None:
        return _hash(algorithm, f"{h1}:{credentials.nonce}:{h2}")
    if credentials.qop != "auth":
        raise LocalProtocolError(f"Unsupported digest qop {credentials.qop!r}")
    if credentials.cnonce is None or credentials.nc is None:
        raise LocalProtocolError("Digest qop=auth needs cnonce and nc")
    return _hash(
        algorithm,
        f"{h1}:{credentials.nonce}:{credentials.nc}:{credentials.cnonce}:auth:{h2}",
    )


def verify(
    credentials: Credentials,
    method: str,
    *,
    password: str | None = None,
    ha1: str | None = None,
) -> bool:
    """Whether ``credentials`` answer with the right password (or HA1).

    Only ``qop=auth`` is accepted: credentials without qop (RFC 2069, no
    client nonce, no count) or with ``auth-int`` are refused. The nonce's
    freshness and replays are the caller's to check (:class:`NonceFactory`,
    :class:`ReplayGuard`).
    """
    if credentials.qop != "auth" or credentials.cnonce is None or credentials.nc is None:
        return False
    try:
        expected = response_for(credentials, method, password=password, ha1=ha1)
    except LocalProtocolError:
        return False
    given = credentials.response.lower().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected.encode("ascii"), given)


def authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str | None = None,
    cnonce: str = "",
    nc: int = 1,
    ha1: str | None = None,
) -> str:
    """The ``Authorization`` / ``Proxy-Authorization`` value answering ``challenge``,
    with the password or (``password`` None) the stored ``ha1`` for its realm.

    ``qop=auth`` when the challenge offered it; RFC 2069 style (no qop,
    cnonce or nc) only when it offered no qop at all. ``cnonce`` is a
    random string the caller made; ``nc`` counts the requests sent with
    this nonce, from 1.
    """
    qop: str | None = None
    if challenge.qop:
        if "auth" not in challenge.qop:
            raise LocalProtocolError("The challenge does not offer qop=auth")
        if not cnonce:
            raise LocalProtocolError("qop=auth needs a cnonce")
        if not 0 < nc <= 0xFFFFFFFF:
            raise LocalProtocolError(f"Nonce count {nc} out of range")
        qop = "auth"
    credentials = Credentials(
        scheme="Digest",
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response="",
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop else None,
        nc=f"{nc:08x}" if qop else None,
        qop=qop,
        opaque=challenge.opaque,
    )
    response = response_for(credentials, method, password=password, ha1=ha1)
    return format_credentials(replace(credentials, response=response))


_NONCE_VERSION = b"\x01"
_TIME = struct.Struct(">q")  # issue time, integer milliseconds
_MAC_LENGTH = 32
_FUTURE_SKEW = 5.0  # seconds a nonce may seem to come from the future (clocks of several nodes)


class NonceFactory:
    """Stateless server nonces: issue time and salt, authenticated by an HMAC.

    A nonce is ``base64url(version | time | salt | HMAC-SHA256(secret,
    version | time | salt))`` without padding. Every node sharing the
    secret accepts every other node's nonces.
    """

    def __init__(self, secret: bytes, lifetime: float = 300.0) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if not lifetime > 0:
            raise ValueError("the nonce lifetime must be positive")
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, now: float, salt: str) -> str:
        """A new nonce issued at ``now``; ``salt`` is a random string the caller made."""
        payload = (
            _NONCE_VERSION
            + _TIME.pack(round(now * 1000))
            + salt.encode("utf-8", "surrogatepass")
        )
        token = base64.urlsafe_b64encode(payload + self._mac(payload))
        return token.rstrip(b"=").decode("ascii")

    def check(self, nonce: str, now: float) -> Literal["ok", "stale", "invalid"]:
        """``"ok"``, ``"stale"`` (ours but expired, or too far in the future) or ``"invalid"``."""
        if _BASE64URL.match(nonce) is None:
            return "invalid"
        text = nonce.encode("ascii")
        try:
            raw = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return "invalid"
        # One nonce, one spelling: no variant with other unused trailing bits.
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != text:
            return "invalid"
        header = len(_NONCE_VERSION) + _TIME.size
        if len(raw) < header + _MAC_LENGTH or raw[:1] != _NONCE_VERSION:
            return "invalid"
        payload, mac = raw[:-_MAC_LENGTH], raw[-_MAC_LENGTH:]
        if not hmac.compare_digest(self._mac(payload), mac):
            return "invalid"
        (issued_ms,) = _TIME.unpack(payload[1:header])
        age = now - issued_ms / 1000
        return "ok" if -_FUTURE_SKEW <= age <= self.lifetime else "stale"


class ReplayGuard:
    """Refuses a nonce count not above every count seen with its nonce.

    Remembers at most ``capacity`` nonces, forgetting the least recently
    used first; a forgotten nonce's counts are accepted again, so the
    capacity should exceed the nonces accepted within a nonce lifetime.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("the replay guard needs a capacity of at least 1")
        self.capacity = capacity
        self._highest: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._highest)

    def accept(self, nonce: str, nc: str) -> bool:
        """Whether ``nc`` (8 hex digits, from 1) is new for ``nonce``; records it if so."""
        if _NC.match(nc) is None:
            return False
        count = int(nc, 16)
        if count == 0:
            return False
        highest = self._highest.get(nonce)
        if highest is not None and count <= highest:
            return False
        self._highest[nonce] = count
        self._highest.move_to_end(nonce)
        while len(self._highest) > self.capacity:
            self._highest.popitem(last=False)
        return True
