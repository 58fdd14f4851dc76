"""What every handler shares, opened at start-up and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import aiohttp
import asyncpg
import msgspec
from aiohttp import web
from redis.asyncio import Redis

from adapters.base import ChannelAdapter
from config import Settings
from gateway.errors import from_validation, invalid
from gateway.intake import Intake
from infra.hotstore import HotStore
from infra.keys import Keys
from infra.merchants import MerchantDirectory
from infra.ratelimit import RateLimiter

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
    adapters: dict[str, ChannelAdapter]
    http: aiohttp.ClientSession
    keyring: Keyring
    policy: PolicyCache
    limiter: RateLimiter


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
