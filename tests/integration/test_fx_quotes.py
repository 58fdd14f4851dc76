"""FX quotes through the gateway: the platform's rate, locked, readable by their merchant only."""

from __future__ import annotations

import pytest

from domain.fx import parse_rate, quote

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
