"""Issue 11, scenario 2, at a smaller scale: a burst far above the pools' rate, then the whole
node stopped and started again mid-drain, its simulated channel with it (which keeps the orders
its customers had not paid yet, as a real channel would). Every payment still reaches its final
status, each is posted and announced once, no work is re-driven while it is only waiting in the
backlog (the test node re-drives after 4 s, far shorter than the drain), and the log holds no
error."""

from __future__ import annotations

import asyncio
import secrets
import time

import aiohttp
import orjson
import pytest

from gateway.client import MerchantClient
from infra.merchants import create_merchant
from tests.invariants import assert_ledger_invariants
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

BURST = 1000
FINAL = ["succeeded", "failed", "rejected", "expired", "canceled"]


def errors_in(log: bytes) -> list[dict]:
    lines = []
    for raw in log.splitlines():
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if line.get("level") in ("error", "critical"):
            lines.append(line)
    return lines


async def test_a_burst_then_a_restart_drains_without_amplification() -> None:
    stack = Stack(
        "burst",
        {
            # a slow channel and a small channel pool, so the burst builds a backlog that lasts
            # several re-drive periods: envelopes of 20, one at a time, 300 ms each
            "JUHE_RELAY__BATCH": "20",
            "JUHE_CHANNEL__CONCURRENCY": "1",
            "JUHE_CHANNEL__PREFETCH": "2",
            "JUHE_SIMULATOR__LATENCY_MS": "300",
            "JUHE_CHANNELS__SIM__TIMEOUT_MS": "3000",
            # customers take a second to pay: orders are open at the channel when it restarts
            "JUHE_SIMULATOR__PAY_DELAY_MS": "1000",
        },
    )
    try:
        await stack.start()
        assert stack.pg is not None
        created = await create_merchant(
            stack.pg,
            stack.box,
            name="burst",
            notify_url=stack.settings.channels["sim"].base_url + "/_sim/webhooks",
            currencies=["USD"],
            fee_bps=250,
        )
        ids: list[str] = []
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            client = MerchantClient(stack.url, created.key_id, created.secret, http)
            todo = iter(range(BURST))

            async def create() -> None:
                for n in todo:
                    status, body = await client.create_payment(
                        amount=f"{n % 40 + 1}.{n % 4 * 25:02d}",
                        currency="USD",
                        merchant_order_id=f"burst-{n}-{secrets.token_hex(3)}",
                    )
                    assert status == 201, body
                    ids.append(body["id"])

            started = time.monotonic()
            await asyncio.gather(*(create() for _ in range(64)))
            burst_s = time.monotonic() - started
        assert len(ids) == BURST

        async def final_count() -> int:
            return await stack.pg.fetchval(
                "SELECT count(*) FROM payments WHERE id = ANY($1) AND status = ANY($2)", ids, FINAL
            )

        # Let a backlog form and drain a while, then restart the node in the middle of it.
        await asyncio.sleep(5)
        before_restart = await final_count()
        assert before_restart < BURST, "no backlog formed: the test proves nothing"
        open_at_channel = await stack.pg.fetchval(
            "SELECT count(*) FROM payments WHERE id = ANY($1) AND status = 'awaiting_payment'", ids
        )
        assert open_at_channel > 0, "no order was open at the channel: the restart proves less"
        await stack.restart(down_s=3)

        for _ in range(360):
            if (done := await final_count()) == BURST:
                break
            await asyncio.sleep(0.5)
        assert done == BURST, f"{BURST - done} payments not final"
        statuses = dict(
            await stack.pg.fetch(
                "SELECT status, count(*) FROM payments WHERE id = ANY($1) GROUP BY status", ids
            )
        )
        assert statuses == {"succeeded": BURST}, statuses
        # Each payment's channel order was opened once: nothing was done twice over.
        repeated = await stack.pg.fetchval(
            """SELECT count(*) FROM (SELECT payment_id FROM payment_attempts
               WHERE payment_id = ANY($1) GROUP BY payment_id HAVING count(*) > 1) x""",
            ids,
        )
        assert repeated == 0
        posted = await stack.pg.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = 'payment' AND ref = ANY($1)", ids
        )
        assert posted == BURST
        await assert_ledger_invariants(stack.pg)
        log = stack.log_path.read_bytes()
        assert b"re-driving lost work" not in log
        assert errors_in(log) == [], errors_in(log)[:5]
        print(f"burst of {BURST} in {burst_s:.1f}s; {before_restart} final before the restart")
    finally:
        await stack.stop()
