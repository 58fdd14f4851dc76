"""Issue 11, scenario 1: one item must never stop everyone's payments.

Text PostgreSQL cannot store is refused at the edge on every route and in every part of a
request; whatever slips past the edge (written straight into a stream or a queue here) is set
aside alone with its error, and the work of other merchants goes on."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import aio_pika
import aiohttp
import pytest

from domain.ids import new_id
from domain.messages import ChannelCallback, LedgerCommand, PaymentIntent, RefundIntent, encode
from gateway.app import create_app
from infra import broker
from tests.conftest import wait_status
from tests.invariants import assert_ledger_invariants
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
NUL = "a\u0000b"


def order() -> str:
    return "poison_" + secrets.token_hex(6)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"description": NUL}, "description"),
        ({"metadata": {"note": NUL}}, "metadata.note"),
        ({"metadata": {NUL: "x"}}, "metadata"),
        ({"customer": {"email": "a\u0000@b.example"}}, "customer.email"),
        ({"customer": {"ip": NUL}}, "customer.ip"),
        ({"notify_url": "https://shop.example/\u0000"}, "notify_url"),
    ],
)
async def test_unstorable_text_in_a_create_is_400_and_writes_nothing(
    stack: Stack, merchant, fields, param
) -> None:
    order_id = order()
    status, body = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id=order_id, **fields
    )
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_characters"
    assert body["error"]["param"] == param
    assert (
        await stack.redis.get(
            f"{stack.settings.redis.prefix}:order:{merchant.merchant_id}:{order_id}"
        )
        is None
    )


async def test_unstorable_refund_reason_is_400(stack: Stack, merchant) -> None:
    _, created = await merchant.create_payment(
        amount="2.00", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"succeeded"})
    status, body = await merchant.request(
        "POST", "/api/v1/refunds", {"payment_id": created["id"], "reason": NUL}
    )
    assert status == 400 and body["error"]["param"] == "reason", body
    count = await stack.pg.fetchval(
        "SELECT count(*) FROM refunds WHERE payment_id = $1", created["id"]
    )
    assert count == 0
    paid = await wait_status(merchant, created["id"], {"succeeded"})
    assert paid["amount_refunded"] == "0.00"


def _routes(stack: Stack) -> list[tuple[str, str]]:
    app = create_app(stack.settings)
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        found.add((route.method, resource.canonical))
    return sorted(found)


async def test_every_route_refuses_nul_in_path_and_query(stack: Stack, http) -> None:
    """No route answers 500 (or anything but the documented 400) for a NUL anywhere."""
    seen = []
    for method, path in _routes(stack):
        with_nul = re.sub(r"\{[^}]+\}", "a%00b", path)
        urls = [f"{stack.url}{path.split('{')[0]}?starting_after=a%00b&x=1"]
        if with_nul != path:
            urls.append(stack.url + with_nul)
        for url in urls:
            async with http.request(method, url, data=b"{}") as response:
                body = await response.json(content_type=None)
                seen.append((method, url, response.status))
                assert response.status == 400, (method, url, body)
                assert body["error"]["code"] == "invalid_characters", body
    assert len(seen) > 60


async def test_unstorable_header_is_400(stack: Stack) -> None:
    """A header Juhe may store (here Idempotency-Key) that is not valid UTF-8."""
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: \xed\xa0\x80\r\n\r\n{}"
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 400"), head


async def test_a_poisoned_stream_entry_among_good_ones_from_several_merchants(
    stack: Stack, new_merchant
) -> None:
    """A NUL that reached the payments and refunds streams (past the edge) is set aside with
    its error; every other merchant's payments and refunds in the same batches go on."""
    merchants = [await new_merchant() for _ in range(3)]
    prefix = stack.settings.redis.prefix
    dead = f"{prefix}:{{intake:dead}}"
    before = await stack.redis.xlen(dead)
    now = time.time()
    poisoned = PaymentIntent(
        id=new_id("pay"),
        merchant_id=merchants[0].merchant_id,
        merchant_order_id=order(),
        amount="300",
        currency="USD",
        description=NUL,
        created_at=now,
        expires_at=now + 900,
    )
    # Enough good creates around the bad entry that they share the relay's batches.
    creates = [
        m.create_payment(amount=f"{n + 1}.00", currency="USD", merchant_order_id=order())
        for n, m in enumerate(merchants * 10)
    ]
    half = len(creates) // 2
    answers = await asyncio.gather(*creates[:half])
    await stack.redis.xadd(f"{prefix}:{{intake:payments}}", {"d": encode(poisoned)})
    answers += await asyncio.gather(*creates[half:])
    assert all(status == 201 for status, _ in answers), answers
    owners = {m.merchant_id: m for m in merchants}
    for (_, body), m in zip(answers, merchants * 10, strict=True):
        assert body["merchant_order_id"]
        await wait_status(owners[m.merchant_id], body["id"], {"succeeded"}, timeout=30)
    assert await stack.pg.fetchval("SELECT count(*) FROM payments WHERE id = $1", poisoned.id) == 0

    # The same for a refund whose reason cannot be stored, beside a good refund.
    paid = answers[0][1]
    bad_refund = RefundIntent(
        id=new_id("re"),
        payment_id=paid["id"],
        merchant_id=merchants[0].merchant_id,
        channel="sim",
        amount="50",
        currency="USD",
        reason=NUL,
        created_at=now,
    )
    await stack.redis.xadd(f"{prefix}:{{intake:refunds}}", {"d": encode(bad_refund)})
    status, refund = await merchants[1].request(
        "POST", "/api/v1/refunds", {"payment_id": answers[1][1]["id"], "amount": "1.00"}
    )
    assert status == 201, refund
    refunded = await wait_status(
        merchants[1], answers[1][1]["id"], {"partially_refunded"}, timeout=30
    )
    assert refunded["amount_refunded"] == "1.00"

    entries = await stack.redis.xrange(dead, count=before + 10)
    set_aside = {
        (fields[b"from"], fields[b"error"].split(b":")[0]) for _, fields in entries[before:]
    }
    assert (b"payments", b"CharacterNotInRepertoireError") in set_aside, entries
    assert (b"refunds", b"CharacterNotInRepertoireError") in set_aside, entries
    assert await stack.pg.fetchval("SELECT count(*) FROM refunds WHERE id = $1", bad_refund.id) == 0
    await assert_ledger_invariants(stack.pg)


