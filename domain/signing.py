"""HMAC signatures for merchant requests and for our webhooks (formats in DESIGN.md)."""

from __future__ import annotations

import hashlib
import hmac


class SignatureError(Exception):
    """`code` is the API error code; the message is safe to show the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def signer(secret: bytes) -> hmac.HMAC:
    """A keyed HMAC to copy per request: keying once per merchant saves work on the hot path."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def request_signature(
    key: hmac.HMAC | bytes, timestamp: str, method: str, path_qs: str, body: bytes
) -> str:
    mac = key.copy() if isinstance(key, hmac.HMAC) else signer(key)
    mac.update(f"{timestamp}.{method.upper()}.{path_qs}.".encode())
    mac.update(body)
    return mac.hexdigest()


def verify_request(
    *,
    key: hmac.HMAC | bytes,
    timestamp: str,
    method: str,
    path_qs: str,
    body: bytes,
    header: str,
    now: float,
    tolerance_s: int,
) -> None:
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("invalid_timestamp", "X-Juhe-Timestamp must be unix seconds") from None
    if abs(now - ts) > tolerance_s:
        raise SignatureError("stale_timestamp", "X-Juhe-Timestamp is outside the allowed window")
    scheme, _, given = header.partition("=")
    if scheme != "v1" or not given:
        raise SignatureError("invalid_signature", "X-Juhe-Signature must look like v1=<hex>")
    expected = request_signature(key, timestamp, method, path_qs, body)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("invalid_signature", "the request signature does not match")


def webhook_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_webhook(secret: bytes, header: str, body: bytes, now: float, tolerance_s: int) -> None:
    """What a merchant runs on receipt; shipped so merchants and our tests share one reading."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        ts = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        raise SignatureError("invalid_signature", "malformed Juhe-Signature header") from None
    if abs(now - ts) > tolerance_s:
        raise SignatureError("stale_timestamp", "webhook timestamp outside the allowed window")
    expected = webhook_signature(secret, ts, body).encode()
    if not hmac.compare_digest(expected, f"t={ts},v1={given}".encode()):
        raise SignatureError("invalid_signature", "webhook signature does not match")
