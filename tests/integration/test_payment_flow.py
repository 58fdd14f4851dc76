"""The payment lifecycle through real processes: gateway, pools, simulator, PostgreSQL, Redis,
RabbitMQ. Magic amounts (cents) drive the simulator: .51 decline, .53 one 503, .54 duplicate
callback, .55 out-of-order callbacks, .56 never paid, .57 payment fails, .58 always 503."""

from __future__ import annotations

import asyncio
import secrets
import time

import orjson
import pytest

from adapters.registry import build_adapter
from domain.access import Realm
from domain.risk.lists import Kind
from gateway.client import MerchantClient, signed_headers
from infra.channels import spec_from_config
from infra.sealing import API_KEY, WEBHOOK
from tests.conftest import Receiver, block, wait_status
from tests.invariants import assert_ledger_invariants
from tests.portal import make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
FINAL_PAID = {"succeeded", "failed", "rejected", "expired", "canceled"}


def order() -> str:
    return "ord_" + secrets.token_hex(6)


def _signed(merchant: MerchantClient, path: str, later_s: int, body: bytes = b"") -> dict[str, str]:
    """Headers of a POST signed `later_s` seconds from now: a request of its own, where the
    same request signed within the same second would be a replay (401 replayed_request)."""
    return signed_headers(
        merchant.key_id, merchant.secret, "POST", path, body, time.time() + later_s
    )


async def test_payment_succeeds_posts_once_and_notifies(
    stack: Stack, merchant, receiver: Receiver
) -> None:
    status, created = await merchant.create_payment(
        amount="100.00", currency="USD", merchant_order_id=order(), description="tea"
    )
    assert status == 201, created
    assert created["status"] == "pending" and created["amount"] == "100.00"
    assert created["checkout_url"].endswith(created["id"])
    # The hot copy answers at once: no waiting for the relay or PostgreSQL.
    status, seen = await merchant.get_payment(created["id"])
    assert status == 200 and seen["id"] == created["id"]

    paid = await wait_status(merchant, created["id"], FINAL_PAID)
    assert paid["status"] == "succeeded" and paid["channel"] == "sim" and paid["pay_url"]
    event = await receiver.wait_for(
        merchant.merchant_id, lambda e: e["data"]["id"] == created["id"]
    )
    assert event["type"] == "payment.succeeded" and event["id"].startswith("evt_")
    assert receiver.bad_signatures == 0

    rows = await stack.pg.fetch(
        """SELECT a.name, p.amount FROM journal_entries e JOIN postings p ON p.entry_id = e.id
           JOIN ledger_accounts a ON a.id = p.account_id
           WHERE e.kind = 'payment' AND e.ref = $1""",
        created["id"],
    )
    lines = {r["name"]: r["amount"] for r in rows}
    # 100.00 USD, merchant fee 2.5 %, channel cost 1.2 %.
    assert lines == {
        "channel:sim:clearing": 9880,
        "channel:sim:cost": 120,
        f"merchant:{merchant.merchant_id}:pending": -9750,
        "platform:fee_revenue": -250,
    }
    await assert_ledger_invariants(stack.pg)


async def test_declined_at_channel_fails(merchant, receiver: Receiver) -> None:
    _, created = await merchant.create_payment(
        amount="5.51", currency="USD", merchant_order_id=order()
    )
    failed = await wait_status(merchant, created["id"], FINAL_PAID)
    assert failed["status"] == "failed" and failed["failure_code"] == "declined"
    event = await receiver.wait_for(
        merchant.merchant_id, lambda e: e["data"]["id"] == created["id"]
    )
    assert event["type"] == "payment.failed"


async def test_payment_failed_by_callback(merchant) -> None:
    _, created = await merchant.create_payment(
        amount="5.57", currency="USD", merchant_order_id=order()
    )
    failed = await wait_status(merchant, created["id"], FINAL_PAID)
    assert failed["status"] == "failed" and failed["failure_code"] == "payment_failed"


async def test_transient_channel_error_is_retried(merchant) -> None:
    _, created = await merchant.create_payment(
        amount="5.53", currency="USD", merchant_order_id=order()
    )
    assert (await wait_status(merchant, created["id"], FINAL_PAID))["status"] == "succeeded"


async def test_channel_down_fails_before_money_moves(merchant) -> None:
    _, created = await merchant.create_payment(
        amount="5.58", currency="USD", merchant_order_id=order()
    )
    failed = await wait_status(merchant, created["id"], FINAL_PAID)
    assert failed["status"] == "failed" and failed["failure_code"] == "channel_unavailable"


