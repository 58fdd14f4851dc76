"""Balances and statements against a real node: a T+0 merchant's payment moves from pending to
available when the job releases it (the job's clock given, never waited for), a refund after
that draws on available, the period closes into statements with the right lines and totals, a
re-run is a no-op, and others' statements and bad input are refused in the documented shape."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import orjson
import pytest

from domain.access import Realm
from domain.settlement import available_on, period
from infra import settlement
from infra.settlement import RunResult
from tests.conftest import MerchantFactory, wait_status
from tests.invariants import assert_ledger_invariants
from tests.pdf import pdf_text
from tests.portal import make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def settle(stack: Stack, now: datetime, entity_id: str) -> RunResult:
    """The job for one merchant at a given clock, retried while the node's scheduler holds the
    lock."""
    assert stack.pg is not None
    for _ in range(200):
        result = await settlement.run(stack.pg, stack.settings, now, entity_id=entity_id)
        if result is not None:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("the settlement lock was never free")


async def test_pending_becomes_available_and_closes_into_a_statement(
    stack: Stack, http, new_merchant: MerchantFactory
) -> None:
    assert stack.pg is not None
    shop, other = await new_merchant(), await new_merchant()
    mid = shop.merchant_id  # type: ignore[attr-defined]
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    owner = await make_user(stack, http, Realm.MERCHANT, mid, ["merchant_owner"])
    stranger = await make_user(
        stack,
        http,
        Realm.MERCHANT,
        other.merchant_id,
        ["merchant_owner"],  # type: ignore[attr-defined]
    )
    status, terms = await finance.call(
        "PUT", f"/api/v1/admin/settlements/terms/{mid}", {"cycle": "T+0"}
    )
    assert status == 200 and terms["cycle"] == "T+0", terms

    _, pay = await shop.create_payment(amount="100.00", currency="USD", merchant_order_id="st-1")
    await wait_status(shop, pay["id"], {"succeeded"})
    status, before = await owner.call("GET", "/api/v1/balances")
    assert status == 200, before
    assert before["data"] == [
        {
            "object": "balance",
            "currency": "USD",
            "pending": "97.50",  # 100.00 less the 2.5 % fee
            "available": "0.00",
            "reserved": "0.00",
            "paid_out": "0.00",
        }
    ]

    captured = await stack.pg.fetchval(
        "SELECT created_at FROM journal_entries WHERE kind = 'payment' AND ref = $1", pay["id"]
    )
    release_at = available_on("T+0", captured)
    assert release_at is not None
    assert (await settle(stack, release_at, mid)).released == 1
    status, after = await owner.call("GET", "/api/v1/balances")
    assert (after["data"][0]["pending"], after["data"][0]["available"]) == ("0.00", "97.50")

    # A refund once the funds are available draws on available, not pending.
    _, refund = await shop.request(
        "POST", "/api/v1/refunds", {"payment_id": pay["id"], "amount": "10.00"}
    )
    for _ in range(300):
        if (await shop.request("GET", f"/api/v1/refunds/{refund['id']}"))[1]["status"] == (
            "succeeded"
        ):
            break
        await asyncio.sleep(0.05)
    _, after = await finance.call("GET", f"/api/v1/balances?entity={mid}")
    assert (after["data"][0]["pending"], after["data"][0]["available"]) == ("0.00", "87.75")

    refunded_at = await stack.pg.fetchval(
        "SELECT created_at FROM journal_entries WHERE kind = 'refund' AND ref = $1", refund["id"]
    )
    end = period("T+0", max(release_at, refunded_at))[1]
    closed = await settle(stack, end, mid)
    assert closed.statements, "the period closed into a statement"
    again = await settle(stack, end, mid)
    assert again == RunResult(), "a re-run at the same clock changes nothing"
    announced = await stack.pg.fetch(
        "SELECT payload FROM webhook_events WHERE merchant_id = $1 AND type = 'settlement.closed'",
        mid,
    )
    assert sorted(orjson.loads(r["payload"])["data"]["id"] for r in announced) == sorted(
        closed.statements
    ), "one settlement.closed per statement, none for the re-run"

    status, listed = await owner.call("GET", f"/api/v1/settlements/{mid}")
    assert status == 200 and [s["id"] for s in listed["data"]] == closed.statements[::-1]
    last = listed["data"][0]
    assert last["net"] == "87.75" and last["status"] == "closed", last
    lines = []
    for statement_id in closed.statements:
        status, detail = await owner.call("GET", f"/api/v1/settlements/{mid}/{statement_id}")
        assert status == 200, detail
        lines += [line for line in detail["lines"]["data"] if line["kind"] != "carried"]
    by_kind = {line["kind"]: line for line in lines}
    assert sorted(by_kind) == ["payment", "refund"] and len(lines) == 2
    assert (by_kind["payment"]["gross"], by_kind["payment"]["fees"]) == ("100.00", "2.50")
    assert (by_kind["payment"]["net"], by_kind["payment"]["ref"]) == ("97.50", pay["id"])
    assert (by_kind["refund"]["refunds"], by_kind["refund"]["fees"]) == ("-10.00", "-0.25")
    assert by_kind["refund"]["net"] == "-9.75"

    status, page = await owner.call(
        "GET", f"/api/v1/settlements/{mid}/{closed.statements[-1]}?limit=1"
    )
    assert status == 200 and len(page["lines"]["data"]) == 1
    async with http.get(
        f"{stack.url}/api/v1/settlements/{mid}/{closed.statements[-1]}?format=csv",
        headers={"Authorization": f"Bearer {owner.access}"},
    ) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        assert (await response.text()).splitlines()[0].startswith("id,entry_id,kind,ref")
    async with http.get(
        f"{stack.url}/api/v1/settlements/{mid}/{listed['data'][0]['id']}?format=pdf",
        headers={"Authorization": f"Bearer {owner.access}"},
    ) as response:
        assert response.status == 200 and response.content_type == "application/pdf"
        text = pdf_text(await response.read())
    assert "結算單" in text and "87.75" in text, text

    # Others' statements and balances are refused; bad input is the documented 4xx.
    for path in (
        f"/api/v1/settlements/{mid}",
        f"/api/v1/settlements/{mid}/{closed.statements[0]}",
        f"/api/v1/balances?entity={mid}",
    ):
        status, body = await stranger.call("GET", path)
        assert status == 403 and body["error"]["type"] == "permission_error", (path, body)
    for caller, method, path, payload, want, code in (
        (owner, "GET", "/api/v1/settlements/mch_nobody", None, 404, "resource_missing"),
        (owner, "GET", f"/api/v1/settlements/{mid}/stl_nothing", None, 404, "resource_missing"),
        (owner, "GET", f"/api/v1/settlements/{mid}?starting_after=x", None, 400, "invalid_cursor"),
        (
            owner,
            "GET",
            f"/api/v1/settlements/{mid}/{closed.statements[0]}?format=xml",
            None,
            400,
            "invalid_field",
        ),
        (finance, "GET", "/api/v1/balances", None, 400, "missing_parameter"),
        (finance, "PUT", f"/api/v1/admin/settlements/terms/{mid}", {"cycle": "T+9"}, 400, None),
        (finance, "PUT", "/api/v1/admin/settlements/terms/nobody", {"cycle": "T+1"}, 404, None),
        (
            finance,
            "POST",
            "/api/v1/admin/settlements/run",
            {"until": int(time.time()) + 3600},
            400,
            "invalid_field",
        ),
        (finance, "POST", "/api/v1/admin/settlements/run", {"entity": "nobody"}, 404, None),
        (owner, "POST", "/api/v1/admin/settlements/run", {}, 403, "permission_denied"),
    ):
        status, body = await caller.call(method, path, payload)
        assert status == want, (path, body)
        assert set(body["error"]) == {"type", "code", "message", "param"}, body
        assert code is None or body["error"]["code"] == code, body

    # An operator's run is audited, and the same body twice closes the same statements.
    run_body = {"entity": mid, "until": int(time.time())}
    status, first = await finance.call("POST", "/api/v1/admin/settlements/run", run_body)
    assert status == 200, first
    status, second = await finance.call("POST", "/api/v1/admin/settlements/run", run_body)
    assert status == 200 and second["statements"] == [] and second["released"] == 0
    status, listed_again = await owner.call("GET", f"/api/v1/settlements/{mid}")
    assert listed_again["data"] == listed["data"]
    audited = await stack.pg.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'settlement.run' AND target = $1", mid
    )
    assert audited == 2
    await assert_ledger_invariants(stack.pg)
