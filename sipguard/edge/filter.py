"""The first look at every datagram, before any parsing work is spent on it.

:class:`EdgeFilter` answers one question per datagram: drop it, or let it
through to the SIP endpoint. It drops what comes from a banned address or a
blocklisted network, what a source sends faster than its token bucket allows
(a flood), and requests whose User-Agent names a known scanner (dropped
silently: a scanner that hears nothing finds nothing). Configured peers and
trunks are never dropped by it.

It does no I/O and reads no clock: the service passes ``now`` and keeps the
ban table in step with the state store (:mod:`sipguard.edge.bans`). Its
tables are bounded, so a flood from many addresses cannot grow them without
limit.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# User-Agent values of SIP scanners and brute-forcers (case-insensitive substrings).
SCANNER_AGENTS = (
    "friendly-scanner", "sipvicious", "sipcli", "vaxsipuseragent", "pplsip", "sip-scan",
    "iwar", "sundayddr", "sivus", "smap", "sipsak", "voipsec", "sipscan", "ozzy",
)
SCAN_BYTES = 2048  # the User-Agent is looked for in the first bytes of the header block


class Drop(enum.Enum):
    """Why a datagram was dropped before parsing."""

    BANNED = "banned"
    BLOCKLISTED = "blocklisted"
    FLOOD = "flood"
    SCANNER = "scanner"
    UNKNOWN = "unknown_source"  # not a peer, with edge.unknown_sources: drop


class EdgeFilter:
    """Bans, blocklist, per-source rate limit and scanner detection for datagrams."""

    def __init__(
        self,
        exempt: Iterable[Network] = (),
        rate: float = 50.0,
        burst: float = 100.0,
        max_sources: int = 100_000,
        scanner_agents: Sequence[str] = SCANNER_AGENTS,
    ) -> None:
        self.exempt = tuple(exempt)
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._scanner = _agent_pattern(scanner_agents)
        self._buckets: dict[str, list[float]] = {}  # host -> [tokens, last refill]
        self._bans: dict[str, float] = {}  # host -> until (the service's clock)
        self._blocked = _NetworkSet(())
        self._exempt_cache: dict[str, bool] = {}
        self.dropped: dict[Drop, int] = dict.fromkeys(Drop, 0)

    # -- per datagram --------------------------------------------------------------

    def check(self, host: str, data: bytes, now: float) -> Drop | None:
        """None to let the datagram through, else why it is dropped."""
        if self.is_exempt(host):
            return None
        drop = self._judge(host, data, now)
        if drop is not None:
            self.dropped[drop] += 1
        return drop

    def refuses(self, host: str, now: float) -> Drop | None:
        """Whether to refuse a TCP/TLS connection from ``host`` (banned or blocklisted)
        before any byte of it is read or a TLS handshake is spent on it."""
        if self.is_exempt(host):
            return None
        drop: Drop | None = None
        if self.is_banned(host, now):
            drop = Drop.BANNED
        elif self._blocked and self._blocked.contains(host):
            drop = Drop.BLOCKLISTED
        if drop is not None:
            self.dropped[drop] += 1
        return drop

    def _judge(self, host: str, data: bytes, now: float) -> Drop | None:
        until = self._bans.get(host)
        if until is not None:
            if until > now:
                return Drop.BANNED
            del self._bans[host]
        if self._blocked and self._blocked.contains(host):
            return Drop.BLOCKLISTED
        if not self._take_token(host, now):
            return Drop.FLOOD
        if self._scanner is not None and self._scanner.search(data, 0, SCAN_BYTES):
            return Drop.SCANNER
        return None

    def _take_token(self, host: str, now: float) -> bool:
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                # Forget the source seen longest ago (dicts keep insertion order).
                del self._buckets[next(iter(self._buckets))]
            self._buckets[host] = [self.burst - 1.0, now]
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def is_exempt(self, host: str) -> bool:
        """Whether ``host`` is a configured peer or trunk (never dropped, never banned)."""
        known = self._exempt_cache.get(host)
        if known is None:
            known = _in_networks(host, self.exempt)
            if len(self._exempt_cache) >= 4096:
                self._exempt_cache.clear()
            self._exempt_cache[host] = known
        return known

    # -- the tables the service keeps in step ---------------------------------------------

    def ban(self, host: str, until: float, now: float) -> None:
        """Drop everything from ``host`` until ``until``."""
        if len(self._bans) >= self.max_sources and host not in self._bans:
            self._forget_expired(now)
            if len(self._bans) >= self.max_sources:  # still full: the soonest to end goes
                del self._bans[min(self._bans, key=self._bans.__getitem__)]
        self._bans[host] = until

    def is_banned(self, host: str, now: float) -> bool:
        """Whether ``host`` is banned at ``now``."""
        until = self._bans.get(host)
        return until is not None and until > now

    def unban(self, host: str) -> None:
        """Lift a ban now."""
        self._bans.pop(host, None)

    def set_bans(self, bans: dict[str, float]) -> None:
        """Replace the ban table (host -> until), e.g. with the store's view."""
        self._bans = dict(bans)

    def set_blocklist(self, networks: Iterable[Network]) -> None:
        """Replace the blocklisted networks (a blocklist file, reloaded)."""
        self._blocked = _NetworkSet(networks)

    @property
    def banned(self) -> dict[str, float]:
        """The ban table: host -> until."""
        return dict(self._bans)

    @property
    def sources(self) -> int:
        """Sources with a token bucket (bounded by max_sources)."""
        return len(self._buckets)

    def _forget_expired(self, now: float) -> None:
        for host in [host for host, until in self._bans.items() if until <= now]:
            del self._bans[host]


class _NetworkSet:
    """Networks, looked up by address with one set probe per prefix length."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self._by_length: dict[tuple[int, int], set[int]] = {}
        for network in networks:
            key = (network.version, network.prefixlen)
            self._by_length.setdefault(key, set()).add(int(network.network_address))
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._by_length)

    def contains(self, host: str) -> bool:
        found = self._cache.get(host)
        if found is not None:
            return found
        found = False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            address = None
        if address is not None:
            bits = address.max_prefixlen
            value = int(address)
            for (version, length), starts in self._by_length.items():
                if version == address.version and (value >> (bits - length) << (bits - length)
                                                   ) in starts:
                    found = True
                    break
        if len(self._cache) >= 65536:
            self._cache.clear()
        self._cache[host] = found
        return found


def _in_networks(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return any(address in network for network in networks)


def _agent_pattern(agents: Sequence[str]) -> re.Pattern[bytes] | None:
    """A pattern finding a scanner's name in a User-Agent header (full or compact form)."""
    names = [re.escape(agent.lower().encode()) for agent in agents if agent]
    if not names:
        return None
    return re.compile(rb"(?im)^user-agent[ \t]*:[^\r\n]*?(?:" + b"|".join(names) + rb")")


def parse_blocklist(text: str) -> tuple[list[Network], list[tuple[int, str]]]:
    """IP addresses and CIDR networks, one a line (APIBAN's ipset format; # comments).

    Returns the networks and the (line number, text) of lines that are not one.
    """
    networks: list[Network] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        # ipset save files: "add SETNAME 192.0.2.1" lines.
        fields = line.split()
        candidate = fields[2] if len(fields) == 3 and fields[0] == "add" else line
        try:
            networks.append(ipaddress.ip_network(candidate, strict=False))
        except ValueError:
            bad.append((number, raw.strip()))
    return networks, bad
