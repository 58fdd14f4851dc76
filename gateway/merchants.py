"""Merchant endpoints (seed §4.2): registration with KYC review, profile, payment
configuration, transactions, and API keys.

A merchant registers itself (under an agent only with that agent's invitation) and may take
payments only once the platform has reviewed and activated it. KYC goes in as submitted; the
bank account is sealed (infra.secretbox) and shown only by its last four digits. Fees,
currencies, methods and channels are the platform's or the merchant's agents' to set; URLs and
settlement the merchant's too. Every change is audited.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import orjson
from aiohttp import web

from domain.access import Principal, Realm
from domain.agents import Grant
from domain.fees import Rate
from domain.ids import new_id
from domain.onboarding import (
    Onboarding,
    ReferralRefused,
    can_move,
    platform_only,
    referring_agent,
)
from domain.tokens import split_secret_token
from domain.views import payment_view
from gateway.access import (
    actor,
    client_ip,
    identify,
    merchant_owner,
    require,
    require_grant,
    require_pricing,
)
from gateway.admin import require_strong_password
from gateway.agents import check_merchant_price
from gateway.errors import ApiError, email_taken, invalid
from gateway.merchant_schemas import (
    BankAccount,
    PaymentConfig,
    RegisterMerchant,
    RotateKey,
    UpdateMerchant,
)
from gateway.state import (
    REQUEST_ID,
    Edge,
    csv_answer,
    decode,
    edge,
    int_query,
    json_answer,
    page_limit,
)
from infra import agents, audit, identity
from infra.invalidation import announce
from infra.merchants import add_api_key
from infra.sealing import BANK_ACCOUNT, WEBHOOK

_CSV_FIELDS = ["id", "created", "status", "amount", "currency", "merchant_order_id", "fee"]
# What a payment costs and where it may go: the platform's or the merchant's agents' to set.
_PAYMENT_TERMS = {"methods", "currencies", "channels", "routing", "fee_bps", "fee_fixed_minor"}
_DIGITS = re.compile(r"\D")


def _forbidden(code: str, message: str) -> ApiError:
    return ApiError(403, "permission_error", code, message)


def _last4(account: BankAccount) -> str:
    return _DIGITS.sub("", account.number)[-4:] or account.number[-4:]


def _sealed_account(e: Edge, merchant_id: str, account: BankAccount) -> str:
    return BANK_ACCOUNT.seal(
        e.box, merchant_id, orjson.dumps(msgspec.to_builtins(account)).decode()
    )


MERCHANT_SQL = """SELECT m.*, k.legal, k.owners, k.documents, k.bank_account_last4
               FROM merchants m LEFT JOIN merchant_kyc k ON k.merchant_id = m.id"""


async def _view(conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(MERCHANT_SQL + " WHERE m.id = $1", merchant_id)
    if row is None:
        raise invalid("resource_missing", "no such merchant", "merchantId", status=404)
    return merchant_view(row)


def merchant_view(row: asyncpg.Record) -> dict[str, Any]:
    """A merchant as its owner and the platform read it: the bank account by its last four."""
    config = orjson.loads(row["config"])
    return {
        "id": row["id"],
        "object": "merchant",
        "name": row["name"],
        "email": row["email"],
        "status": row["status"],
        "agent_id": row["agent_id"],
        "currencies": list(row["currencies"]),
        "fee_bps": row["fee_bps"],
        "fee_fixed_minor": row["fee_fixed_minor"],
        "notify_url": row["notify_url"],
        "return_url": row["return_url"],
        "config": config,
        "kyc": None
        if row["legal"] is None
        else {
            "legal": orjson.loads(row["legal"]),
            "owners": orjson.loads(row["owners"]),
            "documents": orjson.loads(row["documents"]),
            "bank_account": "****" + row["bank_account_last4"],
        },
        "created": int(row["created_at"].timestamp()),
    }


async def register(request: web.Request) -> web.Response:
    e = edge(request)
    req = decode(await request.read(), RegisterMerchant)
    if not await e.limiter.hit("register", client_ip(request), e.settings.auth.login_limit_per_ip):
        raise ApiError(429, "rate_limit_error", "too_many_attempts", "too many registrations")
    await require_strong_password(e, req.password, req.email)
    merchant_id, webhook_secret = new_id("mch"), "whsec_" + secrets.token_urlsafe(32)
    fees = e.settings.fees
    async with e.pg.acquire() as conn, conn.transaction():
        agent_id = await _referrer(conn, req, merchant_id)
        await conn.execute(
            """INSERT INTO merchants (id, name, email, notify_url, return_url, currencies, fee_bps,
                                      fee_fixed_minor, webhook_secret, status, agent_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'submitted', $10)""",
            merchant_id,
            req.name,
            req.email,
            req.notify_url,
            req.return_url,
            req.currencies,
            fees.merchant_bps,
            fees.merchant_fixed_minor,
            WEBHOOK.seal(e.box, merchant_id, webhook_secret),
            agent_id,
        )
        await conn.execute(
            """INSERT INTO merchant_kyc (merchant_id, legal, owners, documents, bank_account,
                                         bank_account_last4)
               VALUES ($1, $2::jsonb, $3::jsonb, $4::jsonb, $5, $6)""",
            merchant_id,
            msgspec.json.encode(req.legal).decode(),
            msgspec.json.encode(req.owners).decode(),
            msgspec.json.encode(req.documents).decode(),
            _sealed_account(e, merchant_id, req.bank_account),
            _last4(req.bank_account),
        )
        key_id, secret = await add_api_key(conn, e.box, merchant_id)
        user_id = await identity.create_user(
            conn,
            email=req.email,
            realm=Realm.MERCHANT,
            org_id=merchant_id,
            password=req.password,
            roles=["merchant_owner"],
        )
        if user_id is None:
            raise email_taken()
        if agent_id is not None:
            await agents.bump(conn)
        await audit.append(
            conn,
            audit.Actor(f"user:{user_id}", "merchant", client_ip(request), request.get(REQUEST_ID)),
            "merchant.register",
            f"merchant:{merchant_id}",
            after={"name": req.name, "email": req.email, "agent_id": agent_id},
        )
        view = await _view(conn, merchant_id)
    # The keys are shown once; they work when the merchant is active.
    answer = {**view, "key_id": key_id, "secret": secret, "webhook_secret": webhook_secret}
    return json_answer(answer, 201)


async def _referrer(
    conn: asyncpg.Connection, req: RegisterMerchant, merchant_id: str
) -> str | None:
    """The agent a merchant applies under: the one whose invitation it carries, which is used
    up here (in the registration's transaction, so a refused registration leaves it unused)."""
    parts = split_secret_token(req.invitation, "inv") if req.invitation is not None else None
    invited_by = await agents.redeem_invitation(conn, *parts, merchant_id) if parts else None
    try:
        agent_id = referring_agent(req.agent_id, req.invitation is not None, invited_by)
    except ReferralRefused as exc:
        raise ApiError(403, "permission_error", exc.code, exc.message, exc.param) from None
    if agent_id is not None:
        agent = await agents.agent(conn, agent_id)
        if agent is None or agent["status"] != Onboarding.ACTIVE:
            raise invalid("agent_inactive", "the inviting agent is not active", "invitation", 409)
    return agent_id


async def _target(
    request: web.Request, permission: str, body: bytes = b""
) -> tuple[Edge, Principal, str]:
    e = edge(request)
    who = (await identify(request, body)).principal
    merchant_id = request.match_info["id"]
    if await e.pg.fetchval("SELECT 1 FROM merchants WHERE id = $1", merchant_id) is None:
        await require(request, who, permission)
        raise invalid("resource_missing", "no such merchant", "merchantId", status=404)
    await require(request, who, permission, await merchant_owner(e, merchant_id))
    return e, who, merchant_id


async def get_merchant(request: web.Request) -> web.Response:
    e, _, merchant_id = await _target(request, "merchants:read")
    return json_answer(await _view(e.pg, merchant_id))


async def update_merchant(request: web.Request) -> web.Response:
    body = await request.read()
    e, who, merchant_id = await _target(request, "merchants:write", body)
    req = decode(body, UpdateMerchant)
    async with e.pg.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT * FROM merchants WHERE id = $1 FOR UPDATE", merchant_id
        )
        changes: dict[str, Any] = {}
        if req.status is not None:
            status, target = Onboarding(current["status"]), Onboarding(req.status)
            if who.realm is Realm.MERCHANT:
                raise _forbidden("not_own_status", "a merchant's status is not its own to set")
            if platform_only(status, target) and who.realm is not Realm.PLATFORM:
                raise _forbidden("platform_only", "reviews and activation are the platform's")
            await require_grant(request, who, Grant.SUSPEND_CHILDREN)
            if not can_move(status, target):
                raise invalid(
                    "invalid_transition",
                    f"a merchant in status {status.value} cannot become {target.value}",
                    "status",
                    409,
                )
            changes["status"] = target.value
            await conn.execute(
                "INSERT INTO merchant_reviews (merchant_id, reviewer, from_status, to_status, "
                "reason) VALUES ($1, $2, $3, $4, $5)",
                merchant_id,
                who.actor,
                status.value,
                target.value,
                req.reason,
            )
        for field in ("name", "email"):
            if (value := getattr(req, field)) is not None:
                changes[field] = value
        if changes:
            sets = ", ".join(f"{k} = ${n}" for n, k in enumerate(changes, start=2))
            await conn.execute(
                f"UPDATE merchants SET {sets} WHERE id = $1", merchant_id, *changes.values()
            )
            await audit.append(
                conn,
                actor(request, who),
                "merchant.review" if "status" in changes else "merchant.update",
                f"merchant:{merchant_id}",
                before={k: current[k] for k in changes},
                after={**changes, **({"reason": req.reason} if req.reason else {})},
            )
        view = await _view(conn, merchant_id)
    await announce(e.redis, e.keys, e.merchants, merchant_id=merchant_id)
    return json_answer(view)


