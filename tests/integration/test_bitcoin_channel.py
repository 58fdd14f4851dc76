"""The BTC channel end to end on a whole node (real PostgreSQL, Redis, RabbitMQ), against a
Bitcoin node we control (tests/bitcoind.py: no Bitcoin node can be installed here): BIP-84
addresses on the payment and a BIP-21 URI, outputs found by the same chain watcher, the
payment processing with its confirmations and paid at the configured depth with one balanced
entry, a reorganisation before confirmation, and partial payments adding up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from bip_utils import Bip39SeedGenerator, Bip84, Bip84Coins

from adapters.bitcoin.wire import Deriver
from domain.access import Realm
from gateway.client import MerchantClient
from tests.bitcoind import StubBitcoinNode
from tests.conftest import merchant_on, wait_status
from tests.invariants import assert_ledger_invariants
from tests.portal import make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEPTH = 3
SEED = Bip39SeedGenerator(" ".join(["abandon"] * 11 + ["about"])).Generate()
VPUB = (
    Bip84.FromSeed(SEED, Bip84Coins.BITCOIN_REGTEST)
    .Purpose()
    .Coin()
    .Account(0)
    .PublicKey()
    .ToExtended()
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bitcoind() -> AsyncIterator[StubBitcoinNode]:
    node = StubBitcoinNode()
    await node.start()
    try:
        yield node
    finally:
        await node.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node() -> AsyncIterator[Stack]:
    stack = Stack(
        "btc",
        {"JUHE_CHAIN__POLL_MS": "100", "JUHE_CHAIN__CONFIRMATIONS": f'{{"BTC": {DEPTH}}}'},
    )
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shop(
    node: Stack, bitcoind: StubBitcoinNode, http: aiohttp.ClientSession
) -> MerchantClient:
    admin = await make_user(node, http, Realm.PLATFORM, None, ["platform_admin"])
    status, body = await admin.call(
        "POST",
        "/api/v1/admin/channels",
        {
            "code": "btc",
            "adapter": "bitcoin",
            "base_url": bitcoind.url,
            "credentials": {"xpub": VPUB, "network": "regtest"},
            "methods": ["crypto"],
            "currencies": ["BTC"],
            "fees": [{"bps": 100}],
            "priority": 500,
        },
    )
    assert status == 201, body
    shop = await merchant_on(node, http, "btc", currencies=["USD", "BTC"])
    status, body = await admin.call(
        "PUT",
        f"/api/v1/merchants/{shop.merchant_id}/payment-config",  # type: ignore[attr-defined]
        {"routing": [{"strategy": "pinned", "channels": ["btc"], "methods": ["crypto"]}]},
    )
    assert status == 200, body
    await asyncio.sleep(1.0)
    return shop


async def _open(shop: MerchantClient, amount: str) -> dict[str, Any]:
    status, created = await shop.create_payment(
        amount=amount, currency="BTC", method="crypto", merchant_order_id=f"b{time.time_ns()}"
    )
    assert status == 201, created
    return await wait_status(shop, created["id"], {"awaiting_payment", "failed"}, timeout=20)


async def _crypto(shop: MerchantClient, payment_id: str, test) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        _, body = await shop.get_payment(payment_id)
        if test(body["crypto"]) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_a_btc_payment_is_found_confirmed_and_posted(
    node: Stack, bitcoind: StubBitcoinNode, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "0.00123456")
    crypto = waiting["crypto"]
    assert (waiting["status"], waiting["channel"]) == ("awaiting_payment", "btc")
    assert crypto["address"].startswith("bcrt1q") and crypto["asset"] == "BTC"
    assert crypto["network"] == "bip122:" + bitcoind.blocks[0].hash[:32]
    assert crypto["uri"] == f"bitcoin:{crypto['address']}?amount=0.00123456"
    assert node.pg is not None
    index = await node.pg.fetchval(
        "SELECT idx FROM deposit_addresses WHERE payment_id = $1", waiting["id"]
    )
    assert crypto["address"] == Deriver(VPUB, "regtest").address(index), "BIP-84, from the vpub"
    bitcoind.pay((crypto["address"], 123_456), ("bcrt1qsomeoneelse", 5_000))
    bitcoind.mine()
    seen = await _crypto(shop, waiting["id"], lambda c: c["state"] == "processing")
    assert seen["status"] == "awaiting_payment" and seen["crypto"]["confirmations"] == 1
    assert seen["crypto"]["amount_received"] == "0.00123456"
    bitcoind.mine(DEPTH - 1)
    paid = await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert paid["crypto"]["confirmations"] == DEPTH
    entries = await node.pg.fetchval(
        "SELECT count(*) FROM journal_entries WHERE kind = 'payment' AND ref = $1", waiting["id"]
    )
    assert entries == 1
    await assert_ledger_invariants(node.pg)


async def test_a_reorg_before_confirmation_and_partial_payments(
    node: Stack, bitcoind: StubBitcoinNode, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "0.01")
    address = waiting["crypto"]["address"]
    bitcoind.pay((address, 1_000_000))
    bitcoind.mine()
    await _crypto(shop, waiting["id"], lambda c: c["state"] == "processing")
    bitcoind.reorg(1)  # the block with the payment replaced by an empty one
    back = await _crypto(shop, waiting["id"], lambda c: c["state"] == "awaiting")
    assert back["crypto"]["amount_received"] == "0.00000000"
    bitcoind.pay((address, 400_000))
    bitcoind.pay((address, 600_000))  # two outputs in two transactions add up
    bitcoind.mine(DEPTH)
    paid = await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert paid["crypto"]["amount_received"] == "0.01000000"
    assert node.pg is not None
    events = await node.pg.fetch(
        "SELECT amount, orphaned FROM chain_events WHERE address = $1 ORDER BY amount", address
    )
    assert [(int(e["amount"]), e["orphaned"]) for e in events] == [
        (400_000, False),
        (600_000, False),
        (1_000_000, True),
    ]
    await assert_ledger_invariants(node.pg)


async def test_a_reorg_after_confirmation_reverses_the_credit(
    node: Stack, bitcoind: StubBitcoinNode, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "0.002")
    bitcoind.pay((waiting["crypto"]["address"], 200_000))
    bitcoind.mine(DEPTH)
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    bitcoind.reorg(DEPTH + 1)  # every block since the payment, and one more, replaced
    reversed_ = await wait_status(shop, waiting["id"], {"reversed"}, timeout=20)
    assert reversed_["failure_code"] == "payment_reversed"
    assert node.pg is not None
    kinds = await node.pg.fetch(
        "SELECT kind FROM journal_entries WHERE ref = $1 ORDER BY id", waiting["id"]
    )
    assert [k["kind"] for k in kinds] == ["payment", "reversal"]
    await assert_ledger_invariants(node.pg)
