"""Agent endpoints (seed §4.3): registration and review, the tree below an agent, commission
policies, merchants' pricing, and commission reports.

An agent reaches only its own subtree, and below itself only what its parent granted it:
opening children, suspending them, seeing their data, setting their rates. The platform reviews
and activates agents, and what agents open, and may move any subtree. Every change is audited.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from domain.access import Owner, Principal, Realm
from domain.agents import ALL_GRANTS, Grant
from domain.commission import Mode, PricingError
from domain.fees import Rate
from domain.ids import new_id
from domain.money import format_amount
from domain.onboarding import Onboarding, can_move, opened_status, platform_only
from domain.tokens import new_secret_token
from gateway.access import actor, client_ip, identify, require, require_grant, require_pricing
from gateway.admin import require_strong_password
from gateway.agent_schemas import (
    AgentView,
    CreateInvitation,
    InvitationView,
    MerchantPricing,
    PolicyView,
    PutPolicy,
    RegisterAgent,
    SubAgent,
    SubMerchant,
    Subordinate,
    UpdateAgent,
)
from gateway.errors import ApiError, email_taken, invalid
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
from infra.merchants import create_merchant

_CURRENCY = re.compile(r"^([A-Z]{3,5}|\*)$")
_CSV_FIELDS = [
    *("created", "ref", "kind", "payment_id", "merchant_id", "currency", "amount"),
    *("level", "mode", "rate_bps", "fixed"),
]


def agent_view(row: asyncpg.Record) -> AgentView:
    return AgentView(
        id=row["id"],
        object="agent",
        name=row["name"],
        email=row["email"],
        parent_id=row["parent_id"],
        path=str(row["path"]).split("."),
        status=row["status"],
        grants=sorted(row["grants"]),
        created=int(row["created_at"].timestamp()),
    )


def _forbidden(code: str, message: str) -> ApiError:
    return ApiError(403, "permission_error", code, message)


async def _target(
    request: web.Request, permission: str, body: bytes = b""
) -> tuple[Edge, Principal, asyncpg.Record]:
    """The agent in the path, once the caller may use `permission` on it: the agent itself,
    an agent above it (by the tree), or the platform."""
    e = edge(request)
    who = (await identify(request, body)).principal
    row = await agents.agent(e.pg, request.match_info["id"])
    if row is None:
        await require(request, who, permission)
        raise invalid("resource_missing", "no such agent", "agentId", status=404)
    above = frozenset(str(row["path"]).split(".")[:-1])
    await require(request, who, permission, Owner(Realm.AGENT, row["id"], above))
    return e, who, row


async def _new_owner_user(
    e: Edge, conn: asyncpg.Connection, agent_id: str, email: str, password: str
) -> str:
    await require_strong_password(e, password, email)
    user_id = await identity.create_user(
        conn,
        email=email,
        realm=Realm.AGENT,
        org_id=agent_id,
        password=password,
        roles=["agent_owner"],
    )
    if user_id is None:
        raise email_taken()
    return user_id


async def register(request: web.Request) -> web.Response:
    """A prospective top-level agent applies; the platform reviews and activates it. The owner
    can sign in at once but holds no permission until then."""
    e = edge(request)
    req = decode(await request.read(), RegisterAgent)
    if not await e.limiter.hit("register", client_ip(request), e.settings.auth.login_limit_per_ip):
        raise ApiError(429, "rate_limit_error", "too_many_attempts", "too many registrations")
    agent_id = new_id("agt")
    async with e.pg.acquire() as conn, conn.transaction():
        row = await agents.create_agent(
            conn,
            agent_id=agent_id,
            name=req.name,
            email=req.email,
            parent_id=None,
            status=Onboarding.SUBMITTED.value,
            grants=sorted(ALL_GRANTS),
        )
        user_id = await _new_owner_user(e, conn, agent_id, req.email, req.password)
        await audit.append(
            conn,
            audit.Actor(f"user:{user_id}", "agent", client_ip(request), request.get(REQUEST_ID)),
            "agent.register",
            f"agent:{agent_id}",
            after={"name": req.name, "email": req.email},
        )
    return json_answer(agent_view(row), 201)


async def get_agent(request: web.Request) -> web.Response:
    _, _, row = await _target(request, "agents:read")
    return json_answer(agent_view(row))


async def update_agent(request: web.Request) -> web.Response:
    body = await request.read()
    e, who, row = await _target(request, "agents:write", body)
    req = decode(body, UpdateAgent)
    own = who.realm is Realm.AGENT and who.org_id == row["id"]
    changes: dict[str, Any] = {}
    if req.status is not None:
        target = Onboarding(req.status)
        if platform_only(Onboarding(row["status"]), target):
            if who.realm is not Realm.PLATFORM:
                raise _forbidden("platform_only", "reviews and activation are the platform's")
        elif own:
            raise _forbidden("not_own_status", "an agent cannot suspend or reactivate itself")
        else:
            await require_grant(request, who, Grant.SUSPEND_CHILDREN)
        if not can_move(Onboarding(row["status"]), target):
            raise invalid(
                "invalid_transition",
                f"an agent in status {row['status']} cannot become {target.value}",
                "status",
                409,
            )
        changes["status"] = target.value
    if req.grants is not None:
        if own:
            raise _forbidden("not_own_grants", "an agent's grants are set by its parent")
        beyond = set(req.grants) - who.grants if who.realm is Realm.AGENT else set()
        if beyond:
            raise _forbidden("privilege_escalation", "you cannot grant what you do not hold")
        changes["grants"] = sorted(set(req.grants))
    for field in ("name", "email"):
        if (value := getattr(req, field)) is not None:
            changes[field] = value
    if not changes:
        return json_answer(agent_view(row))
    async with e.pg.acquire() as conn, conn.transaction():
        sets = ", ".join(f"{k} = ${n}" for n, k in enumerate(changes, start=2))
        updated = await conn.fetchrow(
            f"UPDATE agents SET {sets} WHERE id = $1 RETURNING *", row["id"], *changes.values()
        )
        await agents.bump(conn)
        await audit.append(
            conn,
            actor(request, who),
            "agent.update",
            f"agent:{row['id']}",
            before={k: row[k] if k != "grants" else sorted(row[k]) for k in changes},
            after={**changes, **({"reason": req.reason} if req.reason else {})},
        )
    return json_answer(agent_view(updated))


async def add_subordinate(request: web.Request) -> web.Response:
    body = await request.read()
    e, who, parent = await _target(request, "agents:write", body)
    req = decode(body, Subordinate)  # type: ignore[arg-type]
    if parent["status"] != Onboarding.ACTIVE:
        raise invalid("agent_inactive", "only an active agent takes subordinates", status=409)
    attaching = req.agent_id if isinstance(req, SubAgent) else req.merchant_id
    if attaching is not None and who.realm is not Realm.PLATFORM:
        raise _forbidden("platform_only", "moving existing agents or merchants is the platform's")
    if attaching is None:
        await require_grant(request, who, Grant.OPEN_CHILDREN)
    status = opened_status(who.realm, (await e.policy.get()).agent_opens_active)
    if isinstance(req, SubAgent):
        return await _sub_agent(request, e, who, parent, req, status)
    return await _sub_merchant(request, e, who, parent, req, status)


async def _sub_agent(
    request: web.Request,
    e: Edge,
    who: Principal,
    parent: asyncpg.Record,
    req: SubAgent,
    status: Onboarding,
) -> web.Response:
    async with e.pg.acquire() as conn, conn.transaction():
        if req.agent_id is not None:
            if await agents.agent(conn, req.agent_id) is None:
                raise invalid("resource_missing", "no such agent", "agent_id", status=404)
            try:
                moved = await agents.move_subtree(conn, req.agent_id, parent["id"])
            except agents.TreeError as exc:
                raise invalid("invalid_move", str(exc), "agent_id", 409) from None
            await audit.append(
                conn,
                actor(request, who),
                "agent.move",
                f"agent:{req.agent_id}",
                after={"parent_id": parent["id"], "agents_moved": moved},
            )
            row = await agents.agent(conn, req.agent_id)
            assert row is not None
            return json_answer(agent_view(row))
        if not (req.name and req.email and req.password):
            raise invalid("missing_field", "name, email and password open a sub-agent", "name")
        granted = set(req.grants)
        if who.realm is Realm.AGENT and granted - who.grants:
            raise _forbidden("privilege_escalation", "you cannot grant what you do not hold")
        agent_id = new_id("agt")
        row = await agents.create_agent(
            conn,
            agent_id=agent_id,
            name=req.name,
            email=req.email,
            parent_id=parent["id"],
            status=status.value,
            grants=sorted(granted),
        )
        await _new_owner_user(e, conn, agent_id, req.email, req.password)
        await audit.append(
            conn,
            actor(request, who),
            "agent.open",
            f"agent:{agent_id}",
            after={
                "parent_id": parent["id"],
                "name": req.name,
                "grants": sorted(granted),
                "status": status.value,
            },
        )
    return json_answer(agent_view(row), 201)


async def _sub_merchant(
    request: web.Request,
    e: Edge,
    who: Principal,
    parent: asyncpg.Record,
    req: SubMerchant,
    status: Onboarding,
) -> web.Response:
    async with e.pg.acquire() as conn, conn.transaction():
        if req.merchant_id is not None:
            if (
                await conn.fetchval("SELECT 1 FROM merchants WHERE id = $1", req.merchant_id)
                is None
            ):
                raise invalid("resource_missing", "no such merchant", "merchant_id", status=404)
            merchant_id, answer, opened = req.merchant_id, {"id": req.merchant_id}, {}
        else:
            if not (req.name and req.notify_url and req.currencies):
                raise invalid(
                    "missing_field", "name, notify_url and currencies open a merchant", "name"
                )
            price = await _opening_price(request, e, who, req)
            await check_merchant_price(conn, parent["id"], req.currencies, price)
            created = await create_merchant(
                conn,
                e.box,
                name=req.name,
                notify_url=req.notify_url,
                currencies=req.currencies,
                fee_bps=price.bps,
                fee_fixed_minor=price.fixed,
                status=status.value,
            )
            merchant_id, opened = created.id, {"status": status.value}
            answer = {**dataclasses.asdict(created), **opened}
        await agents.place_merchant(conn, merchant_id, parent["id"])
        await audit.append(
            conn,
            actor(request, who),
            "merchant.place",
            f"merchant:{merchant_id}",
            after={"agent_id": parent["id"], **opened},
        )
    return json_answer({"object": "merchant", "agent_id": parent["id"], **answer}, 201)


async def create_invitation(request: web.Request) -> web.Response:
    """An invitation to apply as a merchant under this agent (the registration's
    `invitation`), for an agent that may open children: single use, with an expiry, stored
    only as a digest; the token is shown once."""
    body = await request.read()
    e, who, row = await _target(request, "agents:write", body)
    await require_grant(request, who, Grant.OPEN_CHILDREN)
    req = decode(body, CreateInvitation) if body else CreateInvitation()
    if row["status"] != Onboarding.ACTIVE:
        raise invalid("agent_inactive", "only an active agent invites merchants", status=409)
    invitation_id, token, digest = new_secret_token("inv")
    expires_at = datetime.now(UTC) + timedelta(seconds=req.expires_in)
    async with e.pg.acquire() as conn, conn.transaction():
        created = await agents.create_invitation(
            conn,
            invitation_id=invitation_id,
            agent_id=row["id"],
            digest=digest,
            created_by=who.actor,
            expires_at=expires_at,
        )
        await audit.append(
            conn,
            actor(request, who),
            "agent.invite",
            f"agent:{row['id']}",
            after={"invitation": invitation_id, "expires_at": int(expires_at.timestamp())},
        )
    view = InvitationView(
        "agent_invitation",
        invitation_id,
        row["id"],
        token,
        int(expires_at.timestamp()),
        int(created["created_at"].timestamp()),
    )
    return json_answer(view, 201)


async def _opening_price(request: web.Request, e: Edge, who: Principal, req: SubMerchant) -> Rate:
    """A new merchant's price: the platform's default, or one the opener sets, which takes the
    same right as repricing it later."""
    if req.fee_bps is None and req.fee_fixed_minor is None:
        return Rate(e.settings.fees.merchant_bps, e.settings.fees.merchant_fixed_minor)
    await require_pricing(request, who)
    return Rate(req.fee_bps or 0, req.fee_fixed_minor or 0)


async def check_merchant_price(
    conn: asyncpg.Connection, agent_id: str, currencies: list[str], price: Rate
) -> None:
    """A merchant's price is never below what its agent pays for any of its currencies."""
    try:
        await agents.check_merchant_price(conn, agent_id, currencies, price)
    except PricingError as exc:
        raise invalid("rate_below_cost", str(exc), "fee_bps") from None


