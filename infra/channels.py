"""Channels in PostgreSQL, and the in-process registry every gateway and pool reads them from.

Writes bump one version number (`channel_config_version`) in the same transaction, and the
writer announces the change on Redis (infra.invalidation); each process's registry reloads
when it hears of it, and also checks the version every `RECHECK_S` in case it missed one.
Credentials are sealed with the channel code as context and opened only inside the registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import asyncpg
import orjson

from adapters.base import ChannelAdapter
from adapters.registry import build_adapter
from config.settings import Channel
from domain.channels import ChannelSpec, Credentials, FeeLine, FeeSchedule
from domain.fees import Rate
from infra import db, metrics
from infra.sealing import CHANNEL_CREDENTIALS
from infra.secretbox import SecretBox, SecretBoxError

log = logging.getLogger("juhe.channels")

RECHECK_S = 5.0
ALL_MERCHANTS = "*"
Conn = asyncpg.Connection | asyncpg.Pool


def seal_credentials(box: SecretBox, code: str, credentials: Mapping[str, str]) -> str:
    return CHANNEL_CREDENTIALS.seal(box, code, orjson.dumps(dict(credentials)).decode())


def credentials_of(row: asyncpg.Record, box: SecretBox) -> Credentials:
    return Credentials(
        orjson.loads(box.open(row["credentials"], CHANNEL_CREDENTIALS.context(row["code"])))
    )


def spec_of(row: asyncpg.Record, box: SecretBox) -> ChannelSpec:
    fees = tuple(
        FeeLine(
            bps=line["bps"],
            fixed_minor=line.get("fixed_minor", 0),
            method=line.get("method"),
            currency=line.get("currency"),
        )
        for line in orjson.loads(row["fees"])
    )
    return ChannelSpec(
        code=row["code"],
        adapter=row["adapter"],
        base_url=row["base_url"],
        credentials=credentials_of(row, box),
        timeout_ms=row["timeout_ms"],
        retries=row["retries"],
        methods=frozenset(row["methods"]),
        currencies=frozenset(row["currencies"]),
        min_amount_minor=row["min_amount_minor"],
        max_amount_minor=row["max_amount_minor"],
        daily_caps={c: int(v) for c, v in orjson.loads(row["daily_caps"]).items()},
        fees=FeeSchedule(fees),
        settlement_currency=row["settlement_currency"],
        priority=row["priority"],
        weight=row["weight"],
        enabled=row["enabled"],
        version=row["version"],
    )


def spec_from_config(code: str, settings: Channel) -> ChannelSpec:
    """A channel of the config file: what a fresh database starts with."""
    return ChannelSpec(
        code=code,
        adapter=settings.adapter,
        base_url=settings.base_url,
        credentials=Credentials({"api_key": settings.api_key, "secret": settings.secret}),
        timeout_ms=settings.timeout_ms,
        retries=settings.retries,
        methods=frozenset(settings.methods),
        currencies=frozenset(settings.currencies),
        min_amount_minor=settings.min_amount_minor,
        max_amount_minor=settings.max_amount_minor,
        fees=FeeSchedule.flat(Rate(settings.cost_bps, settings.cost_fixed_minor)),
        priority=settings.priority,
        weight=settings.weight,
    )


def fields_of(spec: ChannelSpec) -> dict[str, Any]:
    """A spec as the column values `create` and `update` take."""
    return {
        "adapter": spec.adapter,
        "base_url": spec.base_url,
        "credentials": dict(spec.credentials),
        "timeout_ms": spec.timeout_ms,
        "retries": spec.retries,
        "methods": sorted(spec.methods),
        "currencies": sorted(spec.currencies),
        "min_amount_minor": spec.min_amount_minor,
        "max_amount_minor": spec.max_amount_minor,
        "daily_caps": dict(spec.daily_caps),
        "fees": [fee_doc(line) for line in spec.fees.lines],
        "settlement_currency": spec.settlement_currency,
        "priority": spec.priority,
        "weight": spec.weight,
        "enabled": spec.enabled,
    }


def fee_doc(line: FeeLine) -> dict[str, Any]:
    return {
        "bps": line.bps,
        "fixed_minor": line.fixed_minor,
        "method": line.method,
        "currency": line.currency,
    }


_JSON_COLUMNS = {"daily_caps", "fees"}
COLUMNS = (
    "adapter",
    "base_url",
    "timeout_ms",
    "retries",
    "methods",
    "currencies",
    "min_amount_minor",
    "max_amount_minor",
    "daily_caps",
    "fees",
    "settlement_currency",
    "priority",
    "weight",
    "enabled",
)


def _values(box: SecretBox, code: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for the fields given: JSON columns encoded, credentials sealed."""
    values = {
        k: orjson.dumps(v).decode() if k in _JSON_COLUMNS else v
        for k, v in fields.items()
        if k in COLUMNS
    }
    if "credentials" in fields:
        values["credentials"] = seal_credentials(box, code, fields["credentials"])
    return values


async def _bump(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "UPDATE channel_config_version SET version = version + 1 RETURNING version"
    )


async def create(
    conn: asyncpg.Connection, box: SecretBox, code: str, fields: Mapping[str, Any]
) -> asyncpg.Record | None:
    """None when the code is taken."""
    values = _values(box, code, fields)
    names = ["code", *values]
    row = await conn.fetchrow(
        f"INSERT INTO channels ({', '.join(names)}) "
        f"VALUES ({', '.join(f'${n + 1}' for n in range(len(names)))}) "
        "ON CONFLICT (code) DO NOTHING RETURNING *",
        code,
        *values.values(),
    )
    if row is not None:
        await _bump(conn)
    return row