async def test_channel_timeout_still_settles_by_callback(stack: Stack, merchant) -> None:
    """Our create call times out, but the channel did open the order and the customer paid:
    the callback wins over our timeout, and the payment is posted exactly once."""
    _, created = await merchant.create_payment(
        amount="5.52", currency="USD", merchant_order_id=order()
    )
    paid = await wait_status(merchant, created["id"], FINAL_PAID, timeout=20)
    assert paid["status"] == "succeeded"
    await asyncio.sleep(2.5)  # our retries time out after the callback; nothing may change
    _, after = await merchant.get_payment(created["id"])
    assert after["status"] == "succeeded"
    assert (
        await stack.pg.fetchval(
            "SELECT count(*) FROM journal_entries WHERE ref = $1", created["id"]
        )
        == 1
    )


@pytest.mark.parametrize("amount", ["7.54", "7.55"], ids=["duplicate", "out_of_order"])
async def test_duplicate_and_out_of_order_callbacks_post_once(
    stack: Stack, merchant, amount
) -> None:
    _, created = await merchant.create_payment(
        amount=amount, currency="USD", merchant_order_id=order()
    )
    assert (await wait_status(merchant, created["id"], FINAL_PAID))["status"] == "succeeded"
    await asyncio.sleep(1.0)  # the second / stale callback arrives after the first
    _, after = await merchant.get_payment(created["id"])
    assert after["status"] == "succeeded"
    entries = await stack.pg.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref = $1", created["id"]
    )
    events = await stack.pg.fetch(
        "SELECT outcome, result FROM channel_events WHERE payment_id = $1", created["id"]
    )
    assert entries == 1
    assert ("paid", "applied") in [(e["outcome"], e["result"]) for e in events]
    if amount == "7.55":
        assert ("pending", "stale") in [(e["outcome"], e["result"]) for e in events]


async def test_cancel_unpaid_then_not_again(merchant, receiver: Receiver) -> None:
    _, created = await merchant.create_payment(
        amount="9.56", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"awaiting_payment"})
    path = f"/api/v1/payments/{created['id']}/cancel"
    status, canceled = await merchant.request("POST", path)
    assert status == 200 and canceled["status"] == "canceled"
    status, again = await merchant.request("POST", path, headers=_signed(merchant, path, 1))
    assert status == 409 and again["error"]["code"] == "payment_not_cancelable"
    event = await receiver.wait_for(
        merchant.merchant_id, lambda e: e["data"]["id"] == created["id"]
    )
    assert event["type"] == "payment.canceled"


async def _at_channel(stack: Stack, http, payment_id: str) -> str:
    """The payment's order as the simulator sees it now (pending, paid, failed: closed)."""
    order_no = await stack.pg.fetchval(
        "SELECT channel_order_id FROM payments WHERE id = $1", payment_id
    )
    adapter = build_adapter(spec_from_config("sim", stack.settings.channels["sim"]), http)
    return (await adapter.query_order(payment_id, order_no)).status


async def _closed_at_channel(stack: Stack, http, payment_id: str) -> None:
    for _ in range(100):
        if await _at_channel(stack, http, payment_id) == "failed":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the order is still open at the channel")


async def test_a_canceled_payment_cannot_be_paid_late(stack: Stack, http, merchant) -> None:
    _, created = await merchant.create_payment(
        amount="9.56", currency="USD", merchant_order_id=order()
    )
    waiting = await wait_status(merchant, created["id"], {"awaiting_payment"})
    status, _ = await merchant.request("POST", f"/api/v1/payments/{created['id']}/cancel")
    assert status == 200
    await _closed_at_channel(stack, http, created["id"])
    async with http.post(waiting["pay_url"] + "/confirm", allow_redirects=False) as paying:
        assert paying.status == 303
    await asyncio.sleep(0.5)
    assert await _at_channel(stack, http, created["id"]) == "failed", "the customer paid nothing"
    _, after = await merchant.get_payment(created["id"])
    assert after["status"] == "canceled"


async def test_an_order_opened_after_the_cancel_is_settled_too(
    stack: Stack, http, merchant
) -> None:
    """Cents 52: the channel takes 1.5 s to answer the create (sim is given the patience to
    wait for it), and the simulator's customer pays 150 ms after the order exists. The payment
    is canceled meanwhile. When the channel pool has the order it tries to close it, finds it
    paid, and records that against the canceled payment for operations; nothing is posted."""
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    status, _ = await admin.call("PATCH", "/api/v1/admin/channels/sim", {"timeout_ms": 5000})
    assert status == 200
    try:
        await asyncio.sleep(1.0)  # every process has the change
        _, created = await merchant.create_payment(
            amount="9.52", currency="USD", merchant_order_id=order()
        )
        for _ in range(100):
            status = await stack.pg.fetchval(
                "SELECT status FROM payments WHERE id = $1", created["id"]
            )
            if status == "processing":
                break
            await asyncio.sleep(0.02)
        assert status == "processing"
        status, _ = await merchant.request("POST", f"/api/v1/payments/{created['id']}/cancel")
        assert status == 200
        asked = f"check:{created['id']}:paid"
        for _ in range(200):
            recorded = await stack.pg.fetch(
                "SELECT event_id, result FROM channel_events WHERE payment_id = $1",
                created["id"],
            )
            if asked in {r["event_id"] for r in recorded}:
                break
            await asyncio.sleep(0.05)
        # The channel's own (late) callback may be recorded too; either way, only as stale.
        assert asked in {r["event_id"] for r in recorded}
        assert {r["result"] for r in recorded} == {"stale"}
        _, after = await merchant.get_payment(created["id"])
        assert after["status"] == "canceled"
        await assert_ledger_invariants(stack.pg)
    finally:
        restore = {"timeout_ms": stack.settings.channels["sim"].timeout_ms}
        await admin.call("PATCH", "/api/v1/admin/channels/sim", restore)


