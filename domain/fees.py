"""Fee arithmetic in minor units with one documented rounding rule: half up."""

from __future__ import annotations

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
