"""Agents against the running node: review and activation, a three-level chain with mark-up
rates, a payment's commission at every level (and its reversal on refund), grants, subtree
isolation, and moving a subtree."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.access import Realm
from domain.commission import Mode
from domain.fees import Rate
from gateway.client import MerchantClient
from infra import agents, audit, settlement
from tests.conftest import Receiver, wait_status
from tests.pdf import pdf_text
from tests.portal import PASSWORD, Portal, make_user, platform_setting, setting_changes
from tests.stack import TEST_SETTINGS, Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _email(tag: str) -> str:
    return f"{tag}-{time.time_ns()}@example.com"


async def _register(stack: Stack, http, admin: Portal, tag: str) -> tuple[str, Portal]:
    """A top agent, registered, reviewed and activated; its owner signed in."""
    email = _email(tag)
    owner = Portal(stack, http, "", email)
    status, agent = await owner.call(
        "POST",
        "/api/v1/agents/register",
        {"name": tag, "email": email, "password": PASSWORD},
        token="",
    )
    assert status == 201 and agent["status"] == "submitted", agent
    for step in ("under_review", "approved", "active"):
        status, body = await admin.call("PUT", f"/api/v1/agents/{agent['id']}", {"status": step})
        assert status == 200 and body["status"] == step, body
    await owner.sign_in()
    return agent["id"], owner


async def _review(admin: Portal, kind: str, child_id: str) -> None:
    """The platform's review of what an agent opened: submitted to active."""
    for step in ("under_review", "approved", "active"):
        status, body = await admin.call("PUT", f"/api/v1/{kind}/{child_id}", {"status": step})
        assert status == 200 and body["status"] == step, body


async def _open_agent(
    parent: Portal, parent_id: str, tag: str, grants: list[str], admin: Portal
) -> tuple[dict[str, Any], Portal]:
    """A sub-agent opened by `parent`, reviewed and activated by the platform."""
    email = _email(tag)
    status, child = await parent.call(
        "POST",
        f"/api/v1/agents/{parent_id}/subordinates",
        {"type": "agent", "name": tag, "email": email, "password": PASSWORD, "grants": grants},
    )
    assert status == 201 and child["status"] == "submitted", child
    await _review(admin, "agents", child["id"])
    owner = Portal(parent.stack, parent.http, "", email)
    await owner.sign_in()
    return child, owner


async def _policy(who: Portal, agent_id: str, bps: int, **extra: Any) -> tuple[int, Any]:
    return await who.call(
        "PUT",
        f"/api/v1/agents/{agent_id}/policies/USD",
        {"mode": "markup", "rate_bps": bps, **extra},
    )


