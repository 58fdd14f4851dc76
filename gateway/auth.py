"""Merchant request authentication: key id, timestamp window, HMAC over the exact request.
What the key may then do is `gateway.access`'s question."""

from __future__ import annotations

import time

from aiohttp import web

from domain.signing import SignatureError, verify_request
from gateway.errors import ApiError
from infra.merchants import ApiKey, Merchant, MerchantDirectory


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, "authentication_error", code, message)


async def authenticate(
    request: web.Request, body: bytes, directory: MerchantDirectory, tolerance_s: int
) -> tuple[Merchant, ApiKey]:
    key_id = request.headers.get("X-Juhe-Key")
    timestamp = request.headers.get("X-Juhe-Timestamp")
    signature = request.headers.get("X-Juhe-Signature")
    if not key_id or not timestamp or not signature:
        raise _unauthorized(
            "missing_credentials", "X-Juhe-Key, X-Juhe-Timestamp and X-Juhe-Signature are required"
        )
    key = await directory.key(key_id)
    if key is None:
        raise _unauthorized("invalid_key", "unknown or revoked API key")
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
    merchant = await directory.merchant(key.merchant_id)
    if merchant is None:
        raise _unauthorized("invalid_key", "unknown or revoked API key")
    if not merchant.active:
        raise ApiError(403, "permission_error", "merchant_inactive", "the merchant is not active")
    return merchant, key
