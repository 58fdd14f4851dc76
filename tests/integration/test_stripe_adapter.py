"""The Stripe adapter against a real localstripe process, webhooks included; and against a stub
Stripe for what localstripe cannot show (rate limits, 5xx, timeouts, the headers we send)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from adapters.base import (
    CallbackRejected,
    ChannelDeclined,
    ChannelTransientError,
    OrderRequest,
    RefundRequest,
)
from adapters.stripe import StripeAdapter
from domain.channels import ChannelSpec, Credentials
from tests.localstripe import DECLINED, THREE_D_SECURE, VISA, LocalStripe
from tests.stack import free_port

WEBHOOK_SECRET = "whsec_juhe_test_endpoint"
STALE_SECRET = "whsec_juhe_rolled_away"


@dataclass(frozen=True, slots=True)
class Delivery:
    endpoint: str
    headers: CIMultiDict[str]
    body: bytes
    event: dict[str, Any]


class Hooks:
    """Our webhook endpoints: records every delivery and answers 200 like the gateway would."""

    def __init__(self) -> None:
        self.url = ""
        self.deliveries: list[Delivery] = []
        self._arrived = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = Delivery(
            request.match_info["endpoint"], request.headers.copy(), body, orjson.loads(body)
        )
        async with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()
        return web.json_response({"received": True})

    async def wait(self, endpoint: str, kind: str, object_id: str) -> Delivery:
        """The delivery of a `kind` event about `object_id` (localstripe sends it after ~1 s)."""

        def found() -> Delivery | None:
            return next(
                (
                    d
                    for d in self.deliveries
                    if d.endpoint == endpoint
                    and d.event["type"] == kind
                    and d.event["data"]["object"].get("id") == object_id
                ),
                None,
            )

        async with asyncio.timeout(10), self._arrived:
            await self._arrived.wait_for(lambda: found() is not None)
        delivery = found()
        assert delivery is not None
        return delivery


@pytest.fixture(scope="module")
async def stripe() -> AsyncIterator[LocalStripe]:
    async with LocalStripe() as running:
        yield running


@pytest.fixture(scope="module")
async def hooks(stripe: LocalStripe) -> AsyncIterator[Hooks]:
    hooks = Hooks()
    app = web.Application()
    app.router.add_post("/stripe/{endpoint}", hooks.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        hooks.url = str(server.make_url("/stripe"))
        await stripe.add_webhook("juhe", f"{hooks.url}/current", WEBHOOK_SECRET)
        # A second endpoint still holding an old secret: its copies must not verify.
        await stripe.add_webhook("stale", f"{hooks.url}/stale", STALE_SECRET)
        yield hooks


@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def spec(base_url: str, secret_key: str = "sk_test_juhe", timeout_ms: int = 3000) -> ChannelSpec:
    return ChannelSpec(
        code="stripe",
        adapter="stripe",
        base_url=base_url,
        credentials=Credentials({"secret_key": secret_key, "webhook_secret": WEBHOOK_SECRET}),
        timeout_ms=timeout_ms,
    )


@pytest.fixture(scope="module")
def adapter(stripe: LocalStripe, session: aiohttp.ClientSession) -> StripeAdapter:
    return StripeAdapter(spec(stripe.url, stripe.secret_key), session)


def order(
    amount: int = 1999,
    currency: str = "EUR",
    description: str | None = None,
    payment_id: str | None = None,
) -> OrderRequest:
    return OrderRequest(
        payment_id=payment_id or f"pay_{uuid.uuid4().hex}",
        amount=amount,
        currency=currency,
        description=description,
        callback_url="http://127.0.0.1:1/unused",  # Stripe calls the endpoints configured there
        return_url=None,
        expires_at=time.time() + 900,
    )


async def test_card_payment_paid_notified_and_refunded(
    adapter: StripeAdapter, stripe: LocalStripe, hooks: Hooks
) -> None:
    request = order(amount=1999, currency="EUR")
    created = await adapter.create_order(request)
    assert created.channel_order_id.startswith("pi_")
    assert created.pay_url is None and created.qr_payload is None
    at_stripe = await stripe.get(f"/v1/payment_intents/{created.channel_order_id}")
    assert (at_stripe["amount"], at_stripe["currency"]) == (1999, "eur")
    assert at_stripe["capture_method"] == "automatic"
    assert at_stripe["metadata"] == {"juhe_payment_id": request.payment_id}

    before = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert before.status == "pending"  # requires_payment_method: no card yet

    card = await stripe.card_payment_method(VISA)
    confirmed = await adapter.confirm(created.channel_order_id, card)
    assert (confirmed.channel_order_id, confirmed.status) == (created.channel_order_id, "paid")
    assert (confirmed.amount, confirmed.currency) == (1999, "EUR")

    state = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert (state.status, state.amount, state.currency) == ("paid", 1999, "EUR")

    delivery = await hooks.wait("current", "payment_intent.succeeded", created.channel_order_id)
    callback = adapter.parse_callback(delivery.headers, delivery.body)
    assert callback is not None
    assert callback.event_id == delivery.event["id"] and callback.event_id.startswith("evt_")
    assert (callback.channel, callback.payment_id) == ("stripe", request.payment_id)
    assert (callback.channel_order_id, callback.outcome) == (created.channel_order_id, "paid")
    assert (callback.amount, callback.currency) == ("1999", "EUR")
    assert callback.failure_code is None

    stale = await hooks.wait("stale", "payment_intent.succeeded", created.channel_order_id)
    with pytest.raises(CallbackRejected) as rejected:
        adapter.parse_callback(stale.headers, stale.body)
    assert rejected.value.code == "invalid_signature"

    ack = adapter.callback_ack()
    assert (ack.status, orjson.loads(ack.body)) == (200, {"received": True})

    refunds = [
        RefundRequest(
            f"ref_{uuid.uuid4().hex}", request.payment_id, created.channel_order_id, n, "EUR"
        )
        for n in (700, 1299)
    ]
    first = await adapter.refund(refunds[0])
    rest = await adapter.refund(refunds[1])
    assert first.channel_refund_id.startswith("re_") and rest.channel_refund_id.startswith("re_")
    assert first.channel_refund_id != rest.channel_refund_id
    listed = await stripe.get("/v1/refunds", {"payment_intent": created.channel_order_id})
    by_id = {r["id"]: r for r in listed["data"]}
    assert by_id[first.channel_refund_id]["amount"] == 700
    assert by_id[rest.channel_refund_id]["amount"] == 1299
    assert by_id[first.channel_refund_id]["metadata"]["juhe_refund_id"] == refunds[0].refund_id
    assert by_id[rest.channel_refund_id]["metadata"]["juhe_refund_id"] == refunds[1].refund_id
    # Stripe keeps a refunded intent "succeeded": refunds are tracked on our side.
    assert (
        await adapter.query_order(request.payment_id, created.channel_order_id)
    ).status == "paid"


async def test_declined_card(adapter: StripeAdapter, stripe: LocalStripe, hooks: Hooks) -> None:
    request = order(amount=500, currency="USD")
    created = await adapter.create_order(request)
    card = await stripe.card_payment_method(DECLINED)
    with pytest.raises(ChannelDeclined) as declined:
        await adapter.confirm(created.channel_order_id, card)
    assert declined.value.code == "card_declined"
    assert "declined" in declined.value.message

    # The intent goes back to requires_payment_method: another card could still pay it.
    state = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert (state.status, state.amount, state.currency) == ("pending", 500, "USD")

    delivery = await hooks.wait(
        "current", "payment_intent.payment_failed", created.channel_order_id
    )
    callback = adapter.parse_callback(delivery.headers, delivery.body)
    assert callback is not None
    assert (callback.payment_id, callback.outcome) == (request.payment_id, "failed")
    assert (callback.amount, callback.currency) == ("500", "USD")
    assert callback.failure_code == "card_declined"
    assert callback.failure_message and "declined" in callback.failure_message

    with pytest.raises(ChannelDeclined):  # nothing was charged, so nothing can be refunded
        await adapter.refund(
            RefundRequest("ref_x", request.payment_id, created.channel_order_id, 500, "USD")
        )


async def test_three_d_secure_card_stays_pending(
    adapter: StripeAdapter, stripe: LocalStripe
) -> None:
    request = order()
    created = await adapter.create_order(request)
    card = await stripe.card_payment_method(THREE_D_SECURE)
    assert (await adapter.confirm(created.channel_order_id, card)).status == "pending"
    at_stripe = await stripe.get(f"/v1/payment_intents/{created.channel_order_id}")
    assert at_stripe["status"] == "requires_action"


async def test_events_about_other_things_are_acknowledged_and_ignored(
    adapter: StripeAdapter, stripe: LocalStripe, hooks: Hooks
) -> None:
    customer = await stripe.post("/v1/customers", {"email": "someone@example.com"})
    delivery = await hooks.wait("current", "customer.created", customer["id"])
    assert adapter.parse_callback(delivery.headers, delivery.body) is None


async def test_localstripe_ignores_idempotency_keys(
    adapter: StripeAdapter, stripe: LocalStripe
) -> None:
    """Real Stripe answers a repeated create with the first intent; localstripe opens another
    one (the key we send is shown in `test_requests_on_the_wire`)."""
    request = order()
    first = await adapter.create_order(request)
    again = await adapter.create_order(request)
    assert first.channel_order_id != again.channel_order_id
    for created in (first, again):
        state = await adapter.query_order(request.payment_id, created.channel_order_id)
        assert state.status == "pending"


async def test_description_is_refused_by_localstripe(adapter: StripeAdapter) -> None:
    """Real Stripe takes `description`; localstripe answers 400 "Unexpected description"."""
    with pytest.raises(ChannelDeclined) as refused:
        await adapter.create_order(order(description="Two teas"))
    assert refused.value.code == "invalid_request_error"
    assert "description" in refused.value.message


async def test_cancel_closes_an_unpaid_intent_and_refuses_a_paid_one(
    adapter: StripeAdapter, stripe: LocalStripe
) -> None:
    unpaid = order()
    created = await adapter.create_order(unpaid)
    await adapter.cancel_order(unpaid.payment_id, created.channel_order_id)
    assert (await adapter.query_order(unpaid.payment_id, created.channel_order_id)).status == (
        "failed"
    )
    await adapter.cancel_order(unpaid.payment_id, created.channel_order_id)  # again: done
    with pytest.raises(ChannelDeclined):
        await adapter.confirm(created.channel_order_id, await stripe.card_payment_method(VISA))

    paid = order()
    created = await adapter.create_order(paid)
    await adapter.confirm(created.channel_order_id, await stripe.card_payment_method(VISA))
    with pytest.raises(ChannelDeclined) as refused:
        await adapter.cancel_order(paid.payment_id, created.channel_order_id)
    assert refused.value.code == "already_paid"


async def test_query_checks_the_payment(adapter: StripeAdapter) -> None:
    created = await adapter.create_order(order())
    with pytest.raises(ChannelDeclined) as mismatch:
        await adapter.query_order("pay_someone_else", created.channel_order_id)
    assert mismatch.value.code == "order_mismatch"


async def test_query_unknown_intent(adapter: StripeAdapter) -> None:
    # localstripe's 404 has no error code (Stripe's says resource_missing → order_unknown).
    with pytest.raises(ChannelDeclined) as unknown:
        await adapter.query_order("pay_x", "pi_doesnotexist")
    assert (unknown.value.code, unknown.value.message) == ("invalid_request_error", "Not Found")


async def test_query_by_payment_id_is_declined_without_search(adapter: StripeAdapter) -> None:
    """localstripe has no search API: GET /v1/payment_intents/search reads as the intent "search",
    which does not exist. A final answer, not one to retry."""
    request = order()
    await adapter.create_order(request)
    with pytest.raises(ChannelDeclined) as missing:
        await adapter.query_order(request.payment_id, None)
    assert not isinstance(missing.value, ChannelTransientError)
    assert missing.value.message == "Not Found"


async def test_a_key_that_is_not_a_secret_key_is_refused(
    stripe: LocalStripe, session: aiohttp.ClientSession
) -> None:
    """localstripe takes any ``sk_…`` key; a publishable key gets 401."""
    key = "pk_test_not_for_servers"
    wrong = StripeAdapter(spec(stripe.url, key), session)
    with pytest.raises(ChannelDeclined) as refused:
        await wrong.create_order(order())
    assert refused.value.code == "authentication_failed"
    assert key not in str(refused.value) and key not in refused.value.message


async def test_unreachable_channel_is_transient(session: aiohttp.ClientSession) -> None:
    down = StripeAdapter(spec(f"http://127.0.0.1:{free_port()}"), session)
    with pytest.raises(ChannelTransientError) as unavailable:
        await down.create_order(order())
    assert unavailable.value.code == "channel_unavailable"
    with pytest.raises(ChannelTransientError):
        await down.query_order("pay_x", "pi_x")


# A stub Stripe: canned answers, every request recorded.


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    form: dict[str, str]


@dataclass
class Stub:
    answer: Callable[[web.Request], web.StreamResponse | None] = lambda _: None
    delay_s: float = 0.0
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                request.headers.copy(),
                dict(parse_qsl(body)),
            )
        )
        await asyncio.sleep(self.delay_s)
        canned = self.answer(request)
        if canned is not None:
            return canned
        return web.json_response(INTENT | {"id": request.match_info.get("id", "pi_stub")})


INTENT: dict[str, Any] = {
    "id": "pi_stub",
    "object": "payment_intent",
    "status": "succeeded",
    "amount": 1200,
    "currency": "jpy",
    "metadata": {"juhe_payment_id": "pay_stub"},
}


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, str]]:
    stub = Stub()
    app = web.Application()
    app.router.add_route("*", "/v1/refunds", stub.handle)
    app.router.add_route("*", "/v1/payment_intents", stub.handle)
    app.router.add_route("*", "/v1/payment_intents/{id}", stub.handle)
    app.router.add_route("*", "/v1/payment_intents/{id}/confirm", stub.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield stub, str(server.make_url("/"))


async def test_requests_on_the_wire(stub: tuple[Stub, str], session: aiohttp.ClientSession) -> None:
    fake, url = stub
    adapter = StripeAdapter(spec(url, "sk_test_wire"), session)
    request = order(amount=1200, currency="JPY", description="Matcha", payment_id="pay_stub")
    await adapter.create_order(request)
    await adapter.create_order(request)
    create, retry = fake.seen
    assert (create.method, create.path) == ("POST", "/v1/payment_intents")
    assert create.headers["Authorization"] == "Bearer sk_test_wire"
    assert create.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert create.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"] == "pay_stub"
    assert create.headers["Stripe-Version"]
    assert create.form == {
        "amount": "1200",
        "currency": "jpy",
        "capture_method": "automatic",
        "payment_method_types[0]": "card",
        "metadata[juhe_payment_id]": "pay_stub",
        "description": "Matcha",
    }

    fake.seen.clear()
    state = await adapter.confirm("pi_stub", "pm_card")
    assert (state.status, state.amount, state.currency) == ("paid", 1200, "JPY")
    attach, confirm = fake.seen
    assert (attach.method, attach.path, attach.form) == (
        "POST",
        "/v1/payment_intents/pi_stub",
        {"payment_method": "pm_card"},
    )
    assert (confirm.method, confirm.path, confirm.form) == (
        "POST",
        "/v1/payment_intents/pi_stub/confirm",
        {},
    )
    assert attach.headers["Idempotency-Key"] != confirm.headers["Idempotency-Key"]

    fake.seen.clear()
    fake.answer = lambda _: web.json_response({"id": "re_stub", "status": "succeeded"})
    refund = RefundRequest("ref_1", "pay_stub", "pi_stub", 300, "JPY")
    assert (await adapter.refund(refund)).channel_refund_id == "re_stub"
    (sent,) = fake.seen
    assert (sent.path, sent.headers["Idempotency-Key"]) == ("/v1/refunds", "ref_1")
    assert sent.form == {
        "payment_intent": "pi_stub",
        "amount": "300",
        "metadata[juhe_refund_id]": "ref_1",
        "metadata[juhe_payment_id]": "pay_stub",
    }


async def test_search_by_payment_id(stub: tuple[Stub, str], session: aiohttp.ClientSession) -> None:
    fake, url = stub
    adapter = StripeAdapter(spec(url), session)
    results: list[dict[str, Any]] = []
    fake.answer = lambda _: web.json_response({"object": "search_result", "data": results})

    with pytest.raises(ChannelDeclined) as unknown:
        await adapter.query_order("pay_stub", None)
    assert unknown.value.code == "order_unknown"
    (search,) = fake.seen
    assert (search.method, search.path) == ("GET", "/v1/payment_intents/search")
    assert search.query == {"query": "metadata['juhe_payment_id']:'pay_stub'"}
    assert "Idempotency-Key" not in search.headers

    results[:] = [
        INTENT | {"id": "pi_old", "status": "canceled"},
        INTENT | {"id": "pi_paid"},
    ]
    state = await adapter.query_order("pay_stub", None)
    assert (state.channel_order_id, state.status) == ("pi_paid", "paid")

    results[:] = [INTENT | {"metadata": {"juhe_payment_id": "pay_other"}}]
    with pytest.raises(ChannelDeclined) as mismatch:
        await adapter.query_order("pay_stub", None)
    assert mismatch.value.code == "order_mismatch"


async def test_missing_intent_at_stripe_is_order_unknown(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    fake, url = stub
    error = {"type": "invalid_request_error", "code": "resource_missing", "message": "No such"}
    fake.answer = lambda _: web.json_response({"error": error}, status=404)
    with pytest.raises(ChannelDeclined) as unknown:
        await StripeAdapter(spec(url), session).query_order("pay_stub", "pi_gone")
    assert unknown.value.code == "order_unknown"


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (500, {}, b'{"error": {"type": "api_error", "message": "boom"}}'),
        (502, {}, b"<html>bad gateway</html>"),
        (503, {}, b""),
        (429, {}, b'{"error": {"type": "invalid_request_error", "code": "rate_limit"}}'),
        (409, {}, b'{"error": {"type": "idempotency_error", "message": "in progress"}}'),
        (400, {"Stripe-Should-Retry": "true"}, b'{"error": {"type": "api_error"}}'),
        (200, {}, b"not json"),
        (200, {}, b'{"id": "pi_1"}'),  # not an intent
    ],
)
async def test_transient_answers(
    stub: tuple[Stub, str],
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    fake, url = stub
    fake.answer = lambda _: web.Response(status=status, headers=headers, body=body)
    with pytest.raises(ChannelTransientError) as transient:
        await StripeAdapter(spec(url), session).create_order(order())
    assert transient.value.code == "channel_unavailable"


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            402,
            b'{"error": {"type": "card_error", "code": "card_declined", "decline_code":'
            b' "insufficient_funds", "message": "Your card has insufficient funds."}}',
            "card_declined",
            "Your card has insufficient funds. (insufficient_funds)",
        ),
        (
            400,
            b'{"error": {"type": "invalid_request_error", "code": "amount_too_small",'
            b' "message": "Amount must be at least 50 cents"}}',
            "amount_too_small",
            "Amount must be at least 50 cents",
        ),
        (
            400,
            b'{"error": {"type": "idempotency_error", "message": "Keys reused"}}',
            "idempotency_error",
            "Keys reused",
        ),
        (404, b"<html>nope</html>", "http_404", "stripe: HTTP 404"),
    ],
)
async def test_declined_answers(
    stub: tuple[Stub, str],
    session: aiohttp.ClientSession,
    status: int,
    body: bytes,
    code: str,
    message: str,
) -> None:
    fake, url = stub
    fake.answer = lambda _: web.Response(status=status, body=body)
    with pytest.raises(ChannelDeclined) as declined:
        await StripeAdapter(spec(url), session).create_order(order())
    assert not isinstance(declined.value, ChannelTransientError)
    assert (declined.value.code, declined.value.message) == (code, message)


async def test_rejected_key_is_not_echoed(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    fake, url = stub
    key = "sk_live_abcdefghijklmnop1234"
    error = {
        "type": "invalid_request_error",
        "message": f"Invalid API Key provided: {key[:8]}***1234",
    }
    fake.answer = lambda _: web.json_response({"error": error}, status=401)
    with pytest.raises(ChannelDeclined) as refused:
        await StripeAdapter(spec(url, key), session).create_order(order())
    assert refused.value.code == "authentication_failed"
    assert "1234" not in refused.value.message and key[:8] not in refused.value.message


async def test_failed_refund_is_declined(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    fake, url = stub
    fake.answer = lambda _: web.json_response({"id": "re_1", "status": "failed"})
    with pytest.raises(ChannelDeclined) as failed:
        await StripeAdapter(spec(url), session).refund(
            RefundRequest("ref_1", "pay_stub", "pi_stub", 100, "JPY")
        )
    assert failed.value.code == "refund_failed"


async def test_slow_channel_times_out(
    stub: tuple[Stub, str], session: aiohttp.ClientSession
) -> None:
    fake, url = stub
    fake.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(ChannelTransientError) as timed_out:
        await StripeAdapter(spec(url, timeout_ms=200), session).query_order("pay_stub", "pi_1")
    assert timed_out.value.code == "channel_timeout"
    assert time.monotonic() - started < 0.9
