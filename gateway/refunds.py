"""Merchant refund endpoints."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from adapters.base import AddressRefunding
from domain.ids import new_id
from domain.messages import RefundIntent, encode
from domain.states import REFUNDABLE, RefundStatus
from domain.views import refund_view
from gateway.access import actor, idempotency_scope, identify, require, sees, visible
from gateway.errors import invalid
from gateway.intake import IdempotencyConflict, RefundPlan, fingerprint
from gateway.payments import (
    amount_of,
    idempotency_conflict,
    json_response,
    listed_merchant,
    not_found,
)
from gateway.schemas import CreateRefund
from gateway.state import (
    REQUEST_ID,
    Edge,
    decode,
    edge,
    idempotency_key,
    known_cursor,
    page_answer,
    page_limit,
)
from infra import audit, store


def check_address(adapter: AddressRefunding, destination: str | None) -> None:
    """400 when the address money is sent back to does not fit the channel (or is missing)."""
    problem = adapter.destination_error(destination)
    if problem is not None:
        code = "destination_required" if destination is None else "invalid_destination"
        raise invalid(code, problem, "destination")


def check_destination(e: Edge, channel: str, destination: str | None) -> None:
    """A channel that refunds to an address needs one that fits it; others take none."""
    adapter = e.channels.adapter(channel)
    if isinstance(adapter, AddressRefunding):
        check_address(adapter, destination)
    elif destination is not None:
        raise invalid(
            "destination_not_accepted",
            "this payment's channel refunds to the way it was paid",
            "destination",
        )


async def create_refund(request: web.Request) -> web.Response:
    """Full (no amount) or partial. The gateway refuses at once what the hot copy shows cannot
    be refunded; the channel pool's reservation in PostgreSQL is the binding check."""
    e = edge(request)
    body = await request.read()
    caller = await identify(request, body)
    who = caller.principal
    await require(request, who, "refunds:create")
    key = idempotency_key(request)
    req = decode(body, CreateRefund)
    if not (await e.hot.read(e.keys.payment(req.payment_id), "merchant")).fresh:
        # No copy, or one from before a Redis restart: plan against the row.
        row = await store.fetch_payment(e.pg, req.payment_id)
        if row is None or not sees(who, row["merchant_id"]):
            raise not_found("payment")
        await e.hot.put_payment(row)
    refund_id = new_id("re")
    now = time.time()

    def plan(hot: dict[bytes, bytes]) -> RefundPlan:
        if not hot or not sees(who, hot[b"merchant"].decode()):
            raise not_found("payment")
        status = hot[b"status"].decode()
        if status not in REFUNDABLE:
            raise invalid(
                "payment_not_refundable",
                f"a payment in status {status} cannot be refunded",
                "payment_id",
                status=409,
            )
        check_destination(e, hot[b"channel"].decode(), req.destination)
        currency = hot[b"currency"].decode()
        reserved = int(hot[b"refund_reserved"])
        left = int(hot[b"amount"]) - reserved
        amount = (
            left
            if req.amount is None
            else amount_of(req.amount, currency, e.settings.payments.max_amount)
        )
        if amount <= 0 or amount > left:
            raise invalid(
                "amount_exceeds_refundable",
                "the refund exceeds what is left to refund on this payment",
                "amount",
            )
        intent = RefundIntent(
            id=refund_id,
            payment_id=req.payment_id,
            merchant_id=hot[b"merchant"].decode(),
            channel=hot[b"channel"].decode(),
            amount=str(amount),
            currency=currency,
            reason=req.reason,
            destination=req.destination,
            created_at=now,
            request_id=request[REQUEST_ID],
        )
        view = refund_view(
            {
                "id": refund_id,
                "payment_id": req.payment_id,
                "status": RefundStatus.PENDING.value,
                "amount": amount,
                "currency": currency,
                "reason": req.reason,
                "destination": req.destination,
                "created_at": now,
            }
        )
        return RefundPlan(
            refund_id, intent.merchant_id, reserved + amount, orjson.dumps(view), encode(intent)
        )

    try:
        answer = await e.intake.create_refund(
            scope=idempotency_scope(who),
            idempotency_key=key,
            fp=fingerprint(request.method, request.path, body),
            payment_id=req.payment_id,
            plan=plan,
        )
    except IdempotencyConflict:
        raise idempotency_conflict() from None
    if answer.fresh:
        refund = orjson.loads(answer.body)
        await audit.append(
            e.pg,
            actor(request, who),
            "refund.create",
            refund["id"],
            after={
                "payment_id": req.payment_id,
                "amount": refund["amount"],
                "currency": refund["currency"],
            },
        )
    return json_response(answer.body, answer.status)


async def get_refund(request: web.Request) -> web.Response:
    e = edge(request)
    caller = await identify(request, b"")
    await require(request, caller.principal, "refunds:read")
    refund_id = request.match_info["id"]
    hot = await e.hot.read(e.keys.refund(refund_id), "merchant", "doc")
    row = None if hot.fresh else await store.fetch_refund(e.pg, refund_id)
    if row is None:
        owner, doc = hot.values
        if owner is None or not await visible(e, caller.principal, owner.decode()):
            raise not_found("refund")
        return json_response(doc)
    if not await visible(e, caller.principal, row["merchant_id"]):
        raise not_found("refund")
    await e.hot.put_refund(row)
    return json_response(orjson.dumps(refund_view(row)))


async def list_refunds(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    await require(request, who, "refunds:read")
    merchant_id = await listed_merchant(request, who)
    limit = page_limit(request, 20)
    after = await known_cursor(
        request, e.pg, "SELECT 1 FROM refunds WHERE id = $1 AND merchant_id = $2", merchant_id
    )
    rows = await e.pg.fetch(
        """SELECT * FROM refunds
           WHERE merchant_id = $1 AND ($2::text IS NULL OR status = $2)
             AND ($3::text IS NULL OR payment_id = $3) AND ($4::text IS NULL OR id < $4)
           ORDER BY id DESC LIMIT $5""",
        merchant_id,
        request.query.get("status"),
        request.query.get("payment_id"),
        after,
        limit + 1,
    )
    return page_answer(rows, limit, refund_view)
