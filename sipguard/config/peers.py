"""The PBX peers and the carrier trunks of sipguard.yaml: their addresses and URIs, their
digest credentials (a password, or HA1 hashes by realm instead), and where secrets are
written in the file (so that the service can refuse a file others may read)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from sipguard.b2bua import Network, Peer, PeerAuth, Trunk
from sipguard.schema import Problems, line_of
from sipguard.schema import unknown_keys as _unknown_keys
from sipguard.sip import RemoteProtocolError, parse_uri, uri_hop

PEER_KEYS = ("name", "addresses", "auth")
TRUNK_KEYS = ("name", "uri", "auth", "register", "tls_name")
AUTH_KEYS = ("username", "password", "ha1", "relaxed_uri")


def _named_entries(data: dict[str, Any], key: str, keys: tuple[str, ...], what: str,
                   needs: str, problems: Problems) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each entry of the list under ``key`` that is a mapping with a name, as (its path,
    the entry), its unknown keys reported; the rest reported and skipped."""
    raw = data.get(key)
    if not isinstance(raw, list) or not raw:
        problems.add(line_of(data, key), key, f"must list at least one {what}")
        return
    for index, item in enumerate(raw):
        where = f"{key}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.add(line_of(raw, index), where, f"needs a name and {needs}")
            continue
        _unknown_keys(item, where, keys, problems)
        yield where, item


def load_peers(data: dict[str, Any], problems: Problems) -> list[Peer]:
    peers: list[Peer] = []
    for where, item in _named_entries(data, "peers", PEER_KEYS, "PBX peer", "addresses",
                                      problems):
        addresses = item.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            problems.add(line_of(item, "addresses"), f"{where}.addresses",
                         "must list the PBX's addresses or networks")
            continue
        networks: list[Network] = []
        for position, address in enumerate(addresses):
            try:
                networks.append(ipaddress.ip_network(str(address), strict=False))
            except ValueError:
                problems.add(line_of(addresses, position), f"{where}.addresses[{position}]",
                             f"{address!r} is not an IP address or network")
        peers.append(Peer(item["name"], tuple(networks), _peer_auth(item, where, problems)))
    return peers


def _peer_auth(item: dict[str, Any], where: str, problems: Problems,
               min_length: int = 12) -> PeerAuth | None:
    """``peers[i].auth`` (what a peer proves itself with: a password of at least 12
    characters) or ``trunks[i].auth`` (what the carrier asks of us): a username and
    either a password or ``ha1``, the hashes H(username:realm:password) by realm."""
    auth = item.get("auth")
    if auth is None:
        return None
    if not isinstance(auth, dict) or not isinstance(auth.get("username"), str) \
            or not auth["username"]:
        problems.add(line_of(item, "auth"), f"{where}.auth", "needs a username")
        return None
    _unknown_keys(auth, f"{where}.auth", AUTH_KEYS, problems)
    password, ha1 = auth.get("password"), _ha1(auth, f"{where}.auth", problems)
    if (password is None) == ("ha1" not in auth):
        problems.add(line_of(item, "auth"), f"{where}.auth",
                     "give either a password or ha1 (the hashes by realm), not both")
        return None
    if password is not None and (not isinstance(password, str) or len(password) < min_length):
        problems.add(line_of(auth, "password"), f"{where}.auth.password",
                     f"must be at least {min_length} characters")
        return None
    relaxed = auth.get("relaxed_uri", False)
    if not isinstance(relaxed, bool):
        problems.add(line_of(auth, "relaxed_uri"), f"{where}.auth.relaxed_uri",
                     "must be true or false")
        relaxed = False
    return PeerAuth(auth["username"], password, relaxed, ha1)


# RFC 7616 §3.4.2: H(username:realm:password) in hex; its length says the algorithm.
HA1_ALGORITHMS = {32: "MD5", 64: "SHA-256"}


def _ha1(auth: dict[str, Any], where: str,
         problems: Problems) -> tuple[tuple[str, str, str], ...]:
    """``ha1: {REALM: HEX}`` or ``{REALM: [HEX, HEX]}`` (MD5: 32 hex digits, SHA-256: 64)."""
    raw = auth.get("ha1")
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        problems.add(line_of(auth, "ha1"), f"{where}.ha1",
                     "must map each realm to its hash (32 hex digits for MD5, 64 for SHA-256)")
        return ()
    found: list[tuple[str, str, str]] = []
    for realm, value in raw.items():
        for digest in value if isinstance(value, list) else [value]:
            text = str(digest).lower()
            algorithm = HA1_ALGORITHMS.get(len(text))
            if algorithm is None or any(char not in "0123456789abcdef" for char in text):
                problems.add(line_of(raw, realm), f"{where}.ha1.{realm}",
                             "must be 32 hex digits (MD5) or 64 (SHA-256)")
                continue
            found.append((str(realm), algorithm, text))
    return tuple(found)


def load_trunks(data: dict[str, Any], problems: Problems) -> list[Trunk]:
    trunks: list[Trunk] = []
    for where, item in _named_entries(data, "trunks", TRUNK_KEYS, "trunk", "a uri", problems):
        try:
            uri = parse_uri(str(item.get("uri", "")))
            if not uri.is_sip or not uri.host:
                raise RemoteProtocolError("not a SIP URI")
            ipaddress.ip_address(uri.host_for_socket)
        except (RemoteProtocolError, ValueError):
            problems.add(line_of(item, "uri"), f"{where}.uri",
                         "must be a sip: URI with an IP address, such as sip:192.0.2.10:5060")
            continue
        auth = _peer_auth(item, where, problems, min_length=1)
        register = item.get("register", False)
        if not isinstance(register, bool) or (register and auth is None):
            problems.add(line_of(item, "register"), f"{where}.register",
                         "must be true or false, and true needs auth (username, password)")
            register = False
        tls_name = item.get("tls_name")
        if tls_name is not None and (not isinstance(tls_name, str) or not tls_name):
            problems.add(line_of(item, "tls_name"), f"{where}.tls_name",
                         "must be the host name the carrier's TLS certificate is for")
            tls_name = None
        trunks.append(Trunk(item["name"], uri, uri_hop(uri), auth, register, tls_name))
    return trunks






# Keys whose value is a secret wherever they are: passwords, HA1 hashes, tokens, the HTTP
# headers of alert webhooks and SMS gateways (Authorization: Bearer ...), and the admin
# users' password hashes.
SECRET_KEYS = frozenset({"password", "ha1", "token", "headers", "users"})
# Keys whose value is a URL or DSN: a secret when it holds a password (user:secret@host).
URL_KEYS = frozenset({"dsn", "url"})


def secret_keys(data: Any, where: str = "") -> tuple[str, ...]:
    """The paths of the secrets written in the file."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            if (key in SECRET_KEYS and value) or (key in URL_KEYS and _has_password(value)):
                found.append(path)
            else:
                found.extend(secret_keys(value, path))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found.extend(secret_keys(item, f"{where}[{index}]"))
    return tuple(found)


def _has_password(value: Any) -> bool:
    """Whether a URL or DSN carries a password (``redis://:pw@host``, ``postgresql://u:pw@h``)."""
    if not isinstance(value, str):
        return False
    try:
        return urlsplit(value).password is not None
    except ValueError:
        return ":" in value.partition("@")[0] and "@" in value
