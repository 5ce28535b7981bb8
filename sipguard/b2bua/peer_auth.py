"""Digest authentication of peers on INVITE (RFC 3261 §22, RFC 8760).

A peer with credentials is known by its networks *and* its digest username:
an INVITE from its networks without valid credentials is challenged with
401 (SHA-256, then MD5, qop=auth). Wrong user, wrong password, a forged or
replayed nonce: the same 401 every time, so nothing tells a guesser which
part was wrong; each failure is counted towards a ban by the caller.

Pure like the controller: ``now`` comes in, and the nonce secret and salts
are made by the caller (the service draws the secret at start).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipguard.b2bua.calls import Peer
from sipguard.sip import (
    ALGORITHMS,
    NonceFactory,
    RemoteProtocolError,
    ReplayGuard,
    Request,
    challenge,
    parse_credentials,
    parse_uri,
    verify,
)


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """The peer that proved itself, or the challenge to send (and why)."""

    peer: Peer | None
    challenges: tuple[str, ...] = ()  # WWW-Authenticate values for a 401
    failure: str | None = None  # set when credentials were offered and were wrong
    username: str | None = None  # as offered (logged; never the password)


class Authenticator:
    """Checks the Authorization of INVITEs from peers that have credentials."""

    def __init__(self, realm: str, secret: bytes, salt: Callable[[int], str],
                 nonce_lifetime: float = 300.0,
                 algorithms: Sequence[str] = ALGORITHMS) -> None:
        self.realm = realm
        self.algorithms = tuple(algorithms)  # offered in this order (RFC 8760: best first)
        self._nonces = NonceFactory(secret, nonce_lifetime)
        self._replays = ReplayGuard()
        self._salt = salt

    def check(self, request: Request, candidates: Sequence[Peer], now: float) -> AuthOutcome:
        """Authenticate ``request`` against the peers whose networks it came from."""
        values = request.headers.values("Authorization")

        def again(reason: str | None = None, username: str | None = None,
                  stale: bool = False) -> AuthOutcome:
            """Refused: a new challenge (of the algorithms these peers can be checked with;
            worked out only here, so a call that proves itself does not pay for it)."""
            offered = self._algorithms_for(candidates)
            return AuthOutcome(None, self._challenges(now, offered, stale), reason, username)

        if not values:
            return again()
        try:
            credentials = parse_credentials(values[0])
        except RemoteProtocolError:
            return again("malformed credentials")
        username = credentials.username
        peer = next((candidate for candidate in candidates if candidate.auth is not None
                     and candidate.auth.username == username), None)
        if peer is None or peer.auth is None or credentials.realm != self.realm:
            return again("unknown user or realm", username)
        if not _same_target(credentials.uri, request, peer.auth.relaxed_uri):
            return again("credentials for another URI", username)
        state = self._nonces.check(credentials.nonce, now)
        if state == "invalid":
            return again("forged or garbled nonce", username)
        secret = peer.auth.secret(self.realm, credentials.algorithm)
        if (credentials.algorithm not in self.algorithms or not secret
                or not verify(credentials, request.method, **secret)):
            return again("wrong password", username)
        if state == "stale":  # right password, old nonce: ask again, it is not a failure
            return again(None, username, stale=True)
        if not self._replays.accept(credentials.nonce, credentials.nc or ""):
            return again("replayed credentials", username)
        return AuthOutcome(peer, username=username)

    def _algorithms_for(self, candidates: Sequence[Peer]) -> tuple[str, ...]:
        """The algorithms to offer these peers: those some of them can be checked with
        (a peer configured with an MD5 HA1 only is not asked for SHA-256)."""
        usable = tuple(algorithm for algorithm in self.algorithms
                       if any(candidate.auth is not None
                              and candidate.auth.supports(self.realm, algorithm)
                              for candidate in candidates))
        return usable or self.algorithms

    def _challenges(self, now: float, offered: tuple[str, ...],
                    stale: bool) -> tuple[str, ...]:
        nonce = self._nonces.issue(now, self._salt(12))
        return tuple(challenge(self.realm, nonce, algorithm, stale=stale)
                     for algorithm in offered)


def _same_target(digest_uri: str, request: Request, relaxed: bool) -> bool:
    """Whether the digest-uri names the request's target (RFC 3261 §22.4: the
    Request-URI, so that credentials for one number cannot place a call to another);
    ``relaxed`` lets a digest-uri without a user part through, for UAs that send one."""
    try:
        uri = parse_uri(digest_uri)
    except RemoteProtocolError:
        return False
    if uri.host.lower() != request.uri.host.lower():
        return False
    return uri.user == request.uri.user or (relaxed and uri.user is None)