async def test_paid_at_the_channel_before_the_cancel_reached_it(
    stack: Stack, http, merchant
) -> None:
    """Cents 59: paid at the channel, callback lost, then canceled here. The channel refuses
    to close the order; what it says is recorded against the ended payment for operations."""
    _, created = await merchant.create_payment(
        amount="9.59", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"awaiting_payment"})
    await asyncio.sleep(0.5)  # paid at the channel by now
    status, _ = await merchant.request("POST", f"/api/v1/payments/{created['id']}/cancel")
    assert status == 200
    for _ in range(100):
        recorded = await stack.pg.fetch(
            "SELECT event_id, result FROM channel_events WHERE payment_id = $1", created["id"]
        )
        if recorded:
            break
        await asyncio.sleep(0.05)
    assert [(r["event_id"], r["result"]) for r in recorded] == [
        (f"check:{created['id']}:paid", "stale")
    ]
    _, after = await merchant.get_payment(created["id"])
    assert after["status"] == "canceled", "never posted"
    await assert_ledger_invariants(stack.pg)


async def test_cancel_right_after_create_beats_the_relay(stack: Stack, merchant) -> None:
    _, created = await merchant.create_payment(
        amount="9.56", currency="USD", merchant_order_id=order()
    )
    status, canceled = await merchant.request("POST", f"/api/v1/payments/{created['id']}/cancel")
    assert status == 200 and canceled["status"] == "canceled"
    await asyncio.sleep(1.0)
    _, after = await merchant.get_payment(created["id"])
    assert after["status"] == "canceled"
    assert (
        await stack.pg.fetchval("SELECT count(*) FROM payments WHERE id = $1", created["id"]) == 1
    )


async def test_cancel_paid_payment_is_refused(merchant) -> None:
    _, created = await merchant.create_payment(
        amount="9.00", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"succeeded"})
    status, body = await merchant.request("POST", f"/api/v1/payments/{created['id']}/cancel")
    assert status == 409 and body["error"]["type"] == "invalid_request_error"


async def test_unpaid_payment_expires(stack: Stack, http, merchant, receiver: Receiver) -> None:
    _, created = await merchant.create_payment(
        amount="3.56", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"awaiting_payment"})
    await stack.pg.execute(
        "UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"]
    )
    expired = await wait_status(merchant, created["id"], {"expired"})
    assert expired["failure_code"] == "expired"
    await _closed_at_channel(stack, http, created["id"])
    event = await receiver.wait_for(
        merchant.merchant_id, lambda e: e["data"]["id"] == created["id"]
    )
    assert event["type"] == "payment.expired"


async def test_the_channel_is_asked_before_a_payment_expires(
    stack: Stack, merchant, receiver: Receiver
) -> None:
    """The customer paid, but the channel's callback was lost (cents 59): when the payment is
    due to expire, the channel is asked, and the payment succeeds instead, posted once."""
    _, created = await merchant.create_payment(
        amount="3.59", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"awaiting_payment"})
    await asyncio.sleep(0.5)  # paid at the channel; no callback will come
    assert (await merchant.request("GET", f"/api/v1/payments/{created['id']}"))[1][
        "status"
    ] == "awaiting_payment"
    await stack.pg.execute(
        "UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"]
    )
    paid = await wait_status(merchant, created["id"], {"succeeded", "expired"})
    assert paid["status"] == "succeeded"
    applied = await stack.pg.fetch(
        "SELECT event_id, result FROM channel_events WHERE payment_id = $1", created["id"]
    )
    assert [(r["event_id"], r["result"]) for r in applied] == [
        (f"check:{created['id']}:paid", "applied")
    ]
    event = await receiver.wait_for(
        merchant.merchant_id, lambda e: e["data"]["id"] == created["id"]
    )
    assert event["type"] == "payment.succeeded"
    await assert_ledger_invariants(stack.pg)