async def put_policy(request: web.Request) -> web.Response:
    """Set an agent's commission policy for a currency (or '*'): its rate is what its parent
    charges it, so a parent sets its children's (with the set_rates grant) and the platform
    sets top agents'. The rate is never below the parent's own, nor above what the agent
    already charges below it."""
    body = await request.read()
    e, who, row = await _target(request, "agents:write", body)
    currency = request.match_info["currency"]
    if not _CURRENCY.match(currency):
        raise invalid("invalid_field", "a currency code or *", "currency")
    await require_pricing(request, who, own_rate=row["id"] == who.org_id)
    req = decode(body, PutPolicy)
    rate = Rate(req.rate_bps, req.rate_fixed)
    effective = (
        datetime.fromtimestamp(req.effective_from, UTC) if req.effective_from else datetime.now(UTC)
    )
    async with e.pg.acquire() as conn, conn.transaction():
        await _check_rate_fits(conn, row, currency, req.method, rate)
        version = await agents.set_policy(
            conn,
            row["id"],
            agents.PolicyInput(
                currency, Mode(req.mode), rate, req.share_bps, req.share_fixed, req.method
            ),
            effective,
            who.actor,
        )
        await audit.append(
            conn,
            actor(request, who),
            "commission.policy",
            f"agent:{row['id']}",
            after={"currency": currency, "version": version, **msgspec.structs.asdict(req)},
        )
    return json_answer(
        PolicyView(
            "commission_policy",
            row["id"],
            currency,
            req.method,
            req.mode,
            req.rate_bps,
            req.rate_fixed,
            req.share_bps,
            req.share_fixed,
            int(effective.timestamp()),
            version,
        )
    )


