"""HMAC signatures for merchant requests and for our webhooks (formats in DESIGN.md)."""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Literal


class SignatureError(Exception):
    """`code` is the API error code; the message is safe to show the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def signer(secret: bytes) -> hmac.HMAC:
    """A keyed HMAC to copy per request: keying once per merchant saves work on the hot path."""
    return hmac.new(secret, digestmod=hashlib.sha256)


Scheme = Literal["v1", "v2"]
# Methods that change something: a signed request with one of them is taken once.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _v2_message(timestamp: str, method: str, path_qs: str, body_sha256: str) -> bytes:
    """Newlines cannot occur in a timestamp, method or request target, and the body enters as
    its hash, so the message splits back into its parts one way only (v1's `.` can move
    between the path and the body)."""
    return f"v2\n{timestamp}\n{method.upper()}\n{path_qs}\n{body_sha256}".encode()


def request_signature(
    key: hmac.HMAC | bytes,
    timestamp: str,
    method: str,
    path_qs: str,
    body: bytes,
    scheme: Scheme = "v2",
) -> str:
    """The hex HMAC-SHA256 of a request: `v2` over `_v2_message`, `v1` (kept for existing
    clients) over `{timestamp}.{METHOD}.{path_qs}.{body}`."""
    mac = key.copy() if isinstance(key, hmac.HMAC) else signer(key)
    if scheme == "v2":
        mac.update(_v2_message(timestamp, method, path_qs, hashlib.sha256(body).hexdigest()))
    else:
        mac.update(f"{timestamp}.{method.upper()}.{path_qs}.".encode())
        mac.update(body)
    return mac.hexdigest()


_MALFORMED = "X-Juhe-Signature must look like v2=<hex> (or v1=<hex>, or both: v1=<hex>,v2=<hex>)"


def _schemes(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(","):
        scheme, sep, value = part.strip().partition("=")
        if not sep or not value or scheme in found:
            raise SignatureError("invalid_signature", _MALFORMED)
        found[scheme] = value
    return found


def request_digest(timestamp: str, method: str, path_qs: str, body: bytes) -> str:
    """What names a signed request for replay protection: the same whichever scheme signed
    it, so dropping one of two signatures does not make a repeat look new."""
    return hashlib.sha256(
        _v2_message(timestamp, method, path_qs, hashlib.sha256(body).hexdigest())
    ).hexdigest()


def replay_window_s(timestamp: int, now: float, tolerance_s: int) -> int:
    """How long a request must be remembered to refuse its repeats: until its timestamp
    leaves the window, and a second more for rounding."""
    return max(1, math.ceil(timestamp + tolerance_s - now) + 1)


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
    """A header may carry `v1`, `v2` or both; when `v2` is there it is the one that must
    hold, so a client that sends both is never judged by the weaker one."""
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("invalid_timestamp", "X-Juhe-Timestamp must be unix seconds") from None
    if abs(now - ts) > tolerance_s:
        raise SignatureError("stale_timestamp", "X-Juhe-Timestamp is outside the allowed window")
    schemes = _schemes(header)
    scheme: Scheme = "v2" if "v2" in schemes else "v1"
    given = schemes.get(scheme)
    if given is None:
        raise SignatureError("invalid_signature", _MALFORMED)
    expected = request_signature(key, timestamp, method, path_qs, body, scheme)
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
