"""FX quotes through the gateway: the platform's rate, locked, readable by their merchant only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from adapters.registry import build_adapter
from domain.fx import parse_rate, quote
from infra.channels import spec_from_config
from tests.conftest import merchant_on, wait_status
from tests.invariants import assert_ledger_invariants
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_quote_is_locked_and_private(merchant, new_merchant) -> None:
    status, q = await merchant.request(
        "POST", "/api/v1/fx/quotes", {"amount": "100.00", "currency": "EUR", "to_currency": "USD"}
    )
    assert status == 201, q
    expected = quote(10_000, "EUR", "USD", parse_rate("1.0850"), 50, 0.0, 600)
    assert q["converted_amount"] == "109.04" and expected.converted == 10_904
    assert (q["rate"], q["mid_rate"], q["spread_bps"]) == ("1.090425", "1.085", 50)
    status, again = await merchant.request("GET", f"/api/v1/fx/quotes/{q['id']}")
    assert status == 200 and again == q
    other = await new_merchant()
    status, _ = await other.request("GET", f"/api/v1/fx/quotes/{q['id']}")
    assert status == 404
    status, btc = await merchant.request(
        "POST", "/api/v1/fx/quotes", {"amount": "0.015", "currency": "ETH", "to_currency": "BTC"}
    )
    assert status == 201 and btc["to_currency"] == "BTC", btc
    for body, param in (
        ({"amount": "1.00", "currency": "EUR", "to_currency": "XYZ"}, "to_currency"),
        ({"amount": "1.001", "currency": "EUR", "to_currency": "USD"}, "amount"),
        ({"amount": "1.00", "currency": "EUR"}, "to_currency"),
    ):
        status, error = await merchant.request("POST", "/api/v1/fx/quotes", body)
        assert status == 400 and error["error"]["param"] == param, (body, error)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def usd_only() -> AsyncIterator[Stack]:
    """A node whose channels take US dollars only."""
    node = Stack(
        "fx",
        {
            "JUHE_CHANNELS__SIM__CURRENCIES": '["USD"]',
            "JUHE_CHANNELS__SIM_B__CURRENCIES": '["USD"]',
        },
    )
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


async def test_a_euro_payment_goes_to_a_dollar_channel_at_a_locked_quote(
    usd_only: Stack, http
) -> None:
    stack = usd_only
    assert stack.pg is not None
    shop = await merchant_on(stack, http, "eu", ["EUR"])
    _, payment = await shop.create_payment(amount="100.00", currency="EUR", merchant_order_id="e")
    paid = await wait_status(shop, payment["id"], {"succeeded"})
    assert (paid["amount"], paid["currency"], paid["channel"]) == ("100.00", "EUR", "sim")
    fx = paid["fx"]
    assert (fx["to_currency"], fx["converted_amount"], fx["rate"]) == ("USD", "109.04", "1.090425")
    order = await stack.pg.fetchval(
        "SELECT channel_order_id FROM payments WHERE id = $1", paid["id"]
    )
    adapter = build_adapter(spec_from_config("sim", stack.settings.channels["sim"]), http)
    at_channel = await adapter.query_order(paid["id"], order)
    assert (at_channel.amount, at_channel.currency) == (10_904, "USD"), "charged in dollars"

    async def fx_balances() -> dict[str, int]:
        rows = await stack.pg.fetch(
            "SELECT currency, balance FROM ledger_accounts WHERE name = 'platform:fx'"
        )
        return {r["currency"]: r["balance"] for r in rows}

    assert await fx_balances() == {"EUR": 10_000, "USD": -10_904}
    status, refund = await shop.request(
        "POST", "/api/v1/refunds", {"payment_id": paid["id"], "amount": "50.00"}
    )
    assert status == 201, refund
    await wait_status(shop, paid["id"], {"partially_refunded"})
    assert await fx_balances() == {"EUR": 5_000, "USD": -5_452}, "half of each side reversed"
    status, rest = await shop.request(  # a request of its own, not a replay of the first
        "POST", "/api/v1/refunds", {"payment_id": paid["id"], "amount": "50.00", "reason": "rest"}
    )
    assert status == 201, rest
    await wait_status(shop, paid["id"], {"refunded"})
    assert await fx_balances() == {"EUR": 0, "USD": 0}
    at_channel = await adapter.query_order(paid["id"], order)
    assert at_channel.status == "refunded", "the channel got back exactly the 109.04 it charged"
    await assert_ledger_invariants(stack.pg)
