"""Withdrawals against a real node: a payout account, a withdrawal held at once and paid out by
the simulator (its callback, the ledger, the webhook), a statement paid, an agent's wallet,
bad input refused in the documented shape with nothing changed, concurrent requests that never
overdraw, maker–checker, a rejected account and a later failure that give the funds back, a
timeout asked about before any resend, a returned payout, a lost hand-over re-driven, and a
payout sent exactly once, across 200 withdrawals, while the channel pool is SIGKILLed."""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import time
from typing import Any

import aiohttp
import psutil
import pytest

from domain.access import Realm
from domain.ledger import Posting
from domain.settlement import Entity, period
from infra import agents, store, withdrawals
from tests.conftest import MerchantFactory, wait_status
from tests.integration.test_settlement_flow import settle
from tests.invariants import assert_ledger_invariants
from tests.portal import Portal, make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
BANK = {"kind": "bank_account", "number": "DE89370400440532013000", "holder": "Lantern"}


async def fund(stack: Stack, merchant_id: str, minor: int, currency: str = "USD") -> None:
    """Put `minor` in the merchant's available balance, as a released payment would."""
    assert stack.pg is not None
    lines = [
        Posting("test:funding", currency, minor),
        Posting(f"merchant:{merchant_id}:available", currency, -minor),
    ]
    async with stack.pg.acquire() as conn, conn.transaction():
        await store.post_entries(conn, [("adjustment", f"fund:{secrets.token_hex(6)}", lines)])


async def balance(owner: Portal) -> dict[str, str]:
    status, body = await owner.call("GET", "/api/v1/balances")
    assert status == 200, body
    return body["data"][0]


async def withdraw(owner: Portal, payload: dict[str, Any], key: str | None = None) -> tuple:
    headers = {"Idempotency-Key": key or secrets.token_hex(8)}
    return await owner.call("POST", "/api/v1/withdrawals", payload, headers=headers)