async def test_partial_then_full_refund(stack: Stack, merchant, receiver: Receiver) -> None:
    _, created = await merchant.create_payment(
        amount="10.00", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"succeeded"})
    status, first = await merchant.request(
        "POST", "/api/v1/refunds", {"payment_id": created["id"], "amount": "3.33", "reason": "size"}
    )
    assert status == 201 and first["status"] == "pending" and first["amount"] == "3.33"
    status, too_much = await merchant.request(
        "POST", "/api/v1/refunds", {"payment_id": created["id"], "amount": "6.68"}
    )
    assert status == 400 and too_much["error"]["code"] == "amount_exceeds_refundable"
    status, rest = await merchant.request("POST", "/api/v1/refunds", {"payment_id": created["id"]})
    assert status == 201 and rest["amount"] == "6.67"
    refunded = await wait_status(merchant, created["id"], {"refunded"})
    assert refunded["amount_refunded"] == "10.00"
    for refund in (first, rest):
        status, got = await merchant.request("GET", f"/api/v1/refunds/{refund['id']}")
        assert status == 200 and got["status"] == "succeeded"
    await receiver.wait_for(
        merchant.merchant_id,
        lambda e: e["type"] == "refund.succeeded" and e["data"]["id"] == rest["id"],
    )
    status, more = await merchant.request(
        "POST", "/api/v1/refunds", {"payment_id": created["id"], "amount": "0.01"}
    )
    assert status == 409 and more["error"]["code"] == "payment_not_refundable"
    # The full refund reverses the whole payment entry: the merchant's pending nets to zero.
    net = await stack.pg.fetchval(
        """SELECT sum(p.amount) FROM postings p JOIN journal_entries e ON e.id = p.entry_id
           JOIN ledger_accounts a ON a.id = p.account_id
           WHERE e.ref = ANY($1) AND a.name = $2""",
        [created["id"], first["id"], rest["id"]],
        f"merchant:{merchant.merchant_id}:pending",
    )
    assert net == 0
    await assert_ledger_invariants(stack.pg)


async def test_refund_of_unpaid_payment_is_refused(merchant) -> None:
    _, created = await merchant.create_payment(
        amount="2.56", currency="USD", merchant_order_id=order()
    )
    status, body = await merchant.request("POST", "/api/v1/refunds", {"payment_id": created["id"]})
    assert status == 409 and body["error"]["code"] == "payment_not_refundable"


async def test_idempotent_replay_and_conflict(stack: Stack, merchant) -> None:
    key = "idem-" + secrets.token_hex(4)
    body = {"amount": "1.00", "currency": "USD", "merchant_order_id": order()}
    raw = orjson.dumps(body)
    s1, first = await merchant.request(
        "POST", "/api/v1/payments", raw=raw, headers={"Idempotency-Key": key}
    )
    s2, second = await merchant.request(
        "POST", "/api/v1/payments", raw=raw, headers={"Idempotency-Key": key}
    )
    assert s1 == s2 == 201 and first == second
    changed = orjson.dumps({**body, "amount": "2.00"})
    s3, conflict = await merchant.request(
        "POST", "/api/v1/payments", raw=changed, headers={"Idempotency-Key": key}
    )
    assert s3 == 409 and conflict["error"]["type"] == "idempotency_error"
    s4, dup = await merchant.request(
        "POST", "/api/v1/payments", raw=raw, headers=_signed(merchant, "/api/v1/payments", 1, raw)
    )
    assert s4 == 409 and dup["error"]["param"] == "merchant_order_id"
    await wait_status(merchant, first["id"], {"succeeded"})
    count = await stack.pg.fetchval(
        "SELECT count(*) FROM payments WHERE merchant_order_id = $1", body["merchant_order_id"]
    )
    assert count == 1