async def test_a_poisoned_item_in_an_envelope_is_dead_lettered_alone(
    stack: Stack, new_merchant
) -> None:
    """A ledger command the database refuses (a failure message with a NUL), in one envelope
    with another merchant's good callback: the good one is posted, the bad one is dead-lettered
    at once with its error, and the pool keeps working."""
    first, second = await new_merchant(), await new_merchant()
    _, unpaid_a = await first.create_payment(
        amount="10.56", currency="USD", merchant_order_id=order()
    )
    _, unpaid_b = await second.create_payment(
        amount="10.56", currency="USD", merchant_order_id=order()
    )
    await wait_status(first, unpaid_a["id"], {"awaiting_payment"})
    await wait_status(second, unpaid_b["id"], {"awaiting_payment"})
    rows = {
        r["id"]: r
        for r in await stack.pg.fetch(
            "SELECT id, channel_order_id FROM payments WHERE id = ANY($1)",
            [unpaid_a["id"], unpaid_b["id"]],
        )
    }
    bad = ChannelCallback(
        channel="sim",
        event_id="evt_" + secrets.token_hex(6),
        payment_id=unpaid_a["id"],
        channel_order_id=rows[unpaid_a["id"]]["channel_order_id"],
        outcome="failed",
        failure_code="declined",
        failure_message=NUL,
    )
    good = ChannelCallback(
        channel="sim",
        event_id="evt_" + secrets.token_hex(6),
        payment_id=unpaid_b["id"],
        channel_order_id=rows[unpaid_b["id"]]["channel_order_id"],
        outcome="paid",
        amount="1056",
        currency="USD",
    )
    queues = broker.Queues(stack.settings.rabbitmq.prefix)
    connection = await aio_pika.connect(stack.settings.rabbitmq.url)
    async with connection:
        publisher = await broker.open_publisher(connection)
        await publisher.send_many([(queues.ledger, LedgerCommand(callback=c)) for c in (bad, good)])
        assert (await wait_status(second, unpaid_b["id"], {"succeeded"}))["status"]
        channel = await connection.channel()
        dead = await channel.get_queue(queues.dead)
        found, held = None, []
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            message = await dead.get(no_ack=False, fail=False)
            if message is None:  # read everything there is: wait for more
                await asyncio.sleep(0.1)
            elif bad.event_id.encode() in message.body:
                found = message
                await message.ack()
            else:
                held.append(message)  # someone else's: put back once we are done
        for message in held:
            await message.nack(requeue=True)
        assert found is not None, "the refused item never reached the dead-letter queue"
        assert found.headers["x-juhe-queue"] == queues.ledger
        assert "CharacterNotInRepertoireError" in str(found.headers["x-juhe-error"])
    # Nothing about the bad one changed, and the pool still takes work.
    status, still = await first.get_payment(unpaid_a["id"])
    assert status == 200 and still["status"] == "awaiting_payment"
    _, later = await first.create_payment(amount="3.00", currency="USD", merchant_order_id=order())
    assert (await wait_status(first, later["id"], {"succeeded"}))["status"] == "succeeded"
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/metrics") as response:
        text = await response.text()  # every process's series, gathered by the gateway
    assert re.search(r'juhe_dead_items_total\{source="queue.ledger"\} [1-9]', text)
