"""Issue 11, scenario 3: Redis dies while payments flow. Creates answer 503 with Retry-After in
the documented shape (never 500), readiness says Redis is down, and once Redis is back from its
append-only file without its latest writes, no read shows an older status than PostgreSQL's.

The loss is made exact rather than left to `appendfsync everysec`'s timing: Redis is stopped
cleanly and its files copied, payments then move on, and Redis is killed and started from the
copy, as a crash that lost everything since the copy would leave it."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time

import aiohttp
import pytest
import pytest_asyncio

from gateway.client import MerchantClient
from infra.merchants import create_merchant
from tests.conftest import wait_status
from tests.servers import RedisServer
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
FINAL = {"succeeded", "failed", "rejected", "expired", "canceled"}


@pytest_asyncio.fixture(loop_scope="session")
async def node_on_own_redis():
    redis = RedisServer(aof=True)
    await redis.start()
    stack = Stack("rcrash", {"JUHE_REDIS__URL": redis.url})
    try:
        await stack.start()
        yield stack, redis
    finally:
        await stack.stop()
        await redis.close()


def order() -> str:
    return "rc_" + secrets.token_hex(6)


async def test_redis_crash_answers_503_and_reads_are_never_stale(node_on_own_redis) -> None:
    stack, redis = node_on_own_redis
    assert stack.pg is not None
    created = await create_merchant(
        stack.pg,
        stack.box,
        name="redis crash",
        notify_url=stack.settings.channels["sim"].base_url + "/_sim/webhooks",
        currencies=["USD"],
        fee_bps=250,
    )
    async with aiohttp.ClientSession() as http:
        client = MerchantClient(stack.url, created.key_id, created.secret, http)
        # Payments the simulator never pays (.56): they wait at awaiting_payment.
        waiting = []
        for _ in range(20):
            status, body = await client.create_payment(
                amount="10.56", currency="USD", merchant_order_id=order()
            )
            assert status == 201, body
            waiting.append(body["id"])
        for payment_id in waiting:
            await wait_status(client, payment_id, {"awaiting_payment"}, timeout=30)

        # What Redis holds now is what it will come back with.
        await redis.stop()
        snapshot = redis.dir.with_name(redis.dir.name + "-copy")
        shutil.copytree(redis.dir, snapshot)
        await redis.start()
        try:
            # Everything moves on: cancels change PostgreSQL and the hot copies.
            for payment_id in waiting:
                status, body = await client.request("POST", f"/api/v1/payments/{payment_id}/cancel")
                assert status == 200 and body["status"] == "canceled", body

            # The crash: killed, then back from files that lack everything since the copy.
            await redis.kill()
            outage_answers = []
            for _ in range(10):
                status, body = await client.create_payment(
                    amount="1.00", currency="USD", merchant_order_id=order()
                )
                outage_answers.append((status, body))
            async with http.get(stack.url + "/readyz") as ready:
                readiness = (ready.status, await ready.json())
            shutil.rmtree(redis.dir)
            shutil.copytree(snapshot, redis.dir)
            await redis.start()
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

        assert {status for status, _ in outage_answers} == {503}, outage_answers
        for _, body in outage_answers:
            assert body["error"]["type"] == "api_error"
            assert body["error"]["code"] == "service_unavailable"
        assert readiness[0] == 503 and readiness[1]["checks"]["redis"] != "ok", readiness

        # Redis now says awaiting_payment for every one of them; PostgreSQL says canceled.
        stale = await stack.redis.hget(f"{stack.settings.redis.prefix}:pay:{waiting[0]}", "status")
        assert stale == b"awaiting_payment"
        for payment_id in waiting:
            status, body = await client.get_payment(payment_id)
            assert status == 200, body
            assert body["status"] == "canceled", (payment_id, body["status"])
        # ... and the cashier page, which reads the same copies.
        async with http.get(f"{stack.url}/checkout/{waiting[0]}") as page:
            assert page.status == 200
            assert 'id="status">canceled<' in await page.text()

        # The node works again: a retried create is taken and reaches its final status.
        deadline = time.monotonic() + 30
        while True:
            status, body = await client.create_payment(
                amount="2.00", currency="USD", merchant_order_id=order()
            )
            if status == 201 or time.monotonic() > deadline:
                break
            assert status == 503, body
            await asyncio.sleep(0.2)
        assert status == 201, body
        assert (await wait_status(client, body["id"], FINAL, timeout=30))["status"] == "succeeded"