BAD_BODIES = [
    ({"currency": "USD", "merchant_order_id": "x1"}, "amount"),
    ({"amount": 12.5, "currency": "USD", "merchant_order_id": "x2"}, "amount"),
    ({"amount": "12.345", "currency": "USD", "merchant_order_id": "x3"}, "amount"),
    ({"amount": "-1.00", "currency": "USD", "merchant_order_id": "x4"}, "amount"),
    ({"amount": "0", "currency": "USD", "merchant_order_id": "x5"}, "amount"),
    ({"amount": "1.5", "currency": "JPY", "merchant_order_id": "x6"}, "amount"),
    ({"amount": "1.00", "currency": "XXX", "merchant_order_id": "x7"}, "currency"),
    ({"amount": "1.00", "currency": "usd", "merchant_order_id": "x8"}, "currency"),
    ({"amount": "1.00", "currency": "USD"}, "merchant_order_id"),
    ({"amount": "1.00", "currency": "USD", "merchant_order_id": ""}, "merchant_order_id"),
    ({"amount": "1.00", "currency": "USD", "merchant_order_id": "a" * 65}, "merchant_order_id"),
    (
        {"amount": "1.00", "currency": "USD", "merchant_order_id": "x9", "notify_url": "ftp://x"},
        "notify_url",
    ),
    (
        {"amount": "1.00", "currency": "USD", "merchant_order_id": "x10", "expires_in": 5},
        "expires_in",
    ),
    ({"amount": "1.00", "currency": "USD", "merchant_order_id": "x11", "surprise": 1}, None),
    (
        {
            "amount": "1.00",
            "currency": "USD",
            "merchant_order_id": "x12",
            "customer": {"email": "not-an-email"},
        },
        "customer.email",
    ),
    (
        {
            "amount": "1.00",
            "currency": "USD",
            "merchant_order_id": "x13",
            "description": "d" * 501,
        },
        "description",
    ),
    (
        {
            "amount": "1.00",
            "currency": "USD",
            "merchant_order_id": "x14",
            "return_url": "javascript:alert(1)",
        },
        "return_url",
    ),
    (
        {
            "amount": "1.00",
            "currency": "USD",
            "merchant_order_id": "x15",
            "customer": {"ip": "1111111111111111111111111111111111111111111111"},
        },
        "customer.ip",
    ),
    (
        {"amount": "1.00", "currency": "USD", "merchant_order_id": "x16", "metadata": {"k": 1}},
        "metadata",
    ),
    (
        {
            "amount": "1.00",
            "currency": "USD",
            "merchant_order_id": "x17",
            "metadata": {
                "k0": "v",
                "k1": "v",
                "k2": "v",
                "k3": "v",
                "k4": "v",
                "k5": "v",
                "k6": "v",
                "k7": "v",
                "k8": "v",
                "k9": "v",
                "k10": "v",
                "k11": "v",
                "k12": "v",
                "k13": "v",
                "k14": "v",
                "k15": "v",
                "k16": "v",
                "k17": "v",
                "k18": "v",
                "k19": "v",
                "k20": "v",
            },
        },
        "metadata",
    ),
    (
        {"amount": "1.00", "currency": "USD", "merchant_order_id": "x18", "expires_in": 1000000000},
        "expires_in",
    ),
    (
        {"amount": "1.00", "currency": "USD", "merchant_order_id": "x19", "customer": "me"},
        "customer",
    ),
    ({"amount": "1.00", "currency": "USD", "merchant_order_id": "x 20"}, "merchant_order_id"),
    ({"amount": "1.00", "currency": 840, "merchant_order_id": "x21"}, "currency"),
    (
        {
            "amount": "99999999999999999999999999999999.00",
            "currency": "USD",
            "merchant_order_id": "x22",
        },
        "amount",
    ),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
async def test_bad_input_is_400_and_writes_nothing(stack: Stack, merchant, body, param) -> None:
    stream = stack.settings.redis.prefix + ":{intake:payments}"
    before = await stack.redis.xlen(stream)
    status, error = await merchant.request("POST", "/api/v1/payments", body)
    assert status == 400, error
    assert set(error["error"]) == {"type", "code", "message", "param"}
    assert error["error"]["type"] == "invalid_request_error"
    if param:
        assert error["error"]["param"] == param
    # Nothing written: no intent appended (the relay only ever shrinks the stream).
    assert await stack.redis.xlen(stream) <= before
    if order_id := body.get("merchant_order_id"):
        key = f"{stack.settings.redis.prefix}:order:{merchant.merchant_id}:{order_id}"
        assert not await stack.redis.exists(key)


BAD_REFUNDS = [
    ({}, "payment_id"),
    ({"payment_id": "pay_x", "amount": "1.001"}, "amount"),
    ({"payment_id": "pay_x", "amount": 1}, "amount"),
    ({"payment_id": "pay_x", "reason": "r" * 501}, "reason"),
    ({"payment_id": "pay_x", "extra": True}, None),
]


@pytest.mark.parametrize(("body", "param"), BAD_REFUNDS)
async def test_bad_refund_input_is_400_and_writes_nothing(stack: Stack, merchant, body, param):
    _, paid = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, paid["id"], {"succeeded"})
    if "payment_id" in body:
        body = {**body, "payment_id": paid["id"]}
    status, error = await merchant.request("POST", "/api/v1/refunds", body)
    assert status == 400 and error["error"]["type"] == "invalid_request_error", error
    if param:
        assert error["error"]["param"] == param
    count = await stack.pg.fetchval(
        "SELECT count(*) FROM refunds WHERE payment_id = $1", paid["id"]
    )
    assert count == 0
    _, after = await merchant.get_payment(paid["id"])
    assert after["status"] == "succeeded"


