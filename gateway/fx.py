"""FX quotes for merchants: what an amount comes to in another currency at the platform's
rate, locked for `fx.quote_ttl_s` (the quote is kept in Redis until then)."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
import orjson
from aiohttp import web
from msgspec import Meta

from domain.fx import format_rate, quote
from domain.ids import new_id
from domain.money import AmountError, exponent, format_amount
from gateway.access import identify, require, visible
from gateway.errors import ApiError, invalid
from gateway.payments import amount_of, json_response, not_found
from gateway.schemas import AmountText, CurrencyCode
from gateway.state import decode, edge
from infra.fx import RateUnavailable


class CreateQuote(msgspec.Struct, forbid_unknown_fields=True):
    amount: AmountText
    currency: CurrencyCode
    to_currency: Annotated[str, Meta(min_length=3, max_length=5, pattern=r"^[A-Z]{3,5}$")]


async def create_quote(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    caller = await identify(request, body)
    await require(request, caller.principal, "payments:create")
    req = decode(body, CreateQuote)
    amount = amount_of(req.amount, req.currency, e.settings.payments.max_amount)
    try:
        exponent(req.to_currency)
    except AmountError as exc:
        raise invalid(exc.code, str(exc), "to_currency") from None
    fx = e.settings.fx
    try:
        mid = await e.rates.mid(req.currency, req.to_currency)
    except RateUnavailable:
        raise ApiError(
            503, "api_error", "fx_rate_unavailable", f"no rate for {req.currency}/{req.to_currency}"
        ) from None
    q = quote(
        amount, req.currency, req.to_currency, mid, fx.spread_bps, time.time(), fx.quote_ttl_s
    )
    doc = {
        "id": new_id("fxq"),
        "object": "fx_quote",
        "amount": format_amount(q.amount, q.source),
        "currency": q.source,
        "to_currency": q.target,
        "converted_amount": format_amount(q.converted, q.target),
        "rate": format_rate(q.rate),
        "mid_rate": format_rate(q.mid),
        "spread_bps": q.spread_bps,
        "expires_at": int(q.expires_at),
    }
    merchant_id = caller.principal.org_id or ""
    await e.redis.set(
        e.keys.fx_quote(doc["id"]),
        orjson.dumps({"merchant": merchant_id, "doc": doc}),
        ex=fx.quote_ttl_s,
    )
    return json_response(orjson.dumps(doc), 201)


async def get_quote(request: web.Request) -> web.Response:
    e = edge(request)
    caller = await identify(request, b"")
    await require(request, caller.principal, "payments:read")
    stored = await e.redis.get(e.keys.fx_quote(request.match_info["id"]))
    if stored is None:
        raise not_found("quote (or it has expired)")
    kept = orjson.loads(stored)
    if not await visible(e, caller.principal, kept["merchant"]):
        raise not_found("quote (or it has expired)")
    return json_response(orjson.dumps(kept["doc"]))
