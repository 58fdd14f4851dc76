"""Merchant request authentication: key id, timestamp window, HMAC over the exact request, and
no replays. What the key may then do is `gateway.access`'s question."""

from __future__ import annotations

import time

from aiohttp import web

from domain.signing import (
    UNSAFE_METHODS,
    SignatureError,
    replay_window_s,
    request_digest,
    verify_request,
)
from gateway.errors import ApiError
from gateway.intake import fingerprint
from gateway.state import Edge
from infra.merchants import ApiKey, Merchant


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, "authentication_error", code, message)


async def authenticate(request: web.Request, body: bytes, e: Edge) -> tuple[Merchant, ApiKey]:
    key_id = request.headers.get("X-Juhe-Key")
    timestamp = request.headers.get("X-Juhe-Timestamp")
    signature = request.headers.get("X-Juhe-Signature")
    if not key_id or not timestamp or not signature:
        raise _unauthorized(
            "missing_credentials", "X-Juhe-Key, X-Juhe-Timestamp and X-Juhe-Signature are required"
        )
    key = await e.merchants.key(key_id)
    if key is None:
        raise _unauthorized("invalid_key", "unknown or revoked API key")
    tolerance_s = e.settings.gateway.signature_tolerance_s
    try:
        verify_request(
            key=key.signer,
            timestamp=timestamp,
            method=request.method,
            path_qs=request.raw_path,
            body=body,
            header=signature,
            now=time.time(),
            tolerance_s=tolerance_s,
        )
    except SignatureError as exc:
        raise _unauthorized(exc.code, str(exc)) from None
    merchant = await e.merchants.merchant(key.merchant_id)
    if merchant is None:
        raise _unauthorized("invalid_key", "unknown or revoked API key")
    if not merchant.active:
        raise ApiError(403, "permission_error", "merchant_inactive", "the merchant is not active")
    if request.method in UNSAFE_METHODS:
        await _first_time(request, body, e, key, timestamp, tolerance_s)
    return merchant, key


async def _first_time(
    request: web.Request, body: bytes, e: Edge, key: ApiKey, timestamp: str, tolerance_s: int
) -> None:
    """A signed request that changes something is taken once while its signature is valid
    (someone who saw it must not send it again). A repeat is refused, unless it is a retry
    whose Idempotency-Key is already on record for this very request: the endpoint then
    answers it from that record (the first answer, or `request_in_progress`) and does
    nothing again. The key is not signed, so only a record of the same request counts."""
    digest = request_digest(timestamp, request.method, request.raw_path, body)
    window = replay_window_s(int(timestamp), time.time(), tolerance_s)
    marker = e.keys.signed_request(key.key_id, digest)
    if await e.intake.pipe.call("SET", marker, "1", "NX", "EX", window) is not None:
        return
    if idempotency_key := request.headers.get("Idempotency-Key"):
        recorded = await e.redis.hget(e.keys.idempotency(key.merchant_id, idempotency_key), "fp")
        if recorded == fingerprint(request.method, request.path, body).encode():
            return
    raise _unauthorized(
        "replayed_request",
        "this signed request was already received; sign a new request (a new X-Juhe-Timestamp)"
        " to do it again, or retry with its Idempotency-Key for the first answer",
    )
