"""Merchants and their API keys, read from PostgreSQL and cached in-process.

The gateway authenticates every request from this cache, so a create costs no database round
trip; a key unknown to the cache is looked up once and remembered (also when absent, briefly,
so a flood of bad keys cannot reach the database). Key secrets are stored sealed and opened
once per cache load, never per request.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from domain.access import API_KEY_PERMISSIONS, Principal, Realm
from domain.ids import new_id
from domain.risk import MerchantLimits
from domain.signing import signer
from infra.sealing import API_KEY, WEBHOOK
from infra.secretbox import SecretBox
from routing.strategies import Rule, Strategy


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str
    notify_url: str
    status: str
    limits: MerchantLimits
    methods: frozenset[str] | None = None  # the enabled payment methods; None: any
    rules: tuple[Rule, ...] = ()  # routing rules, tried in order
    agents: tuple[str, ...] = ()  # its agent chain, nearest first (risk rules' `agents`)

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    merchant_id: str
    signer: hmac.HMAC  # pre-keyed: copying it is cheaper than keying HMAC per request
    principal: Principal  # what the key may do, built once with the cache entry


def _merchant(row: asyncpg.Record) -> Merchant:
    def amounts(raw: str) -> dict[str, int]:
        return {c: int(v) for c, v in orjson.loads(raw).items()}

    config = orjson.loads(row["config"])

    return Merchant(
        id=row["id"],
        name=row["name"],
        notify_url=row["notify_url"],
        status=row["status"],
        limits=MerchantLimits(
            currencies=frozenset(row["currencies"]),
            min_amount=amounts(row["min_amount"]),
            max_amount=amounts(row["max_amount"]),
        ),
        methods=frozenset(m) if (m := config.get("methods")) else None,
        rules=routing_rules(config),
        agents=tuple(reversed(path.split("."))) if (path := row.get("agent_path")) else (),
    )


def routing_rules(config: dict[str, Any]) -> tuple[Rule, ...]:
    """A merchant's rules from its payment configuration; a bare channel list is a priority
    rule over those channels."""
    rules = tuple(
        Rule(
            strategy=Strategy(r["strategy"]),
            channels=tuple(r.get("channels") or ()),
            methods=frozenset(r.get("methods") or ()),
            currencies=frozenset(r.get("currencies") or ()),
            min_amount=r.get("min_amount_minor"),
            max_amount=r.get("max_amount_minor"),
            countries=frozenset(r.get("countries") or ()),
        )
        for r in config.get("routing") or ()
    )
    if config.get("channels"):
        rules += (Rule(Strategy.PRIORITY, tuple(config["channels"])),)
    return rules


class MerchantDirectory:
    def __init__(
        self, pg: asyncpg.Pool, box: SecretBox, ttl_s: float, miss_ttl_s: float = 2.0
    ) -> None:
        self._pg = pg
        self._box = box
        self._ttl = ttl_s
        self._miss_ttl = miss_ttl_s
        self._keys: dict[str, tuple[float, ApiKey | None]] = {}
        self._merchants: dict[str, tuple[float, Merchant | None]] = {}
        self._used: dict[str, float] = {}

    async def key(self, key_id: str) -> ApiKey | None:
        hit = self._keys.get(key_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            if hit[1] is not None:
                self._used[key_id] = time.time()
            return hit[1]
        row = await self._pg.fetchrow(
            "SELECT key_id, merchant_id, secret, permissions, "
            "extract(epoch FROM expires_at - now()) AS expires_in FROM api_keys "
            "WHERE key_id = $1 AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())",
            key_id,
        )
        if row is None:
            self._keys[key_id] = (now + self._miss_ttl, None)
            return None
        key = ApiKey(
            row["key_id"],
            row["merchant_id"],
            signer(API_KEY.open(self._box, row["key_id"], row["secret"]).encode()),
            Principal(
                kind="api_key",
                id=row["key_id"],
                realm=Realm.MERCHANT,
                org_id=row["merchant_id"],
                permissions=API_KEY_PERMISSIONS
                if row["permissions"] is None
                else frozenset(row["permissions"]),
            ),
        )
        # A key rotated out with an overlap is not trusted past its expiry, cached or not.
        life = self._ttl if row["expires_in"] is None else min(self._ttl, float(row["expires_in"]))
        self._keys[key_id] = (now + life, key)
        self._used[key_id] = time.time()
        return key

    def forget(self, merchant_id: str | None = None, key_id: str | None = None) -> None:
        """Drop cached entries this process changed (other processes follow within the TTL)."""
        if merchant_id is not None:
            self._merchants.pop(merchant_id, None)
        if key_id is not None:
            self._keys.pop(key_id, None)

    async def flush_usage(self) -> int:
        """Write keys' last-used times, batched: the request path only notes them in memory."""
        used, self._used = self._used, {}
        if used:
            await self._pg.execute(
                """UPDATE api_keys k SET last_used_at = to_timestamp(u.t)
                   FROM unnest($1::text[], $2::float8[]) AS u(id, t)
                   WHERE k.key_id = u.id
                     AND (k.last_used_at IS NULL OR k.last_used_at < to_timestamp(u.t))""",
                list(used),
                list(used.values()),
            )
        return len(used)

    async def merchant(self, merchant_id: str) -> Merchant | None:
        hit = self._merchants.get(merchant_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        row = await self._pg.fetchrow(
            "SELECT m.*, a.path::text AS agent_path FROM merchants m "
            "LEFT JOIN agents a ON a.id = m.agent_id WHERE m.id = $1",
            merchant_id,
        )
        merchant = _merchant(row) if row else None
        self._merchants[merchant_id] = (now + (self._ttl if merchant else self._miss_ttl), merchant)
        return merchant


def _amounts_json(amounts: dict[str, int] | None) -> str:
    return orjson.dumps({c: str(v) for c, v in (amounts or {}).items()}).decode()


async def add_api_key(
    conn: asyncpg.Connection | asyncpg.Pool,
    box: SecretBox,
    merchant_id: str,
    permissions: list[str] | None = None,
) -> tuple[str, str]:
    """A new signing key for the merchant: (key id, secret). The secret is stored sealed and
    shown once."""
    key_id, secret = new_id("key"), "sk_" + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_keys (key_id, merchant_id, secret, permissions) VALUES ($1, $2, $3, $4)",
        key_id,
        merchant_id,
        API_KEY.seal(box, key_id, secret),
        permissions,
    )
    return key_id, secret


