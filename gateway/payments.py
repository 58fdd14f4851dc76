"""Merchant payment endpoints: create, read, list, cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from domain.access import Principal, Realm
from domain.ids import new_id
from domain.messages import ChannelTask, PaymentIntent, decoder, encode
from domain.money import AmountError, check_ceiling, parse_amount
from domain.states import PaymentStatus
from domain.views import payment_view
from gateway.access import actor, idempotency_scope, identify, require, sees, visible
from gateway.errors import ApiError, invalid
from gateway.intake import (
    DuplicateOrder,
    IdempotencyConflict,
    Replay,
    RequestInProgress,
    fingerprint,
)
from gateway.schemas import Card, CreatePayment, Customer
from gateway.state import (
    REQUEST_ID,
    Edge,
    decode,
    edge,
    idempotency_key,
    known_cursor,
    page_limit,
)
from infra import audit, store
from infra.sealing import CUSTOMER_EMAIL, CUSTOMER_IP

_intent = decoder(PaymentIntent)
JSON = "application/json"


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


def idempotency_conflict() -> ApiError:
    return ApiError(
        409,
        "idempotency_error",
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request body",
        "Idempotency-Key",
    )


def not_found(kind: str) -> ApiError:
    return invalid("resource_missing", f"no such {kind}", "id", status=404)


def amount_of(text: str, currency: str, ceilings: Mapping[str, str], param: str = "amount") -> int:
    """A request's amount in minor units: more than zero, and at most the currency's
    configured maximum (`payments.max_amount`)."""
    try:
        amount = parse_amount(text, currency)
        check_ceiling(amount, currency, ceilings)
    except AmountError as exc:
        raise invalid(
            exc.code, str(exc), "currency" if exc.code == "unsupported_currency" else param
        ) from None
    if amount <= 0:
        raise invalid("invalid_amount", "amount must be greater than zero", param)
    return amount


async def create_payment(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    caller = await identify(request, body)
    await require(request, caller.principal, "payments:create")
    merchant = caller.merchant
    if merchant is None or not merchant.active:  # signed keys are refused earlier
        raise ApiError(403, "permission_error", "merchant_inactive", "the merchant is not active")
    key = idempotency_key(request)
    req = decode(body, CreatePayment)
    if (
        req.method is not None
        and merchant.methods is not None
        and req.method not in merchant.methods
    ):
        raise invalid(
            "method_not_enabled", f"{req.method} is not enabled for this merchant", "method"
        )
    limits = e.settings.payments
    amount = amount_of(req.amount, req.currency, limits.max_amount)
    expires_in = req.expires_in or limits.default_expires_in_s
    if expires_in > limits.max_expires_in_s:
        raise invalid(
            "invalid_field", f"expires_in must be at most {limits.max_expires_in_s}", "expires_in"
        )
    now = time.time()
    payment_id, customer, card = new_id("pay"), req.customer or Customer(), req.card or Card()
    intent = PaymentIntent(
        id=payment_id,
        merchant_id=merchant.id,
        merchant_order_id=req.merchant_order_id,
        amount=str(amount),
        currency=req.currency,
        method=req.method,
        description=req.description,
        # sealed now: every copy of the intent (Redis, RabbitMQ, the row) holds them so
        customer_email=CUSTOMER_EMAIL.seal_optional(e.box, payment_id, customer.email),
        customer_ip=CUSTOMER_IP.seal_optional(e.box, payment_id, customer.ip),
        customer_country=customer.country,
        customer_device=customer.device_id,
        customer_id=customer.id,
        card_fingerprint=card.fingerprint,
        card_bin=card.bin,
        card_country=card.country,
        notify_url=req.notify_url,
        return_url=req.return_url,
        metadata=req.metadata,
        created_at=now,
        expires_at=now + expires_in,
        request_id=request[REQUEST_ID],
    )
    row = intent_row(intent)
    doc = orjson.dumps(payment_view(row, e.settings.gateway.public_url))
    try:
        replay = await e.intake.create_payment(
            merchant_id=merchant.id,
            idempotency_key=key,
            fp=fingerprint(request.method, request.path, body),
            payment_id=intent.id,
            merchant_order_id=intent.merchant_order_id,
            amount=amount,
            currency=intent.currency,
            doc=doc,
            intent=encode(intent),
        )
    except IdempotencyConflict:
        raise idempotency_conflict() from None
    except DuplicateOrder as exc:
        raise invalid(
            "duplicate_merchant_order_id",
            f"merchant_order_id is already used by payment {exc.payment_id}",
            "merchant_order_id",
            status=409,
        ) from None
    if replay is not None:
        return json_response(replay.body, replay.status)
    await make_durable(e, intent)
    if wait := request.query.get("wait_ms"):
        doc = await wait_for_pay_data(e, intent.id, wait, doc)
    return json_response(doc, 201)


def intent_row(intent: PaymentIntent) -> dict[str, Any]:
    """The intent as the row it will become, for views built before the database has it."""
    return {
        "id": intent.id,
        "merchant_id": intent.merchant_id,
        "merchant_order_id": intent.merchant_order_id,
        "status": PaymentStatus.PENDING.value,
        "amount": int(intent.amount),
        "currency": intent.currency,
        "method": intent.method,
        "description": intent.description,
        "metadata": intent.metadata,
        "created_at": intent.created_at,
        "expires_at": intent.expires_at,
    }


async def make_durable(e: Edge, intent: PaymentIntent) -> None:
    """The configured durability mode's extra step before we answer."""
    mode = e.settings.gateway.durability
    if mode == "replicated":
        if not await e.intake.replicated(
            e.settings.gateway.replicated_min_replicas, e.settings.gateway.replicated_timeout_ms
        ):
            raise ApiError(
                503,
                "api_error",
                "not_replicated",
                "the payment was accepted but not yet replicated; retry with the same "
                "Idempotency-Key to get its final answer",
            )
    elif mode == "database":
        await store.insert_payments(e.pg, [intent])


