"""The platform's financial reports (issue 13, part D): a trial balance at any time and the
daily report per currency, as JSON, CSV or PDF. Platform users with `settlements:read` only; the
arithmetic is domain/reports.py's."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from domain.access import Owner, Principal, Realm
from domain.money import format_amount
from domain.reports import AMOUNTS, DailyReport, daily_report, trial_balance
from gateway.access import identify, require
from gateway.errors import invalid
from gateway.pdf import pdf_answer, render
from gateway.report_schemas import (
    AccountLine,
    ChannelVolume,
    CurrencyTotalView,
    DailyList,
    DailyView,
    TrialBalanceView,
)
from gateway.state import csv_answer, edge, int_query, json_answer
from infra import reports

_PLATFORM = Owner(Realm.PLATFORM, None)  # platform-only: no merchant or agent owns it
# The daily report's labels, Traditional Chinese first (the PDF).
DAILY_LABELS = {
    "volume": "交易量 Volume",
    "refunds": "退款 Refunds",
    "gross_fees": "手續費總額 Gross fees",
    "fee_revenue": "手續費收入 Fee revenue",
    "commission": "代理佣金 Commission",
    "channel_cost": "通道成本 Channel cost",
    "fx_result": "匯兌損益 FX result",
    "rounding": "尾差 Rounding",
    "crypto_tolerance": "加密貨幣容差 Crypto tolerance",
    "withdrawal_fees": "提現手續費 Withdrawal fees",
    "net_revenue": "平台淨收入 Net revenue",
}
DAILY_TITLE = "每日財務報表 Daily financial report"


async def _platform_reader(request: web.Request) -> Principal:
    who = (await identify(request, b"")).principal
    await require(request, who, "settlements:read", _PLATFORM)
    return who


async def get_trial_balance(request: web.Request) -> web.Response:
    """Every account's balance from its postings as of `at` (default now)."""
    await _platform_reader(request)
    at = int_query(request, "at")
    at = int(time.time()) if at is None else at
    tb = trial_balance(
        await reports.movements(edge(request).pg, None, datetime.fromtimestamp(at, UTC))
    )
    if request.query.get("format") == "csv":
        rows = [
            {
                "account": r.account,
                "currency": r.currency,
                "balance": format_amount(r.balance, r.currency),
            }
            for r in tb.lines
        ] + [
            {
                "account": "TOTAL",
                "currency": t.currency,
                "balance": format_amount(t.total, t.currency),
            }
            for t in tb.totals
        ]
        return csv_answer(rows, ["account", "currency", "balance"], f"trial-balance-{at}.csv")
    return json_answer(
        TrialBalanceView(
            "trial_balance",
            at,
            [
                AccountLine(r.account, r.currency, format_amount(r.balance, r.currency))
                for r in tb.lines
            ],
            [
                CurrencyTotalView(
                    t.currency,
                    format_amount(t.debits, t.currency),
                    format_amount(t.credits, t.currency),
                    format_amount(t.total, t.currency),
                )
                for t in tb.totals
            ],
        )
    )


def _day(request: web.Request) -> date:
    raw = request.query.get("day")
    if raw is None:
        raise invalid("missing_parameter", "day is required (YYYY-MM-DD)", "day")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid("invalid_field", "day must be a date YYYY-MM-DD", "day") from None


def daily_view(day: date, r: DailyReport) -> DailyView:
    c = r.currency
    return DailyView(
        day=day.isoformat(),
        currency=c,
        payment_count=r.payment_count,
        by_channel=[
            ChannelVolume(v.channel, v.method, v.count, format_amount(v.volume, c))
            for v in r.by_channel
        ],
        refund_count=r.refund_count,
        **{name: format_amount(getattr(r, name), c) for name in AMOUNTS},
    )


async def load_daily(request: web.Request) -> tuple[date, list[DailyReport]]:
    """The day's reports (UTC), of one currency if named."""
    day = _day(request)
    currency = request.query.get("currency")
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    until = since + timedelta(days=1)
    pg = edge(request).pg
    found = daily_report(
        await reports.movements(pg, since, until, currency),
        await reports.volumes(pg, since, until, currency),
        await reports.refunds(pg, since, until, currency),
    )
    return day, found


def daily_pdf(font: str, day: date, found: list[DailyReport]) -> bytes:
    """The day as a PDF: volume per channel and method, then a row per currency."""
    facts = [("日期 Day", f"{day.isoformat()} (UTC)")] + [
        (
            f"通道 {v.channel} / {v.method}",
            f"{v.count} · {format_amount(v.volume, v.currency)} {v.currency}",
        )
        for r in found
        for v in r.by_channel
    ]
    columns = [
        "幣別 Currency",
        "筆數 Payments",
        "退款筆數 Refunds",
        *(DAILY_LABELS[name] for name in AMOUNTS),
    ]
    rows = [
        [
            r.currency,
            str(r.payment_count),
            str(r.refund_count),
            *(format_amount(getattr(r, name), r.currency) for name in AMOUNTS),
        ]
        for r in found
    ]
    return render(font, DAILY_TITLE, facts, columns, rows)


async def get_daily(request: web.Request) -> web.Response:
    """The platform's day per currency: volume by channel and method, fees, costs, net."""
    await _platform_reader(request)
    day, found = await load_daily(request)
    if request.query.get("format") == "pdf":
        body = daily_pdf(edge(request).settings.settlement.pdf_font, day, found)
        return pdf_answer(body, f"daily-{day.isoformat()}.pdf")
    if request.query.get("format") == "csv":
        rows = [
            {
                "day": day.isoformat(),
                "currency": r.currency,
                "payment_count": r.payment_count,
                "refund_count": r.refund_count,
                **{name: format_amount(getattr(r, name), r.currency) for name in AMOUNTS},
            }
            for r in found
        ]
        fields = ["day", "currency", "payment_count", "refund_count", *AMOUNTS]
        return csv_answer(rows, fields, f"daily-{day.isoformat()}.csv")
    return json_answer(DailyList("list", day.isoformat(), [daily_view(day, r) for r in found]))