async def payment_config(request: web.Request) -> web.Response:
    body = await request.read()
    e, who, merchant_id = await _target(request, "merchants:write", body)
    req = decode(body, PaymentConfig)
    given = {f for f in msgspec.structs.asdict(req) if getattr(req, f) is not None}
    if given & _PAYMENT_TERMS:
        await require_pricing(request, who)
    async with e.pg.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT * FROM merchants WHERE id = $1 FOR UPDATE", merchant_id
        )
        config = orjson.loads(current["config"])
        before = {"config": dict(config), **{k: current[k] for k in ("fee_bps", "fee_fixed_minor")}}
        fee = Rate(
            req.fee_bps if req.fee_bps is not None else current["fee_bps"],
            req.fee_fixed_minor if req.fee_fixed_minor is not None else current["fee_fixed_minor"],
        )
        currencies = req.currencies if req.currencies is not None else list(current["currencies"])
        if current["agent_id"] is not None:
            await check_merchant_price(conn, current["agent_id"], currencies, fee)
        for field in ("methods", "channels", "routing"):
            if (value := getattr(req, field)) is not None:
                config[field] = msgspec.to_builtins(value)
        if req.settlement is not None:
            config["settlement"] = {"cycle": req.settlement.cycle}
            if req.settlement.account is not None:
                config["settlement"]["account"] = _sealed_account(
                    e, merchant_id, req.settlement.account
                )
                config["settlement"]["account_last4"] = _last4(req.settlement.account)
        await conn.execute(
            """UPDATE merchants SET fee_bps = $2, fee_fixed_minor = $3, currencies = $4,
                      notify_url = coalesce($5, notify_url), return_url = coalesce($6, return_url),
                      config = $7::jsonb WHERE id = $1""",
            merchant_id,
            fee.bps,
            fee.fixed,
            currencies,
            req.notify_url,
            req.return_url,
            orjson.dumps(config).decode(),
        )
        await audit.append(
            conn,
            actor(request, who),
            "merchant.config",
            f"merchant:{merchant_id}",
            before=before,
            after={k: v for k, v in msgspec.to_builtins(req).items() if k in given},
        )
        view = await _view(conn, merchant_id)
    await announce(e.redis, e.keys, e.merchants, merchant_id=merchant_id)
    if "account" in (settlement := view["config"].get("settlement") or {}):
        settlement["account"] = "****" + settlement.pop("account_last4")
    return json_answer(view)


