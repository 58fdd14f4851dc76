"""A merchant's own limits: the currencies it takes and its amount range per currency. A
payment outside them is rejected before any rule is read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MerchantLimits:
    currencies: frozenset[str]
    min_amount: dict[str, int] = field(default_factory=dict)
    max_amount: dict[str, int] = field(default_factory=dict)


NO_LIMITS = MerchantLimits(currencies=frozenset())


def outside(currency: str, amount: int, limits: MerchantLimits) -> tuple[str, str] | None:
    """(code, reason) when the payment is outside the merchant's limits."""
    if currency not in limits.currencies:
        return "currency_not_allowed", "currency not enabled for this merchant"
    low = limits.min_amount.get(currency)
    if low is not None and amount < low:
        return "amount_too_small", "amount below the merchant's minimum"
    high = limits.max_amount.get(currency)
    if high is not None and amount > high:
        return "amount_too_large", "amount above the merchant's maximum"
    return None
