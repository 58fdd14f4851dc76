"""Invariant 3 and 4 under fire: thousands of payments while every worker pool is SIGKILLed at
random moments (the supervisor restarts each). Afterwards every acknowledged payment is final,
nothing is posted twice, every entry balances and every balance equals its postings."""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import time

import aiohttp
import psutil
import pytest

from gateway.client import MerchantClient
from infra.merchants import create_merchant
from tests.invariants import assert_ledger_invariants
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAYMENTS = 2000
POOLS = ["relay", "risk", "channel", "ledger", "notify", "scheduler"]
FINAL = ("succeeded", "failed", "rejected", "expired", "canceled")


async def kill_pools(stack: Stack, stop: asyncio.Event, killed: list[str]) -> None:
    """Kill every pool in a shuffled round, again and again, at random moments."""
    rng = random.Random(7)
    while not stop.is_set():
        for pool in rng.sample(POOLS, len(POOLS)):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            if stop.is_set():
                return
            process = stack.pool_processes().get(pool)
            if process is None:  # still being restarted
                continue
            try:
                process.send_signal(signal.SIGKILL)
                killed.append(pool)
            except psutil.NoSuchProcess:
                pass


async def test_no_acknowledged_payment_is_lost_when_pools_crash() -> None:
    stack = Stack(
        "crash",
        {"JUHE_SIMULATOR__PAY_DELAY_MS": "50", "JUHE_CHANNELS__SIM__TIMEOUT_MS": "3000"},
    )
    try:
        await stack.start()
        assert stack.pg is not None
        created = await create_merchant(
            stack.pg,
            stack.box,
            name="crash",
            notify_url=stack.settings.channels["sim"].base_url + "/_sim/webhooks",
            currencies=["USD"],
            fee_bps=250,
        )
        stop = asyncio.Event()
        killed: list[str] = []
        killer = asyncio.create_task(kill_pools(stack, stop, killed))
        acknowledged: list[str] = []
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector) as http:
            client = MerchantClient(stack.url, created.key_id, created.secret, http)
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(PAYMENTS):
                queue.put_nowait(n)

            async def create() -> None:
                while not queue.empty():
                    n = queue.get_nowait()
                    cents = random.choice([0, 10, 25, 99]) + 100 * (n % 50 + 1)
                    status, body = await client.create_payment(
                        amount=f"{cents // 100}.{cents % 100:02d}",
                        currency="USD",
                        merchant_order_id=f"crash-{n}-{secrets.token_hex(3)}",
                    )
                    assert status == 201, body
                    acknowledged.append(body["id"])

            await asyncio.gather(*(create() for _ in range(32)))
            # Keep killing while the backlog drains, until every pool has died at least once.
            await asyncio.sleep(3)
            for _ in range(120):
                if set(killed) == set(POOLS):
                    break
                await asyncio.sleep(0.5)
            stop.set()
            await killer
        assert set(killed) == set(POOLS)

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            settled = await stack.pg.fetchval(
                "SELECT count(*) FROM payments WHERE id = ANY($1) AND status = ANY($2)",
                acknowledged,
                list(FINAL),
            )
            if settled == len(acknowledged):
                break
            await asyncio.sleep(1)
        statuses = dict(
            await stack.pg.fetch(
                "SELECT status, count(*) FROM payments WHERE id = ANY($1) GROUP BY status",
                acknowledged,
            )
        )
        assert len(acknowledged) == PAYMENTS
        assert sum(statuses.values()) == PAYMENTS, f"lost payments: {statuses}"
        assert statuses == {"succeeded": PAYMENTS}, statuses
        await assert_ledger_invariants(stack.pg)
        entries = await stack.pg.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = 'payment' AND ref = ANY($1)",
            acknowledged,
        )
        assert entries == PAYMENTS
        # Every success is announced: its webhook event exists and is delivered in the end.
        for _ in range(60):
            undelivered = await stack.pg.fetchval(
                "SELECT count(*) FROM webhook_events WHERE status <> 'delivered'"
            )
            if undelivered == 0:
                break
            await asyncio.sleep(1)
        events = await stack.pg.fetchval(
            "SELECT count(DISTINCT payload) FROM webhook_events WHERE type = 'payment.succeeded'"
        )
        assert undelivered == 0 and events == PAYMENTS
    finally:
        await stack.stop()
