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
from gateway import (
    admin,
    agents,
    callbacks,
    cashier,
    channels,
    fx,
    merchants,
    ops,
    payments,
    refunds,
    sessions,
)
from gateway.access import Keyring, PolicyCache
from gateway.cashier import STYLE as CASHIER_STYLE
from gateway.errors import ApiError, error_response
from gateway.inputs import check_request
from gateway.intake import Intake
from gateway.state import ALLOW_PRIVATE_TARGETS, EDGE, REQUEST_ID, Edge
from infra import db, identity, metrics, redisclient
from infra.alerts import OpsAlerts
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
from infra.secretbox import SecretBox

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
            rates=rate_source(settings.fx),
        )
        await identity.sync_builtin_roles(pg)
        usage = asyncio.create_task(_record_key_usage(app[EDGE].merchants))
        following = asyncio.create_task(follow(redis, keys, app[EDGE].merchants, registry))
        yield
        usage.cancel()
        following.cancel()
        await app[EDGE].merchants.flush_usage()
        await http.close()
        await pipe.close()
        await redis.aclose()
        await pg.close()

    app.cleanup_ctx.append(lifecycle)
    r = app.router
    r.add_post("/api/v1/payments", payments.create_payment)
    r.add_get("/api/v1/payments", payments.list_payments)
    r.add_get("/api/v1/payments/{id}", payments.get_payment)
    r.add_post("/api/v1/payments/{id}/cancel", payments.cancel_payment)
    r.add_get("/api/v1/payments/{id}/attempts", payments.payment_attempts)
    r.add_post("/api/v1/payments/callback/{channel}", callbacks.channel_callback)
    r.add_post("/api/v1/fx/quotes", fx.create_quote)
    r.add_get("/api/v1/fx/quotes/{id}", fx.get_quote)
    r.add_post("/api/v1/refunds", refunds.create_refund)
    r.add_get("/api/v1/refunds/{id}", refunds.get_refund)
    r.add_post("/api/v1/events/{id}/resend", ops.resend_event)
    r.add_get("/api/v1/openapi.json", ops.openapi)
    r.add_post("/api/v1/auth/login", sessions.login)
    r.add_post("/api/v1/auth/refresh", sessions.refresh)
    r.add_post("/api/v1/auth/logout", sessions.logout)
    r.add_post("/api/v1/auth/mfa/enroll", sessions.mfa_enroll)
    r.add_post("/api/v1/auth/mfa/verify", sessions.mfa_verify)
    r.add_get("/api/v1/auth/me", sessions.me)
    r.add_get("/api/v1/admin/users", admin.list_users)
    r.add_post("/api/v1/admin/users", admin.create_user)
    r.add_post("/api/v1/admin/users/{id}/disable", admin.disable_user)
    r.add_post("/api/v1/admin/users/{id}/enable", admin.enable_user)
    r.add_put("/api/v1/admin/users/{id}/roles", admin.assign_roles)
    r.add_get("/api/v1/admin/roles", admin.list_roles)
    r.add_put("/api/v1/admin/roles/{id}", admin.put_role)
    r.add_get("/api/v1/admin/settings", admin.get_settings)
    r.add_put("/api/v1/admin/settings", admin.put_settings)
    r.add_get("/api/v1/admin/audit", admin.list_audit)
    r.add_get("/api/v1/admin/audit/verify", admin.verify_audit)
    r.add_post("/api/v1/admin/merchants/{id}/keys", admin.create_api_key)
    r.add_get("/api/v1/admin/channels", channels.list_channels)
    r.add_post("/api/v1/admin/channels", channels.post_channel)
    r.add_get("/api/v1/admin/channels/{code}", channels.get_channel)
    r.add_patch("/api/v1/admin/channels/{code}", channels.patch_channel)
    r.add_post("/api/v1/admin/channels/{code}/enable", channels.enable_channel)
    r.add_post("/api/v1/admin/channels/{code}/disable", channels.disable_channel)
    r.add_post("/api/v1/admin/channels/{code}/switch-over", channels.post_switch_over)
    r.add_delete("/api/v1/admin/channels/{code}/switch-over", channels.delete_switch_over)
    r.add_post("/api/v1/merchants/register", merchants.register)
    r.add_get("/api/v1/merchants/{id}", merchants.get_merchant)
    r.add_put("/api/v1/merchants/{id}", merchants.update_merchant)
    r.add_put("/api/v1/merchants/{id}/payment-config", merchants.payment_config)
    r.add_get("/api/v1/merchants/{id}/transactions", merchants.transactions)
    r.add_get("/api/v1/merchants/{id}/keys", merchants.list_keys)
    r.add_post("/api/v1/merchants/{id}/keys/{keyId}/rotate", merchants.rotate_key)
    r.add_post("/api/v1/merchants/{id}/keys/{keyId}/revoke", merchants.revoke_key)
    r.add_post("/api/v1/agents/register", agents.register)
    r.add_get("/api/v1/agents/{id}", agents.get_agent)
    r.add_put("/api/v1/agents/{id}", agents.update_agent)
    r.add_post("/api/v1/agents/{id}/subordinates", agents.add_subordinate)
    r.add_put("/api/v1/agents/{id}/policies/{currency}", agents.put_policy)
    r.add_put("/api/v1/agents/{id}/merchants/{merchantId}/pricing", agents.price_merchant)
    r.add_get("/api/v1/agents/{id}/commissions", agents.commissions)
    r.add_get("/checkout/{id}", cashier.checkout)
    r.add_post("/checkout/{id}/card", cashier.submit_card)
    r.add_get("/healthz", ops.healthz)
    r.add_get("/readyz", ops.readyz)
    r.add_get("/metrics", ops.metrics_endpoint)
    return protect(hide_versions(app), styles=(CASHIER_STYLE,))