async def _check_rate_fits(
    conn: asyncpg.Connection, agent: asyncpg.Record, currency: str, method: str, rate: Rate
) -> None:
    if agent["parent_id"] is not None:
        above = await agents.policy_in_force(conn, agent["parent_id"], currency, method)
        if above is not None and not rate.at_least(agents.terms_of(above).rate):
            raise invalid("rate_below_cost", "the rate is below the parent's own cost", "rate_bps")
    children = await conn.fetch("SELECT id FROM agents WHERE parent_id = $1", agent["id"])
    for child in children:
        below = await agents.policy_in_force(conn, child["id"], currency, method)
        if below is not None and not agents.terms_of(below).rate.at_least(rate):
            raise invalid(
                "rate_above_children",
                f"the rate would exceed what {child['id']} is charged",
                "rate_bps",
                409,
            )
    merchants = await conn.fetch(
        "SELECT id, fee_bps, fee_fixed_minor FROM merchants WHERE agent_id = $1", agent["id"]
    )
    for m in merchants:
        if not Rate(m["fee_bps"], m["fee_fixed_minor"]).at_least(rate):
            raise invalid(
                "rate_above_children",
                f"the rate would exceed merchant {m['id']}'s price",
                "rate_bps",
                409,
            )


async def price_merchant(request: web.Request) -> web.Response:
    """An agent sets the price of a merchant directly under it (its mark-up over its own
    rate); never below that rate."""
    body = await request.read()
    e, who, row = await _target(request, "agents:write", body)
    await require_pricing(request, who)
    merchant_id = request.match_info["merchantId"]
    req = decode(body, MerchantPricing)
    async with e.pg.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT * FROM merchants WHERE id = $1 AND agent_id = $2 FOR UPDATE",
            merchant_id,
            row["id"],
        )
        if current is None:
            raise invalid(
                "resource_missing", "no such merchant under this agent", "merchantId", 404
            )
        await check_merchant_price(
            conn, row["id"], list(current["currencies"]), Rate(req.fee_bps, req.fee_fixed_minor)
        )
        await conn.execute(
            "UPDATE merchants SET fee_bps = $2, fee_fixed_minor = $3 WHERE id = $1",
            merchant_id,
            req.fee_bps,
            req.fee_fixed_minor,
        )
        await audit.append(
            conn,
            actor(request, who),
            "merchant.pricing",
            f"merchant:{merchant_id}",
            before={"fee_bps": current["fee_bps"], "fee_fixed_minor": current["fee_fixed_minor"]},
            after=msgspec.structs.asdict(req),
        )
    return json_answer(
        {"object": "merchant_pricing", "merchant_id": merchant_id, **msgspec.structs.asdict(req)}
    )