async def update(
    conn: asyncpg.Connection, box: SecretBox, code: str, fields: Mapping[str, Any]
) -> asyncpg.Record | None:
    """None when there is no such channel. Fields not given keep their values."""
    values = _values(box, code, fields)
    sets = [f"{name} = ${n + 2}" for n, name in enumerate(values)]
    row = await conn.fetchrow(
        f"UPDATE channels SET {', '.join([*sets, 'version = version + 1', 'updated_at = now()'])} "
        "WHERE code = $1 RETURNING *",
        code,
        *values.values(),
    )
    if row is not None:
        await _bump(conn)
    return row


async def fetch(conn: Conn, code: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM channels WHERE code = $1", code)


async def fetch_all(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM channels ORDER BY priority, code")


async def seed(conn: asyncpg.Connection, box: SecretBox, channels: Mapping[str, Channel]) -> int:
    """Config-file channels the database lacks are created; existing rows are left as they
    are, so a change made through the API is never undone by a restart."""
    created = 0
    for code, settings in channels.items():
        created += (
            await create(conn, box, code, fields_of(spec_from_config(code, settings))) is not None
        )
    return created


async def switch_over(
    conn: asyncpg.Connection, merchant_id: str, from_channel: str, to_channel: str, reason: str
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO channel_switchovers (merchant_id, from_channel, to_channel, reason)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (merchant_id, from_channel)
           DO UPDATE SET to_channel = $3, reason = $4, created_at = now()
           RETURNING *""",
        merchant_id,
        from_channel,
        to_channel,
        reason,
    )
    await _bump(conn)
    return row


async def end_switch_over(
    conn: asyncpg.Connection, merchant_id: str, from_channel: str
) -> asyncpg.Record | None:
    row = await conn.fetchrow(
        "DELETE FROM channel_switchovers WHERE merchant_id = $1 AND from_channel = $2 RETURNING *",
        merchant_id,
        from_channel,
    )
    if row is not None:
        await _bump(conn)
    return row


async def switchovers(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM channel_switchovers ORDER BY merchant_id, from_channel")


Listener = Callable[[Mapping[str, ChannelSpec]], Awaitable[None]]


class ChannelRegistry:
    """This process's copy of every channel and switch-over, and an adapter per channel.

    Adapters are rebuilt only for channels whose version changed. Listeners run after each
    reload, before the new copy is used for routing, so a pool can declare a new channel's
    queue before any payment is sent to it.
    """

    def __init__(
        self,
        pg: asyncpg.Pool,
        box: SecretBox,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self._pg = pg
        self._box = box
        self._http = http
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._adapters: dict[str, tuple[int, ChannelAdapter]] = {}
        self.version = -1
        self.specs: dict[str, ChannelSpec] = {}
        self._switches: dict[str, dict[str, str]] = {}

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def enabled(self) -> list[ChannelSpec]:
        return [s for s in self.specs.values() if s.enabled]

    def switches(self, merchant_id: str | None) -> dict[str, str]:
        """Standing switch-overs for a merchant: its own over the platform-wide ones."""
        merged = dict(self._switches.get(ALL_MERCHANTS, {}))
        if merchant_id:
            merged.update(self._switches.get(merchant_id, {}))
        return merged

    def adapter(self, code: str) -> ChannelAdapter | None:
        spec = self.specs.get(code)
        if spec is None or self._http is None:
            return None
        held = self._adapters.get(code)
        if held is None or held[0] != spec.version:
            held = (spec.version, build_adapter(spec, self._http, self._pg))
            self._adapters[code] = held
        return held[1]

    async def refresh(self) -> bool:
        """Reload when the database holds a newer version; True when something changed."""
        async with self._lock:
            async with self._pg.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                version = await conn.fetchval("SELECT version FROM channel_config_version")
                if version == self.version:
                    return False
                rows = await fetch_all(conn)
                switch_rows = await switchovers(conn)
            specs: dict[str, ChannelSpec] = {}
            for row in rows:
                try:
                    specs[row["code"]] = spec_of(row, self._box)
                except Exception:
                    # One unreadable row (a key missing here) must not take every channel down.
                    log.exception("channel not loaded", extra={"channel": row["code"]})
            switches: dict[str, dict[str, str]] = {}
            for s in switch_rows:
                switches.setdefault(s["merchant_id"], {})[s["from_channel"]] = s["to_channel"]
            for listener in self._listeners:
                await listener(specs)
            previous = self.version
            self.specs, self._switches, self.version = specs, switches, version
            metrics.channel_config_version.set(version)
            log.info(
                "channel configuration loaded",
                extra={"version": version, "previous": previous, "channels": len(specs)},
            )
            return True


async def stored_credentials(dsn: str, box: SecretBox) -> dict[str, Credentials]:
    """Every channel's credentials that open with these keys, by code (for the start-up check
    of published secrets); one that does not open here is not loaded by the registry either."""
    conn = await db.connect(dsn)
    try:
        rows = await fetch_all(conn)
    finally:
        await conn.close()
    opened: dict[str, Credentials] = {}
    for row in rows:
        try:
            opened[row["code"]] = credentials_of(row, box)
        except SecretBoxError:
            continue
    return opened


async def seed_from_config(dsn: str, channels: Mapping[str, Channel], box: SecretBox) -> int:
    """Run after migrations: a fresh database starts with the config file's channels."""
    conn = await db.connect(dsn)
    try:
        async with conn.transaction():
            return await seed(conn, box, channels)
    finally:
        await conn.close()
