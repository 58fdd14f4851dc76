"""Routing and failover against the running node: a channel made to fail sends its payments on
to the next channel, every attempt is visible, and a merchant's rules choose the channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio

from domain.access import Realm
from domain.ids import new_id
from domain.messages import PaymentIntent
from gateway.client import MerchantClient
from infra import store
from infra.keys import Keys
from routing.breaker import LOCAL_TTL_S
from routing.health import HealthBook
from tests.conftest import merchant_on, wait_status
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
    assert stack.redis is not None
    book = HealthBook(stack.redis, Keys(stack.settings.redis.prefix), 300)
    windows = await book.windows(["sim", "sim_b"])
    assert windows["sim"].errors.get("transient", 0) >= 1, "the outage shows in sim's health"
    assert windows["sim_b"].successes >= 1
    await asyncio.sleep(0.5)  # the scheduler exports the windows every interval
    async with http.get(stack.url + "/metrics") as response:
        text = await response.text()
    assert 'juhe_channel_success_rate{channel="sim"}' in text
    assert 'juhe_channel_latency_ms{channel="sim_b",quantile="0.5"}' in text


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


async def ruled_shop(stack: Stack, http, new_merchant, rule: dict) -> MerchantClient:
    """A merchant whose payment configuration has this one routing rule."""
    shop = await new_merchant()
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    status, body = await admin.call(
        "PUT", f"/api/v1/merchants/{shop.merchant_id}/payment-config", {"routing": [rule]}
    )
    assert status == 200, body
    return shop


async def test_a_merchant_rule_pins_its_channel(stack: Stack, http, new_merchant) -> None:
    shop = await ruled_shop(
        stack,
        http,
        new_merchant,
        {"strategy": "pinned", "channels": ["sim_b"], "currencies": ["USD"]},
    )
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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def breaker_stack(ops_inbox) -> AsyncIterator[Stack]:
    """A node whose breakers open after three failures and cool down for two seconds."""
    node = Stack(
        "brk",
        {
            "JUHE_BREAKER__FAILURE_THRESHOLD": "3",
            "JUHE_BREAKER__OPEN_S": "2",
            "JUHE_ALERTS__OPS_WEBHOOK_URL": ops_inbox[0],
        },
    )
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


async def test_traffic_leaves_a_failing_channel_and_comes_back(
    breaker_stack: Stack, http, ops_inbox
) -> None:
    stack, (_, alerts) = breaker_stack, ops_inbox
    assert stack.pg is not None
    shop = await merchant_on(stack, http, "brk")
    async with outage(stack, http, "sim"):
        for n in range(3):  # each fails over; the third failure opens sim's breaker
            _, payment = await shop.create_payment(
                amount="1.00", currency="USD", merchant_order_id=f"b{n}"
            )
            paid = await wait_status(shop, payment["id"], {"succeeded"}, timeout=20)
            assert paid["channel"] == "sim_b"
        # Every process trusts a closed breaker it saw for up to a second; then routing knows.
        await asyncio.sleep(LOCAL_TTL_S + 0.1)
        _, payment = await shop.create_payment(
            amount="1.00", currency="USD", merchant_order_id="b9"
        )
        await wait_status(shop, payment["id"], {"succeeded"}, timeout=20)
        assert await _attempts(shop, payment["id"]) == [("sim_b", "opened")], (
            "routed around the open breaker, without trying sim"
        )
    assert [a["type"] for a in alerts] == ["breaker.open"]
    assert alerts[0]["detail"] == {"channel": "sim"}
    await asyncio.sleep(2.2)  # the breaker cools down; the next payment is its probe
    _, payment = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="c")
    paid = await wait_status(shop, payment["id"], {"succeeded"}, timeout=20)
    assert paid["channel"] == "sim", "traffic is back on the preferred channel"
    assert [a["type"] for a in alerts] == ["breaker.open", "breaker.closed"]


@pytest_asyncio.fixture(loop_scope="session")
async def tw_shop(stack: Stack, http, new_merchant) -> MerchantClient:
    """A merchant whose customers in Taiwan are pinned to sim_b."""
    rule = {"strategy": "pinned", "channels": ["sim_b"], "countries": ["TW"]}
    return await ruled_shop(stack, http, new_merchant, rule)


async def test_a_rule_can_route_by_customer_country(tw_shop: MerchantClient) -> None:
    shop = tw_shop
    _, local = await shop.create_payment(
        amount="1.00", currency="TWD", merchant_order_id="tw", customer={"country": "TW"}
    )
    _, abroad = await shop.create_payment(
        amount="1.00", currency="TWD", merchant_order_id="jp", customer={"country": "JP"}
    )
    assert (await wait_status(shop, local["id"], {"succeeded"}))["channel"] == "sim_b"
    assert (await wait_status(shop, abroad["id"], {"succeeded"}))["channel"] == "sim"
    status, body = await shop.create_payment(
        amount="1.00", currency="TWD", merchant_order_id="x", customer={"country": "Taiwan"}
    )
    assert status == 400 and body["error"]["param"] == "customer.country"


async def test_a_bank_transfer_channel_shows_its_virtual_account(
    stack: Stack, http, new_merchant
) -> None:
    shop = await new_merchant()
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    await admin.call(
        "PUT",
        f"/api/v1/merchants/{shop.merchant_id}/payment-config",
        {"routing": [{"strategy": "pinned", "channels": ["sim_b"]}]},
    )
    # .56: the simulator never pays it on its own, so the instructions stay on show
    _, created = await shop.create_payment(amount="7.56", currency="USD", merchant_order_id="bt")
    waiting = await wait_status(shop, created["id"], {"awaiting_payment"})
    transfer = waiting["bank_transfer"]
    assert transfer["bank_code"] == "SIMB" and transfer["account_number"].isdigit()
    assert waiting["qr_payload"] is None
    async with http.get(f"{stack.url}/checkout/{created['id']}") as response:
        page = await response.text()
    assert transfer["account_number"] in page and 'id="transfer"' in page


async def test_re_driven_payments_keep_their_country_and_fallbacks(
    stack: Stack, http, tw_shop: MerchantClient
) -> None:
    """Messages lost after the payment was written: a pending payment is routed again with its
    customer's country, and a processing one still fails over to the channels it had left."""
    assert stack.pg is not None
    shop = tw_shop
    now = time.time()

    def intent(order: str) -> PaymentIntent:
        return PaymentIntent(
            id=new_id("pay"),
            merchant_id=shop.merchant_id,
            merchant_order_id=f"{order}{time.time_ns()}",
            amount="300",
            currency="USD",
            customer_country="TW",
            created_at=now,
            expires_at=now + 900,
        )

    pending, processing = intent("rd-pending"), intent("rd-processing")
    await store.insert_payments(stack.pg, [pending, processing])
    await stack.pg.execute(
        """UPDATE payments SET status = 'processing', channel = 'sim', fallbacks = 'sim_b'
           WHERE id = $1""",
        processing.id,
    )
    stale = "UPDATE payments SET updated_at = now() - interval '1 minute' WHERE id = $1"
    await stack.pg.execute(stale, pending.id)
    first = await wait_status(shop, pending.id, {"succeeded", "failed"}, timeout=20)
    assert first["channel"] == "sim_b", "routed by the stored country (else sim, by priority)"
    async with outage(stack, http, "sim"):
        await stack.pg.execute(stale, processing.id)
        second = await wait_status(shop, processing.id, {"succeeded", "failed"}, timeout=20)
    assert second["channel"] == "sim_b"
    assert await _attempts(shop, processing.id) == [("sim", "unavailable"), ("sim_b", "opened")]
