"""The aiohttp application: middleware, routes, start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
from aiohttp import web

from config import Settings
from domain.ids import random_hex
from gateway.access import Keyring, PolicyCache
from gateway.cashier import STYLE as CASHIER_STYLE
from gateway.errors import ApiError, error_response
from gateway.inputs import check_request
from gateway.intake import Intake
from gateway.routes import ROUTES, add_routes, check_query
from gateway.state import ALLOW_PRIVATE_TARGETS, EDGE, REQUEST_ID, ROUTE_TABLE, Edge
from infra import db, identity, metrics, redisclient
from infra.alerts import OpsAlerts
from infra.anomaly import alphas_of
from infra.channels import ChannelRegistry
from infra.faults import Fault, classify, describe
from infra.fx import rate_source
from infra.hotstore import HotStore
from infra.httpserver import OUTGOING_HEADERS, hide_versions, protect
from infra.invalidation import follow
from infra.keys import Keys
from infra.logs import request_id
from infra.merchants import MerchantDirectory
from infra.ratelimit import RateLimiter
from infra.redispipe import RedisPipe
from infra.risk import Judge, RiskBook, load_geo
from infra.secretbox import SecretBox
from infra.velocity import Velocity

log = logging.getLogger("juhe.gateway")
KEY_USAGE_FLUSH_S = 5.0
RETRY_AFTER_S = 1
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-]{8,64}")

_HTTP_ERRORS = {
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "body_too_large"),
}


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, metrics, and the one error shape for everything that goes wrong."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if _REQUEST_ID.fullmatch(given) else "req_" + random_hex(8)
    request[REQUEST_ID] = rid
    request_id.set(rid)
    ALLOW_PRIVATE_TARGETS.set(request.app[EDGE].settings.notify.allow_private_targets)
    started = time.perf_counter()
    try:
        await check_request(request)
        check_query(request)
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        type_, code = _HTTP_ERRORS.get(exc.status, ("invalid_request_error", "http_error"))
        response = error_response(exc.status, type_, code, exc.reason)
    except asyncpg.DataError as exc:
        # A value a column refuses that no schema caught: the statement changed nothing.
        log.warning("value refused by the database", extra={"error": describe(exc)})
        response = error_response(
            400, "invalid_request_error", "invalid_field", "a value in the request cannot be stored"
        )
    except Exception as exc:
        if classify(exc) is Fault.TRANSIENT:
            response = unavailable(exc)
        else:
            log.exception("unhandled error")
            response = error_response(
                500, "api_error", "internal_error", "an internal error occurred"
            )
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "unmatched"
    count, latency = metrics.http_series(route, request.method, response.status)
    count.inc()
    latency.observe(time.perf_counter() - started)
    response.headers["X-Request-Id"] = rid
    return response


def unavailable(exc: BaseException) -> web.Response:
    """A service the request needs is down: 503 with Retry-After. A create may be retried with
    the same Idempotency-Key: either it was taken (and is replayed) or it was not."""
    log.warning("service unavailable", extra={"error": describe(exc)})
    response = error_response(
        503,
        "api_error",
        "service_unavailable",
        "a service Juhe needs is unavailable; retry shortly (with the same Idempotency-Key)",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def _record_key_usage(merchants: MerchantDirectory) -> None:
    """API keys' last-used times reach the database every few seconds, off the request path."""
    while True:
        await asyncio.sleep(KEY_USAGE_FLUSH_S)
        try:
            await merchants.flush_usage()
        except Exception:
            log.exception("could not record API key usage")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[edge_middleware], client_max_size=settings.gateway.max_body_bytes
    )

    async def lifecycle(app: web.Application):
        pg = await db.create_pool(
            settings.postgres.dsn, settings.postgres.pool_min, settings.postgres.pool_max
        )
        redis = redisclient.connect(settings.redis.url, settings.redis.max_connections)
        pipe = RedisPipe(settings.redis.url)
        keys = Keys(settings.redis.prefix)
        http = aiohttp.ClientSession(headers=OUTGOING_HEADERS)
        box = SecretBox(settings.secrets.keys, settings.secrets.active)
        registry = ChannelRegistry(pg, box, http)
        await registry.refresh()
        rates = rate_source(settings.fx)
        geo = load_geo(settings.risk.ip_country_table, settings.risk.bin_country_table)
        book = RiskBook(pg, geo)
        await book.refresh()
        app[EDGE] = Edge(
            settings=settings,
            pg=pg,
            redis=redis,
            keys=keys,
            hot=HotStore(redis, keys, settings.gateway.public_url, settings.gateway.hot_ttl_s),
            intake=Intake(redis, pipe, keys, settings.gateway),
            merchants=MerchantDirectory(pg, box, settings.gateway.merchant_cache_ttl_s),
            channels=registry,
            http=http,
            keyring=Keyring(pg, box, settings.auth.key_cache_s, settings.auth.access_ttl_s),
            policy=PolicyCache(pg),
            limiter=RateLimiter(redis, settings.redis.prefix, settings.auth.login_window_s),
            box=box,
            alerts=OpsAlerts(http, settings.alerts.ops_webhook_url, settings.alerts.timeout_ms),
            rates=rates,
            risk=Judge(
                book,
                Velocity(redis, keys, alphas_of(settings.risk), settings.risk.volume_window_s),
                rates,
            ),
        )
        await identity.sync_builtin_roles(pg)
        usage = asyncio.create_task(_record_key_usage(app[EDGE].merchants))
        following = asyncio.create_task(
            follow(redis, keys, app[EDGE].merchants, registry, book=book)
        )
        yield
        usage.cancel()
        following.cancel()
        await app[EDGE].merchants.flush_usage()
        await http.close()
        await pipe.close()
        await redis.aclose()
        await pg.close()

    app.cleanup_ctx.append(lifecycle)
    add_routes(app)
    app[ROUTE_TABLE] = ROUTES
    return protect(hide_versions(app), styles=(CASHIER_STYLE,), own_scripts=True)
