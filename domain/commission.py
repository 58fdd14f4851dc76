"""Agent commission (代理分潤): who along a merchant's agent chain earns what from a payment.

The chain runs from the top agent (directly under the platform) down to the merchant's own
agent. Every agent has a `rate`: the price its parent charges it (for the top agent, the
platform's price). How it earns depends on its mode:

- `markup`: the spread between the price it sells at (its child agent's rate, or for the
  merchant's own agent the merchant's fee) and its own rate;
- `percentage`: a share of the payment amount, in basis points;
- `fixed`: a fixed amount per payment.

Commissions are paid out of the margin the payment leaves (merchant fee − channel cost), never
beyond it: when the policies ask for more, agents are paid in chain order from the top until the
margin is spent (a parent's terms come before its children's). Nobody earns a negative amount.
What is left is the platform's. All amounts are integers in minor units; fees are rounded half
up (domain.fees), so every figure here is exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.fees import BPS, Rate, scale_half_up


class Mode(StrEnum):
    MARKUP = "markup"
    PERCENTAGE = "percentage"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class AgentTerms:
    agent_id: str
    rate: Rate
    mode: Mode = Mode.MARKUP
    share_bps: int = 0  # percentage mode
    share_fixed: int = 0  # fixed mode

    def __post_init__(self) -> None:
        if not 0 <= self.share_bps <= BPS or self.share_fixed < 0:
            raise ValueError("a share is 0–10000 bps or a non-negative fixed amount")


class PricingError(ValueError):
    pass


def check_chain(chain: Sequence[AgentTerms], merchant_rate: Rate | None = None) -> None:
    """Rates only rise down the chain: no child is priced below its parent's cost."""
    for parent, child in itertools.pairwise(chain):
        if not child.rate.at_least(parent.rate):
            raise PricingError(
                f"{child.agent_id}'s rate is below its parent {parent.agent_id}'s cost"
            )
    if chain and merchant_rate is not None and not merchant_rate.at_least(chain[-1].rate):
        raise PricingError(f"the merchant's rate is below its agent {chain[-1].agent_id}'s cost")


@dataclass(frozen=True, slots=True)
class Terms:
    """The terms a commission was earned under, kept with its record for the agent's
    statement (seed §5.3): the level (1 is the top of the merchant's chain), the mode, and the
    rate (mark-up: the agent's own rate; percentage: its share; fixed: its fixed amount)."""

    level: int
    mode: Mode
    rate_bps: int
    fixed: int


def terms_of(chain: Sequence[AgentTerms]) -> dict[str, Terms]:
    """Each agent's `Terms` in a chain given top first."""
    out = {}
    for level, t in enumerate(chain, start=1):
        if t.mode is Mode.MARKUP:
            out[t.agent_id] = Terms(level, t.mode, t.rate.bps, t.rate.fixed)
        elif t.mode is Mode.PERCENTAGE:
            out[t.agent_id] = Terms(level, t.mode, t.share_bps, 0)
        else:
            out[t.agent_id] = Terms(level, t.mode, 0, t.share_fixed)
    return out


@dataclass(frozen=True, slots=True)
class Split:
    """How a payment's fee divides: commissions in chain order (zero amounts left out) and the
    platform's remainder. merchant_fee == channel_cost + Σ commissions + platform."""

    commissions: tuple[tuple[str, int], ...]
    platform: int


def split(amount: int, merchant_fee: int, channel_cost: int, chain: Sequence[AgentTerms]) -> Split:
    if amount < 0 or merchant_fee < 0 or channel_cost < 0:
        raise ValueError("amounts are non-negative")
    available = max(0, merchant_fee - channel_cost)
    # What each agent pays its parent; the last agent sells to the merchant at the fee.
    costs = [terms.rate.fee(amount) for terms in chain]
    costs.append(merchant_fee)
    earned: list[tuple[str, int]] = []
    for n, terms in enumerate(chain):
        if terms.mode is Mode.MARKUP:
            wanted = costs[n + 1] - costs[n]
        elif terms.mode is Mode.PERCENTAGE:
            wanted = scale_half_up(amount, terms.share_bps, BPS)
        else:
            wanted = terms.share_fixed
        paid = min(max(0, wanted), available)
        available -= paid
        if paid:
            earned.append((terms.agent_id, paid))
    total = sum(a for _, a in earned)
    return Split(tuple(earned), merchant_fee - channel_cost - total)
