"""The SIP edge: who may send, what is dropped before parsing (bans, blocklists, floods,
scanners), and bans shared through the store.

Owns: the checks made on a datagram before it is parsed. May import: ``sipguard.b2bua``
(peers and trunks), ``sipguard.store`` and ``sipguard.control``.
"""

from sipguard.edge.bans import Ban, Bans, BanSettings, normalised_address
from sipguard.edge.filter import SCANNER_AGENTS, Drop, EdgeFilter, parse_blocklist
from sipguard.edge.guard import EdgeGuard, exempt_networks, known_networks

__all__ = [
    "SCANNER_AGENTS",
    "Ban",
    "BanSettings",
    "Bans",
    "Drop",
    "EdgeFilter",
    "EdgeGuard",
    "exempt_networks",
    "known_networks",
    "normalised_address",
    "parse_blocklist",
]
