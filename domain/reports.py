"""Platform financial reports (issue 13, part D): pure arithmetic over plain ledger rows.

Balances are signed as postings are (debit positive, credit negative), so a trial balance
sums to zero in every currency. The daily report reads the platform's side of the day's
entries from the account names of domain.ledger: what it earned is what its accounts were
credited, what it paid the channels is what their cost accounts were debited.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from domain.ledger import (
    PLATFORM_CRYPTO_TOLERANCE,
    PLATFORM_FEE_REVENUE,
    PLATFORM_FX,
    PLATFORM_ROUNDING,
)
from domain.withdrawals import PLATFORM_WITHDRAWAL_FEES


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account: str
    currency: str
    balance: int


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    currency: str
    debits: int
    credits: int  # negative, as postings are
    total: int  # debits + credits: zero when the ledger balances


@dataclass(frozen=True, slots=True)
class TrialBalance:
    lines: list[AccountBalance]
    totals: list[CurrencyTotal]


def trial_balance(rows: Iterable[AccountBalance]) -> TrialBalance:
    """Every non-zero account balance, ordered by currency and name, with per-currency totals."""
    lines = sorted((r for r in rows if r.balance), key=lambda r: (r.currency, r.account))
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for r in lines:
        (debits if r.balance > 0 else credits)[r.currency] += r.balance
    totals = [
        CurrencyTotal(c, debits[c], credits[c], debits[c] + credits[c])
        for c in sorted(debits.keys() | credits.keys())
    ]
    return TrialBalance(lines, totals)


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """Payments posted in the period by channel and method, in the payment's currency."""

    channel: str
    method: str
    currency: str
    count: int
    volume: int


@dataclass(frozen=True, slots=True)
class RefundRow:
    currency: str
    count: int
    amount: int


# The report's money lines, in the order the CSV and the PDF show them.
AMOUNTS = (
    "volume",
    "refunds",
    "gross_fees",
    "fee_revenue",
    "commission",
    "channel_cost",
    "fx_result",
    "rounding",
    "crypto_tolerance",
    "withdrawal_fees",
    "net_revenue",
)


@dataclass(slots=True)
class DailyReport:
    currency: str
    payment_count: int = 0
    volume: int = 0
    by_channel: list[VolumeRow] = field(default_factory=list)
    refund_count: int = 0
    refunds: int = 0
    fee_revenue: int = 0  # the platform's share of fees, after refunds' reversals
    commission: int = 0  # earned by agents out of fees
    channel_cost: int = 0
    fx_result: int = 0  # the FX account's position in this currency (credit positive)
    rounding: int = 0
    crypto_tolerance: int = 0  # what crypto deposits paid over (credit positive) or short
    withdrawal_fees: int = 0
    # fee revenue + withdrawal fees + FX + rounding + crypto tolerance − channel cost
    net_revenue: int = 0

    @property
    def gross_fees(self) -> int:
        return self.fee_revenue + self.commission


def _platform_side(account: str) -> str | None:
    """Which line of the report an account's movements belong to, if any."""
    if account == PLATFORM_FEE_REVENUE:
        return "fee_revenue"
    if account == PLATFORM_FX:
        return "fx_result"
    if account == PLATFORM_ROUNDING:
        return "rounding"
    if account == PLATFORM_CRYPTO_TOLERANCE:
        return "crypto_tolerance"
    if account == PLATFORM_WITHDRAWAL_FEES:
        return "withdrawal_fees"
    if account.startswith("agent:") and account.endswith(":commission"):
        return "commission"
    if account.startswith("channel:") and account.endswith(":cost"):
        return "channel_cost"
    return None


def daily_report(
    movements: Iterable[AccountBalance],
    volumes: Iterable[VolumeRow],
    refunds: Iterable[RefundRow],
) -> list[DailyReport]:
    """One report per currency from the day's net movement per account, its posted payments
    and its succeeded refunds. Credits to revenue accounts count positive; the channel cost,
    a debit, too."""
    reports: dict[str, DailyReport] = {}

    def of(currency: str) -> DailyReport:
        return reports.setdefault(currency, DailyReport(currency))

    for m in movements:
        side = _platform_side(m.account)
        if side is not None:
            r = of(m.currency)
            amount = m.balance if side == "channel_cost" else -m.balance
            setattr(r, side, getattr(r, side) + amount)
    for v in sorted(volumes, key=lambda v: (v.currency, v.channel, v.method)):
        r = of(v.currency)
        r.by_channel.append(v)
        r.payment_count += v.count
        r.volume += v.volume
    for f in refunds:
        r = of(f.currency)
        r.refund_count += f.count
        r.refunds += f.amount
    for r in reports.values():
        r.net_revenue = (
            r.fee_revenue
            + r.withdrawal_fees
            + r.fx_result
            + r.rounding
            + r.crypto_tolerance
            - r.channel_cost
        )
    return [reports[c] for c in sorted(reports)]
