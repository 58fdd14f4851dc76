"""Double-entry postings.

Convention: a posting's amount is signed, debit positive and credit negative, so an entry balances
when its postings sum to zero in every currency. Accounts are plain names; who owns one and what
for is in the name (`channel:<code>:clearing`, `merchant:<id>:pending`, `platform:fee_revenue`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from domain.fees import scale_half_up

PLATFORM_FEE_REVENUE = "platform:fee_revenue"
PLATFORM_ROUNDING = "platform:rounding"
PLATFORM_FX = "platform:fx"
# what a crypto deposit paid short of, or over, its amount due within the tolerance, or short
# where operations accepted it: the platform's gain or loss (domain.chain)
PLATFORM_CRYPTO_TOLERANCE = "platform:crypto_tolerance"


def channel_clearing(code: str) -> str:
    return f"channel:{code}:clearing"


def channel_cost(code: str) -> str:
    return f"channel:{code}:cost"


def merchant_pending(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:pending"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    currency: str
    amount: int


def sending_cost(
    channel: str, currency: str, amount: int, account: str | None = None
) -> list[Posting]:
    """What the channel's network charged to send money out (a chain's gas): the channel's
    cost (or `account`'s), out of what the channel holds. Nothing for nothing."""
    if amount <= 0:
        return []
    return [
        Posting(account or channel_cost(channel), currency, amount),
        Posting(channel_clearing(channel), currency, -amount),
    ]


def sweep_cost(channel: str) -> str:
    """The gas of moving a channel's crypto deposits into its hot wallet."""
    return f"channel:{channel}:sweep_gas"


class UnbalancedEntry(ValueError):
    pass


def ensure_balanced(postings: Iterable[Posting]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for p in postings:
        totals[p.currency] += p.amount
    off = {c: t for c, t in totals.items() if t != 0}
    if off:
        raise UnbalancedEntry(f"entry does not balance: {off}")


def net(postings: Iterable[Posting]) -> list[Posting]:
    """One posting per (account, currency), zero lines dropped, in a fixed order: the order in
    which balance rows are locked, so concurrent writers cannot deadlock."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for p in postings:
        totals[(p.account, p.currency)] += p.amount
    return [Posting(a, c, v) for (a, c), v in sorted(totals.items()) if v != 0]


def agent_commission(agent_id: str) -> str:
    return f"agent:{agent_id}:commission"


def agent_lines(postings: Iterable[Posting]) -> list[tuple[str, int]]:
    """(agent id, amount earned) from an entry's commission lines: credits are earnings, so a
    refund's reversal shows as negative."""
    prefix, suffix = "agent:", ":commission"
    return [
        (p.account[len(prefix) : -len(suffix)], -p.amount)
        for p in postings
        if p.account.startswith(prefix) and p.account.endswith(suffix)
    ]


def payment_succeeded(
    *,
    merchant_id: str,
    channel: str,
    currency: str,
    amount: int,
    fee: int,
    channel_cost_amount: int,
    commissions: Sequence[tuple[str, int]] = (),
    charge: tuple[str, int] | None = None,
    received: int | None = None,
) -> list[Posting]:
    """The channel owes us the amount less its cost; we owe the merchant the amount less our fee.
    Of the fee, each agent in the merchant's chain is owed its commission and the rest is
    platform revenue; the cost is the channel's, booked as its own expense line.

    With `charge` (currency, amount), the channel was charged in another currency at a locked
    quote: its lines are in that currency (the cost too), and the platform's FX account holds
    both sides of the conversion, so each currency balances and the spread stays there.

    With `received`, the channel took that much rather than what it was charged (a crypto
    deposit a little short or over): the merchant is credited as charged, the channel owes
    what it took, and the difference is the platform's crypto tolerance account's."""
    charged_currency, charged = charge if charge else (currency, amount)
    taken = charged if received is None else received
    if not 0 <= fee <= amount or not 0 <= channel_cost_amount <= min(charged, taken):
        raise ValueError("fee and channel cost must lie within the amount")
    if any(c < 0 for _, c in commissions) or sum(c for _, c in commissions) > fee:
        raise ValueError("commissions are non-negative and paid out of the fee")
    bridge = (
        [Posting(PLATFORM_FX, charged_currency, -charged), Posting(PLATFORM_FX, currency, amount)]
        if charged_currency != currency
        else []
    )
    postings = [
        Posting(channel_clearing(channel), charged_currency, taken - channel_cost_amount),
        Posting(channel_cost(channel), charged_currency, channel_cost_amount),
        Posting(PLATFORM_CRYPTO_TOLERANCE, charged_currency, charged - taken),
        *bridge,
        Posting(merchant_pending(merchant_id), currency, -(amount - fee)),
        Posting(PLATFORM_FEE_REVENUE, currency, -(fee - sum(c for _, c in commissions))),
        *(Posting(agent_commission(a), currency, -c) for a, c in commissions),
    ]
    result = net(postings)
    ensure_balanced(result)
    return result


def proportional_reversal(
    original: Sequence[Posting], part: int, whole: int, already: int = 0
) -> list[Posting]:
    """Reverse the slice (already, already + part] of an entry for `whole` (a refund of part of
    a payment, after `already` was refunded). Each line moves by the difference of its scaled
    cumulative amounts, rounded half up, so any series of partial refunds reverses every line
    exactly once in total: no account is over-reversed, and an agent never ends up owing
    commission it did not earn. What rounding leaves over goes to the platform's rounding
    account, so the result balances exactly and is the same on every run."""
    if not 0 < part <= whole - already or already < 0:
        raise ValueError("the reversed part must lie within what is left of the whole")
    if already == 0 and part == whole:
        reversed_lines = [Posting(p.account, p.currency, -p.amount) for p in original]
    else:
        done = already + part
        reversed_lines = [
            Posting(
                p.account,
                p.currency,
                scale_half_up(p.amount, already, whole) - scale_half_up(p.amount, done, whole),
            )
            for p in original
        ]
        totals: dict[str, int] = defaultdict(int)
        for p in reversed_lines:
            totals[p.currency] += p.amount
        reversed_lines += [Posting(PLATFORM_ROUNDING, c, -t) for c, t in totals.items() if t]
    result = net(reversed_lines)
    ensure_balanced(result)
    return result