async def wait_for_pay_data(e: Edge, payment_id: str, wait: str, doc: bytes) -> bytes:
    """Optional bounded wait for the channel's pay link (`?wait_ms=`), polling the hot copy."""
    try:
        budget = min(int(wait), e.settings.gateway.wait_ms_max) / 1000
    except ValueError:
        raise invalid("invalid_field", "wait_ms must be an integer", "wait_ms") from None
    deadline = time.monotonic() + budget
    key = e.keys.payment(payment_id)
    while time.monotonic() < deadline:
        status, latest = await e.redis.hmget(key, "status", "doc")
        if status and status.decode() not in ("pending", "processing"):
            return latest
        await asyncio.sleep(0.01)
    return (await e.redis.hget(key, "doc")) or doc


async def load_payment(e: Edge, who: Principal, payment_id: str) -> bytes:
    """The payment's public JSON: the hot copy, else the database (and re-warm the copy). A
    copy from before a Redis restart may have missed an update: the row wins, and only while
    the relay has not written the row yet is such a copy all there is.
    Another organisation's payment is answered as missing: ids are not an existence oracle."""
    hot = await e.hot.read(e.keys.payment(payment_id), "merchant", "doc")
    row = None if hot.fresh else await store.fetch_payment(e.pg, payment_id)
    if row is None:
        merchant, doc = hot.values
        if merchant is None or not await visible(e, who, merchant.decode()):
            raise not_found("payment")
        return doc
    if not await visible(e, who, row["merchant_id"]):
        raise not_found("payment")
    await e.hot.put_payment(row)
    return orjson.dumps(payment_view(row, e.settings.gateway.public_url))


async def get_payment(request: web.Request) -> web.Response:
    e = edge(request)
    caller = await identify(request, b"")
    await require(request, caller.principal, "payments:read")
    return json_response(await load_payment(e, caller.principal, request.match_info["id"]))


async def payment_attempts(request: web.Request) -> web.Response:
    """The channels a payment was tried at, in order: where it failed over and why."""
    e = edge(request)
    caller = await identify(request, b"")
    await require(request, caller.principal, "payments:read")
    payment_id = request.match_info["id"]
    await load_payment(e, caller.principal, payment_id)  # 404 unless it is the caller's to see
    data = [
        {
            "object": "payment_attempt",
            "attempt": r["attempt"],
            "channel": r["channel"],
            "outcome": r["outcome"],
            "failure_code": r["failure_code"],
            "at": int(r["at"].timestamp()),
        }
        for r in await store.attempts(e.pg, payment_id)
    ]
    return json_response(orjson.dumps({"object": "list", "data": data, "has_more": False}))


async def listed_merchant(request: web.Request, who: Principal) -> str:
    """Whose payments a list shows: the caller's own merchant, or for the platform the one
    named by `merchant_id`."""
    if who.realm is Realm.MERCHANT and who.org_id:
        return who.org_id
    named = request.query.get("merchant_id")
    if not named:
        raise invalid("missing_field", "merchant_id is required", "merchant_id")
    if not await visible(edge(request), who, named):
        raise ApiError(
            403, "permission_error", "not_owner", "this merchant belongs to another organisation"
        )
    return named


