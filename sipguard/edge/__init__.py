"""The SIP edge: who may send, what is dropped before parsing, bans shared through the store."""

from sipguard.edge.bans import Ban, Bans, BanSettings
from sipguard.edge.filter import Drop, EdgeFilter, parse_blocklist

__all__ = ["Ban", "BanSettings", "Bans", "Drop", "EdgeFilter", "parse_blocklist"]