async def test_amounts_above_the_currencys_maximum_are_refused(stack: Stack, merchant) -> None:
    """`payments.max_amount` bounds payments, refunds and FX quotes alike (the defaults: a
    million dollars, 15 BTC, …); nothing is written for a refused create."""
    ceilings = stack.settings.payments.max_amount
    status, top = await merchant.create_payment(
        amount=ceilings["USD"], currency="USD", merchant_order_id=order()
    )
    assert status == 201, top
    for amount, currency in (("1000000.01", "USD"), ("9" * 30, "JPY"), ("15.00000001", "BTC")):
        order_id = order()
        status, error = await merchant.create_payment(
            amount=amount, currency=currency, merchant_order_id=order_id
        )
        assert status == 400, error
        assert error["error"]["code"] == "amount_too_large", error
        assert error["error"]["param"] == "amount"
        assert error["error"]["message"] == f"{currency} amounts are at most {ceilings[currency]}"
        key = f"{stack.settings.redis.prefix}:order:{merchant.merchant_id}:{order_id}"
        assert not await stack.redis.exists(key)
    _, paid = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, paid["id"], {"succeeded"})
    for path, body in (
        ("/api/v1/refunds", {"payment_id": paid["id"], "amount": "1000000.01"}),
        ("/api/v1/fx/quotes", {"amount": "1000000.01", "currency": "USD", "to_currency": "EUR"}),
    ):
        status, error = await merchant.request("POST", path, body)
        assert status == 400 and error["error"]["code"] == "amount_too_large", (path, error)
        assert error["error"]["param"] == "amount"
    assert (
        await stack.pg.fetchval("SELECT count(*) FROM refunds WHERE payment_id = $1", paid["id"])
        == 0
    )


async def test_unknown_ids_are_404(merchant) -> None:
    for method, path in (
        ("GET", "/api/v1/payments/pay_nope"),
        ("GET", "/api/v1/refunds/re_nope"),
        ("POST", "/api/v1/payments/pay_nope/cancel"),
        ("POST", "/api/v1/events/evt_nope/resend"),
    ):
        status, error = await merchant.request(method, path)
        assert status == 404 and error["error"]["code"] == "resource_missing", (path, error)
    status, error = await merchant.request("POST", "/api/v1/refunds", {"payment_id": "pay_nope"})
    assert status == 404


async def test_malformed_json_is_400(merchant) -> None:
    status, error = await merchant.request("POST", "/api/v1/payments", raw=b"{not json")
    assert status == 400 and error["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("tamper", ["signature", "stale", "unknown_key", "missing"])
async def test_bad_credentials_are_401(stack: Stack, merchant, http, tamper) -> None:
    body = orjson.dumps({"amount": "1.00", "currency": "USD", "merchant_order_id": order()})
    headers = signed_headers(merchant.key_id, merchant.secret, "POST", "/api/v1/payments", body)
    if tamper == "signature":
        headers["X-Juhe-Signature"] = "v1=" + "0" * 64
    elif tamper == "stale":
        headers = signed_headers(
            merchant.key_id, merchant.secret, "POST", "/api/v1/payments", body, now=1_000_000
        )
    elif tamper == "unknown_key":
        headers["X-Juhe-Key"] = "key_nope"
    else:
        del headers["X-Juhe-Signature"]
    async with http.post(stack.url + "/api/v1/payments", data=body, headers=headers) as response:
        error = await response.json()
        assert response.status == 401
        assert error["error"]["type"] == "authentication_error"


async def test_other_merchants_payment_is_invisible(new_merchant, merchant) -> None:
    other = await new_merchant()
    _, created = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id=order()
    )
    status, body = await other.get_payment(created["id"])
    assert status == 404 and body["error"]["code"] == "resource_missing"
    status, _ = await other.request("POST", f"/api/v1/payments/{created['id']}/cancel")
    assert status == 404
    status, _ = await other.request("POST", "/api/v1/refunds", {"payment_id": created["id"]})
    assert status == 404


async def test_forged_channel_callback_is_rejected(stack: Stack, http) -> None:
    payload = (
        b'{"event_id":"e1","event":"order.paid","order_no":"SIMx","merchant_ref":"pay_x",'
        b'"amount_minor":"100","currency":"USD","ts":1}'
    )
    headers = {"X-Sim-Timestamp": "1", "X-Sim-Signature": "00"}
    async with http.post(
        stack.url + "/api/v1/payments/callback/sim", data=payload, headers=headers
    ) as response:
        assert response.status == 401
        assert (await response.json())["error"]["type"] == "authentication_error"
    async with http.post(stack.url + "/api/v1/payments/callback/nope", data=payload) as response:
        assert response.status == 404


async def test_eth_keeps_18_decimals(merchant) -> None:
    amount = "12.345678901234567891"
    _, created = await merchant.create_payment(
        amount=amount, currency="ETH", merchant_order_id=order()
    )
    assert created["amount"] == amount
    paid = await wait_status(merchant, created["id"], FINAL_PAID)
    assert paid["status"] == "succeeded" and paid["amount"] == amount


async def test_lookup_by_merchant_order_id_and_list(merchant) -> None:
    merchant_order = order()
    _, created = await merchant.create_payment(
        amount="4.00", currency="EUR", merchant_order_id=merchant_order
    )
    status, found = await merchant.request(
        "GET", f"/api/v1/payments?merchant_order_id={merchant_order}"
    )
    assert status == 200 and [p["id"] for p in found["data"]] == [created["id"]]
    await wait_status(merchant, created["id"], FINAL_PAID)
    status, page = await merchant.request("GET", "/api/v1/payments?limit=1")
    assert status == 200 and page["object"] == "list" and len(page["data"]) == 1
    status, bad = await merchant.request("GET", "/api/v1/payments?limit=500")
    assert status == 400 and bad["error"]["param"] == "limit"