async def list_payments(request: web.Request) -> web.Response:
    e = edge(request)
    caller = await identify(request, b"")
    await require(request, caller.principal, "payments:read")
    merchant_id = await listed_merchant(request, caller.principal)
    order_id = request.query.get("merchant_order_id")
    if order_id is not None:
        found = await e.redis.get(e.keys.merchant_order(merchant_id, order_id))
        payment_id = (
            found.decode()
            if found
            else await e.pg.fetchval(
                "SELECT id FROM payments WHERE merchant_id = $1 AND merchant_order_id = $2",
                merchant_id,
                order_id,
            )
        )
        docs = [await load_payment(e, caller.principal, payment_id)] if payment_id else []
        return json_response(
            b'{"object":"list","data":[' + b",".join(docs) + b'],"has_more":false}'
        )
    limit = page_limit(request, 10)
    after = await known_cursor(
        request, e.pg, "SELECT 1 FROM payments WHERE id = $1 AND merchant_id = $2", merchant_id
    )
    rows = await e.pg.fetch(
        """SELECT * FROM payments WHERE merchant_id = $1 AND ($2::text IS NULL OR id < $2)
             AND ($3::text IS NULL OR status = $3)
           ORDER BY id DESC LIMIT $4""",
        merchant_id,
        after,
        request.query.get("status"),
        limit + 1,
    )
    url = e.settings.gateway.public_url
    data = [payment_view(r, url) for r in rows[:limit]]
    return json_response(
        orjson.dumps({"object": "list", "data": data, "has_more": len(rows) > limit})
    )


async def cancel_payment(request: web.Request) -> web.Response:
    """Synchronous and authoritative: the guarded transition in PostgreSQL decides. A payment
    still on its way from the stream is written from its intent first, exactly as the relay
    would write it, so a cancel never races the relay."""
    e = edge(request)
    body = await request.read()
    caller = await identify(request, body)
    who = caller.principal
    await require(request, who, "payments:cancel")
    scope = idempotency_scope(who)
    key = idempotency_key(request)
    fp = fingerprint(request.method, request.path, body)
    try:
        replay = await e.intake.claim(scope, key, fp)
    except IdempotencyConflict:
        raise idempotency_conflict() from None
    except RequestInProgress:
        raise ApiError(
            409,
            "idempotency_error",
            "request_in_progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
            "Idempotency-Key",
        ) from None
    if replay is not None:
        return json_response(replay.body, replay.status)
    try:
        answer = await cancel(e, who, actor(request, who), request.match_info["id"])
    except ApiError as exc:
        await e.intake.settle(scope, key, fp, Replay(exc.status, exc.response().body))
        raise
    except Exception:
        await e.intake.settle(scope, key, fp, None)
        raise
    await e.intake.settle(scope, key, fp, answer)
    return json_response(answer.body, answer.status)


async def cancel(e: Edge, who: Principal, by: audit.Actor, payment_id: str) -> Replay:
    hot_merchant, intent = await e.redis.hmget(e.keys.payment(payment_id), "merchant", "intent")
    if hot_merchant is not None and not sees(who, hot_merchant.decode()):
        raise not_found("payment")
    async with e.pg.acquire() as conn, conn.transaction():
        if intent is not None:
            await store.insert_payments(conn, [_intent.decode(intent)])
        current = await conn.fetchrow(
            "SELECT merchant_id, status FROM payments WHERE id = $1 FOR UPDATE", payment_id
        )
        if current is None or not sees(who, current["merchant_id"]):
            raise not_found("payment")
        row = await store.transition_payment(
            conn,
            payment_id,
            PaymentStatus.CANCELED,
            failure_code="canceled",
            failure_message="canceled by the merchant"
            if who.realm is Realm.MERCHANT
            else "canceled by the platform",
        )
        if row is None:
            raise invalid(
                "payment_not_cancelable",
                f"a payment in status {current['status']} cannot be canceled",
                status=409,
            )
        view = payment_view(row, e.settings.gateway.public_url)
        await store.add_events(conn, [("payment.canceled", view, row)], due_now=True)
        await audit.append(
            conn,
            by,
            "payment.cancel",
            payment_id,
            before={"status": current["status"]},
            after={"status": row["status"]},
        )
    await e.hot.put_payment(row)
    if row["channel_order_id"]:
        # Closed at the channel too, so the customer cannot pay the canceled payment late.
        task = ChannelTask(
            kind="cancel", id=payment_id, channel=row["channel"], request_id=by.request_id or ""
        )
        await e.intake.hand_over(f"cancel:{payment_id}", encode(task))
    return Replay(200, orjson.dumps(view))
