"""Every endpoint × every built-in role, plus owners of another merchant and another agent:
allowed or 403 (or, for another merchant's payment, refund or event by id, 404: ids are not an
existence oracle). The table below names each endpoint's permission and whose data it touches;
a route missing from it fails the test, so a new endpoint cannot skip the check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio

from adapters.base import Statement
from config import load_settings
from domain.access import BUILTIN_ROLES, Realm
from domain.agents import ALL_GRANTS
from domain.risk import Thresholds
from domain.risk.lists import Kind, ListName
from domain.settlement import Entity
from gateway.app import create_app
from gateway.openapi import document
from gateway.routes import ROUTES
from infra import agents, audit, channels, reconciliation, risk, settlement, withdrawals
from infra.channels import spec_from_config
from infra.merchants import add_api_key
from tests.conftest import MerchantFactory, wait_status
from tests.portal import PASSWORD, Portal, make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Reached without a portal session (channels, browsers, probes) or by any signed-in user.
PUBLIC = {
    ("POST", "/api/v1/payments/callback/{channel}"),
    ("POST", "/api/v1/payouts/callback/{channel}"),
    ("GET", "/checkout/device.js"),
    ("GET", "/checkout/{id}"),
    ("POST", "/checkout/{id}/card"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/mfa/enroll"),
    ("POST", "/api/v1/auth/mfa/verify"),
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/agents/register"),
    ("POST", "/api/v1/merchants/register"),
}


@dataclass
class World:
    shop: str  # merchant A: the resources below are its
    payment: str
    refund: str
    event: str
    victim: str  # a merchant A user the user-management endpoints act on
    kid: str  # an agent under the agent roles' agent
    kid_shop: str  # a merchant under it
    spare_keys: tuple[str, str]  # merchant A keys to rotate and to revoke
    quote: str  # merchant A's FX quote
    channel: str  # a disabled channel the channel endpoints act on
    statement: str = ""  # merchant A's settlement statement
    payout_account: str = ""  # merchant A's bank account to withdraw to
    withdrawal: str = ""  # merchant A's withdrawal, rejected (so decisions are 409)
    recon_run: str = ""  # a reconciliation run (of an empty statement)
    risk_entries: list[str] = field(default_factory=list)  # one to delete per allowed call
    risk_version: int = 0  # an empty rule set, what publishing it again changes nothing of
    review: str = ""  # a closed review of merchant A's paid payment (decisions answer 409)


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str
    permission: str
    # own: the caller's own organisation · platform: platform-only data · shop: merchant A's,
    # named in the path or body (another organisation gets 403) · hidden: merchant A's, by id
    # (another organisation gets 404) · list: merchant A's list (merchants see their own) ·
    # kid: an agent below the agent roles' own agent (the platform and that agent reach it)
    scope: str
    path: Callable[[World], str]
    body: Callable[[World], Any] = lambda w: None


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/payments",
        "payments:create",
        "own",
        lambda w: "/api/v1/payments",
        lambda w: {"amount": "1.00", "currency": "USD", "merchant_order_id": _unique("mx")},
    ),
    Endpoint(
        "GET",
        "/api/v1/payments",
        "payments:read",
        "list",
        lambda w: f"/api/v1/payments?merchant_id={w.shop}",
    ),
    Endpoint(
        "GET",
        "/api/v1/payments/{id}",
        "payments:read",
        "hidden",
        lambda w: f"/api/v1/payments/{w.payment}",
    ),
    Endpoint(
        "POST",
        "/api/v1/fx/quotes",
        "payments:create",
        "own",
        lambda w: "/api/v1/fx/quotes",
        lambda w: {"amount": "10.00", "currency": "EUR", "to_currency": "USD"},
    ),
    Endpoint(
        "GET",
        "/api/v1/fx/quotes/{id}",
        "payments:read",
        "hidden",
        lambda w: f"/api/v1/fx/quotes/{w.quote}",
    ),
    Endpoint(
        "GET",
        "/api/v1/payments/{id}/attempts",
        "payments:read",
        "hidden",
        lambda w: f"/api/v1/payments/{w.payment}/attempts",
    ),
    Endpoint(
        "POST",
        "/api/v1/payments/{id}/cancel",
        "payments:cancel",
        "hidden",
        lambda w: f"/api/v1/payments/{w.payment}/cancel",
    ),
    Endpoint(
        "POST",
        "/api/v1/refunds",
        "refunds:create",
        "hidden",
        lambda w: "/api/v1/refunds",
        lambda w: {"payment_id": w.payment, "amount": "0.01"},
    ),
    Endpoint(
        "GET",
        "/api/v1/refunds/{id}",
        "refunds:read",
        "hidden",
        lambda w: f"/api/v1/refunds/{w.refund}",
    ),
    Endpoint(
        "POST",
        "/api/v1/events/{id}/resend",
        "events:resend",
        "hidden",
        lambda w: f"/api/v1/events/{w.event}/resend",
    ),
    Endpoint(
        "GET",
        "/api/v1/refunds",
        "refunds:read",
        "list",
        lambda w: f"/api/v1/refunds?merchant_id={w.shop}",
    ),
    Endpoint(
        "GET",
        "/api/v1/events",
        "payments:read",
        "list",
        lambda w: f"/api/v1/events?merchant_id={w.shop}",
    ),
    Endpoint(
        "GET",
        "/api/v1/events/{id}",
        "payments:read",
        "hidden",
        lambda w: f"/api/v1/events/{w.event}",
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/merchants",
        "merchants:read",
        "platform",
        lambda w: "/api/v1/admin/merchants?status=active",
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/agents",
        "agents:read",
        "platform",
        lambda w: "/api/v1/admin/agents?q=a",
    ),
    Endpoint("GET", "/api/v1/admin/users", "users:read", "own", lambda w: "/api/v1/admin/users"),
    Endpoint(
        "POST",
        "/api/v1/admin/users",
        "users:manage",
        "shop",
        lambda w: "/api/v1/admin/users",
        lambda w: {
            "email": _unique("new") + "@example.com",
            "password": PASSWORD,
            "realm": "merchant",
            "org_id": w.shop,
        },
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/users/{id}/disable",
        "users:manage",
        "shop",
        lambda w: f"/api/v1/admin/users/{w.victim}/disable",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/users/{id}/enable",
        "users:manage",
        "shop",
        lambda w: f"/api/v1/admin/users/{w.victim}/enable",
    ),
    Endpoint(
        "PUT",
        "/api/v1/admin/users/{id}/roles",
        "users:manage",
        "shop",
        lambda w: f"/api/v1/admin/users/{w.victim}/roles",
        lambda w: {"roles": ["merchant_staff"]},
    ),
    Endpoint("GET", "/api/v1/admin/roles", "users:read", "own", lambda w: "/api/v1/admin/roles"),
    Endpoint(
        "PUT",
        "/api/v1/admin/roles/{id}",
        "roles:manage",
        "platform",
        lambda w: "/api/v1/admin/roles/matrix_role",
        lambda w: {"name": "Matrix", "realm": "merchant", "permissions": ["payments:read"]},
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/settings",
        "settings:read",
        "platform",
        lambda w: "/api/v1/admin/settings",
    ),
    Endpoint(
        "PUT",
        "/api/v1/admin/settings",
        "settings:write",
        "platform",
        lambda w: "/api/v1/admin/settings",
        lambda w: {"version": -1, "settings": {}},  # allowed: 409, and nothing changes
    ),
    Endpoint(
        "GET", "/api/v1/admin/audit", "audit:read", "platform", lambda w: "/api/v1/admin/audit"
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/audit/verify",
        "audit:read",
        "platform",
        lambda w: "/api/v1/admin/audit/verify",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/merchants/{id}/keys",
        "keys:manage",
        "shop",
        lambda w: f"/api/v1/admin/merchants/{w.shop}/keys",
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/channels",
        "channels:read",
        "platform",
        lambda w: "/api/v1/admin/channels",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/channels",
        "channels:write",
        "platform",
        lambda w: "/api/v1/admin/channels",
        lambda w: {
            "code": f"m{time.time_ns()}",
            "adapter": "simulator",
            "base_url": "http://127.0.0.1:9",
            "credentials": {"api_key": "k", "secret": "s"},
            "enabled": False,
        },
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/channels/{code}",
        "channels:read",
        "platform",
        lambda w: f"/api/v1/admin/channels/{w.channel}",
    ),
    Endpoint(
        "PATCH",
        "/api/v1/admin/channels/{code}",
        "channels:write",
        "platform",
        lambda w: f"/api/v1/admin/channels/{w.channel}",
        lambda w: {"version": -1, "priority": 1},  # allowed: 409, and nothing changes
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/channels/{code}/enable",
        "channels:write",
        "platform",
        lambda w: f"/api/v1/admin/channels/{w.channel}/enable",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/channels/{code}/disable",
        "channels:write",
        "platform",
        lambda w: f"/api/v1/admin/channels/{w.channel}/disable",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/channels/{code}/switch-over",
        "channels:write",
        "platform",
        lambda w: f"/api/v1/admin/channels/{w.channel}/switch-over",
        lambda w: {"to_channel": "sim", "reason": "matrix"},
    ),
    Endpoint(
        "DELETE",
        "/api/v1/admin/channels/{code}/switch-over",
        "channels:write",
        "platform",
        lambda w: f"/api/v1/admin/channels/{w.channel}/switch-over",
    ),
    Endpoint(
        "GET",
        "/api/v1/merchants/{id}",
        "merchants:read",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}",
    ),
    Endpoint(
        "PUT",
        "/api/v1/merchants/{id}",
        "merchants:write",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}",
        lambda w: {"name": "renamed"},
    ),
    Endpoint(
        "PUT",
        "/api/v1/merchants/{id}/payment-config",
        "merchants:write",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}/payment-config",
        lambda w: {"return_url": "https://shop.example/back"},
    ),
    Endpoint(
        "GET",
        "/api/v1/merchants/{id}/transactions",
        "payments:read",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}/transactions",
    ),
    Endpoint(
        "GET",
        "/api/v1/merchants/{id}/keys",
        "keys:manage",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}/keys",
    ),
    Endpoint(
        "POST",
        "/api/v1/merchants/{id}/keys/{keyId}/rotate",
        "keys:manage",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}/keys/{w.spare_keys[0]}/rotate",
    ),
    Endpoint(
        "POST",
        "/api/v1/merchants/{id}/keys/{keyId}/revoke",
        "keys:manage",
        "shop",
        lambda w: f"/api/v1/merchants/{w.shop}/keys/{w.spare_keys[1]}/revoke",
    ),
    Endpoint(
        "GET", "/api/v1/agents/{id}", "agents:read", "kid", lambda w: f"/api/v1/agents/{w.kid}"
    ),
    Endpoint(
        "PUT",
        "/api/v1/agents/{id}",
        "agents:write",
        "kid",
        lambda w: f"/api/v1/agents/{w.kid}",
        lambda w: {"name": "renamed"},
    ),
    Endpoint(
        "POST",
        "/api/v1/agents/{id}/subordinates",
        "agents:write",
        "kid",
        lambda w: f"/api/v1/agents/{w.kid}/subordinates",
        lambda w: {
            "type": "agent",
            "name": "grandchild",
            "email": _unique("gc") + "@example.com",
            "password": PASSWORD,
        },
    ),
    Endpoint(
        "POST",
        "/api/v1/agents/{id}/invitations",
        "agents:write",
        "kid",
        lambda w: f"/api/v1/agents/{w.kid}/invitations",
    ),
    Endpoint(
        "PUT",
        "/api/v1/agents/{id}/policies/{currency}",
        "agents:write",
        "kid",
        lambda w: f"/api/v1/agents/{w.kid}/policies/USD",
        lambda w: {"mode": "markup", "rate_bps": 100},
    ),
    Endpoint(
        "PUT",
        "/api/v1/agents/{id}/merchants/{merchantId}/pricing",
        "agents:write",
        "kid",
        lambda w: f"/api/v1/agents/{w.kid}/merchants/{w.kid_shop}/pricing",
        lambda w: {"fee_bps": 250},
    ),
    Endpoint(
        "GET",
        "/api/v1/agents/{id}/commissions",
        "commission:read",
        "kid",
        lambda w: f"/api/v1/agents/{w.kid}/commissions",
    ),
    Endpoint(
        "GET",
        "/api/v1/balances",
        "settlements:read",
        "shop",
        lambda w: f"/api/v1/balances?entity={w.shop}",
    ),
    Endpoint(
        "GET",
        "/api/v1/settlements/{entityId}",
        "settlements:read",
        "shop",
        lambda w: f"/api/v1/settlements/{w.shop}",
    ),
    Endpoint(
        "GET",
        "/api/v1/settlements/{entityId}/{settlementId}",
        "settlements:read",
        "shop",
        lambda w: f"/api/v1/settlements/{w.shop}/{w.statement}",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/settlements/run",
        "settlements:approve",
        "platform",
        lambda w: "/api/v1/admin/settlements/run",
        lambda w: {"entity": w.shop},
    ),
    Endpoint(
        "PUT",
        "/api/v1/admin/settlements/terms/{entityId}",
        "settlements:approve",
        "platform",
        lambda w: f"/api/v1/admin/settlements/terms/{w.shop}",
        lambda w: {"cycle": "T+1"},
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/reports/trial-balance",
        "settlements:read",
        "platform",
        lambda w: "/api/v1/admin/reports/trial-balance",
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/reports/daily",
        "settlements:read",
        "platform",
        lambda w: "/api/v1/admin/reports/daily?day=2026-01-01",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/reconciliation/runs",
        "settlements:approve",
        "platform",
        lambda w: "/api/v1/admin/reconciliation/runs",
        lambda w: {"channel": "sim", "day": "2999-01-01"},  # allowed: 400, changes nothing
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/reconciliation/runs",
        "settlements:read",
        "platform",
        lambda w: "/api/v1/admin/reconciliation/runs",
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/reconciliation/runs/{id}",
        "settlements:read",
        "platform",
        lambda w: f"/api/v1/admin/reconciliation/runs/{w.recon_run}",
    ),
    Endpoint(
        "GET",
        "/api/v1/admin/reconciliation/discrepancies",
        "settlements:read",
        "platform",
        lambda w: "/api/v1/admin/reconciliation/discrepancies?status=open",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/reconciliation/discrepancies/{id}/resolve",
        "settlements:approve",
        "platform",
        lambda w: "/api/v1/admin/reconciliation/discrepancies/rcd_matrix/resolve",
        lambda w: {"action": "ignore"},  # allowed: 400 (no reason), changes nothing
    ),
    Endpoint(
        "POST",
        "/api/v1/payout-accounts",
        "withdrawals:create",
        "shop",
        lambda w: "/api/v1/payout-accounts",
        lambda w: {"kind": "crypto_wallet", "number": "0x52908400098527886E0F", "entity": w.shop},
    ),
    Endpoint(
        "GET",
        "/api/v1/payout-accounts",
        "settlements:read",
        "shop",
        lambda w: f"/api/v1/payout-accounts?entity={w.shop}",
    ),
    Endpoint(
        "POST",
        "/api/v1/withdrawals",
        "withdrawals:create",
        "shop",
        lambda w: "/api/v1/withdrawals",
        # without an Idempotency-Key: 400 once the caller may, so nothing moves
        lambda w: {
            "amount": "10.00",
            "currency": "USD",
            "payout_account_id": w.payout_account,
            "entity": w.shop,
        },
    ),
    Endpoint(
        "GET",
        "/api/v1/withdrawals",
        "settlements:read",
        "shop",
        lambda w: f"/api/v1/withdrawals?entity={w.shop}",
    ),
    Endpoint(
        "GET",
        "/api/v1/withdrawals/{id}",
        "settlements:read",
        "hidden",
        lambda w: f"/api/v1/withdrawals/{w.withdrawal}",
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/withdrawals/{id}/approve",
        "settlements:approve",
        "platform",
        lambda w: f"/api/v1/admin/withdrawals/{w.withdrawal}/approve",
        lambda w: {"reason": "matrix"},
    ),
    Endpoint(
        "POST",
        "/api/v1/admin/withdrawals/{id}/reject",
        "settlements:approve",
        "platform",
        lambda w: f"/api/v1/admin/withdrawals/{w.withdrawal}/reject",
        lambda w: {"reason": "matrix"},
    ),
    Endpoint(
        "PUT",
        "/api/v1/admin/withdrawals/rules/{entityId}",
        "settlements:approve",
        "platform",
        lambda w: f"/api/v1/admin/withdrawals/rules/{w.shop}",
        lambda w: {"currency": "USD", "min_amount": "10.00"},
    ),
    Endpoint("GET", "/api/v1/risk/lists", "risk:read", "platform", lambda w: "/api/v1/risk/lists"),
    Endpoint(
        "POST",
        "/api/v1/risk/lists",
        "risk:write",
        "platform",
        lambda w: "/api/v1/risk/lists",
        lambda w: {"list": "block", "kind": "device", "value": _unique("matrix-device")},
    ),
    Endpoint(
        "DELETE",
        "/api/v1/risk/lists/{id}",
        "risk:write",
        "platform",
        lambda w: f"/api/v1/risk/lists/{w.risk_entries.pop()}",
    ),
    Endpoint("GET", "/api/v1/risk/rules", "risk:read", "platform", lambda w: "/api/v1/risk/rules"),
    Endpoint(
        "PUT",
        "/api/v1/risk/rules",
        "risk:write",
        "platform",
        lambda w: "/api/v1/risk/rules",
        lambda w: {"rules": [], "note": "matrix: no rules, as before"},
    ),
    Endpoint(
        "GET",
        "/api/v1/risk/rules/versions",
        "risk:read",
        "platform",
        lambda w: "/api/v1/risk/rules/versions",
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/rules/versions",
        "risk:write",
        "platform",
        lambda w: "/api/v1/risk/rules/versions",
        lambda w: {"rules": [{"id": "r1", "expression": "amount < 0", "action": "review"}]},
    ),
    Endpoint(
        "GET",
        "/api/v1/risk/rules/versions/{version}",
        "risk:read",
        "platform",
        lambda w: f"/api/v1/risk/rules/versions/{w.risk_version}",
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/rules/versions/{version}/publish",
        "risk:write",
        "platform",
        lambda w: f"/api/v1/risk/rules/versions/{w.risk_version}/publish",
    ),
    Endpoint(
        "PUT",
        "/api/v1/risk/rules/shadow",
        "risk:write",
        "platform",
        lambda w: "/api/v1/risk/rules/shadow",
        lambda w: {"version": w.risk_version},
    ),
    Endpoint(
        "GET",
        "/api/v1/risk/rules/shadow",
        "risk:read",
        "platform",
        lambda w: "/api/v1/risk/rules/shadow",
    ),
    Endpoint(
        "DELETE",
        "/api/v1/risk/rules/shadow",
        "risk:write",
        "platform",
        lambda w: "/api/v1/risk/rules/shadow",
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/rules/versions/{version}/backtest",
        "risk:read",
        "platform",
        lambda w: f"/api/v1/risk/rules/versions/{w.risk_version}/backtest",
        lambda w: {"since": 0, "until": 2_000_000_000, "limit": 10},
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/evaluate",
        "payments:create",
        "own",
        lambda w: "/api/v1/risk/evaluate",
        lambda w: {"amount": "1.00", "currency": "USD", "customer": {"id": "cus_matrix"}},
    ),
    Endpoint(
        "GET", "/api/v1/risk/reviews", "risk:read", "platform", lambda w: "/api/v1/risk/reviews"
    ),
    Endpoint(
        "GET",
        "/api/v1/risk/reviews/{id}",
        "risk:read",
        "platform",
        lambda w: f"/api/v1/risk/reviews/{w.review}",
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/reviews/{id}/claim",
        "risk:write",
        "platform",
        lambda w: f"/api/v1/risk/reviews/{w.review}/claim",
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/reviews/{id}/approve",
        "risk:write",
        "platform",
        lambda w: f"/api/v1/risk/reviews/{w.review}/approve",
        lambda w: {"reason": "matrix"},
    ),
    Endpoint(
        "POST",
        "/api/v1/risk/reviews/{id}/reject",
        "risk:write",
        "platform",
        lambda w: f"/api/v1/risk/reviews/{w.review}/reject",
        lambda w: {"reason": "matrix"},
    ),
]


@dataclass
class Caller:
    name: str
    realm: Realm
    foreign: bool  # another merchant than merchant A, another agent than the agent roles' one
    permissions: frozenset[str]
    portal: Portal


def expected(endpoint: Endpoint, caller: Caller) -> str:
    if endpoint.permission not in caller.permissions:
        return "403"
    if caller.realm is Realm.PLATFORM or endpoint.scope == "own":
        return "allowed"
    if endpoint.scope == "platform":
        return "403"
    if endpoint.scope == "kid":
        return "allowed" if caller.realm is Realm.AGENT and not caller.foreign else "403"
    if endpoint.scope == "list":
        return "allowed" if caller.realm is Realm.MERCHANT else "403"
    if not caller.foreign and caller.realm is Realm.MERCHANT:
        return "allowed"
    return "404" if endpoint.scope == "hidden" else "403"


def outcome(status: int) -> str:
    if status == 403:
        return "403"
    if status == 404:
        return "404"
    assert status not in (401, 500), status
    return "allowed"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(stack: Stack, http, new_merchant: MerchantFactory) -> tuple[World, list[Caller]]:
    assert stack.pg is not None
    shop, other = await new_merchant(), await new_merchant()
    _, paid = await shop.create_payment(amount="2.00", currency="USD", merchant_order_id="w-paid")
    _, open_ = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="w-open")
    await wait_status(shop, paid["id"], {"succeeded"})
    _, refund = await shop.request(
        "POST", "/api/v1/refunds", {"payment_id": paid["id"], "amount": "0.10"}
    )
    _, fx_quote = await shop.request(
        "POST", "/api/v1/fx/quotes", {"amount": "5.00", "currency": "EUR", "to_currency": "USD"}
    )
    event = await stack.pg.fetchval(
        "SELECT id FROM webhook_events WHERE merchant_id = $1 LIMIT 1", shop.merchant_id
    )
    victim = await make_user(
        stack, http, Realm.MERCHANT, shop.merchant_id, ["merchant_staff"], sign_in=False
    )
    # The agent roles' agent, one agent below it and a merchant below that; another agent.
    top, kid = f"agt_matrix{time.time_ns()}", f"agt_kid{time.time_ns()}"
    elsewhere = f"agt_elsewhere{time.time_ns()}"
    kid_shop = await new_merchant()
    async with stack.pg.acquire() as conn, conn.transaction():
        for agent_id, parent in ((top, None), (kid, top), (elsewhere, None)):
            await agents.create_agent(
                conn,
                agent_id=agent_id,
                name=agent_id,
                email=f"{agent_id}@example.com",
                parent_id=parent,
                status="active",
                grants=sorted(ALL_GRANTS),
            )
        await agents.place_merchant(conn, kid_shop.merchant_id, kid)
        spare = (
            (await add_api_key(conn, stack.box, shop.merchant_id))[0],
            (await add_api_key(conn, stack.box, shop.merchant_id))[0],
        )
    spare_channel = f"matrix{time.time_ns()}"
    async with stack.pg.acquire() as conn, conn.transaction():
        spec = replace(
            spec_from_config(spare_channel, stack.settings.channels["sim"]),
            enabled=False,
            priority=10_000,
        )
        await channels.create(conn, stack.box, spare_channel, channels.fields_of(spec))
    callers = []
    for role in BUILTIN_ROLES:
        org = {Realm.PLATFORM: None, Realm.MERCHANT: shop.merchant_id, Realm.AGENT: top}
        portal = await make_user(stack, http, role.realm, org[role.realm], [role.id])
        callers.append(Caller(role.id, role.realm, False, role.permissions, portal))
    owners = {r.id: r for r in BUILTIN_ROLES}
    for name, realm, org, role in (
        ("other merchant's owner", Realm.MERCHANT, other.merchant_id, "merchant_owner"),
        ("other agent's owner", Realm.AGENT, elsewhere, "agent_owner"),
    ):
        portal = await make_user(stack, http, realm, org, [role])
        callers.append(Caller(name, realm, True, owners[role].permissions, portal))
    assert event is not None and refund.get("id"), refund
    world = World(
        shop.merchant_id,
        open_["id"],
        refund["id"],
        event,
        victim.user_id,
        kid,
        kid_shop.merchant_id,
        spare,
        fx_quote["id"],
        spare_channel,
    )
    # Merchant A's payment released and its period closed, on a clock well ahead.
    ahead = datetime.now(UTC) + timedelta(days=40)
    for now in (ahead, ahead + timedelta(days=40)):
        await settlement.run(stack.pg, stack.settings, now, entity_id=shop.merchant_id)
    world.statement = await stack.pg.fetchval(
        "SELECT id FROM settlement_statements WHERE entity_id = $1", shop.merchant_id
    )
    shop_entity = Entity("merchant", shop.merchant_id)
    account = await withdrawals.add_account(
        stack.pg, stack.box, shop_entity, "bank_account", {"number": "DE89370400440532013000"}
    )
    world.payout_account = account["id"]
    world.withdrawal = await stack.pg.fetchval(
        """INSERT INTO withdrawals (id, entity_kind, entity_id, payout_account_id, currency,
               amount, fee, status, idempotency_key, fingerprint, requested_by)
           VALUES ($1, 'merchant', $2, $3, 'USD', 1000, 0, 'rejected', $1, '-', 'usr_matrix')
           RETURNING id""",
        f"wd_matrix{time.time_ns()}",
        shop.merchant_id,
        account["id"],
    )
    empty = Statement(f"matrix {time.time_ns()}".encode(), ())
    run, _ = await reconciliation.run(
        stack.pg, "sim", date(2000, 1, 1), empty, audit.Actor("test:matrix", "platform")
    )
    world.recon_run = run["id"]
    async with stack.pg.acquire() as conn, conn.transaction():
        for n in range(40):
            entry = await risk.add_entry(
                conn, ListName.BLOCK, Kind.DEVICE, _unique(f"matrix-{n}"), "test:matrix"
            )
            world.risk_entries.append(entry["id"])
        empty = await risk.save_version(conn, [], Thresholds(), "test:matrix", "matrix")
        world.risk_version = empty["version"]
        world.review = paid["id"]
        await conn.execute(
            "INSERT INTO risk_reviews (payment_id, merchant_id, status, score, due_at) "
            "VALUES ($1, $2, 'rejected', 60, now())",
            paid["id"],
            shop.merchant_id,
        )
    return world, callers


async def test_every_route_is_in_the_matrix_or_public() -> None:
    app = create_app(load_settings({}))
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    covered = {(e.method, e.route) for e in ENDPOINTS}
    assert routes == covered | PUBLIC, routes ^ (covered | PUBLIC)
    spec = orjson.loads(document("http://127.0.0.1", ROUTES))
    undocumented = [
        (method, path)
        for method, path in routes
        if path.startswith("/api/v1/")
        and path != "/api/v1/openapi.json"
        and method.lower() not in spec["paths"].get(path, {})
    ]
    assert not undocumented, f"missing from the OpenAPI document: {undocumented}"


async def test_authorization_matrix(world: tuple[World, list[Caller]]) -> None:
    state, callers = world
    mismatches = []
    for caller in callers:
        for endpoint in ENDPOINTS:
            status, body = await caller.portal.call(
                endpoint.method, endpoint.path(state), endpoint.body(state)
            )
            want, got = expected(endpoint, caller), outcome(status)
            if got == "403":
                assert body["error"]["type"] == "permission_error", body
            if want != got:
                mismatches.append(
                    (caller.name, endpoint.method, endpoint.route, want, status, body)
                )
    assert not mismatches, "\n".join(map(str, mismatches))


async def test_matrix_has_both_answers_for_every_endpoint(
    world: tuple[World, list[Caller]],
) -> None:
    """The table is not one-sided: each endpoint admits someone and refuses someone."""
    _, callers = world
    for endpoint in ENDPOINTS:
        answers = {expected(endpoint, c) for c in callers}
        assert "allowed" in answers and ({"403", "404"} & answers), endpoint.route
