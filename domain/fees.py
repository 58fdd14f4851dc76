"""Fee arithmetic in minor units with one documented rounding rule: half up; and the bounds
of every price the platform and agents set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta

BPS = 10_000

# The most anyone may charge or be charged: a merchant's fee, an agent's rate (which a merchant's
# fee must cover) and a commission share all stay within these, so no price can eat a payment.
MAX_PRICE_BPS = 2_000  # 20 %
MAX_PRICE_FIXED = 100  # minor units per payment: 1.00 in a two-decimal currency

# Every price field is one of these two types (API bodies, `juhe merchants create`, the
# config's default fee), so the bounds are checked in one place and documented in the schema.
PriceBps = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_PRICE_BPS,
        description=f"basis points (1/100 %) of the amount, 0 to {MAX_PRICE_BPS} (20 %)",
    ),
]
PriceFixed = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_PRICE_FIXED,
        description=f"minor units per payment, 0 to {MAX_PRICE_FIXED}",
    ),
]


def scale_half_up(amount: int, numerator: int, denominator: int) -> int:
    """amount × numerator / denominator, rounded half away from zero, exactly."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    product = amount * numerator
    quotient, remainder = divmod(abs(product), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if product >= 0 else -quotient


def rate_fee(amount: int, bps: int, fixed: int) -> int:
    """A percentage (basis points) plus a fixed part, never more than the amount itself."""
    if amount < 0 or bps < 0 or fixed < 0:
        raise ValueError("fees are computed on non-negative amounts and rates")
    return min(amount, scale_half_up(amount, bps, BPS) + fixed)


@dataclass(frozen=True, slots=True)
class Rate:
    """A price: basis points of the amount plus a fixed part in minor units."""

    bps: int
    fixed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.bps <= BPS or self.fixed < 0:
            raise ValueError("a rate is 0–10000 bps and a non-negative fixed part")

    def fee(self, amount: int) -> int:
        return rate_fee(amount, self.bps, self.fixed)

    def at_least(self, other: Rate) -> bool:
        """Costs at least as much as `other` for every amount (both parts no lower)."""
        return self.bps >= other.bps and self.fixed >= other.fixed