async def transactions(request: web.Request) -> web.Response:
    """Payments newest first; filters `status`, `currency`, `since`/`until` (unix seconds);
    `starting_after` pages; `format=csv` exports the whole selection."""
    e, _, merchant_id = await _target(request, "payments:read")
    since, until = int_query(request, "since"), int_query(request, "until")
    csv_export = request.query.get("format") == "csv"
    limit = None if csv_export else page_limit(request, 50)
    rows = await e.pg.fetch(
        """SELECT * FROM payments WHERE merchant_id = $1
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR currency = $3)
             AND ($4::timestamptz IS NULL OR created_at >= $4)
             AND ($5::timestamptz IS NULL OR created_at < $5)
             AND ($6::text IS NULL OR id < $6)
           ORDER BY id DESC LIMIT $7""",
        merchant_id,
        request.query.get("status"),
        request.query.get("currency"),
        datetime.fromtimestamp(since, UTC) if since is not None else None,
        datetime.fromtimestamp(until, UTC) if until is not None else None,
        request.query.get("starting_after"),
        (limit + 1) if limit else None,
    )
    url = e.settings.gateway.public_url
    data = [payment_view(r, url) for r in rows]
    if csv_export:
        return csv_answer(data, _CSV_FIELDS, f"{merchant_id}-payments.csv")
    assert limit is not None
    return json_answer({"object": "list", "data": data[:limit], "has_more": len(data) > limit})


