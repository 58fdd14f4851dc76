"""Merchant onboarding and management against the running node: registration with KYC, review
and activation, payment configuration, transactions, and API key rotation and revocation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from domain.access import Realm
from gateway.client import MerchantClient
from infra import audit
from infra.secretbox import SecretBox
from tests.conftest import assert_sealed, wait_status
from tests.portal import PASSWORD, Portal, make_user
from tests.stack import TEST_SETTINGS, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
IBAN = "DE89 3704 0044 0532 0130 00"


def application(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Lantern Tea",
        "email": email,
        "password": PASSWORD,
        "notify_url": "http://placeholder.invalid/hooks",
        "currencies": ["USD", "TWD"],
        "legal": {
            "entity_name": "Lantern Tea Ltd",
            "registration_number": "TW-12345678",
            "country": "TW",
            "address": "1 Tea Street, Taipei",
        },
        "owners": [{"name": "Mei Lin", "share_percent": 100, "nationality": "TW"}],
        "documents": [
            {"kind": "registration_certificate", "filename": "reg.pdf", "sha256": "a" * 64}
        ],
        "bank_account": {"holder": "Lantern Tea Ltd", "number": IBAN, "bank_name": "Tea Bank"},
        **extra,
    }


async def _register(stack: Stack, http) -> tuple[dict[str, Any], Portal]:
    email = f"tea-{time.time_ns()}@example.com"
    owner = Portal(stack, http, "", email)
    status, merchant = await owner.call(
        "POST", "/api/v1/merchants/register", application(email), token=""
    )
    assert status == 201, merchant
    await owner.sign_in()
    return merchant, owner


async def test_registration_review_and_activation(stack: Stack, http) -> None:
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    merchant, owner = await _register(stack, http)
    assert merchant["status"] == "submitted"
    assert merchant["kyc"]["bank_account"] == "****3000"
    assert IBAN not in orjson.dumps(merchant).decode()
    stored = await stack.pg.fetchval(
        "SELECT bank_account FROM merchant_kyc WHERE merchant_id = $1", merchant["id"]
    )
    assert "3704" not in stored, "sealed at rest"
    box = SecretBox(stack.settings.secrets.keys, stack.settings.secrets.active)
    assert orjson.loads(box.open(stored, merchant["id"]))["number"] == IBAN
    webhook, key = await stack.pg.fetchrow(
        "SELECT m.webhook_secret, k.secret FROM merchants m "
        "JOIN api_keys k ON k.merchant_id = m.id WHERE m.id = $1",
        merchant["id"],
    )
    assert_sealed(webhook, merchant["webhook_secret"])
    assert_sealed(key, merchant["secret"])

    client = MerchantClient(stack.url, merchant["key_id"], merchant["secret"], http)
    status, body = await client.create_payment(
        amount="1.00", currency="USD", merchant_order_id="o1"
    )
    assert status == 403 and body["error"]["code"] == "merchant_inactive"
    status, body = await owner.call(
        "PUT", f"/api/v1/merchants/{merchant['id']}", {"status": "active"}
    )
    assert status == 403 and body["error"]["code"] == "not_own_status"
    status, body = await admin.call(
        "PUT", f"/api/v1/merchants/{merchant['id']}", {"status": "active"}
    )
    assert status == 409 and body["error"]["code"] == "invalid_transition"
    for step, reason in (
        ("under_review", None),
        ("approved", "documents check out"),
        ("active", None),
    ):
        change = {"status": step, **({"reason": reason} if reason else {})}
        status, body = await admin.call("PUT", f"/api/v1/merchants/{merchant['id']}", change)
        assert status == 200 and body["status"] == step, body
    reviews = await stack.pg.fetch(
        "SELECT to_status, reason, reviewer FROM merchant_reviews "
        "WHERE merchant_id = $1 ORDER BY at",
        merchant["id"],
    )
    assert [(r["to_status"], r["reason"]) for r in reviews] == [
        ("under_review", None),
        ("approved", "documents check out"),
        ("active", None),
    ]
    assert all(r["reviewer"] == f"user:{admin.user_id}" for r in reviews)
    assert await audit.query(
        stack.pg, action="merchant.review", target=f"merchant:{merchant['id']}"
    )
    await asyncio.sleep(float(TEST_SETTINGS["JUHE_GATEWAY__MERCHANT_CACHE_TTL_S"]) + 0.2)
    status, body = await client.create_payment(
        amount="1.00", currency="USD", merchant_order_id="o1"
    )
    assert status == 201, body


async def test_bad_applications_are_refused_whole(stack: Stack, http) -> None:
    email = f"bad-{time.time_ns()}@example.com"
    anon = Portal(stack, http, "", email)
    for change, param in (
        ({"documents": [{"kind": "id_card", "filename": "x", "sha256": "nothex"}]}, "documents"),
        ({"owners": []}, "owners"),
        ({"bank_account": {"holder": "x", "number": "12", "bank_name": "y"}}, "bank_account"),
        ({"currencies": ["usd"]}, "currencies"),
    ):
        status, body = await anon.call(
            "POST", "/api/v1/merchants/register", {**application(email), **change}, token=""
        )
        assert status == 400 and body["error"]["param"].startswith(param), (change, body)
    assert stack.pg is not None
    assert not await stack.pg.fetchval("SELECT count(*) FROM merchants WHERE email = $1", email)


async def test_payment_config_split_between_merchant_and_platform(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    merchant, owner = await _register(stack, http)
    path = f"/api/v1/merchants/{merchant['id']}/payment-config"
    status, body = await owner.call("PUT", path, {"fee_bps": 10})
    assert status == 403 and body["error"]["code"] == "set_by_platform_or_agent"
    status, body = await owner.call(
        "PUT",
        path,
        {
            "return_url": "https://tea.example/done",
            "settlement": {
                "cycle": "T+1",
                "account": {"holder": "Lantern", "number": "000123456789", "bank_name": "B"},
            },
        },
    )
    assert status == 200, body
    assert body["return_url"] == "https://tea.example/done"
    assert body["config"]["settlement"] == {"cycle": "T+1", "account": "****6789"}
    status, body = await admin.call(
        "PUT", path, {"fee_bps": 180, "currencies": ["USD"], "methods": ["card", "ewallet"]}
    )
    assert status == 200 and body["fee_bps"] == 180 and body["currencies"] == ["USD"]
    assert body["config"]["methods"] == ["card", "ewallet"]
    record = (await audit.query(stack.pg, action="merchant.config"))[0]
    assert record["before"]["fee_bps"] == 250 and record["after"]["fee_bps"] == 180
    assert (
        "000123456789"
        not in orjson.dumps(
            await audit.query(stack.pg, target=f"merchant:{merchant['id']}")
        ).decode()
    )


async def test_transactions_filter_page_and_export(stack: Stack, http, new_merchant) -> None:
    shop = await new_merchant()
    ids = []
    for n, amount in enumerate(("1.00", "2.00", "3.56", "4.00")):  # .56: never paid
        status, created = await shop.create_payment(
            amount=amount, currency="USD" if n < 3 else "EUR", merchant_order_id=f"t{n}"
        )
        assert status == 201
        ids.append(created["id"])
    for pid in ids[:2]:
        await wait_status(shop, pid, {"succeeded"})
    owner = await make_user(stack, http, Realm.MERCHANT, shop.merchant_id, ["merchant_owner"])
    base = f"/api/v1/merchants/{shop.merchant_id}/transactions"
    status, page = await owner.call("GET", f"{base}?limit=2")
    assert status == 200 and len(page["data"]) == 2 and page["has_more"]
    status, rest = await owner.call(
        "GET", f"{base}?limit=10&starting_after={page['data'][-1]['id']}"
    )
    assert [p["id"] for p in page["data"] + rest["data"]] == sorted(ids, reverse=True)
    status, eur = await owner.call("GET", f"{base}?currency=EUR")
    assert [p["id"] for p in eur["data"]] == [ids[3]]
    status, paid = await owner.call("GET", f"{base}?status=succeeded&currency=USD")
    assert {p["id"] for p in paid["data"]} == set(ids[:2])
    async with http.get(
        stack.url + base + "?format=csv", headers={"Authorization": f"Bearer {owner.access}"}
    ) as response:
        text = await response.text()
        assert response.status == 200 and response.content_type == "text/csv"
    lines = text.splitlines()
    assert lines[0] == "id,created,status,amount,currency,merchant_order_id,fee"
    assert len(lines) == 5
    status, body = await owner.call("GET", f"{base}?since=yesterday")
    assert status == 400 and body["error"]["param"] == "since"


async def test_keys_rotate_with_overlap_and_revoke(stack: Stack, http, new_merchant) -> None:
    shop = await new_merchant()
    owner = await make_user(stack, http, Realm.MERCHANT, shop.merchant_id, ["merchant_owner"])
    keys = f"/api/v1/merchants/{shop.merchant_id}/keys"
    _, _ = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="k0")
    status, listed = await owner.call("GET", keys)
    assert status == 200 and listed["data"][0]["key_id"] == shop.key_id
    assert listed["data"][0]["last_used"] is not None, "recorded off the request path"
    status, fresh = await owner.call("POST", f"{keys}/{shop.key_id}/rotate", {"overlap_s": 3600})
    assert status == 201 and fresh["secret"].startswith("sk_")
    new_client = MerchantClient(stack.url, fresh["key_id"], fresh["secret"], http)
    status, _ = await new_client.create_payment(
        amount="1.00", currency="USD", merchant_order_id="k1"
    )
    assert status == 201
    status, _ = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="k2")
    assert status == 201, "the old key works during the overlap"
    status, _ = await owner.call("POST", f"{keys}/{fresh['key_id']}/rotate", {"overlap_s": 0})
    assert status == 201
    status, body = await new_client.create_payment(
        amount="1.00", currency="USD", merchant_order_id="k3"
    )
    assert status == 401, "no overlap: the rotated key stops at once"
    status, revoked = await owner.call("POST", f"{keys}/{shop.key_id}/revoke")
    assert status == 200 and revoked["revoked_at"] is not None
    status, body = await shop.create_payment(amount="1.00", currency="USD", merchant_order_id="k4")
    assert status == 401 and body["error"]["code"] == "invalid_key"
    status, body = await owner.call("POST", f"{keys}/{shop.key_id}/revoke")
    assert status == 409 and body["error"]["code"] == "key_revoked"
    actions = {r["action"] for r in await audit.query(stack.pg, action="key", limit=100)}
    assert {"key.rotate", "key.revoke"} <= actions


async def _agent(stack: Stack, http, admin: Portal) -> tuple[str, Portal]:
    """A top agent, reviewed and activated, its owner signed in."""
    email = f"agent-{time.time_ns()}@example.com"
    owner = Portal(stack, http, "", email)
    _, agent = await owner.call(
        "POST",
        "/api/v1/agents/register",
        {"name": "Referrer", "email": email, "password": PASSWORD},
        token="",
    )
    for step in ("under_review", "approved", "active"):
        await admin.call("PUT", f"/api/v1/agents/{agent['id']}", {"status": step})
    await owner.sign_in()
    return agent["id"], owner


async def _invite(agent: Portal, agent_id: str, **body: Any) -> str:
    status, invitation = await agent.call(
        "POST", f"/api/v1/agents/{agent_id}/invitations", body or None
    )
    assert status == 201 and invitation["agent_id"] == agent_id, invitation
    return invitation["token"]


async def test_a_merchant_applying_under_an_agent_is_in_its_subtree(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    agent_id, agent_owner = await _agent(stack, http, admin)
    merchant_email = f"ref-{time.time_ns()}@example.com"
    status, merchant = await agent_owner.call(
        "POST",
        "/api/v1/merchants/register",
        application(merchant_email, invitation=await _invite(agent_owner, agent_id)),
        token="",
    )
    assert status == 201 and merchant["agent_id"] == agent_id, merchant
    assert merchant["status"] == "submitted", "reviewed like any application"
    status, body = await agent_owner.call("GET", f"/api/v1/merchants/{merchant['id']}")
    assert status == 200 and body["kyc"]["bank_account"] == "****3000"
    status, body = await agent_owner.call(
        "PUT", f"/api/v1/merchants/{merchant['id']}", {"status": "under_review"}
    )
    assert status == 403 and body["error"]["code"] == "platform_only"
    other = await make_user(stack, http, Realm.MERCHANT, "mch_elsewhere", ["merchant_owner"])
    status, _ = await other.call("GET", f"/api/v1/merchants/{merchant['id']}")
    assert status == 403


async def test_applying_under_an_agent_takes_its_invitation(stack: Stack, http) -> None:
    """Issue 12: anyone could register a merchant under any active agent's id. It takes that
    agent's invitation now: single use, with an expiry, stored only as a digest."""
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    agent_id, agent = await _agent(stack, http, admin)
    rival_id, rival = await _agent(stack, http, admin)
    anon = Portal(stack, http, "", "")

    async def apply(**referral: str) -> tuple[int, Any, str]:
        email = f"inv-{time.time_ns()}@example.com"
        status, body = await anon.call(
            "POST", "/api/v1/merchants/register", application(email, **referral), token=""
        )
        return status, body, email

    async def refused(code: str, param: str, **referral: str) -> None:
        status, body, email = await apply(**referral)
        assert status == 403 and body["error"]["code"] == code, (referral, body)
        assert body["error"]["type"] == "permission_error" and body["error"]["param"] == param
        assert stack.pg is not None
        assert not await stack.pg.fetchval("SELECT count(*) FROM users WHERE email = $1", email)

    await refused("invitation_required", "agent_id", agent_id=agent_id)
    await refused("invitation_required", "agent_id", agent_id="agt_nope")
    token = await _invite(agent, agent_id)
    invitation_id, secret = token.split(".", 1)
    stored = await stack.pg.fetchrow("SELECT * FROM agent_invitations WHERE id = $1", invitation_id)
    assert secret not in orjson.dumps(dict(stored), default=str).decode(), "kept as a digest"
    await refused("invalid_invitation", "invitation", invitation=token, agent_id=rival_id)
    await refused("invalid_invitation", "invitation", invitation=f"{invitation_id}.guess")
    await refused("invalid_invitation", "invitation", invitation="not-a-token")
    status, merchant, _ = await apply(invitation=token, agent_id=agent_id)
    assert status == 201 and merchant["agent_id"] == agent_id, "the refusals left it unused"
    await refused("invalid_invitation", "invitation", invitation=token)  # used up
    used = await stack.pg.fetchrow("SELECT * FROM agent_invitations WHERE id = $1", invitation_id)
    assert used["used_at"] is not None and used["merchant_id"] == merchant["id"]

    expiring = await _invite(rival, rival_id, expires_in=60)
    await stack.pg.execute(
        "UPDATE agent_invitations SET expires_at = now() - interval '1 second' WHERE id = $1",
        expiring.split(".", 1)[0],
    )
    await refused("invalid_invitation", "invitation", invitation=expiring)
    status, merchant, _ = await apply(invitation=await _invite(rival, rival_id))
    assert status == 201 and merchant["agent_id"] == rival_id, "agent_id may be left out"
    records = await audit.query(stack.pg, action="agent.invite", target=f"agent:{rival_id}")
    assert len(records) == 2 and all(token not in orjson.dumps(r).decode() for r in records)

    # Inviting takes the open_children grant, an active agent, and reach over it.
    status, body = await agent.call("POST", f"/api/v1/agents/{rival_id}/invitations")
    assert status == 403 and body["error"]["type"] == "permission_error", body
    status, body = await agent.call(
        "POST", f"/api/v1/agents/{agent_id}/invitations", {"expires_in": 31 * 86_400}
    )
    assert status == 400 and body["error"]["param"] == "expires_in", body
    status, _ = await admin.call("PUT", f"/api/v1/agents/{agent_id}", {"grants": []})
    assert status == 200
    status, body = await agent.call("POST", f"/api/v1/agents/{agent_id}/invitations")
    assert status == 403 and body["error"]["code"] == "grant_missing", body
    late = await _invite(rival, rival_id)
    status, _ = await admin.call("PUT", f"/api/v1/agents/{rival_id}", {"status": "suspended"})
    assert status == 200
    status, body = await admin.call("POST", f"/api/v1/agents/{rival_id}/invitations")
    assert status == 409 and body["error"]["code"] == "agent_inactive", body
    status, body, _ = await apply(invitation=late)
    assert status == 409 and body["error"]["code"] == "agent_inactive", body


async def test_only_enabled_methods_are_taken(stack: Stack, http, new_merchant) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    shop = await new_merchant()
    status, _ = await shop.create_payment(
        amount="1.00", currency="USD", merchant_order_id="m0", method="crypto"
    )
    assert status == 201, "no methods configured: any"
    status, _ = await admin.call(
        "PUT", f"/api/v1/merchants/{shop.merchant_id}/payment-config", {"methods": ["card"]}
    )
    assert status == 200
    status, body = await shop.create_payment(
        amount="1.00", currency="USD", merchant_order_id="m1", method="crypto"
    )
    assert status == 400 and body["error"]["code"] == "method_not_enabled"
    assert body["error"]["param"] == "method"
    status, _ = await shop.create_payment(
        amount="1.00", currency="USD", merchant_order_id="m2", method="card"
    )
    assert status == 201
