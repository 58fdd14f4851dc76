"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.openapi import document
from gateway.payments import json_response
from gateway.state import ROUTE_TABLE, edge
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
    return json_response(
        document(edge(request).settings.gateway.public_url, request.app[ROUTE_TABLE])
    )