async def test_registration_review_and_activation(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    email = _email("applicant")
    owner = Portal(stack, http, "", email)
    status, agent = await owner.call(
        "POST",
        "/api/v1/agents/register",
        {"name": "Applicant", "email": email, "password": PASSWORD},
        token="",
    )
    assert status == 201
    await owner.sign_in()
    status, body = await owner.call("GET", f"/api/v1/agents/{agent['id']}")
    assert status == 403, "nothing to do until the platform activates the agent"
    assert body["error"]["code"] == "permission_denied", body
    status, body = await admin.call("PUT", f"/api/v1/agents/{agent['id']}", {"status": "active"})
    assert status == 409 and body["error"]["code"] == "invalid_transition"
    for step in ("under_review", "approved", "active"):
        status, _ = await admin.call("PUT", f"/api/v1/agents/{agent['id']}", {"status": step})
        assert status == 200
    status, body = await owner.call("GET", f"/api/v1/agents/{agent['id']}")
    assert status == 200 and body["status"] == "active" and body["path"] == [agent["id"]]
    status, body = await owner.call("PUT", f"/api/v1/agents/{agent['id']}", {"status": "suspended"})
    assert status == 403 and body["error"]["code"] == "not_own_status"
    decisions = await audit.query(stack.pg, action="agent.update", target=f"agent:{agent['id']}")
    assert [d["after"]["status"] for d in reversed(decisions)] == [
        "under_review",
        "approved",
        "active",
    ]


async def test_three_level_chain_earns_its_mark_ups(stack: Stack, http, receiver: Receiver) -> None:
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    a_id, a = await _register(stack, http, admin, "top")
    all_grants = ["open_children", "suspend_children", "view_children", "set_rates"]
    b, b_owner = await _open_agent(a, a_id, "middle", all_grants, admin)
    c, c_owner = await _open_agent(
        b_owner, b["id"], "bottom", ["open_children", "view_children", "set_rates"], admin
    )
    assert c["path"] == [a_id, b["id"], c["id"]]

    # Rates: the platform sells to A at 1.30 %, A to B at 1.50 %, B to C at 1.80 %.
    status, body = await _policy(a, a_id, 100)
    assert status == 403 and body["error"]["code"] == "not_own_rate"
    assert (await _policy(admin, a_id, 130))[0] == 200
    status, body = await _policy(a, b["id"], 120)
    assert status == 400 and body["error"]["code"] == "rate_below_cost"
    assert (await _policy(a, b["id"], 150))[0] == 200
    assert (await _policy(b_owner, c["id"], 180))[0] == 200
    status, body = await _policy(c_owner, c["id"], 200)
    assert status == 403, "nobody sets their own rate"

    # C opens a merchant at 2.50 %; below C's own 1.80 % is refused.
    merchant = {
        "type": "merchant",
        "name": "Tea under C",
        "notify_url": "http://placeholder.invalid/",
        "currencies": ["USD"],
    }
    status, body = await c_owner.call(
        "POST", f"/api/v1/agents/{c['id']}/subordinates", {**merchant, "fee_bps": 150}
    )
    assert status == 400 and body["error"]["code"] == "rate_below_cost"
    status, shop = await c_owner.call(
        "POST", f"/api/v1/agents/{c['id']}/subordinates", {**merchant, "fee_bps": 250}
    )
    assert status == 201 and shop["agent_id"] == c["id"], shop
    await _review(admin, "merchants", shop["id"])
    await stack.pg.execute(
        "UPDATE merchants SET notify_url = $2 WHERE id = $1",
        shop["id"],
        f"{receiver.url}/{shop['id']}",
    )
    receiver.secrets[shop["id"]] = shop["webhook_secret"].encode()
    client = MerchantClient(stack.url, shop["key_id"], shop["secret"], http)

    # 1000.00 USD: fee 25.00, channel cost 12.00 (the simulator's 1.20 %).
    _, paid = await client.create_payment(
        amount="1000.00", currency="USD", merchant_order_id="chain-1", method="card"
    )
    assert paid["method"] == "card"
    await wait_status(client, paid["id"], {"succeeded"})
    expected = {a_id: "2.00", b["id"]: "3.00", c["id"]: "7.00"}
    earned_under = {a_id: (1, 130), b["id"]: (2, 150), c["id"]: (3, 180)}
    for agent_id, owner in ((a_id, a), (b["id"], b_owner), (c["id"], c_owner)):
        status, report = await owner.call("GET", f"/api/v1/agents/{agent_id}/commissions")
        assert status == 200, report
        assert [(r["payment_id"], r["amount"]) for r in report["data"]] == [
            (paid["id"], expected[agent_id])
        ]
        (record,) = report["data"]
        level, bps = earned_under[agent_id]
        assert (record["level"], record["mode"], record["rate_bps"], record["fixed"]) == (
            level,
            "markup",
            bps,
            "0.00",
        ), "each record keeps the level and terms it was earned under"
        assert report["totals"] == {"USD": {"amount": expected[agent_id], "count": 1}}
    balances = dict(
        await stack.pg.fetch(
            "SELECT name, balance FROM ledger_accounts WHERE name = ANY($1::text[])",
            [f"agent:{x}:commission" for x in expected],
        )
    )
    assert balances == {
        f"agent:{a_id}:commission": -200,
        f"agent:{b['id']}:commission": -300,
        f"agent:{c['id']}:commission": -700,
    }, "the postings carry the same amounts as the reports"

    # A sees the merchant's payments through the tree; B's grants let it too.
    status, body = await a.call("GET", f"/api/v1/payments/{paid['id']}")
    assert status == 200 and body["status"] == "succeeded"
    status, body = await a.call("GET", f"/api/v1/payments?merchant_id={shop['id']}")
    assert status == 200 and [p["id"] for p in body["data"]] == [paid["id"]]

    # A refund of 40 % takes back 40 % of every commission.
    status, refund = await client.request(
        "POST", "/api/v1/refunds", {"payment_id": paid["id"], "amount": "400.00"}
    )
    assert status == 201
    await wait_status(client, paid["id"], {"partially_refunded"})
    status, report = await c_owner.call("GET", f"/api/v1/agents/{c['id']}/commissions")
    assert report["totals"] == {"USD": {"amount": "4.20", "count": 2}}
    assert report["data"][0]["kind"] == "refund" and report["data"][0]["amount"] == "-2.80"
    assert report["data"][0]["ref"] == refund["id"]
    assert (report["data"][0]["level"], report["data"][0]["rate_bps"]) == (3, 180), (
        "a reversal repeats the terms of the commission it reverses"
    )
    # Every agent's commission rows add up to its ledger balance, refund included.
    sums = dict(
        await stack.pg.fetch(
            "SELECT 'agent:' || agent_id || ':commission', sum(amount) FROM commissions "
            "WHERE agent_id = ANY($1::text[]) GROUP BY agent_id",
            list(expected),
        )
    )
    balances = dict(
        await stack.pg.fetch(
            "SELECT name, balance FROM ledger_accounts WHERE name = ANY($1::text[])",
            list(sums),
        )
    )
    assert sums == {name: -balance for name, balance in balances.items()}
    assert sums[f"agent:{c['id']}:commission"] == 420
    status, text = await _csv(c_owner, f"/api/v1/agents/{c['id']}/commissions?format=csv")
    assert status == 200 and text.splitlines()[0].startswith("created,ref,kind")
    assert len(text.splitlines()) == 3

    # C's statement: every commission line with its payment, merchant, level, mode and rate.
    later = datetime.now(UTC) + timedelta(days=15)  # past C's weekly period
    released = await settlement.run(stack.pg, stack.settings, later, c["id"])
    assert released is not None and released.released == 2, released
    week_after = later + timedelta(days=8)  # the release is dated `later`: its week ended
    closed = await settlement.run(stack.pg, stack.settings, week_after, c["id"])
    assert closed is not None and closed.statements, closed
    lines = []
    for statement_id in closed.statements:
        status, detail = await c_owner.call("GET", f"/api/v1/settlements/{c['id']}/{statement_id}")
        assert status == 200, detail
        lines += [line for line in detail["lines"]["data"] if line["kind"] != "carried"]
    terms = {"level": 3, "mode": "markup", "rate_bps": 180, "fixed": "0.00"}
    assert sorted(
        (line["kind"], line["payment_id"], line["merchant_id"], line["commission"])
        for line in lines
    ) == [("payment", paid["id"], shop["id"], "7.00"), ("refund", paid["id"], shop["id"], "-2.80")]
    assert all(line["commission_terms"] == terms for line in lines), lines
    status, text = await _csv(
        c_owner, f"/api/v1/settlements/{c['id']}/{closed.statements[-1]}?format=csv"
    )
    assert status == 200 and text.splitlines()[0].endswith(",level,mode,rate_bps,fixed"), text
    assert all(row.endswith(",3,markup,180,0.00") for row in text.splitlines()[1:]), text
    async with http.get(
        f"{stack.url}/api/v1/settlements/{c['id']}/{closed.statements[-1]}?format=pdf",
        headers={"Authorization": f"Bearer {c_owner.access}"},
    ) as response:
        assert response.status == 200
        text = " ".join(pdf_text(await response.read()).split())  # cells wrap in columns
        assert "分潤條件" in text and "L3 markup 180" in text, text

    # Outsiders: another top agent sees none of it.
    _, x = await _register(stack, http, admin, "rival")
    for path in (
        f"/api/v1/agents/{a_id}",
        f"/api/v1/agents/{c['id']}/commissions",
        f"/api/v1/payments?merchant_id={shop['id']}",
    ):
        status, body = await x.call("GET", path)
        assert status == 403 and body["error"]["type"] == "permission_error", (path, body)
    status, _ = await x.call("GET", f"/api/v1/payments/{paid['id']}")
    assert status == 404
    status, body = await c_owner.call("GET", f"/api/v1/agents/{b['id']}")
    assert status == 403, "a child cannot look up at its parent"
    status, body = await x.call(
        "PUT", f"/api/v1/agents/{c['id']}/policies/USD", {"mode": "markup", "rate_bps": 200}
    )
    assert status == 403


async def _csv(who: Portal, path: str) -> tuple[int, str]:
    async with who.http.get(
        who.stack.url + path, headers={"Authorization": f"Bearer {who.access}"}
    ) as response:
        assert response.content_type == "text/csv"
        return response.status, await response.text()


async def test_grants_limit_what_a_parent_lets_a_child_do(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    a_id, a = await _register(stack, http, admin, "granter")
    b, b_owner = await _open_agent(a, a_id, "limited", ["view_children"], admin)
    status, body = await b_owner.call(
        "POST",
        f"/api/v1/agents/{b['id']}/subordinates",
        {"type": "agent", "name": "x", "email": _email("x"), "password": PASSWORD},
    )
    assert status == 403 and body["error"]["code"] == "grant_missing"
    status, body = await b_owner.call("PUT", f"/api/v1/agents/{b['id']}", {"grants": ["set_rates"]})
    assert status == 403 and body["error"]["code"] == "not_own_grants"
    status, body = await a.call(
        "PUT", f"/api/v1/agents/{b['id']}", {"grants": ["open_children", "view_children"]}
    )
    assert status == 200 and body["grants"] == ["open_children", "view_children"]
    status, body = await b_owner.call(
        "POST",
        f"/api/v1/agents/{b['id']}/subordinates",
        {
            "type": "agent",
            "name": "x",
            "email": _email("x"),
            "password": PASSWORD,
            "grants": ["set_rates"],
        },
    )
    assert status == 403 and body["error"]["code"] == "privilege_escalation"
    status, c = await b_owner.call(
        "POST",
        f"/api/v1/agents/{b['id']}/subordinates",
        {"type": "agent", "name": "x", "email": _email("x"), "password": PASSWORD},
    )
    assert status == 201
    await _review(admin, "agents", c["id"])
    status, body = await b_owner.call("PUT", f"/api/v1/agents/{c['id']}", {"status": "suspended"})
    assert status == 403 and body["error"]["code"] == "grant_missing"
    status, body = await a.call("PUT", f"/api/v1/agents/{c['id']}", {"status": "suspended"})
    assert status == 200 and body["status"] == "suspended", "the grandparent holds the grant"


_SHOP = {
    "type": "merchant",
    "name": "Opened shop",
    "notify_url": "http://placeholder.invalid/",
    "currencies": ["USD"],
}


async def test_what_an_agent_opens_waits_for_the_platforms_review(stack: Stack, http) -> None:
    """Issue 12: a merchant an agent opened took a 1,000.00 USD payment at once, without the
    platform's KYC review. What an agent opens starts `submitted` and is reviewed like an
    application; what the platform opens (it is the reviewer) is active."""
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    a_id, a = await _register(stack, http, admin, "opener")
    subordinates = f"/api/v1/agents/{a_id}/subordinates"
    email = _email("opened")
    status, sub = await a.call(
        "POST",
        subordinates,
        {"type": "agent", "name": "opened", "email": email, "password": PASSWORD},
    )
    assert status == 201 and sub["status"] == "submitted", sub
    status, shop = await a.call("POST", subordinates, _SHOP)
    assert status == 201 and shop["status"] == "submitted", shop
    client = MerchantClient(stack.url, shop["key_id"], shop["secret"], http)
    status, body = await client.create_payment(
        amount="1000.00", currency="USD", merchant_order_id="opened-1"
    )
    assert status == 403 and body["error"]["code"] == "merchant_inactive", body
    sub_owner = Portal(stack, http, "", email)
    await sub_owner.sign_in()
    status, body = await sub_owner.call("GET", f"/api/v1/agents/{sub['id']}")
    assert status == 403, "nothing to do until the platform activates it"
    for kind, child in (("agents", sub["id"]), ("merchants", shop["id"])):
        status, body = await a.call("PUT", f"/api/v1/{kind}/{child}", {"status": "under_review"})
        assert status == 403 and body["error"]["code"] == "platform_only", body
        await _review(admin, kind, child)
    await asyncio.sleep(float(TEST_SETTINGS["JUHE_GATEWAY__MERCHANT_CACHE_TTL_S"]) + 0.2)
    status, body = await client.create_payment(
        amount="1000.00", currency="USD", merchant_order_id="opened-2"
    )
    assert status == 201, body
    status, body = await sub_owner.call("GET", f"/api/v1/agents/{sub['id']}")
    assert status == 200 and body["status"] == "active", body
    opened = await audit.query(stack.pg, action="agent.open", target=f"agent:{sub['id']}")
    assert opened[0]["after"]["status"] == "submitted"
    placed = await audit.query(stack.pg, action="merchant.place", target=f"merchant:{shop['id']}")
    assert placed[0]["after"] == {"agent_id": a_id, "status": "submitted"}
    status, own = await admin.call("POST", subordinates, _SHOP)
    assert status == 201 and own["status"] == "active", own


async def test_the_platform_may_let_agents_activate_what_they_open(stack: Stack, http) -> None:
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    a_id, a = await _register(stack, http, admin, "trusted")
    async with platform_setting(admin, "agent_opens_active", True) as before:
        assert before is False
        subordinates = f"/api/v1/agents/{a_id}/subordinates"
        status, shop = await a.call("POST", subordinates, _SHOP)
        assert status == 201 and shop["status"] == "active", shop
        client = MerchantClient(stack.url, shop["key_id"], shop["secret"], http)
        status, body = await client.create_payment(
            amount="10.00", currency="USD", merchant_order_id="trusted-1"
        )
        assert status == 201, body
        status, sub = await a.call(
            "POST",
            subordinates,
            {"type": "agent", "name": "t", "email": _email("t"), "password": PASSWORD},
        )
        assert status == 201 and sub["status"] == "active", sub
    assert await setting_changes(admin, "agent_opens_active") == [
        (False, True),
        (True, False),
    ], "audited"


async def test_money_terms_take_set_rates_and_stay_in_bounds(stack: Stack, http) -> None:
    """Every path that changes a price asks for the same grant: opening a merchant at a price,
    repricing it, its payment configuration, a child's policy; and every price has the same
    bounds (issue 12: a grantless agent priced its merchant at 90 %)."""
    assert stack.pg is not None
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    a_id, a = await _register(stack, http, admin, "pricer")
    assert (await _policy(admin, a_id, 100))[0] == 200
    b, b_owner = await _open_agent(a, a_id, "no-rates", ["open_children", "view_children"], admin)
    c, c_owner = await _open_agent(b_owner, b["id"], "grandchild", ["open_children"], admin)
    merchant = {
        "type": "merchant",
        "name": "Priced shop",
        "notify_url": "http://placeholder.invalid/",
        "currencies": ["USD"],
    }

    async def fee(merchant_id: str) -> int:
        assert stack.pg is not None
        return await stack.pg.fetchval("SELECT fee_bps FROM merchants WHERE id = $1", merchant_id)

    # Without set_rates, B opens merchants at the platform's price and changes no money terms.
    subordinates = f"/api/v1/agents/{b['id']}/subordinates"
    status, body = await b_owner.call("POST", subordinates, {**merchant, "fee_bps": 300})
    assert status == 403 and body["error"]["code"] == "grant_missing", body
    status, shop = await b_owner.call("POST", subordinates, merchant)
    assert status == 201, shop
    assert await fee(shop["id"]) == stack.settings.fees.merchant_bps
    pricing = f"/api/v1/agents/{b['id']}/merchants/{shop['id']}/pricing"
    for path, change in (
        (pricing, {"fee_bps": 9000}),
        (pricing, {"fee_bps": 300}),
        (f"/api/v1/merchants/{shop['id']}/payment-config", {"fee_bps": 300}),
        (f"/api/v1/agents/{c['id']}/policies/USD", {"mode": "markup", "rate_bps": 150}),
    ):
        status, body = await b_owner.call("PUT", path, change)
        assert status == 403 and body["error"]["code"] == "grant_missing", (path, body)
        assert body["error"]["type"] == "permission_error"
    assert await fee(shop["id"]) == stack.settings.fees.merchant_bps
    denials = await audit.query(stack.pg, action="access.denied", target=f"PUT {pricing}")
    assert {d["after"]["code"] for d in denials} == {"grant_missing"}, "denials are audited"

    # Nor does B reprice its grandchild's merchant; A, which holds set_rates, may.
    status, deep = await c_owner.call("POST", f"/api/v1/agents/{c['id']}/subordinates", merchant)
    assert status == 201, deep
    deep_pricing = f"/api/v1/agents/{c['id']}/merchants/{deep['id']}/pricing"
    status, body = await b_owner.call("PUT", deep_pricing, {"fee_bps": 300})
    assert status == 403 and body["error"]["code"] == "grant_missing"
    status, body = await a.call("PUT", deep_pricing, {"fee_bps": 300})
    assert status == 200 and body["fee_bps"] == 300, body

    # Bounds: at most 20 % and 1.00 fixed, wherever a price is set; nothing changes.
    for who, method, path, change, param in (
        (a, "PUT", deep_pricing, {"fee_bps": 2001}, "fee_bps"),
        (a, "PUT", deep_pricing, {"fee_bps": 10_000}, "fee_bps"),
        (a, "PUT", deep_pricing, {"fee_bps": 300, "fee_fixed_minor": 101}, "fee_fixed_minor"),
        (a, "POST", f"/api/v1/agents/{a_id}/subordinates", {**merchant, "fee_bps": 2001}, None),
        (admin, "PUT", f"/api/v1/merchants/{deep['id']}/payment-config", {"fee_bps": 2001}, None),
        (
            admin,
            "PUT",
            f"/api/v1/agents/{a_id}/policies/USD",
            {"mode": "markup", "rate_bps": 2001},
            "rate_bps",
        ),
        (
            admin,
            "PUT",
            f"/api/v1/agents/{a_id}/policies/USD",
            {"mode": "percentage", "rate_bps": 100, "share_bps": 2001},
            "share_bps",
        ),
    ):
        status, body = await who.call(method, path, change)
        assert status == 400 and body["error"]["code"] == "invalid_field", (path, change, body)
        assert param is None or body["error"]["param"] == param, body
        assert body["error"]["message"].endswith(("<= 2000", "<= 100")), body
    assert await fee(deep["id"]) == 300
    status, _ = await admin.call(
        "PUT", f"/api/v1/agents/{a_id}/policies/USD", {"mode": "markup", "rate_bps": 2000}
    )
    assert status == 200, "the bound itself is a valid price"


async def test_moving_a_subtree_is_one_audited_operation(stack: Stack, http) -> None:
    admin = await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])
    a_id, a = await _register(stack, http, admin, "from")
    x_id, _ = await _register(stack, http, admin, "to")
    grants = ["open_children", "view_children"]
    b, b_owner = await _open_agent(a, a_id, "branch", grants, admin)
    c, _ = await _open_agent(b_owner, b["id"], "leaf", grants, admin)
    status, body = await a.call(
        "POST", f"/api/v1/agents/{x_id}/subordinates", {"type": "agent", "agent_id": b["id"]}
    )
    assert status == 403, "only the platform moves existing agents"
    status, body = await admin.call(
        "POST", f"/api/v1/agents/{c['id']}/subordinates", {"type": "agent", "agent_id": b["id"]}
    )
    assert status == 409 and body["error"]["code"] == "invalid_move"
    status, moved = await admin.call(
        "POST", f"/api/v1/agents/{x_id}/subordinates", {"type": "agent", "agent_id": b["id"]}
    )
    assert status == 200 and moved["path"] == [x_id, b["id"]] and moved["parent_id"] == x_id
    status, leaf = await admin.call("GET", f"/api/v1/agents/{c['id']}")
    assert leaf["path"] == [x_id, b["id"], c["id"]], "the whole subtree moved"
    status, _ = await a.call("GET", f"/api/v1/agents/{c['id']}")
    assert status == 403, "the old parent lost sight of it"
    record = (await audit.query(stack.pg, action="agent.move", target=f"agent:{b['id']}"))[0]
    assert record["after"] == {"parent_id": x_id, "agents_moved": 2}


