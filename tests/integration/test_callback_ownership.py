"""Channel callbacks apply only to the payment they belong to: a callback correctly signed with
the channel's secret (which may have leaked) but naming another payment's order, or coming from
another channel, changes nothing, is counted and raised to operations; one that arrives before
the order is recorded applies once the channel confirms the order is the payment's."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from adapters.simulator import wire
from gateway.client import MerchantClient
from tests.conftest import merchant_on, wait_status
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node(ops_inbox: tuple[str, list[dict[str, Any]]]) -> AsyncIterator[Stack]:
    stack = Stack("own", {"JUHE_ALERTS__OPS_WEBHOOK_URL": ops_inbox[0]})
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shop(node: Stack) -> AsyncIterator[MerchantClient]:
    async with aiohttp.ClientSession() as http:
        yield await merchant_on(node, http, "owner")


async def _unpaid(shop: MerchantClient, node: Stack) -> dict[str, Any]:
    """A payment the simulator never pays by itself (cents .56), with its order recorded."""
    _, created = await shop.create_payment(
        amount="3.56", currency="USD", merchant_order_id="o" + secrets.token_hex(4)
    )
    await wait_status(shop, created["id"], {"awaiting_payment"})
    assert node.pg is not None
    return dict(await node.pg.fetchrow("SELECT * FROM payments WHERE id = $1", created["id"]))


async def _callback(
    node: Stack,
    channel: str,
    payment_id: str,
    order_no: str,
    event: wire.EventKind = "order.paid",
    amount: str = "356",
) -> str:
    """POST a callback signed with the channel's secret, as the channel (or anyone holding its
    secret) would; the gateway takes it. Returns its event id."""
    event_id = "evt_" + secrets.token_hex(8)
    body = msgspec.json.encode(
        wire.CallbackEvent(
            event_id=event_id,
            event=event,
            order_no=order_no,
            merchant_ref=payment_id,
            amount_minor=amount,
            currency="USD",
            ts=int(time.time()),
        )
    )
    headers = wire.callback_headers(node.settings.channels[channel].secret, body, time.time())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{node.url}/api/v1/payments/callback/{channel}", data=body, headers=headers
        ) as response,
    ):
        assert response.status == 200 and await response.text() == "success"
    return event_id


async def _result(node: Stack, channel: str, event_id: str) -> str:
    """What the ledger recorded for the callback, once it has taken it."""
    assert node.pg is not None
    for _ in range(300):
        result = await node.pg.fetchval(
            "SELECT result FROM channel_events WHERE channel = $1 AND event_id = $2",
            channel,
            event_id,
        )
        if result is not None:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ledger never took callback {event_id}")


async def _refused_count(node: Stack, reason: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        text = await response.text()
    prefix = f'juhe_callbacks_refused_total{{channel="sim",reason="{reason}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def _unchanged(node: Stack, before: dict[str, Any]) -> None:
    assert node.pg is not None
    after = await node.pg.fetchrow("SELECT * FROM payments WHERE id = $1", before["id"])
    assert (after["status"], after["version"]) == (before["status"], before["version"])
    entries = await node.pg.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref = $1", before["id"]
    )
    assert entries == 0, "nothing posted"


async def test_a_signed_callback_naming_another_payments_order_changes_nothing(
    node: Stack, shop: MerchantClient, ops_inbox: tuple[str, list[dict[str, Any]]]
) -> None:
    a, b = await _unpaid(shop, node), await _unpaid(shop, node)
    counted = await _refused_count(node, "order_mismatch")

    forged = await _callback(node, "sim", a["id"], b["channel_order_id"])
    assert await _result(node, "sim", forged) == "order_mismatch"
    await _unchanged(node, a)
    await _unchanged(node, b)
    _, seen = await shop.get_payment(a["id"])
    assert seen["status"] == "awaiting_payment"
    assert await _refused_count(node, "order_mismatch") == counted + 1
    raised = {
        "payment_id": a["id"],
        "channel": "sim",
        "event_id": forged,
        "reason": "order_mismatch",
    }
    assert raised in [x["detail"] for x in ops_inbox[1] if x["type"] == "callback.refused"]

    # The same callback naming A's own order is the channel's word on A, and applies.
    genuine = await _callback(node, "sim", a["id"], a["channel_order_id"])
    assert await _result(node, "sim", genuine) == "applied"
    assert (await wait_status(shop, a["id"], {"succeeded"}))["status"] == "succeeded"


async def test_a_callback_from_another_channel_changes_nothing(
    node: Stack, shop: MerchantClient, ops_inbox: tuple[str, list[dict[str, Any]]]
) -> None:
    """sim_b's secret, sim's payment: not even a failure is taken from the wrong channel."""
    a = await _unpaid(shop, node)
    forged = await _callback(node, "sim_b", a["id"], a["channel_order_id"], "order.failed")
    assert await _result(node, "sim_b", forged) == "channel_mismatch"
    await _unchanged(node, a)
    raised = {"payment_id": a["id"], "channel": "sim_b", "event_id": forged}
    assert raised | {"reason": "channel_mismatch"} in [x["detail"] for x in ops_inbox[1]]


async def test_a_paid_callback_for_part_of_the_amount_is_refused(
    node: Stack, shop: MerchantClient
) -> None:
    a = await _unpaid(shop, node)
    short = await _callback(node, "sim", a["id"], a["channel_order_id"], amount="355")
    assert await _result(node, "sim", short) == "amount_mismatch"
    await _unchanged(node, a)


async def test_a_callback_before_the_order_is_recorded_applies_once_the_channel_confirms_it(
    node: Stack, shop: MerchantClient
) -> None:
    """The race, held still: the channel paid before its answer to the create was written, so
    the payment is `processing` with no order. The ledger asks the channel about the order the
    callback names: A's own order applies; B's order, named for C, is refused."""
    assert node.pg is not None
    a, b, c = await _unpaid(shop, node), await _unpaid(shop, node), await _unpaid(shop, node)
    await node.pg.execute(
        "UPDATE payments SET status = 'processing', channel_order_id = NULL "
        "WHERE id = ANY($1::text[])",
        [a["id"], c["id"]],
    )
    c = dict(await node.pg.fetchrow("SELECT * FROM payments WHERE id = $1", c["id"]))

    forged = await _callback(node, "sim", c["id"], b["channel_order_id"])
    assert await _result(node, "sim", forged) == "order_mismatch"
    await _unchanged(node, c)

    early = await _callback(node, "sim", a["id"], a["channel_order_id"])
    assert await _result(node, "sim", early) == "applied"
    paid = await node.pg.fetchrow("SELECT * FROM payments WHERE id = $1", a["id"])
    assert paid["status"] == "succeeded"
    entries = await node.pg.fetchval("SELECT count(*) FROM journal_entries WHERE ref = $1", a["id"])
    assert entries == 1


async def test_the_channels_own_early_callback_settles_a_slow_create(
    node: Stack, shop: MerchantClient
) -> None:
    """Cents .52: the simulator pays at once but answers our create only after our timeouts,
    so its `order.paid` arrives while the payment has no order recorded; confirmed by asking
    the channel, it settles the payment then, not at its expiry."""
    assert node.pg is not None
    _, created = await shop.create_payment(
        amount="5.52", currency="USD", merchant_order_id="o" + secrets.token_hex(4)
    )
    paid = await wait_status(shop, created["id"], {"succeeded"}, timeout=20)
    assert paid["status"] == "succeeded"
    results = await node.pg.fetch(
        "SELECT event_id, result FROM channel_events WHERE payment_id = $1", created["id"]
    )
    assert [r["result"] for r in results if r["event_id"].startswith("evt_")] == ["applied"]
