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


def payment_succeeded(
    *,
    merchant_id: str,
    channel: str,
    currency: str,
    amount: int,
    fee: int,
    channel_cost_amount: int,
) -> list[Posting]:
    """The channel owes us the amount less its cost; we owe the merchant the amount less our fee.
    The fee is platform revenue; the cost is the channel's, booked as its own expense line."""
    if not 0 <= fee <= amount or not 0 <= channel_cost_amount <= amount:
        raise ValueError("fee and channel cost must lie within the amount")
    postings = [
        Posting(channel_clearing(channel), currency, amount - channel_cost_amount),
        Posting(channel_cost(channel), currency, channel_cost_amount),
        Posting(merchant_pending(merchant_id), currency, -(amount - fee)),
        Posting(PLATFORM_FEE_REVENUE, currency, -fee),
    ]
    result = net(postings)
    ensure_balanced(result)
    return result


def proportional_reversal(original: Sequence[Posting], part: int, whole: int) -> list[Posting]:
    """Reverse `part / whole` of an entry (a refund of part of a payment). Each line is scaled
    half-up; whatever rounding leaves over goes to the platform's rounding account, so the
    result balances exactly and is the same on every run."""
    if not 0 < part <= whole:
        raise ValueError("the reversed part must lie within (0, whole]")
    if part == whole:
        reversed_lines = [Posting(p.account, p.currency, -p.amount) for p in original]
    else:
        reversed_lines = [
            Posting(p.account, p.currency, -scale_half_up(p.amount, part, whole)) for p in original
        ]
        totals: dict[str, int] = defaultdict(int)
        for p in reversed_lines:
            totals[p.currency] += p.amount
        reversed_lines += [Posting(PLATFORM_ROUNDING, c, -t) for c, t in totals.items() if t]
    result = net(reversed_lines)
    ensure_balanced(result)
    return result
