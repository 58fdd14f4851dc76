"""Fee arithmetic in minor units with one documented rounding rule: half up."""

from __future__ import annotations

from dataclasses import dataclass

BPS = 10_000


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
