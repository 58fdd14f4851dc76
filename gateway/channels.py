"""Channel administration: `/api/v1/admin/channels` and `juhe channels` share these operations.

Every change is validated, written with its audit record in one transaction (credentials appear
in the audit log by name only), and announced on Redis, so every gateway and pool process
routes with it within a second. Channels are disabled, never deleted: payments and refunds
already on a channel must still reach it.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from adapters.registry import ADAPTERS, credentials
from domain.access import PLATFORM_OWNED
from gateway.access import actor, identify, require
from gateway.channel_schemas import (
    ChannelView,
    CreateChannel,
    SwitchOver,
    SwitchOverView,
    UpdateChannel,
)
from gateway.errors import ApiError, invalid
from gateway.state import Edge, decode, edge, json_answer
from infra import audit, channels
from infra.invalidation import announce
from infra.secretbox import SecretBox
from routing.breaker import CircuitBreakers
from routing.volume import DailyVolume

log = logging.getLogger("juhe.channels")


def missing(code: str) -> ApiError:
    return invalid("resource_missing", f"no channel {code!r}", "code", status=404)


def view(row: asyncpg.Record, box: SecretBox) -> ChannelView:
    spec = channels.spec_of(row, box)
    fields = channels.fields_of(spec)
    fields["credential_keys"] = sorted(fields.pop("credentials"))
    fields.update(
        object="channel",
        code=spec.code,
        version=spec.version,
        created_at=int(row["created_at"].timestamp()),
        updated_at=int(row["updated_at"].timestamp()),
    )
    return msgspec.convert(fields, ChannelView)


def switch_view(row: asyncpg.Record) -> SwitchOverView:
    return SwitchOverView(
        object="switch_over",
        merchant_id=row["merchant_id"],
        from_channel=row["from_channel"],
        to_channel=row["to_channel"],
        reason=row["reason"],
        created_at=int(row["created_at"].timestamp()),
    )


def _check(fields: dict[str, Any], current: asyncpg.Record | None = None) -> None:
    """What the field types cannot say: a known adapter with its credentials, a coherent
    amount range, one fee line per (method, currency)."""
    adapter = fields.get("adapter", current["adapter"] if current else None)
    if adapter not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise invalid("unknown_adapter", f"no adapter {adapter!r} (known: {known})", "adapter")
    if "credentials" in fields or "adapter" in fields:
        if "credentials" not in fields:
            raise invalid(
                "credentials_required", "a new adapter needs its credentials", "credentials"
            )
        lacking = [k for k in credentials(adapter) if k not in fields["credentials"]]
        if lacking:
            raise invalid(
                "credentials_incomplete",
                f"the {adapter} adapter needs credentials: {', '.join(lacking)}",
                "credentials",
            )
    low = fields.get("min_amount_minor", current["min_amount_minor"] if current else 0)
    high = fields.get("max_amount_minor", current["max_amount_minor"] if current else None)
    if high is not None and high < low:
        raise invalid("invalid_amount_range", "max_amount_minor is below min_amount_minor")
    lines = [(f["method"], f["currency"]) for f in fields.get("fees", [])]
    if len(lines) != len(set(lines)):
        raise invalid("duplicate_fee_line", "one fee line per method and currency", "fees")


async def create_channel(
    pg: asyncpg.Pool, box: SecretBox, who: audit.Actor, req: CreateChannel
) -> ChannelView:
    fields = msgspec.to_builtins(req)
    code = fields.pop("code")
    _check(fields)
    async with pg.acquire() as conn, conn.transaction():
        row = await channels.create(conn, box, code, fields)
        if row is None:
            raise invalid("channel_exists", f"a channel {code!r} exists", "code", status=409)
        created = view(row, box)
        await audit.append(
            conn, who, "channel.create", f"channel:{code}", after=msgspec.to_builtins(created)
        )
    return created


async def update_channel(
    pg: asyncpg.Pool, box: SecretBox, who: audit.Actor, code: str, req: UpdateChannel
) -> ChannelView:
    fields = msgspec.to_builtins(req)  # unset fields are left out
    expected = fields.pop("version", None)
    if not fields:
        raise invalid("nothing_to_change", "name at least one field to change")
    async with pg.acquire() as conn, conn.transaction():
        current = await conn.fetchrow("SELECT * FROM channels WHERE code = $1 FOR UPDATE", code)
        if current is None:
            raise missing(code)
        if expected is not None and expected != current["version"]:
            raise invalid(
                "version_conflict",
                f"the channel is at version {current['version']}; read it again",
                "version",
                status=409,
            )
        _check(fields, current)
        before = view(current, box)
        row = await channels.update(conn, box, code, fields)
        after = view(row, box)
        changes = msgspec.to_builtins(after)
        if "credentials" in fields:
            changes["credentials_replaced"] = True
        await audit.append(
            conn,
            who,
            "channel.update",
            f"channel:{code}",
            before=msgspec.to_builtins(before),
            after=changes,
        )
    return after


async def set_enabled(
    pg: asyncpg.Pool, box: SecretBox, who: audit.Actor, code: str, enabled: bool
) -> ChannelView:
    async with pg.acquire() as conn, conn.transaction():
        row = await channels.update(conn, box, code, {"enabled": enabled})
        if row is None:
            raise missing(code)
        await audit.append(
            conn,
            who,
            "channel.enable" if enabled else "channel.disable",
            f"channel:{code}",
            after={"enabled": enabled, "version": row["version"]},
        )
    return view(row, box)


async def switch_over(
    pg: asyncpg.Pool, who: audit.Actor, code: str, req: SwitchOver
) -> SwitchOverView:
    if req.to_channel == code:
        raise invalid("same_channel", "a channel cannot be switched over to itself", "to_channel")
    async with pg.acquire() as conn, conn.transaction():
        for name, param in ((code, "code"), (req.to_channel, "to_channel")):
            if await channels.fetch(conn, name) is None:
                raise invalid("resource_missing", f"no channel {name!r}", param, status=404)
        if req.merchant_id != channels.ALL_MERCHANTS and not await conn.fetchval(
            "SELECT true FROM merchants WHERE id = $1", req.merchant_id
        ):
            raise invalid("resource_missing", "no such merchant", "merchant_id", status=404)
        row = await channels.switch_over(
            conn, req.merchant_id, code, req.to_channel, req.reason or ""
        )
        answer = switch_view(row)
        await audit.append(
            conn, who, "channel.switch_over", f"channel:{code}", after=msgspec.to_builtins(answer)
        )
    return answer


async def switch_back(
    pg: asyncpg.Pool, who: audit.Actor, code: str, merchant_id: str
) -> SwitchOverView:
    async with pg.acquire() as conn, conn.transaction():
        row = await channels.end_switch_over(conn, merchant_id, code)
        if row is None:
            raise invalid(
                "resource_missing",
                f"no switch-over of {code!r} for merchant {merchant_id!r}",
                "merchant_id",
                status=404,
            )
        answer = switch_view(row)
        await audit.append(
            conn, who, "channel.switch_back", f"channel:{code}", before=msgspec.to_builtins(answer)
        )
    return answer


async def _admin(request: web.Request, permission: str, body: bytes = b"") -> audit.Actor:
    who = (await identify(request, body)).principal
    await require(request, who, permission, PLATFORM_OWNED)
    return actor(request, who)


async def _answer(e: Edge, payload: msgspec.Struct, status: int = 200) -> web.Response:
    """The change is committed: every process hears of it, and this one reloads at once (if
    that fails, its next version check catches up; the answer stands)."""
    await announce(e.redis, e.keys, channels=True)
    try:
        await e.channels.refresh()
    except Exception:
        log.warning("channel configuration not reloaded here yet", exc_info=True)
    return json_answer(payload, status)


async def list_channels(request: web.Request) -> web.Response:
    e = edge(request)
    await _admin(request, "channels:read")
    rows = await channels.fetch_all(e.pg)
    switches = await channels.switchovers(e.pg)
    return json_answer(
        {
            "object": "list",
            "data": [msgspec.to_builtins(view(r, e.box)) for r in rows],
            "switch_overs": [msgspec.to_builtins(switch_view(s)) for s in switches],
        }
    )


async def get_channel(request: web.Request) -> web.Response:
    """One channel with what routing sees of it now: today's routed volume per currency and
    whether its breaker lets traffic through."""
    e = edge(request)
    await _admin(request, "channels:read")
    code = request.match_info["code"]
    row = await channels.fetch(e.pg, code)
    if row is None:
        raise missing(code)
    breakers = CircuitBreakers(e.redis, e.keys, e.settings.breaker)
    answer = msgspec.structs.replace(
        view(row, e.box),
        routed_today=await DailyVolume(e.redis, e.keys).today(code),
        routable=await breakers.routable(code),
    )
    return json_answer(answer)


async def post_channel(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _admin(request, "channels:write", body)
    created = await create_channel(e.pg, e.box, who, decode(body, CreateChannel))
    return await _answer(e, created, 201)


async def patch_channel(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _admin(request, "channels:write", body)
    req = decode(body, UpdateChannel)
    return await _answer(e, await update_channel(e.pg, e.box, who, request.match_info["code"], req))


async def enable_channel(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _admin(request, "channels:write")
    return await _answer(e, await set_enabled(e.pg, e.box, who, request.match_info["code"], True))


async def disable_channel(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _admin(request, "channels:write")
    return await _answer(e, await set_enabled(e.pg, e.box, who, request.match_info["code"], False))


async def post_switch_over(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _admin(request, "channels:write", body)
    req = decode(body, SwitchOver)
    return await _answer(e, await switch_over(e.pg, who, request.match_info["code"], req), 201)


async def delete_switch_over(request: web.Request) -> web.Response:
    """`?merchant_id=` names the merchant whose switch-over ends (default `*`, everyone's)."""
    e = edge(request)
    who = await _admin(request, "channels:write")
    merchant_id = request.query.get("merchant_id", channels.ALL_MERCHANTS)
    ended = await switch_back(e.pg, who, request.match_info["code"], merchant_id)
    return await _answer(e, ended)