async def test_risk_rejects_disallowed_currency_and_blocked_email(
    stack: Stack, new_merchant
) -> None:
    picky = await new_merchant(currencies=["USD"], max_amount={"USD": 100_00})
    _, eur = await picky.create_payment(amount="1.00", currency="EUR", merchant_order_id=order())
    _, big = await picky.create_payment(amount="100.01", currency="USD", merchant_order_id=order())
    blocked_email = await block(stack, Kind.EMAIL, f"bad.{secrets.token_hex(4)}@example.com")
    _, blocked = await picky.create_payment(
        amount="1.00",
        currency="USD",
        merchant_order_id=order(),
        customer={"email": blocked_email.capitalize(), "ip": "203.0.113.9"},
    )
    for payment, code in (
        (eur, "currency_not_allowed"),
        (big, "amount_too_large"),
        (blocked, "blocked_email"),
    ):
        rejected = await wait_status(picky, payment["id"], FINAL_PAID)
        assert rejected["status"] == "rejected" and rejected["failure_code"] == code


async def test_webhook_retried_with_same_event_id(new_merchant, receiver: Receiver) -> None:
    flaky = await new_merchant(mode="fail_once")
    _, created = await flaky.create_payment(
        amount="6.00", currency="USD", merchant_order_id=order()
    )
    event = await receiver.wait_for(flaky.merchant_id, lambda e: e["data"]["id"] == created["id"])
    assert receiver.seen_attempts[event["id"]] == 2


async def test_dead_lettered_webhook_can_be_resent(stack: Stack, new_merchant, receiver) -> None:
    down = await new_merchant(mode="fail")
    _, created = await down.create_payment(amount="6.00", currency="USD", merchant_order_id=order())
    await wait_status(down, created["id"], {"succeeded"})
    for _ in range(100):
        row = await stack.pg.fetchrow(
            "SELECT id, status, attempts FROM webhook_events WHERE merchant_id = $1",
            down.merchant_id,
        )
        if row and row["status"] == "dead":
            break
        await asyncio.sleep(0.1)
    assert row["status"] == "dead" and row["attempts"] == 3  # first try + the two retries
    attempts = await stack.pg.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE event_id = $1", row["id"]
    )
    assert attempts == 3
    receiver.modes[down.merchant_id] = "ok"
    status, body = await down.request("POST", f"/api/v1/events/{row['id']}/resend")
    assert status == 202 and body["status"] == "pending"
    event = await receiver.wait_for(down.merchant_id, lambda e: e["id"] == row["id"])
    assert event["data"]["id"] == created["id"]


async def test_checkout_page_shows_pay_link_then_result(stack: Stack, merchant, http) -> None:
    _, created = await merchant.create_payment(
        amount="8.56", currency="TWD", merchant_order_id=order()
    )
    paying = await wait_status(merchant, created["id"], {"awaiting_payment"})
    async with http.get(created["checkout_url"]) as response:
        page = await response.text()
        assert response.status == 200 and paying["pay_url"] in page and "8.56 TWD" in page
    await merchant.request("POST", f"/api/v1/payments/{created['id']}/cancel")
    async with http.get(created["checkout_url"]) as response:
        assert "canceled" in await response.text()


async def test_wait_ms_returns_pay_data_inline(merchant) -> None:
    status, created = await merchant.request(
        "POST",
        "/api/v1/payments?wait_ms=3000",
        {"amount": "2.56", "currency": "USD", "merchant_order_id": order()},
    )
    assert status == 201 and created["status"] == "awaiting_payment" and created["pay_url"]


async def test_openapi_and_metrics(stack: Stack, http) -> None:
    async with http.get(stack.url + "/api/v1/openapi.json") as response:
        spec = await response.json()
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/payments" in spec["paths"]
    assert "CreatePayment" in spec["components"]["schemas"]
    async with http.get(stack.url + "/metrics") as response:
        text = await response.text()
    for name in (
        "juhe_http_requests_total",
        "juhe_pool_messages_total",
        "juhe_relay_entries_total",
        "juhe_webhook_deliveries_total",
        "juhe_queue_depth",
        "juhe_stream_length",
    ):
        assert name in text, name
    async with http.get(stack.url + "/api/v1/nothing-here") as response:
        assert response.status == 404
        assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_no_secret_reaches_the_logs(stack: Stack, new_merchant) -> None:
    """Runs last in this module: by now every path above has logged what it logs."""
    client = await new_merchant()
    await client.create_payment(amount="1.00", currency="USD", merchant_order_id=order())
    await client.request("POST", "/api/v1/payments", raw=b"{broken")
    # The demo merchant's credentials are printed to the console by `juhe up` on purpose.
    demo = "Demo merchant"
    rows = await stack.pg.fetch(
        "SELECT k.key_id, k.secret FROM api_keys k JOIN merchants m ON m.id = k.merchant_id "
        "WHERE m.name <> $1",
        demo,
    )
    hooks = await stack.pg.fetch("SELECT id, webhook_secret FROM merchants WHERE name <> $1", demo)
    text = stack.log_path.read_text()
    assert text, "the node wrote no log at all"
    for secret in [API_KEY.open(stack.box, r["key_id"], r["secret"]) for r in rows] + [
        WEBHOOK.open(stack.box, r["id"], r["webhook_secret"]) for r in hooks
    ]:
        assert secret not in text
    assert stack.settings.channels["sim"].secret not in text


