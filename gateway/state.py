"""What every handler shares, opened at start-up and closed at shutdown."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

import aiohttp
import asyncpg
import msgspec
import orjson
from aiohttp import web
from redis.asyncio import Redis

from config import Settings
from domain.targets import UnsafeTarget, check_target
from gateway.errors import from_validation, invalid
from gateway.intake import Intake
from infra.alerts import OpsAlerts
from infra.channels import ChannelRegistry
from infra.fx import CachedRates
from infra.hotstore import HotStore
from infra.keys import Keys
from infra.merchants import MerchantDirectory
from infra.ratelimit import RateLimiter
from infra.risk import Judge
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
    risk: Judge  # for POST /risk/evaluate: the live rules and lists, as the risk pool has them


T = TypeVar("T")
EDGE = web.AppKey("edge", Edge)
# the route table the app was built from (gateway.routes), for the OpenAPI document
ROUTE_TABLE: web.AppKey[tuple[Any, ...]] = web.AppKey("routes", tuple)
REQUEST_ID = web.RequestKey("request_id", str)


def edge(request: web.Request) -> Edge:
    return request.app[EDGE]


# Whether this request's notify URLs may name private hosts: `notify.allow_private_targets`,
# set for each request by the edge middleware. Unset (any other caller) is the safe answer.
ALLOW_PRIVATE_TARGETS: ContextVar[bool] = ContextVar("allow_private_targets", default=False)


def decode(body: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body; any problem is a 400 naming the field. A webhook
    target (a `NotifyUrl` field) that Juhe must not POST to is `400 unsafe_url`."""
    try:
        value = msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc) from None
    allow_private = ALLOW_PRIVATE_TARGETS.get()
    for name in target_fields(type(value)):
        if (url := getattr(value, name)) is not None:
            try:
                check_target(url, allow_private=allow_private)
            except UnsafeTarget as exc:
                raise invalid("unsafe_url", f"{name}: {exc}", name) from None
    return value


@cache
def target_fields(kind: type) -> tuple[str, ...]:
    """The fields of a request struct marked as webhook targets (`extra={"webhook_target":
    True}` in their `Meta`), also inside `| None`."""
    if not issubclass(kind, msgspec.Struct):
        return ()

    def marked(hint: Any) -> bool:
        if get_origin(hint) is Annotated:
            return any(
                isinstance(m, msgspec.Meta) and (m.extra or {}).get("webhook_target")
                for m in hint.__metadata__
            )
        return any(marked(arg) for arg in get_args(hint))

    hints = get_type_hints(kind, include_extras=True)
    return tuple(name for name in kind.__struct_fields__ if marked(hints[name]))


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


async def known_cursor(
    request: web.Request, conn: asyncpg.Pool | asyncpg.Connection, exists: str, *scope: Any
) -> str | None:
    """`starting_after` of a list, checked to name an item the list could have shown (`exists`
    takes it as $1, then `scope`): a cursor that names nothing is a 400, not the first page."""
    after = request.query.get("starting_after")
    if after is not None and await conn.fetchval(exists, after, *scope) is None:
        raise invalid(
            "invalid_cursor", "starting_after names no item of this list", "starting_after"
        )
    return after


def page_answer(rows: Sequence[Any], limit: int, view: Callable[[Any], Any]) -> web.Response:
    """One page of a list: `rows` fetched with `limit + 1`, so the extra one says there is more."""
    data = [view(r) for r in rows[:limit]]
    return json_answer({"object": "list", "data": data, "has_more": len(rows) > limit})


def json_answer(value: Any, status: int = 200) -> web.Response:
    """A msgspec struct or plain data as a JSON response."""
    body = (
        msgspec.json.encode(value)
        if isinstance(value, msgspec.Struct)
        else orjson.dumps(value, default=msgspec.to_builtins)  # structs inside lists
    )
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
