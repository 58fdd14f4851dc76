"""Routing and failover against the running node: a channel made to fail sends its payments on
to the next channel, every attempt is visible, and a merchant's rules choose the channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from domain.access import Realm
from tests.conftest import wait_status
from tests.portal import make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@asynccontextmanager
async def outage(stack: Stack, http, channel: str) -> AsyncIterator[None]:
    api_key = stack.settings.channels[channel].api_key
    url = f"{stack.settings.channels[channel].base_url}/_sim/outages/{api_key}"
    async with http.put(url) as response:
        assert response.status == 200
    try:
        yield
    finally:
        async with http.delete(url) as response:
            assert response.status == 200


async def _attempts(merchant, payment_id: str) -> list[tuple[str, str]]:
    status, body = await merchant.request("GET", f"/api/v1/payments/{payment_id}/attempts")
    assert status == 200, body
    return [(a["channel"], a["outcome"]) for a in body["data"]]


async def test_payments_go_to_the_first_channel_by_priority(stack: Stack, merchant) -> None:
    _, created = await merchant.create_payment(amount="1.00", currency="USD", merchant_order_id="r")
    paid = await wait_status(merchant, created["id"], {"succeeded"})
    assert paid["channel"] == "sim"
    assert await _attempts(merchant, created["id"]) == [("sim", "opened")]


async def test_a_failing_channel_hands_its_payments_to_the_next(
    stack: Stack, http, merchant, receiver
) -> None:
    async with outage(stack, http, "sim"):
        _, created = await merchant.create_payment(
            amount="2.00", currency="USD", merchant_order_id="fo"
        )
        paid = await wait_status(merchant, created["id"], {"succeeded"}, timeout=20)
    assert paid["channel"] == "sim_b"
    assert await _attempts(merchant, created["id"]) == [
        ("sim", "unavailable"),
        ("sim_b", "opened"),
    ]
    event = await receiver.wait_for(
        merchant.merchant_id,
        lambda e: e["type"] == "payment.succeeded" and e["data"]["id"] == created["id"],
    )
    assert event["data"]["channel"] == "sim_b", "one charge, at the channel that took it"


async def test_a_decline_everywhere_fails_after_every_channel_was_tried(
    stack: Stack, merchant
) -> None:
    _, created = await merchant.create_payment(amount="3.51", currency="USD", merchant_order_id="d")
    failed = await wait_status(merchant, created["id"], {"failed"}, timeout=20)
    assert failed["failure_code"] == "declined"
    assert await _attempts(merchant, created["id"]) == [
        ("sim", "declined"),
        ("sim_b", "declined"),
    ]


async def test_a_merchant_rule_pins_its_channel(stack: Stack, http, new_merchant) -> None:
    shop = await new_merchant()
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    status, body = await admin.call(
        "PUT",
        f"/api/v1/merchants/{shop.merchant_id}/payment-config",
        {"routing": [{"strategy": "pinned", "channels": ["sim_b"], "currencies": ["USD"]}]},
    )
    assert status == 200, body
    _, created = await shop.create_payment(amount="4.00", currency="USD", merchant_order_id="p")
    paid = await wait_status(shop, created["id"], {"succeeded"})
    assert paid["channel"] == "sim_b"
    _, euro = await shop.create_payment(amount="4.00", currency="EUR", merchant_order_id="p2")
    paid = await wait_status(shop, euro["id"], {"succeeded"})
    assert paid["channel"] == "sim", "the rule is for USD only"
    async with outage(stack, http, "sim_b"):
        _, stuck = await shop.create_payment(amount="5.00", currency="USD", merchant_order_id="q")
        failed = await wait_status(shop, stuck["id"], {"failed"}, timeout=20)
    assert await _attempts(shop, stuck["id"]) == [("sim_b", "unavailable")], "pinned: no fallback"
    assert failed["status"] == "failed"
