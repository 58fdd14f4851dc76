"""What every handler shares, opened at start-up and closed at shutdown."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import asyncpg
import msgspec
import orjson
from aiohttp import web
from redis.asyncio import Redis

from config import Settings
from gateway.errors import from_validation, invalid
from gateway.intake import Intake
from infra.alerts import OpsAlerts
from infra.channels import ChannelRegistry
from infra.fx import CachedRates
from infra.hotstore import HotStore
from infra.keys import Keys
from infra.merchants import MerchantDirectory
from infra.ratelimit import RateLimiter
from infra.secretbox import SecretBox

if TYPE_CHECKING:
    from gateway.access import Keyring, PolicyCache


@dataclass
class Edge:
    settings: Settings
    pg: asyncpg.Pool
    redis: Redis
    keys: Keys
    hot: HotStore
    intake: Intake
    merchants: MerchantDirectory
    channels: ChannelRegistry
    http: aiohttp.ClientSession
    keyring: Keyring
    policy: PolicyCache
    limiter: RateLimiter
    box: SecretBox
    alerts: OpsAlerts
    rates: CachedRates


T = TypeVar("T")
EDGE = web.AppKey("edge", Edge)
REQUEST_ID = web.RequestKey("request_id", str)


def edge(request: web.Request) -> Edge:
    return request.app[EDGE]


def decode(body: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body; any problem is a 400 naming the field."""
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc) from None


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise invalid(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 characters",
            "Idempotency-Key",
        )
    return key


def page_limit(request: web.Request, default: int) -> int:
    """`limit` of a list request (DESIGN.md: 1–100)."""
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        raise invalid("invalid_field", "limit must be an integer", "limit") from None
    if not 1 <= limit <= 100:
        raise invalid("invalid_field", "limit must be between 1 and 100", "limit")
    return limit


def json_answer(value: Any, status: int = 200) -> web.Response:
    """A msgspec struct or plain data as a JSON response."""
    body = msgspec.json.encode(value) if isinstance(value, msgspec.Struct) else orjson.dumps(value)
    return web.Response(body=body, status=status, content_type="application/json")


def int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid("invalid_field", f"{name} must be an integer", name) from None


def csv_answer(rows: list[dict[str, Any]], fields: list[str], filename: str) -> web.Response:
    """An export as a CSV download (the whole selection, not a page)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
