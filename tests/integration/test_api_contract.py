"""The API contract as a client relies on it: query parameters the document names and nothing
else, filters that filter, cursors that point somewhere, objects that come back as sent, and the
lists reviewers and merchants need."""

from __future__ import annotations

import secrets

import aiohttp
import pytest
import pytest_asyncio

from domain.access import Realm
from gateway.routes import ROUTES
from tests.conftest import wait_status
from tests.portal import Portal, make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def order() -> str:
    return "api_" + secrets.token_hex(6)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(stack: Stack, http: aiohttp.ClientSession) -> Portal:
    return await make_user(stack, http, Realm.PLATFORM, None, ["platform_admin"])


async def test_every_route_refuses_an_undocumented_query_parameter(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    for route in ROUTES:
        path = route.path.replace("{", "x").replace("}", "")
        async with http.request(route.method, f"{stack.url}{path}?bogus=1", data=b"{}") as answer:
            body = await answer.json(content_type=None)
        assert answer.status == 400, (route.method, route.path, body)
        assert body["error"]["code"] == "unknown_parameter", body
        assert body["error"]["param"] == "bogus"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=paid", "status"),
        ("starting_after=" + "x" * 65, "starting_after"),
    ],
)
async def test_invalid_query_values_are_400(merchant, query, param) -> None:
    status, body = await merchant.request("GET", f"/api/v1/payments?{query}")
    assert status == 400 and body["error"]["param"] == param, body


async def test_since_out_of_range_is_400_not_500(stack: Stack, merchant) -> None:
    status, body = await merchant.request(
        "GET", f"/api/v1/merchants/{merchant.merchant_id}/transactions?since=99999999999999999999"
    )
    assert status == 400 and body["error"]["param"] == "since", body


async def test_metadata_comes_back_as_the_object_sent(stack: Stack, merchant) -> None:
    metadata = {"cart": "42", "note": "blue mug"}
    _, created = await merchant.create_payment(
        amount="3.00", currency="USD", merchant_order_id=order(), metadata=metadata
    )
    assert created["metadata"] == metadata
    await wait_status(merchant, created["id"], {"succeeded"})
    # Read from PostgreSQL, not the hot copy: the copy is dropped first.
    await stack.redis.delete(f"{stack.settings.redis.prefix}:pay:{created['id']}")
    status, read = await merchant.get_payment(created["id"])
    assert status == 200 and read["metadata"] == metadata, read
    _, listed = await merchant.request("GET", "/api/v1/payments?limit=5")
    assert next(p for p in listed["data"] if p["id"] == created["id"])["metadata"] == metadata


async def test_the_status_filter_filters(merchant) -> None:
    _, paid = await merchant.create_payment(
        amount="4.00", currency="USD", merchant_order_id=order()
    )
    _, unpaid = await merchant.create_payment(
        amount="4.56", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, paid["id"], {"succeeded"})
    await wait_status(merchant, unpaid["id"], {"awaiting_payment"})
    _, listed = await merchant.request("GET", "/api/v1/payments?status=awaiting_payment&limit=100")
    assert {p["status"] for p in listed["data"]} == {"awaiting_payment"}
    assert unpaid["id"] in {p["id"] for p in listed["data"]}
    assert paid["id"] not in {p["id"] for p in listed["data"]}


async def test_a_cursor_that_names_nothing_is_400(merchant, new_merchant) -> None:
    status, body = await merchant.request("GET", "/api/v1/payments?starting_after=pay_nothing")
    assert status == 400 and body["error"]["code"] == "invalid_cursor", body
    # Another merchant's payment is not a cursor of this list either.
    other = await new_merchant()
    _, theirs = await other.create_payment(amount="1.00", currency="USD", merchant_order_id=order())
    status, body = await merchant.request("GET", f"/api/v1/payments?starting_after={theirs['id']}")
    assert status == 400 and body["error"]["code"] == "invalid_cursor", body


async def test_refund_and_event_lists(merchant, receiver) -> None:
    _, created = await merchant.create_payment(
        amount="5.00", currency="USD", merchant_order_id=order()
    )
    await wait_status(merchant, created["id"], {"succeeded"})
    status, refund = await merchant.request(
        "POST", "/api/v1/refunds", {"payment_id": created["id"], "amount": "1.00"}
    )
    assert status == 201, refund
    await wait_status(merchant, created["id"], {"partially_refunded"})
    status, refunds = await merchant.request("GET", f"/api/v1/refunds?payment_id={created['id']}")
    assert status == 200 and [r["id"] for r in refunds["data"]] == [refund["id"]], refunds
    status, none = await merchant.request(
        "GET", f"/api/v1/refunds?payment_id={created['id']}&status=failed"
    )
    assert status == 200 and none["data"] == []

    event = await receiver.wait_for(
        merchant.merchant_id,
        lambda e: e["type"] == "payment.succeeded" and e["data"]["id"] == created["id"],
    )
    status, events = await merchant.request("GET", "/api/v1/events?type=payment.succeeded")
    assert status == 200 and event["id"] in {e["id"] for e in events["data"]}, events
    status, one = await merchant.request("GET", f"/api/v1/events/{event['id']}")
    assert status == 200 and one["data"]["id"] == created["id"] and one["type"] == event["type"]
    first = events["data"][0]["id"]
    status, page = await merchant.request("GET", f"/api/v1/events?limit=1&starting_after={first}")
    assert status == 200 and first not in {e["id"] for e in page["data"]}


async def test_reviewers_list_merchants_and_agents(stack: Stack, admin: Portal, merchant) -> None:
    status, page = await admin.call("GET", "/api/v1/admin/merchants?status=active&limit=100")
    assert status == 200, page
    assert all(m["status"] == "active" for m in page["data"])
    status, found = await admin.call("GET", "/api/v1/admin/merchants?q=test%20merch&limit=5")
    assert status == 200 and found["data"], found
    assert all("test merch" in m["name"] for m in found["data"])
    status, agents = await admin.call("GET", "/api/v1/admin/agents?status=submitted")
    assert status == 200 and all(a["status"] == "submitted" for a in agents["data"])
