"""Risk rules as a pure function. Only the minimal rule set the spine needs; the rule engine
will grow here behind the same `assess` signature."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MerchantLimits:
    currencies: frozenset[str]
    min_amount: dict[str, int] = field(default_factory=dict)
    max_amount: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RiskInput:
    currency: str
    amount: int
    customer_ip: str | None
    customer_email: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    approved: bool
    code: str | None = None
    reason: str | None = None


APPROVE = Decision(True)


def assess(
    payment: RiskInput, limits: MerchantLimits, ip_blocked: bool, email_blocked: bool
) -> Decision:
    if payment.currency not in limits.currencies:
        return Decision(False, "currency_not_allowed", "currency not enabled for this merchant")
    low = limits.min_amount.get(payment.currency)
    if low is not None and payment.amount < low:
        return Decision(False, "amount_too_small", "amount below the merchant's minimum")
    high = limits.max_amount.get(payment.currency)
    if high is not None and payment.amount > high:
        return Decision(False, "amount_too_large", "amount above the merchant's maximum")
    if ip_blocked:
        return Decision(False, "blocked_ip", "customer IP is blocklisted")
    if email_blocked:
        return Decision(False, "blocked_email", "customer e-mail is blocklisted")
    return APPROVE
