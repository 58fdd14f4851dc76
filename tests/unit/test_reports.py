"""Report arithmetic (domain/reports.py) over postings made by domain/ledger.py."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from domain.ledger import Posting, payment_succeeded, proportional_reversal
from domain.reports import (
    AccountBalance,
    RefundRow,
    VolumeRow,
    daily_report,
    trial_balance,
)
from domain.withdrawals import PLATFORM_WITHDRAWAL_FEES


def _balances(entries: Iterable[list[Posting]]) -> list[AccountBalance]:
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for postings in entries:
        for p in postings:
            totals[(p.account, p.currency)] += p.amount
    return [AccountBalance(a, c, v) for (a, c), v in totals.items()]


def _paid() -> list[list[Posting]]:
    first = payment_succeeded(
        merchant_id="m1",
        channel="alipay",
        currency="CNY",
        amount=10_000,
        fee=300,
        channel_cost_amount=100,
        commissions=[("ag1", 50)],
    )
    second = payment_succeeded(
        merchant_id="m2",
        channel="stripe",
        currency="USD",
        amount=5_000,
        fee=150,
        channel_cost_amount=40,
        charge=("EUR", 4_700),
    )
    refund = proportional_reversal(first, 2_500, 10_000)
    withdrawal = [
        Posting("merchant:m1:available", "CNY", 1_020),
        Posting("merchant:m1:paid_out", "CNY", -1_000),
        Posting(PLATFORM_WITHDRAWAL_FEES, "CNY", -20),
    ]
    return [first, second, refund, withdrawal]


def test_trial_balance_sums_to_zero_per_currency() -> None:
    tb = trial_balance(_balances(_paid()))
    assert {t.currency for t in tb.totals} == {"CNY", "EUR", "USD"}
    assert all(t.total == 0 and t.debits == -t.credits > 0 for t in tb.totals)
    assert [(line.currency, line.account) for line in tb.lines] == sorted(
        (line.currency, line.account) for line in tb.lines
    )


def test_trial_balance_drops_zero_accounts_and_keeps_an_imbalance_visible() -> None:
    tb = trial_balance(
        [
            AccountBalance("a", "USD", 0),
            AccountBalance("b", "USD", 5),
            AccountBalance("c", "USD", -3),
        ]
    )
    assert [line.account for line in tb.lines] == ["b", "c"]
    assert tb.totals[0].total == 2


def test_daily_report_derives_each_line_from_its_accounts() -> None:
    volumes = [
        VolumeRow("alipay", "qr", "CNY", 1, 10_000),
        VolumeRow("stripe", "card", "USD", 1, 5_000),
    ]
    refunds = [RefundRow("CNY", 1, 2_500)]
    by = {r.currency: r for r in daily_report(_balances(_paid()), volumes, refunds)}
    cny = by["CNY"]
    # 300 fee less 50 commission, a quarter of each reversed, rounded half up (62.5 → 63)
    assert (cny.fee_revenue, cny.commission, cny.channel_cost) == (187, 37, 75)
    assert cny.gross_fees == 224
    assert (cny.payment_count, cny.volume, cny.refund_count, cny.refunds) == (1, 10_000, 1, 2_500)
    assert cny.withdrawal_fees == 20
    assert cny.net_revenue == cny.fee_revenue + 20 + cny.rounding - cny.channel_cost
    usd, eur = by["USD"], by["EUR"]
    assert usd.fee_revenue == 150 and usd.fx_result == -5_000
    assert eur.channel_cost == 40 and eur.fx_result == 4_700 and eur.volume == 0
    assert eur.net_revenue == 4_700 - 40


def test_daily_report_of_an_empty_day() -> None:
    assert daily_report([], [], []) == []