async def commissions(request: web.Request) -> web.Response:
    """An agent's commission records, newest first, and totals per currency for the period
    (`since`/`until`, unix seconds; `currency`); `starting_after` pages; `format=csv` exports
    the whole period."""
    e, _, row = await _target(request, "commission:read")
    currency = request.query.get("currency")
    since, until = int_query(request, "since"), int_query(request, "until")
    bounds = [
        row["id"],
        currency,
        datetime.fromtimestamp(since, UTC) if since is not None else None,
        datetime.fromtimestamp(until, UTC) if until is not None else None,
    ]
    where = """agent_id = $1 AND ($2::text IS NULL OR currency = $2)
               AND ($3::timestamptz IS NULL OR created_at >= $3)
               AND ($4::timestamptz IS NULL OR created_at < $4)"""
    totals = await e.pg.fetch(
        f"SELECT currency, sum(amount) AS total, count(*) AS n FROM commissions "
        f"WHERE {where} GROUP BY currency ORDER BY currency",
        *bounds,
    )
    csv_export = request.query.get("format") == "csv"
    limit = None if csv_export else page_limit(request, 50)
    after = request.query.get("starting_after")
    rows = await e.pg.fetch(
        f"""SELECT * FROM commissions WHERE {where}
            AND ($5::text IS NULL OR (created_at, ref) <
                 (SELECT created_at, ref FROM commissions WHERE agent_id = $1 AND ref = $5))
            ORDER BY created_at DESC, ref DESC LIMIT $6""",
        *bounds,
        after,
        (limit + 1) if limit else None,
    )
    records = [
        {
            "object": "commission",
            "ref": r["ref"],
            "kind": r["kind"],
            "payment_id": r["payment_id"],
            "merchant_id": r["merchant_id"],
            "currency": r["currency"],
            "amount": format_amount(r["amount"], r["currency"]),
            "level": r["level"],
            "mode": r["mode"],
            "rate_bps": r["rate_bps"],
            "fixed": None if r["level"] is None else format_amount(r["fixed_minor"], r["currency"]),
            "created": int(r["created_at"].timestamp()),
        }
        for r in rows
    ]
    if csv_export:
        return csv_answer(records, _CSV_FIELDS, f"{row['id']}-commissions.csv")
    assert limit is not None
    return json_answer(
        {
            "object": "list",
            "data": records[:limit],
            "has_more": len(records) > limit,
            "totals": {
                t["currency"]: {"amount": format_amount(t["total"], t["currency"]), "count": t["n"]}
                for t in totals
            },
        }
    )
