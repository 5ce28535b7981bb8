"""The rate deck: E.164 prefix -> price per minute, the longest prefix wins (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class RateDeck:
    """Prices per minute by E.164 prefix ("+44", "+4420"...)."""

    prices: MappingProxyType[str, float]
    default: float | None = None  # for numbers no prefix covers; None: unknown
    longest: int = 0
    digest: str = ""  # of the file it came from: part of the policy version

    @classmethod
    def build(cls, prices: dict[str, float], default: float | None = None,
              digest: str = "") -> RateDeck:
        """A deck from a prefix -> price mapping."""
        return cls(MappingProxyType(dict(prices)), default,
                   max((len(prefix) for prefix in prices), default=0), digest)

    def price(self, e164: str) -> tuple[float | None, str | None]:
        """The price per minute of a number, and the prefix that set it."""
        for length in range(min(self.longest, len(e164)), 1, -1):
            prefix = e164[:length]
            price = self.prices.get(prefix)
            if price is not None:
                return price, prefix
        return self.default, None

    def cost(self, e164: str, seconds: float) -> float:
        """What a call of that length costs (billed per started second)."""
        price, _ = self.price(e164)
        return 0.0 if price is None else round(price * seconds / 60.0, 6)


EMPTY_DECK = RateDeck.build({})
