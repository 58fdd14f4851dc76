"""Answers of the platform's financial reports. Amounts are decimal strings in major units;
balances are signed as postings are (debit positive, credit negative)."""

from __future__ import annotations

from typing import Literal

import msgspec


class AccountLine(msgspec.Struct):
    account: str
    currency: str
    balance: str


class CurrencyTotalView(msgspec.Struct):
    currency: str
    debits: str
    credits: str
    total: str  # "0" (in the currency's places) when the ledger balances


class TrialBalanceView(msgspec.Struct):
    object: Literal["trial_balance"]
    at: int
    data: list[AccountLine]
    totals: list[CurrencyTotalView]


class ChannelVolume(msgspec.Struct):
    channel: str
    method: str
    count: int
    volume: str


class DailyView(msgspec.Struct, kw_only=True):
    """One currency's day: net_revenue = fee_revenue + withdrawal_fees + fx_result + rounding
    + crypto_tolerance − channel_cost; gross_fees = fee_revenue + commission."""

    object: Literal["daily_report"] = "daily_report"
    day: str
    currency: str
    payment_count: int
    volume: str
    by_channel: list[ChannelVolume]
    refund_count: int
    refunds: str
    gross_fees: str
    fee_revenue: str
    commission: str
    channel_cost: str
    fx_result: str
    rounding: str
    crypto_tolerance: str
    withdrawal_fees: str
    net_revenue: str


class DailyList(msgspec.Struct):
    object: Literal["list"]
    day: str
    data: list[DailyView]
