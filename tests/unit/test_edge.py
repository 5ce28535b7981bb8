"""The edge filter (drops before parsing) and bans (failures counted in the store)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from sipguard.edge import Bans, BanSettings, Drop, EdgeFilter, parse_blocklist
from sipguard.store import MemoryStore

PEER = ipaddress.ip_network("127.0.0.1/32")
SCANNER = (b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060\r\n"
           b"From: <sip:100@1.1.1.1>;tag=1\r\nUser-Agent: friendly-scanner\r\n\r\n")
PLAIN = SCANNER.replace(b"friendly-scanner", b"Asterisk PBX 20.1")
NOW = 1000.0


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))


def test_scanners_are_dropped_but_not_peers_or_other_agents() -> None:
    edge = EdgeFilter([PEER])
    assert edge.check("127.0.0.9", SCANNER, NOW) is Drop.SCANNER
    assert edge.check("127.0.0.9", SCANNER.replace(b"User-Agent", b"user-agent "), NOW) is (
        Drop.SCANNER)
    assert edge.check("127.0.0.9", SCANNER.replace(b"friendly-scanner", b"SIPVicious 0.3"),
                      NOW) is Drop.SCANNER
    assert edge.check("127.0.0.9", PLAIN, NOW) is None
    assert edge.check("127.0.0.1", SCANNER, NOW) is None  # a peer is never dropped
    # The name elsewhere than in User-Agent is no evidence.
    assert edge.check("127.0.0.8", PLAIN.replace(b"sip:100@", b"sip:friendly-scanner@"),
                      NOW) is None
    assert edge.dropped[Drop.SCANNER] == 3


def test_a_flood_is_cut_to_the_token_rate_and_recovers() -> None:
    edge = EdgeFilter([PEER], rate=10.0, burst=20.0)
    verdicts = [edge.check("127.0.0.9", PLAIN, NOW) for _ in range(50)]
    assert verdicts.count(None) == 20 and verdicts.count(Drop.FLOOD) == 30
    assert edge.check("127.0.0.9", PLAIN, NOW + 0.05) is Drop.FLOOD
    assert edge.check("127.0.0.9", PLAIN, NOW + 0.2) is None  # tokens came back
    assert all(edge.check("127.0.0.1", PLAIN, NOW) is None for _ in range(500))


def test_source_table_is_bounded() -> None:
    edge = EdgeFilter([], max_sources=100)
    for index in range(1000):
        edge.check(f"10.0.{index // 256}.{index % 256}", PLAIN, NOW)
    assert edge.sources == 100


def test_bans_expire_and_blocklisted_networks_are_dropped() -> None:
    edge = EdgeFilter([PEER])
    edge.ban("127.0.0.9", NOW + 10, NOW)
    assert edge.check("127.0.0.9", PLAIN, NOW + 5) is Drop.BANNED
    assert edge.check("127.0.0.9", PLAIN, NOW + 11) is None
    networks, bad = parse_blocklist("# APIBAN\n203.0.113.0/24\n198.51.100.7\n"
                                    "add apiban 192.0.2.66\nnonsense\n2001:db8::/32\n")
    assert bad == [(5, "nonsense")]
    edge.set_blocklist(networks)
    for host in ("203.0.113.77", "198.51.100.7", "192.0.2.66", "2001:db8::5"):
        assert edge.check(host, PLAIN, NOW) is Drop.BLOCKLISTED, host
    assert edge.check("198.51.100.8", PLAIN, NOW) is None
    edge.set_blocklist([ipaddress.ip_network("127.0.0.0/8")])
    assert edge.check("127.0.0.1", PLAIN, NOW) is None  # still a peer


def test_failures_ban_with_a_bantime_that_grows_for_repeat_offenders() -> None:
    edge = EdgeFilter([PEER])
    log = Log()
    bans = Bans(BanSettings(findtime=60, maxretry=3, bantime=100, growth=2.0), MemoryStore(),
                edge, log)

    async def main() -> list[Any]:
        seen = [await bans.failure("127.0.0.9", "unknown source", NOW + index, 5.0 + index)
                for index in range(3)]
        first = await bans.list(NOW + 3)
        await bans.unban("127.0.0.9")
        seen += [await bans.failure("127.0.0.9", "scanner", NOW + 10 + index, 20.0 + index)
                 for index in range(3)]
        second = await bans.list(NOW + 13)
        peer = [await bans.failure("127.0.0.1", "scanner", NOW + index, 0.0)
                for index in range(10)]
        return [seen, first, second, peer]

    seen, first, second, peer = asyncio.run(main())
    assert seen == [False, False, True, False, False, True]
    assert [(ban.address, ban.offences) for ban in first] == [("127.0.0.9", 1)]
    assert first[0].seconds_left == 100 - 1 and "unknown source" in first[0].reason
    assert second[0].offences == 2 and second[0].seconds_left == 200 - 1
    assert edge.banned["127.0.0.9"] == 22.0 + 200
    assert peer == [False] * 10 and "127.0.0.1" not in edge.banned
    assert [event for _, event, _ in log.lines].count("ban.added") == 2


def test_sync_takes_other_nodes_bans_and_drops_lifted_ones() -> None:
    store = MemoryStore()
    here, there = EdgeFilter([PEER]), EdgeFilter([PEER])
    log = Log()
    node_a = Bans(BanSettings(), store, here, log)
    node_b = Bans(BanSettings(), store, there, log)

    async def main() -> None:
        await node_a.ban("127.0.0.9", "by hand", NOW, 50.0, seconds=30, by="ops")
        await node_b.sync(NOW + 10, 500.0)
        assert there.banned == {"127.0.0.9": 520.0}
        assert await node_a.ban("127.0.0.1", "by hand", NOW, 50.0) is None  # a peer
        await node_a.unban("127.0.0.9")
        await node_b.sync(NOW + 11, 501.0)
        assert there.banned == {}

    asyncio.run(main())


def test_sources_in_a_peer_network_are_banned_only_for_failing_to_authenticate() -> None:
    """A spoofed scanner packet, denied calls or a burst from an authenticating peer's
    network ban nothing; failed authentications do. Strangers are banned at once as
    scanners, and dropped silently with unknown_sources: drop."""
    from sipguard.edge.guard import EdgeGuard

    wide = ipaddress.ip_network("10.0.0.0/8")  # a peer that authenticates, from anywhere in it
    edge = EdgeFilter([PEER])
    bans = Bans(BanSettings(maxretry=2, findtime=60), MemoryStore(), edge, Log())
    guard = EdgeGuard(edge, bans, Log(), unknown_sources="drop", known=[PEER, wide])

    async def main() -> dict[str, float]:
        assert guard.check("10.1.1.1", SCANNER, 1.0) is Drop.SCANNER
        guard.report("10.1.1.1", "denied: premium rate", 2.0)
        assert guard.check("10.1.1.1", PLAIN, 3.0) is None  # known: not dropped as unknown
        assert guard.check("198.51.100.1", PLAIN, 3.0) is Drop.UNKNOWN
        assert guard.check("198.51.100.2", SCANNER, 3.0) is Drop.SCANNER
        await guard.settle()
        assert "10.1.1.1" not in edge.banned and "198.51.100.2" in edge.banned
        guard.report("10.1.1.1", "authentication failed: wrong password", 10.0)
        guard.report("10.1.1.1", "authentication failed: wrong password", 12.0)
        await guard.settle()
        return edge.banned

    assert "10.1.1.1" in asyncio.run(main())


def test_the_blocklist_file_is_loaded_and_reloaded_when_it_changes(tmp_path: Any) -> None:
    import os

    from sipguard.edge.guard import EdgeGuard

    path = tmp_path / "apiban.txt"
    path.write_text("203.0.113.0/24\nnot an address\n")
    edge = EdgeFilter([PEER])
    log = Log()
    guard = EdgeGuard(edge, Bans(BanSettings(), MemoryStore(), edge, log), log, blocklist=path)
    assert guard.load_blocklist() and not guard.load_blocklist()  # unchanged: not read again
    assert edge.check("203.0.113.9", PLAIN, NOW) is Drop.BLOCKLISTED
    assert [fields["line"] for _, event, fields in log.lines
            if event == "edge.blocklist_line_skipped"] == ["not an address"]
    path.write_text("198.51.100.0/24\n")
    os.utime(path, (1, 1))  # a new mtime, whatever the clock's resolution
    assert asyncio.run(guard.refresh_blocklist())
    assert edge.check("203.0.113.10", PLAIN, NOW) is None
    assert edge.check("198.51.100.4", PLAIN, NOW) is Drop.BLOCKLISTED
