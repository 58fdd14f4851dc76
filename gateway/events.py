"""Webhook events, as merchants' endpoints were (or will be) sent them: list, read, resend."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from aiohttp import web

from gateway.access import identify, require, visible
from gateway.payments import json_response, listed_merchant, not_found
from gateway.state import edge, json_answer, known_cursor, page_answer, page_limit


def event_view(row: asyncpg.Record) -> dict[str, Any]:
    """The event exactly as it was signed and sent, with where its delivery stands."""
    sent = orjson.loads(row["payload"])
    return {
        **sent,
        "status": row["status"],
        "attempts": row["attempts"],
        "delivered": int(row["delivered_at"].timestamp()) if row["delivered_at"] else None,
    }


async def list_events(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    await require(request, who, "payments:read")
    merchant_id = await listed_merchant(request, who)
    limit = page_limit(request, 20)
    after = await known_cursor(
        request,
        e.pg,
        "SELECT 1 FROM webhook_events WHERE id = $1 AND merchant_id = $2",
        merchant_id,
    )
    rows = await e.pg.fetch(
        """SELECT * FROM webhook_events
           WHERE merchant_id = $1 AND ($2::text IS NULL OR type = $2)
             AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR id < $4)
           ORDER BY id DESC LIMIT $5""",
        merchant_id,
        request.query.get("type"),
        request.query.get("status"),
        after,
        limit + 1,
    )
    return page_answer(rows, limit, event_view)


async def get_event(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    await require(request, who, "payments:read")
    row = await e.pg.fetchrow(
        "SELECT * FROM webhook_events WHERE id = $1", request.match_info["id"]
    )
    if row is None or not await visible(e, who, row["merchant_id"]):
        raise not_found("event")
    return json_answer(event_view(row))


async def resend_event(request: web.Request) -> web.Response:
    """Send a webhook event again (dead-lettered or not) with a fresh retry schedule; the
    scheduler's next outbox sweep hands it to the notify pool."""
    e = edge(request)
    body = await request.read()
    caller = await identify(request, body)
    who = caller.principal
    await require(request, who, "events:resend")
    event_id = request.match_info["id"]
    owner = await e.pg.fetchval("SELECT merchant_id FROM webhook_events WHERE id = $1", event_id)
    if owner is None or not await visible(e, who, owner):
        raise not_found("event")
    row = await e.pg.fetchrow(
        """UPDATE webhook_events SET status = 'pending', attempts = 0,
                  next_attempt_at = 'epoch', delivered_at = NULL
           WHERE id = $1 RETURNING id, type, status""",
        event_id,
    )
    return json_response(
        orjson.dumps(
            {"id": row["id"], "object": "event", "type": row["type"], "status": row["status"]}
        ),
        202,
    )