async def test_lost_messages_are_redriven(stack: Stack, merchant) -> None:
    """A payment and a refund whose messages never reached their pools (written to the
    database only, as if the publish was lost and its retries dead-lettered) still finish."""
    import time as clock

    from domain.ids import new_id
    from domain.messages import PaymentIntent, RefundIntent
    from infra import store

    now = clock.time()
    intent = PaymentIntent(
        id=new_id("pay"),
        merchant_id=merchant.merchant_id,
        merchant_order_id=order(),
        amount="420",
        currency="USD",
        created_at=now,
        expires_at=now + 900,
    )
    await store.insert_payments(stack.pg, [intent])
    await stack.pg.execute(
        "UPDATE payments SET updated_at = now() - interval '1 minute' WHERE id = $1", intent.id
    )
    paid = await wait_status(merchant, intent.id, {"succeeded"}, timeout=20)
    refund = RefundIntent(
        id=new_id("re"),
        payment_id=paid["id"],
        merchant_id=merchant.merchant_id,
        channel="sim",
        amount="420",
        currency="USD",
        created_at=now,
    )
    await store.insert_refunds(stack.pg, [refund])
    await stack.pg.execute(
        "UPDATE refunds SET updated_at = now() - interval '1 minute' WHERE id = $1", refund.id
    )
    refunded = await wait_status(merchant, intent.id, {"refunded"}, timeout=20)
    assert refunded["amount_refunded"] == "4.20"
    await assert_ledger_invariants(stack.pg)


async def test_poison_stream_entries_are_set_aside(stack: Stack, merchant) -> None:
    """An entry no retry can fix (garbage, or an amount that is not whole minor units) goes to
    the dead stream; the payments behind it are not held up."""
    import time as clock

    from domain.ids import new_id
    from domain.messages import PaymentIntent, encode

    prefix = stack.settings.redis.prefix
    now = clock.time()
    bad = PaymentIntent(
        id=new_id("pay"),
        merchant_id=merchant.merchant_id,
        merchant_order_id=order(),
        amount="4.20",
        currency="USD",
        created_at=now,
        expires_at=now + 900,
    )
    dead = f"{prefix}:{{intake:dead}}"
    before = await stack.redis.xlen(dead)
    await stack.redis.xadd(f"{prefix}:{{intake:payments}}", {"d": b"\x00garbage"})
    await stack.redis.xadd(f"{prefix}:{{intake:payments}}", {"d": encode(bad)})
    _, good = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id=order()
    )
    assert (await wait_status(merchant, good["id"], FINAL_PAID))["status"] == "succeeded"
    assert await stack.redis.xlen(dead) == before + 2
    assert await stack.pg.fetchval("SELECT count(*) FROM payments WHERE id = $1", bad.id) == 0


async def test_request_id_follows_the_payment_to_its_webhook(
    stack: Stack, merchant, receiver: Receiver
) -> None:
    rid = "req-" + secrets.token_hex(8)
    status, created = await merchant.request(
        "POST",
        "/api/v1/payments",
        {"amount": "2.00", "currency": "USD", "merchant_order_id": order()},
        headers={"X-Request-Id": rid},
    )
    assert status == 201
    event = await receiver.wait_for(
        merchant.merchant_id, lambda e: e["data"]["id"] == created["id"]
    )
    assert receiver.request_ids[event["id"]] == rid
    stored = await stack.pg.fetchval("SELECT request_id FROM payments WHERE id = $1", created["id"])
    assert stored == rid


async def test_concurrent_cancels_with_one_key_run_once(merchant) -> None:
    _, created = await merchant.create_payment(
        amount="9.56", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"awaiting_payment"})
    path = f"/api/v1/payments/{created['id']}/cancel"
    key = {"Idempotency-Key": "cancel-" + secrets.token_hex(4)}
    # Four requests (each signed at its own second, or they would be replays of one another).
    answers = await asyncio.gather(
        *(
            merchant.request("POST", path, headers={**key, **_signed(merchant, path, n)})
            for n in range(4)
        )
    )
    codes = sorted(
        (status, body.get("status") or body["error"]["code"]) for status, body in answers
    )
    assert (200, "canceled") in codes
    assert all(c in ((200, "canceled"), (409, "request_in_progress")) for c in codes), codes
    status, again = await merchant.request("POST", path, headers=key)
    assert status == 200 and again["status"] == "canceled"
