"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document, webhook resend."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.access import identify, require, visible
from gateway.openapi import document
from gateway.payments import json_response, not_found
from gateway.state import edge
from infra import metrics


async def healthz(_: web.Request) -> web.Response:
    return json_response(b'{"status":"ok"}')


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis (where creates go) and PostgreSQL (reads, callbacks) both answer."""
    e = edge(request)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(e.redis.ping(), 1)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    try:
        await asyncio.wait_for(e.pg.fetchval("SELECT 1"), 1)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = type(exc).__name__
    ready = all(v == "ok" for v in checks.values())
    return json_response(orjson.dumps({"ready": ready, "checks": checks}), 200 if ready else 503)


async def metrics_endpoint(_: web.Request) -> web.Response:
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return json_response(document(edge(request).settings.gateway.public_url))


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
