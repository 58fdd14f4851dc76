"""`make run`'s chain: with `chain.local_node_port` set, `juhe up` runs anvil beside the
simulator, deploys the test USDT and creates the `eth` channel; a customer pays from the command
line (`juhe chain pay`), `juhe chain mine` adds the confirmations, and the payment succeeds.
Stopping the node stops anvil."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from benchmarks.node import ROOT
from tests.conftest import merchant_on, wait_status
from tests.servers import port
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node() -> AsyncIterator[Stack]:
    stack = Stack(
        "lch",
        {
            "JUHE_CHAIN__LOCAL_NODE_PORT": str(port()),
            "JUHE_CHAIN__POLL_MS": "100",
            "JUHE_CHAIN__CONFIRMATIONS": '{"ETH": 2, "USDT": 2}',
        },
    )
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


async def _juhe(node: Stack, *args: str) -> dict[str, Any]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "chain", *args],
        cwd=ROOT,
        env={**os.environ, **node.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return orjson.loads(done.stdout)


async def test_a_usdt_payment_paid_from_the_command_line(
    node: Stack, http: aiohttp.ClientSession
) -> None:
    assert node.pg is not None
    deadline = time.monotonic() + 60
    while await node.pg.fetchval("SELECT count(*) FROM channels WHERE code = 'eth'") == 0:
        assert time.monotonic() < deadline, "the local chain never created its channel"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # every process hears of the channel
    shop = await merchant_on(node, http, "walk", currencies=["USDT"])
    status, created = await shop.create_payment(
        amount="25.50", currency="USDT", method="crypto", merchant_order_id="walk-1"
    )
    assert status == 201, created
    waiting = await wait_status(shop, created["id"], {"awaiting_payment"}, timeout=20)
    assert waiting["channel"] == "eth"
    address = waiting["crypto"]["address"]

    sent = await _juhe(node, "pay", address, "25.50", "USDT")
    assert (sent["to"], sent["amount_minor"], sent["asset"]) == (address, "25500000", "USDT")
    await _juhe(node, "mine", "1")
    paid = await wait_status(shop, created["id"], {"succeeded"}, timeout=20)
    assert paid["crypto"]["state"] == "confirmed"
    assert paid["crypto"]["amount_received"] == "25.500000"
    assert paid["crypto"]["confirmations"] == 2

    rpc = f"http://127.0.0.1:{node.settings.chain.local_node_port}"
    await node.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.post(rpc, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