async def test_chain_cache_follows_policy_changes_and_effective_times(
    stack: Stack, new_merchant
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    top, kid = f"agt_cache{time.time_ns()}", f"agt_cachekid{time.time_ns()}"
    now = datetime.now(UTC)
    async with stack.pg.acquire() as conn, conn.transaction():
        for agent_id, parent in ((top, None), (kid, top)):
            await agents.create_agent(
                conn,
                agent_id=agent_id,
                name=agent_id,
                email=f"{agent_id}@example.com",
                parent_id=parent,
                status="active",
                grants=[],
            )
        await agents.place_merchant(conn, shop.merchant_id, kid)
        for agent_id, bps in ((top, 100), (kid, 150)):
            await agents.set_policy(
                conn, agent_id, agents.PolicyInput("*", Mode.MARKUP, Rate(bps)), now, "test"
            )
    cache = agents.ChainCache()
    key, card = (shop.merchant_id, "USD", "*"), (shop.merchant_id, "USD", "card")
    chains = await cache.chains(stack.pg, {key})
    assert [(t.agent_id, t.rate.bps) for t in chains[key]] == [(top, 100), (kid, 150)]
    async with stack.pg.acquire() as conn, conn.transaction():
        await agents.set_policy(
            conn,
            kid,
            agents.PolicyInput("USD", Mode.MARKUP, Rate(170), method="card"),
            now,
            "test",
        )
    chains = await cache.chains(stack.pg, {key, card})
    assert [t.rate.bps for t in chains[card]] == [100, 170], "the method's own policy first"
    assert [t.rate.bps for t in chains[key]] == [100, 150]
    async with stack.pg.acquire() as conn, conn.transaction():
        await agents.set_policy(
            conn, kid, agents.PolicyInput("USD", Mode.MARKUP, Rate(160)), now, "test"
        )
        await agents.set_policy(
            conn,
            top,
            agents.PolicyInput("USD", Mode.MARKUP, Rate(120)),
            now + timedelta(seconds=1.5),
            "test",
        )
    chains = await cache.chains(stack.pg, {key})
    assert [t.rate.bps for t in chains[key]] == [100, 160], "changed now; the other not yet"
    await asyncio.sleep(1.6)
    chains = await cache.chains(stack.pg, {key})
    assert [t.rate.bps for t in chains[key]] == [120, 160], "in force once its time came"