def _key_view(row: asyncpg.Record) -> dict[str, Any]:
    def ts(value: datetime | None) -> int | None:
        return int(value.timestamp()) if value else None

    return {
        "key_id": row["key_id"],
        "object": "api_key",
        "merchant_id": row["merchant_id"],
        "permissions": row["permissions"],
        "created": ts(row["created_at"]),
        "last_used": ts(row["last_used_at"]),
        "expires_at": ts(row["expires_at"]),
        "revoked_at": ts(row["revoked_at"]),
    }


async def list_keys(request: web.Request) -> web.Response:
    e, _, merchant_id = await _target(request, "keys:manage")
    await e.merchants.flush_usage()
    rows = await e.pg.fetch(
        "SELECT * FROM api_keys WHERE merchant_id = $1 ORDER BY created_at DESC", merchant_id
    )
    return json_answer({"object": "list", "data": [_key_view(r) for r in rows], "has_more": False})


async def _live_key(conn: asyncpg.Connection, merchant_id: str, key_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM api_keys WHERE key_id = $1 AND merchant_id = $2 FOR UPDATE",
        key_id,
        merchant_id,
    )
    if row is None:
        raise invalid("resource_missing", "no such API key", "keyId", status=404)
    if row["revoked_at"] is not None:
        raise invalid("key_revoked", "this key is revoked", "keyId", status=409)
    return row


async def rotate_key(request: web.Request) -> web.Response:
    """A new key with the same permissions; the old one keeps working for `overlap_s` so the
    merchant can deploy the new one without a gap."""
    body = await request.read()
    e, who, merchant_id = await _target(request, "keys:manage", body)
    req = decode(body, RotateKey) if body else RotateKey()
    async with e.pg.acquire() as conn, conn.transaction():
        old = await _live_key(conn, merchant_id, request.match_info["keyId"])
        expires = datetime.now(UTC) + timedelta(seconds=req.overlap_s)
        await conn.execute(
            "UPDATE api_keys SET expires_at = least(coalesce(expires_at, $2), $2) "
            "WHERE key_id = $1",
            old["key_id"],
            expires,
        )
        key_id, secret = await add_api_key(conn, e.box, merchant_id, old["permissions"])
        await audit.append(
            conn,
            actor(request, who),
            "key.rotate",
            f"api_key:{old['key_id']}",
            after={"new_key_id": key_id, "old_key_expires": int(expires.timestamp())},
        )
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    await announce(e.redis, e.keys, e.merchants, key_id=old["key_id"])
    return json_answer({**_key_view(row), "secret": secret}, 201)


async def revoke_key(request: web.Request) -> web.Response:
    body = await request.read()
    e, who, merchant_id = await _target(request, "keys:manage", body)
    async with e.pg.acquire() as conn, conn.transaction():
        old = await _live_key(conn, merchant_id, request.match_info["keyId"])
        row = await conn.fetchrow(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 RETURNING *", old["key_id"]
        )
        await audit.append(conn, actor(request, who), "key.revoke", f"api_key:{old['key_id']}")
    await announce(e.redis, e.keys, e.merchants, key_id=old["key_id"])
    return json_answer(_key_view(row))
