"""The platform's reports against a real node: after payments and a refund, the trial balance
sums to zero per currency and the daily report's volume, fees and refunds are what was paid;
others are refused and bad input is the documented 4xx.

Other tests post entries today too, so this test's entries are moved to a day of their own
(a random day long past): that day's report holds exactly them."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from domain.access import Realm
from tests.conftest import MerchantFactory, wait_status
from tests.invariants import assert_ledger_invariants
from tests.pdf import pdf_text
from tests.portal import make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_trial_balance_and_daily_report(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    mid = shop.merchant_id  # type: ignore[attr-defined]
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    owner = await make_user(stack, http, Realm.MERCHANT, mid, ["merchant_owner"])

    paid = []
    for n, amount in enumerate(("100.00", "40.00")):
        _, pay = await shop.create_payment(
            amount=amount, currency="USD", merchant_order_id=f"rp-{n}"
        )
        paid.append(await wait_status(shop, pay["id"], {"succeeded"}))
    _, refund = await shop.request(
        "POST", "/api/v1/refunds", {"payment_id": paid[0]["id"], "amount": "10.00"}
    )
    for _ in range(300):
        if (await shop.request("GET", f"/api/v1/refunds/{refund['id']}"))[1]["status"] == (
            "succeeded"
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the refund never succeeded")

    day = date(1990, 1, 1) + timedelta(days=random.randrange(3650))
    moved = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    await stack.pg.execute(
        """UPDATE journal_entries SET created_at = $1
           WHERE (kind = 'payment' AND ref = ANY($2::text[])) OR (kind = 'refund' AND ref = $3)""",
        moved,
        [p["id"] for p in paid],
        refund["id"],
    )
    await assert_ledger_invariants(stack.pg)

    status, tb = await finance.call("GET", "/api/v1/admin/reports/trial-balance")
    assert status == 200 and tb["object"] == "trial_balance", tb
    assert tb["totals"] and all(float(t["total"]) == 0 for t in tb["totals"]), tb["totals"]
    assert any(line["account"] == f"merchant:{mid}:pending" for line in tb["data"])
    status, early = await finance.call(
        "GET", f"/api/v1/admin/reports/trial-balance?at={int(moved.timestamp()) - 1}"
    )
    assert status == 200 and all(float(t["total"]) == 0 for t in early["totals"])

    status, daily = await finance.call(
        "GET", f"/api/v1/admin/reports/daily?day={day.isoformat()}&currency=USD"
    )
    assert status == 200 and [r["currency"] for r in daily["data"]] == ["USD"], daily
    usd = daily["data"][0]
    assert (usd["payment_count"], usd["volume"]) == (2, "140.00"), usd
    assert sum(v["count"] for v in usd["by_channel"]) == 2
    # 2.5 % of 140.00, less the refunded tenth of the first payment's fee
    assert (usd["gross_fees"], usd["fee_revenue"], usd["commission"]) == ("3.25", "3.25", "0.00")
    assert (usd["refund_count"], usd["refunds"]) == (1, "10.00")
    cost = await stack.pg.fetchval(
        """SELECT COALESCE(sum(p.amount), 0) FROM postings p
           JOIN ledger_accounts a ON a.id = p.account_id
           JOIN journal_entries e ON e.id = p.entry_id
           WHERE a.name LIKE 'channel:%:cost' AND a.currency = 'USD' AND e.created_at = $1""",
        moved,
    )
    assert usd["channel_cost"] == f"{cost / 100:.2f}"
    parts = ("fee_revenue", "fx_result", "rounding", "crypto_tolerance", "withdrawal_fees")
    net = sum(float(usd[k]) for k in parts)
    assert round(net - float(usd["channel_cost"]), 2) == float(usd["net_revenue"])

    async with http.get(
        f"{stack.url}/api/v1/admin/reports/trial-balance?format=csv",
        headers={"Authorization": f"Bearer {finance.access}"},
    ) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        lines = list(csv.DictReader(io.StringIO(await response.text())))
    totals = [r for r in lines if r["account"] == "TOTAL"]
    assert totals and all(float(r["balance"]) == 0 for r in totals), totals

    async with http.get(
        f"{stack.url}/api/v1/admin/reports/daily?day={day.isoformat()}&format=csv",
        headers={"Authorization": f"Bearer {finance.access}"},
    ) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["currency"], r["volume"], r["fee_revenue"]) for r in rows] == [
        ("USD", "140.00", "3.25")
    ]

    async with http.get(
        f"{stack.url}/api/v1/admin/reports/daily?day={day.isoformat()}&format=pdf",
        headers={"Authorization": f"Bearer {finance.access}"},
    ) as response:
        assert response.status == 200 and response.content_type == "application/pdf"
        text = pdf_text(await response.read())
    assert "每日財務報表" in text and "140.00" in text and "3.25" in text, text

    status, body = await owner.call("GET", "/api/v1/admin/reports/trial-balance")
    assert status == 403 and body["error"]["type"] == "permission_error", body
    for path, param in (
        ("/api/v1/admin/reports/daily", "day"),
        ("/api/v1/admin/reports/daily?day=yesterday", "day"),
        ("/api/v1/admin/reports/daily?day=2026-02-30", "day"),
        ("/api/v1/admin/reports/daily?day=2026-02-01&currency=XYZ", "currency"),
        ("/api/v1/admin/reports/daily?day=2026-02-01&format=xml", "format"),
        ("/api/v1/admin/reports/trial-balance?at=soon", "at"),
        ("/api/v1/admin/reports/trial-balance?format=pdf", "format"),
    ):
        status, body = await finance.call("GET", path)
        assert status == 400, (path, body)
        assert body["error"]["type"] == "invalid_request_error", (path, body)
        assert body["error"]["param"] == param, (path, body)