@dataclass(frozen=True, slots=True)
class NewMerchant:
    id: str
    key_id: str
    secret: str
    webhook_secret: str


async def create_merchant(
    conn: asyncpg.Connection | asyncpg.Pool,
    box: SecretBox,
    *,
    name: str,
    notify_url: str,
    currencies: list[str],
    fee_bps: int,
    fee_fixed_minor: int = 0,
    min_amount: dict[str, int] | None = None,
    max_amount: dict[str, int] | None = None,
    status: str = "active",
) -> NewMerchant:
    """A merchant and its first API key; both secrets are stored sealed and shown once. The key
    works once the merchant is `active`."""
    created = NewMerchant(
        id=new_id("mch"),
        key_id=new_id("key"),
        secret="sk_" + secrets.token_urlsafe(32),
        webhook_secret="whsec_" + secrets.token_urlsafe(32),
    )
    await conn.execute(
        """WITH m AS (
               INSERT INTO merchants (id, name, notify_url, currencies, fee_bps, fee_fixed_minor,
                                      min_amount, max_amount, webhook_secret, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $12) RETURNING id)
           INSERT INTO api_keys (key_id, merchant_id, secret) SELECT $10, id, $11 FROM m""",
        created.id,
        name,
        notify_url,
        currencies,
        fee_bps,
        fee_fixed_minor,
        _amounts_json(min_amount),
        _amounts_json(max_amount),
        WEBHOOK.seal(box, created.id, created.webhook_secret),
        created.key_id,
        API_KEY.seal(box, created.key_id, created.secret),
        status,
    )
    return created