async def wait_withdrawal(owner: Portal, wid: str, wanted: set[str], timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await owner.call("GET", f"/api/v1/withdrawals/{wid}")
        assert status == 200, body
        if body["status"] in wanted or time.monotonic() > deadline:
            assert body["status"] in wanted, body
            return body
        await asyncio.sleep(0.1)


async def sim_payouts(stack: Stack, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(stack.settings.channels["sim"].base_url + "/_sim/payouts") as r:
        return await r.json()


async def setup(stack: Stack, http, new_merchant: MerchantFactory, funds: int, **rules: Any):
    """A funded merchant, its owner, a finance user, its bank account, and its USD rules."""
    shop = await new_merchant()
    mid = shop.merchant_id  # type: ignore[attr-defined]
    owner = await make_user(stack, http, Realm.MERCHANT, mid, ["merchant_owner"])
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    status, account = await owner.call("POST", "/api/v1/payout-accounts", BANK)
    assert status == 201 and account["number"] == "****3000", account
    status, body = await finance.call(
        "PUT",
        f"/api/v1/admin/withdrawals/rules/{mid}",
        {"currency": "USD", "min_amount": "10.00", **rules},
    )
    assert status == 200, body
    await fund(stack, mid, funds)
    return mid, owner, finance, account["id"]


async def test_a_withdrawal_is_held_then_paid_out(
    stack: Stack, http, new_merchant: MerchantFactory, receiver
) -> None:
    mid, owner, _, account = await setup(
        stack, http, new_merchant, 100_000, fee_fixed="1.00", fee_bps=100
    )
    key = secrets.token_hex(8)
    payload = {"amount": "100.00", "currency": "USD", "payout_account_id": account}
    status, w = await withdraw(owner, payload, key)
    assert status == 201 and w["fee"] == "2.00" and w["status"] == "requested", w
    status, again = await withdraw(owner, payload, key)
    assert status == 201 and again["id"] == w["id"], "the Idempotency-Key answers the first"
    status, body = await withdraw(owner, {**payload, "amount": "101.00"}, key)
    assert status == 409 and body["error"]["code"] == "idempotency_key_reused", body
    done = await wait_withdrawal(owner, w["id"], {"succeeded"})
    assert done["failure_code"] is None
    b = await balance(owner)
    assert (b["available"], b["reserved"], b["paid_out"]) == ("898.00", "0.00", "100.00"), b
    assert stack.pg is not None
    fees = await stack.pg.fetchval(
        "SELECT -balance FROM ledger_accounts WHERE name = 'platform:withdrawal_fees'"
    )
    assert fees >= 200
    kinds = await stack.pg.fetch(
        "SELECT kind FROM journal_entries WHERE ref = $1 ORDER BY id", w["id"]
    )
    assert [r["kind"] for r in kinds] == ["withdrawal_hold", "withdrawal_paid"]
    assert (await sim_payouts(stack, http))[w["id"]]["requests"] == 1
    for _ in range(100):
        types = await stack.pg.fetch("SELECT type FROM webhook_events WHERE merchant_id = $1", mid)
        if "withdrawal.succeeded" in {r["type"] for r in types}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no withdrawal.succeeded webhook in the outbox")
    status, listed = await owner.call("GET", "/api/v1/withdrawals?status=succeeded&currency=USD")
    assert status == 200 and [x["id"] for x in listed["data"]] == [w["id"]], listed
    # A payout callback is verified by the channel's adapter before it triggers anything.
    for channel, want in (("sim", 401), ("nosuch", 404)):
        async with http.post(
            f"{stack.url}/api/v1/payouts/callback/{channel}", data=b'{"event":"payout.paid"}'
        ) as response:
            assert response.status == want, await response.text()
    await assert_ledger_invariants(stack.pg)


async def test_bad_input_is_refused_and_changes_nothing(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    mid, owner, _, account = await setup(stack, http, new_merchant, 50_000, daily_limit="300.00")
    other_mid, stranger, _, other_account = await setup(stack, http, new_merchant, 10_000)
    ok = {"currency": "USD", "payout_account_id": account}
    before = await balance(owner)
    cases = [
        ({**ok, "amount": "-5.00"}, 400, "invalid_amount", "amount"),
        ({**ok, "amount": "0.00"}, 400, "invalid_amount", "amount"),
        ({**ok, "amount": "1.001"}, 400, "invalid_amount", "amount"),
        ({**ok, "amount": "9.99"}, 400, "amount_too_small", "amount"),
        ({**ok, "amount": "500.01"}, 400, "insufficient_funds", "amount"),
        ({**ok, "amount": "300.01"}, 400, "daily_limit_exceeded", "amount"),
        ({**ok, "amount": "10.00", "currency": "XXX"}, 400, "unsupported_currency", "currency"),
        (
            {**ok, "amount": "10.00", "payout_account_id": "pac_nope"},
            404,
            "resource_missing",
            "payout_account_id",
        ),
        (
            {**ok, "amount": "10.00", "payout_account_id": other_account},
            404,
            "resource_missing",
            "payout_account_id",
        ),
        ({**ok, "amount": "10.00", "entity": other_mid}, 403, "not_own_entity", "entity"),
        ({**ok, "amount": 10}, 400, None, None),
    ]
    for payload, want, code, param in cases:
        status, body = await withdraw(owner, payload)
        assert status == want, (payload, body)
        assert set(body["error"]) == {"type", "code", "message", "param"}, body
        if code is not None:
            assert (body["error"]["code"], body["error"]["param"]) == (code, param), body
    status, body = await owner.call("POST", "/api/v1/withdrawals", {**ok, "amount": "10.00"})
    assert status == 400 and body["error"]["code"] == "missing_idempotency_key", body
    assert await balance(owner) == before
    assert stack.pg is not None
    count = "SELECT count(*) FROM withdrawals WHERE entity_id = $1"
    assert await stack.pg.fetchval(count, mid) == 0

    # Another entity's withdrawal is not there for this one.
    status, theirs = await withdraw(
        stranger, {"amount": "10.00", "currency": "USD", "payout_account_id": other_account}
    )
    assert status == 201, theirs
    status, body = await owner.call("GET", f"/api/v1/withdrawals/{theirs['id']}")
    assert status == 404 and body["error"]["code"] == "resource_missing", body
    status, body = await owner.call("GET", f"/api/v1/withdrawals?entity={other_mid}")
    assert status == 403 and body["error"]["type"] == "permission_error", body


async def test_a_withdrawal_pays_a_closed_statement(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    mid, owner, _, account = await setup(stack, http, new_merchant, 25_000)
    assert stack.pg is not None
    funded = await stack.pg.fetchval(
        """SELECT max(e.created_at) FROM journal_entries e JOIN postings p ON p.entry_id = e.id
           JOIN ledger_accounts a ON a.id = p.account_id WHERE a.name = $1""",
        f"merchant:{mid}:available",
    )
    closed = await settle(stack, period("T+1", funded)[1], mid)
    assert len(closed.statements) == 1, closed
    sid = closed.statements[0]
    payload = {"currency": "USD", "payout_account_id": account, "settlement_id": sid}
    for extra, want, code in (
        ({"amount": "249.99"}, 400, "amount_mismatch"),
        ({"amount": "250.00", "settlement_id": "stl_nope"}, 404, "resource_missing"),
    ):
        status, body = await withdraw(owner, {**payload, **extra})
        assert (status, body["error"]["code"]) == (want, code), body
    status, w = await withdraw(owner, {**payload, "amount": "250.00"})
    assert status == 201 and w["settlement_id"] == sid, w
    await wait_withdrawal(owner, w["id"], {"succeeded"})
    status, statement = await owner.call("GET", f"/api/v1/settlements/{mid}/{sid}")
    assert status == 200 and statement["statement"]["status"] == "paid", statement
    await fund(stack, mid, 25_000)
    status, body = await withdraw(owner, {**payload, "amount": "250.00"})
    assert (status, body["error"]["code"]) == (409, "settlement_not_payable"), body


async def test_a_closed_statement_pays_itself_out(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    """Auto-settlement: terms naming a payout account withdraw each closed statement to it."""
    assert stack.pg is not None
    shop = await new_merchant()
    mid = shop.merchant_id  # type: ignore[attr-defined]
    owner = await make_user(stack, http, Realm.MERCHANT, mid, ["merchant_owner"])
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    _, account = await owner.call("POST", "/api/v1/payout-accounts", BANK)
    other = await new_merchant()
    outsider = await make_user(
        stack,
        http,
        Realm.MERCHANT,
        other.merchant_id,
        ["merchant_owner"],  # type: ignore[attr-defined]
    )
    _, foreign = await outsider.call("POST", "/api/v1/payout-accounts", BANK)
    terms = f"/api/v1/admin/settlements/terms/{mid}"
    status, body = await finance.call(
        "PUT", terms, {"cycle": "manual", "payout_account_id": foreign["id"]}
    )
    assert status == 404 and body["error"]["param"] == "payout_account_id", body
    status, body = await finance.call(
        "PUT", terms, {"cycle": "manual", "payout_account_id": account["id"]}
    )
    assert status == 200 and body["payout_account_id"] == account["id"], body

    _, pay = await shop.create_payment(
        amount="80.00", currency="USD", merchant_order_id=f"auto-{time.time_ns()}"
    )
    await wait_status(shop, pay["id"], {"succeeded"})
    status, run = await finance.call("POST", "/api/v1/admin/settlements/run", {"entity": mid})
    assert status == 200 and len(run["statements"]) == 1 and len(run["withdrawals"]) == 1, run
    (sid,), (wid,) = run["statements"], run["withdrawals"]
    paid = await wait_withdrawal(owner, wid, {"succeeded"})
    assert (paid["settlement_id"], paid["requested_by"]) == (sid, "system:settlement"), paid
    status, statement = await owner.call("GET", f"/api/v1/settlements/{mid}/{sid}")
    assert statement["statement"]["status"] == "paid", statement
    assert paid["amount"] == statement["statement"]["net"]
    assert (await balance(owner))["paid_out"] == paid["amount"]
    # The next statement shows the payout beside its net, which it does not reduce.
    status, after = await finance.call("POST", "/api/v1/admin/settlements/run", {"entity": mid})
    assert len(after["statements"]) == 1 and after["withdrawals"] == [], after
    status, payout = await owner.call("GET", f"/api/v1/settlements/{mid}/{after['statements'][0]}")
    paid_out = payout["statement"]
    assert (paid_out["net"], paid_out["paid_out"]) == ("0.00", f"-{paid['amount']}"), paid_out
    assert [line["kind"] for line in payout["lines"]["data"]] == [
        "withdrawal_hold",
        "withdrawal_paid",
    ]
    status, again = await finance.call("POST", "/api/v1/admin/settlements/run", {"entity": mid})
    assert (again["statements"], again["withdrawals"]) == ([], []), again
    audited = await stack.pg.fetchval(
        "SELECT actor FROM audit_log WHERE action = 'withdrawal.request' AND target = $1", wid
    )
    assert audited == "system:settlement"


async def test_an_agent_withdraws_its_commission_to_a_wallet(stack: Stack, http) -> None:
    assert stack.pg is not None
    agent_id = f"agt_wd{time.time_ns()}"
    async with stack.pg.acquire() as conn, conn.transaction():
        await agents.create_agent(
            conn,
            agent_id=agent_id,
            name=agent_id,
            email=f"{agent_id}@example.com",
            parent_id=None,
            status="active",
            grants=[],
        )
    owner = await make_user(stack, http, Realm.AGENT, agent_id, ["agent_owner"])
    wallet = {"kind": "crypto_wallet", "number": "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"}
    status, account = await owner.call("POST", "/api/v1/payout-accounts", wallet)
    assert status == 201 and account["entity_id"] == agent_id, account
    lines = [
        Posting("test:funding", "USD", 5_000),
        Posting(f"agent:{agent_id}:available", "USD", -5_000),
    ]
    async with stack.pg.acquire() as conn, conn.transaction():
        await store.post_entries(conn, [("adjustment", f"fund:{agent_id}", lines)])
    status, w = await withdraw(
        owner, {"amount": "50.00", "currency": "USD", "payout_account_id": account["id"]}
    )
    assert status == 201 and w["entity_kind"] == "agent", w
    await wait_withdrawal(owner, w["id"], {"succeeded"})
    b = await balance(owner)
    assert (b["available"], b["paid_out"]) == ("0.00", "50.00"), b


async def test_a_lost_hand_over_is_redriven(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    """A withdrawal whose task never reached the pool (the gateway died after its commit)."""
    mid, owner, _, account = await setup(stack, http, new_merchant, 10_000)
    assert stack.pg is not None
    async with stack.pg.acquire() as conn, conn.transaction():
        row, _ = await withdrawals.request(
            conn,
            stack.settings,
            Entity("merchant", mid),
            account_id=account,
            currency="USD",
            amount=2_000,
            key="lost",
            fingerprint="-",
            requested_by="usr_test",
            request_id=None,
        )
        await conn.execute(
            "UPDATE withdrawals SET updated_at = now() - interval '1 hour' WHERE id = $1",
            row["id"],
        )
    await wait_withdrawal(owner, row["id"], {"succeeded"})


async def test_concurrent_withdrawals_never_overdraw(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    _, owner, _, account = await setup(stack, http, new_merchant, 10_000)  # 100.00
    payload = {"amount": "30.00", "currency": "USD", "payout_account_id": account}
    results = await asyncio.gather(*(withdraw(owner, payload) for _ in range(12)))
    taken = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status != 201]
    assert len(taken) == 3, results
    assert all(b["error"]["code"] == "insufficient_funds" for b in refused), refused
    b = await balance(owner)
    assert b["available"] == "10.00", b
    assert stack.pg is not None
    await assert_ledger_invariants(stack.pg)


async def test_maker_checker(stack: Stack, http, new_merchant: MerchantFactory) -> None:
    mid, owner, finance, account = await setup(
        stack, http, new_merchant, 100_000, approval_above="50.00"
    )
    checker = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    # Finance requests one for the merchant, so the same person may not approve it.
    status, w = await withdraw(
        finance,
        {"amount": "60.00", "currency": "USD", "payout_account_id": account, "entity": mid},
    )
    assert status == 201 and w["status"] == "pending_approval", w
    path = f"/api/v1/admin/withdrawals/{w['id']}"
    status, body = await finance.call("POST", f"{path}/approve", {"reason": "mine"})
    assert status == 403 and body["error"]["code"] == "self_approval", body
    status, body = await owner.call("POST", f"{path}/approve", {"reason": "mine"})
    assert status == 403 and body["error"]["type"] == "permission_error", body
    status, body = await checker.call("POST", f"{path}/approve", {"reason": ""})
    assert status == 400, body
    status, body = await checker.call("POST", f"{path}/approve", {"reason": "invoice checked"})
    assert status == 200 and body["status"] == "requested" and body["decided_by"], body
    status, body = await checker.call("POST", f"{path}/reject", {"reason": "too late"})
    assert status == 409 and body["error"]["code"] == "not_pending_approval", body
    await wait_withdrawal(owner, w["id"], {"succeeded"})

    status, w2 = await withdraw(
        owner, {"amount": "70.00", "currency": "USD", "payout_account_id": account}
    )
    assert status == 201 and w2["status"] == "pending_approval", w2
    assert (await balance(owner))["reserved"] == "70.00"
    status, body = await finance.call(
        "POST", f"/api/v1/admin/withdrawals/{w2['id']}/reject", {"reason": "unverified"}
    )
    assert status == 200 and body["status"] == "rejected", body
    b = await balance(owner)
    assert (b["available"], b["reserved"], b["paid_out"]) == ("940.00", "0.00", "60.00"), b
    assert stack.pg is not None
    audited = await stack.pg.fetch(
        "SELECT action FROM audit_log WHERE target = ANY($1::text[]) ORDER BY seq",
        [w["id"], w2["id"]],
    )
    actions = [r["action"] for r in audited]
    assert "withdrawal.approve" in actions and "withdrawal.reject" in actions, actions


async def test_the_risk_rules_judge_withdrawals(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    """The live rule set's rules scoped to the entity judge its withdrawals: `reject` is 400
    risk_rejected with nothing held, `review` waits for a checker; the decision is kept."""
    mid, owner, _, account = await setup(stack, http, new_merchant, 100_000)
    analyst = await make_user(stack, http, Realm.PLATFORM, None, ["risk_analyst"])
    scope = f"merchant:{mid}"
    rules = [
        {
            "id": "wd_big",
            "expression": 'kind == "withdrawal" && amount_usd >= 50000',
            "action": "reject",
            "scope": scope,
        },
        {
            "id": "wd_again",
            "expression": 'payout_account_kind == "bank_account" && withdrawals_today >= 1',
            "action": "review",
            "scope": scope,
        },
    ]
    status, published = await analyst.call("PUT", "/api/v1/risk/rules", {"rules": rules})
    assert status == 200, published
    try:
        await asyncio.sleep(1.0)  # every gateway process has it within a second
        payload = {"amount": "600.00", "currency": "USD", "payout_account_id": account}
        status, body = await withdraw(owner, payload)
        assert status == 400 and body["error"]["code"] == "risk_rejected", body
        assert "wd_big" in body["error"]["message"]
        assert (await balance(owner))["reserved"] == "0.00"
        status, w1 = await withdraw(owner, {**payload, "amount": "20.00"})
        assert status == 201 and w1["status"] == "requested", w1
        assert w1["risk"]["outcome"] == "approve" and w1["risk"]["version"] == published["version"]
        status, w2 = await withdraw(owner, {**payload, "amount": "30.00"})
        assert status == 201 and w2["status"] == "pending_approval", w2
        (fired,) = w2["risk"]["fired"]
        assert fired["rule"] == "wd_again" and fired["values"]["withdrawals_today"] == 1, fired
    finally:
        status, _ = await analyst.call("PUT", "/api/v1/risk/rules", {"rules": []})
        assert status == 200


async def test_failed_returned_and_timed_out_payouts(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    _, owner, _, account = await setup(stack, http, new_merchant, 100_000)
    ids = {}
    for cents in ("61", "62", "63", "64"):  # rejected account, timeout, fails later, returned
        status, w = await withdraw(
            owner, {"amount": f"10.{cents}", "currency": "USD", "payout_account_id": account}
        )
        assert status == 201, w
        ids[cents] = w["id"]
    rejected = await wait_withdrawal(owner, ids["61"], {"failed"})
    assert rejected["failure_code"] == "account_rejected", rejected
    later = await wait_withdrawal(owner, ids["63"], {"failed"})
    assert later["failure_code"] == "payout_failed", later
    await wait_withdrawal(owner, ids["62"], {"succeeded"})
    back = await wait_withdrawal(owner, ids["64"], {"returned"})
    assert back["failure_code"] == "payout_returned", back
    seen = await sim_payouts(stack, http)
    assert ids["61"] not in seen and seen[ids["63"]]["requests"] == 1
    # The timed-out payout was asked about before anything was sent again.
    assert seen[ids["62"]]["requests"] == 1, seen[ids["62"]]
    b = await balance(owner)
    # Only 10.62 left; the returned 10.64 came back, its fee (none here) kept.
    assert (b["available"], b["reserved"], b["paid_out"]) == ("989.38", "0.00", "10.62"), b
    assert stack.pg is not None
    await assert_ledger_invariants(stack.pg)


async def test_a_payout_is_sent_exactly_once_while_the_channel_pool_is_killed(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    _, owner, _, account = await setup(stack, http, new_merchant, 10_000_000)
    stop = asyncio.Event()
    kills = 0

    async def killer() -> None:
        nonlocal kills
        rng = random.Random(13)
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.4, 1.2))
            process = stack.pool_processes().get("channel")
            if process is not None:
                try:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
                except psutil.NoSuchProcess:
                    pass

    task = asyncio.create_task(killer())
    ids = []
    try:
        for n in range(200):  # the 200, while the pool is killed at random
            status, w = await withdraw(
                owner,
                {
                    "amount": f"{10 + n}.{random.choice(['00', '10', '25', '99'])}",
                    "currency": "USD",
                    "payout_account_id": account,
                },
            )
            assert status == 201, w
            ids.append(w["id"])
            await asyncio.sleep(0.01)
        await asyncio.sleep(2)
    finally:
        stop.set()
        await task
    assert kills >= 2
    for wid in ids:
        await wait_withdrawal(owner, wid, {"succeeded"}, timeout_s=40)
    seen = await sim_payouts(stack, http)
    assert stack.pg is not None
    for wid in ids:
        assert wid in seen and seen[wid]["status"] == "PAID", seen.get(wid)
        assert seen[wid]["requests"] == 1, (wid, seen[wid])
    paid = await stack.pg.fetchval(
        "SELECT count(*) FROM journal_entries WHERE kind = 'withdrawal_paid' AND ref = ANY($1)",
        ids,
    )
    assert paid == len(ids)
    await assert_ledger_invariants(stack.pg)
    for _ in range(100):
        if stack.pools_running():
            break
        await asyncio.sleep(0.1)
