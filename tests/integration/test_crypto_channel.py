"""The Ethereum channel end to end against a real local chain (anvil) and a whole node (real
PostgreSQL, Redis, RabbitMQ): ETH and USDT deposits found by the chain watcher, shown with
their confirmations, paid at the configured depth with one balanced entry and a webhook; the
watcher restarted with blocks mined while it was down; blocks re-read; a reorg before
confirmation."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import pytest_asyncio
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from eth_account import Account

from domain.access import Realm
from domain.ledger import Posting
from domain.messages import ChannelTask, encode
from gateway.client import MerchantClient
from infra import store
from infra.keys import TASKS_STREAM, Keys
from infra.merchants import create_merchant
from tests.chain import CHAIN_ID, DEPOSIT_XPUB, MNEMONIC, Anvil, Wallets
from tests.conftest import Receiver, wait_status
from tests.invariants import assert_ledger_invariants
from tests.portal import Portal, make_user
from tests.stack import Stack, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

DEPTH = 3  # USDT's blocks; ETH settles at the chain's finalized block (the default)
FINALITY = 64  # anvil calls a block finalized once 64 more are on it
Account.enable_unaudited_hdwallet_features()
HOT_WALLET = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/9")
DEPOSIT_XPRV = (
    Bip44.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(), Bip44Coins.ETHEREUM)
    .Purpose()
    .Coin()
    .Account(1)
    .PrivateKey()
    .ToExtended()
)
SIGNER_PORT = free_port()
SIGNER_TOKEN = "test-signer-" + secrets.token_hex(8)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def anvil() -> AsyncIterator[Anvil]:
    chain = Anvil()
    try:
        await chain.start()
        yield chain
    finally:
        await chain.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wallets(anvil: Anvil) -> Wallets:
    return await Wallets.deploy(anvil)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node(wallets: Wallets) -> AsyncIterator[Stack]:
    stack = Stack(
        "cry",
        {
            # the hot-wallet signer, holding anvil's test account 9 (funded with ETH and USDT)
            "JUHE_SIGNER__PORT": str(SIGNER_PORT),
            "JUHE_SIGNER__KEY": HOT_WALLET.key.hex(),
            "JUHE_SIGNER__TOKEN": SIGNER_TOKEN,
            "JUHE_SIGNER__LIMITS": '{"ETH": 1000000000000000000, "USDT": 100000000}',
            "JUHE_SIGNER__TOKENS": orjson.dumps({"USDT": wallets.usdt_address}).decode(),
            # credited USDT deposits are swept into the hot wallet, signed with their own keys
            "JUHE_CHAIN__SWEEP_USDT": "true",
            "JUHE_SIGNER__DEPOSIT_XPRV": DEPOSIT_XPRV,
            # withdrawals in crypto are paid out on the chain, from the same hot wallet
            "JUHE_WITHDRAWALS__CHANNELS": '{"ETH": "eth", "USDT": "eth"}',
            "JUHE_CHAIN__POLL_MS": "100",
            "JUHE_CHAIN__CONFIRMING_GRACE_S": "7200",
            "JUHE_CHAIN__CONFIRMATIONS": f'{{"ETH": 0, "USDT": {DEPTH}}}',
            # 1 % of the amount due, at least 0.02 USDT, still pays
            "JUHE_CHAIN__TOLERANCE_BPS": "100",
            "JUHE_CHAIN__TOLERANCE_MINOR": '{"USDT": 20000}',
            # No channel takes USD as it is, so a USD price is quoted into the first currency
            # a channel takes (ETH, before EUR and USDT) and locked on the payment.
            "JUHE_CHANNELS__SIM__CURRENCIES": '["EUR"]',
            "JUHE_CHANNELS__SIM_B__CURRENCIES": '["EUR"]',
        },
    )
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def shop(
    node: Stack, anvil: Anvil, wallets: Wallets, http: aiohttp.ClientSession, receiver: Receiver
) -> MerchantClient:
    """A merchant whose crypto payments go to an `ethereum` channel on the local chain."""
    admin: Portal = await make_user(node, http, Realm.PLATFORM, None, ["platform_admin"])
    status, body = await admin.call(
        "POST",
        "/api/v1/admin/channels",
        {
            "code": "eth",
            "adapter": "ethereum",
            "base_url": anvil.url,
            "credentials": {
                "xpub": DEPOSIT_XPUB,
                "usdt_contract": wallets.usdt_address,
                "signer_url": f"http://127.0.0.1:{SIGNER_PORT}",
                "signer_token": SIGNER_TOKEN,
            },
            "methods": ["crypto"],
            "currencies": ["ETH", "USDT"],
            "fees": [{"bps": 100}],
            "priority": 500,
        },
    )
    assert status == 201, body
    assert node.pg is not None
    created = await create_merchant(
        node.pg,
        node.box,
        name="crypto shop",
        notify_url=f"{receiver.url}/placeholder",
        currencies=["USD", "ETH", "USDT"],
        fee_bps=250,
    )
    await node.pg.execute(
        "UPDATE merchants SET notify_url = $2 WHERE id = $1",
        created.id,
        f"{receiver.url}/{created.id}",
    )
    receiver.secrets[created.id] = created.webhook_secret.encode()
    client = MerchantClient(node.url, created.key_id, created.secret, http)
    client.merchant_id = created.id  # type: ignore[attr-defined]
    status, body = await admin.call(
        "PUT",
        f"/api/v1/merchants/{created.id}/payment-config",
        {"routing": [{"strategy": "pinned", "channels": ["eth"], "methods": ["crypto"]}]},
    )
    assert status == 200, body
    await asyncio.sleep(1.0)  # every process hears of the channel and the routing
    return client


async def _open(shop: MerchantClient, amount: str, currency: str) -> dict[str, Any]:
    status, created = await shop.create_payment(
        amount=amount,
        currency=currency,
        method="crypto",
        merchant_order_id=f"c{time.time_ns()}",
    )
    assert status == 201, created
    return await wait_status(shop, created["id"], {"awaiting_payment", "failed"}, timeout=20)


async def _until(
    shop: MerchantClient, payment_id: str, test: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        status, body = await shop.get_payment(payment_id)
        assert status == 200, body
        if test(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


def _processing(body: dict[str, Any]) -> bool:
    return body["crypto"]["state"] == "processing"


async def _entries(node: Stack, payment_id: str) -> int:
    assert node.pg is not None
    return await node.pg.fetchval(
        "SELECT count(*) FROM journal_entries WHERE kind = 'payment' AND ref = $1", payment_id
    )


async def test_an_eth_payment_is_found_confirmed_posted_and_notified(
    node: Stack,
    anvil: Anvil,
    wallets: Wallets,
    shop: MerchantClient,
    receiver: Receiver,
    http: aiohttp.ClientSession,
) -> None:
    waiting = await _open(shop, "0.123456789012345678", "ETH")
    assert (waiting["status"], waiting["channel"]) == ("awaiting_payment", "eth")
    crypto = waiting["crypto"]
    address = crypto["address"]
    assert address.startswith("0x") and len(address) == 42
    assert address not in [a.lower() for a in wallets.accounts], "derived, not a funded account"
    assert (crypto["asset"], crypto["amount"]) == ("ETH", "0.123456789012345678")
    assert crypto["network"] == f"eip155:{CHAIN_ID}" and crypto["state"] == "awaiting"
    assert crypto["uri"] == f"ethereum:{address}@{CHAIN_ID}?value=123456789012345678"
    async with http.get(f"{node.url}/checkout/{waiting['id']}") as page:
        html = await page.text()
    assert address in html and "0.123456789012345678 ETH" in html
    assert '<p id="qr-image"><svg' in html, "the URI as a QR code image, inline"

    await wallets.send_eth(1, address, 123456789012345678)
    seen = await _until(shop, waiting["id"], _processing)
    assert seen["status"] == "awaiting_payment", "seen on the chain, not yet deep enough"
    assert seen["crypto"]["confirmations"] >= 1
    head = int(str(await anvil.rpc("eth_blockNumber")), 16)
    finalized = max(0, head - FINALITY)
    assert seen["crypto"]["confirmations_required"] in (head - finalized + 1, head - finalized + 2)
    assert seen["crypto"]["amount_received"] == "0.123456789012345678"
    assert seen["expires_at"] > waiting["expires_at"], "paid in time: not expired while it confirms"
    async with http.get(f"{node.url}/checkout/{waiting['id']}") as page:
        assert 'id="confirmations"' in await page.text()

    await anvil.mine(DEPTH)
    await asyncio.sleep(0.5)
    _, deep = await shop.get_payment(waiting["id"])
    assert deep["status"] == "awaiting_payment", "deep, but not yet finalized"
    await anvil.mine(FINALITY)
    paid = await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert paid["amount"] == "0.123456789012345678"
    event = await receiver.wait_for(
        shop.merchant_id,  # type: ignore[attr-defined]
        lambda e: e["type"] == "payment.succeeded" and e["data"]["id"] == waiting["id"],
    )
    assert event["data"]["status"] == "succeeded"
    assert await _entries(node, waiting["id"]) == 1
    assert node.pg is not None
    clearing = await node.pg.fetchval(
        "SELECT balance FROM ledger_accounts WHERE name = 'channel:eth:clearing' AND currency = $1",
        "ETH",
    )
    assert clearing != 0
    await assert_ledger_invariants(node.pg)


async def test_a_usdt_payment_through_its_transfer_log(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient, receiver: Receiver
) -> None:
    waiting = await _open(shop, "25.50", "USDT")
    crypto = waiting["crypto"]
    token = wallets.usdt_address
    assert crypto["token_contract"] == token
    assert crypto["uri"] == (
        f"ethereum:{token}@{CHAIN_ID}/transfer?address={crypto['address']}&uint256=25500000"
    )
    await wallets.send_usdt(2, crypto["address"], 25_500_000)
    await _until(shop, waiting["id"], _processing)
    await anvil.mine(DEPTH)
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    await receiver.wait_for(
        shop.merchant_id,  # type: ignore[attr-defined]
        lambda e: e["type"] == "payment.succeeded" and e["data"]["id"] == waiting["id"],
    )
    assert await _entries(node, waiting["id"]) == 1
    assert node.pg is not None
    await assert_ledger_invariants(node.pg)


async def test_each_payment_gets_its_own_address_at_a_new_index(
    node: Stack, shop: MerchantClient
) -> None:
    first, second = await _open(shop, "1.00", "USDT"), await _open(shop, "1.00", "USDT")
    assert first["crypto"]["address"] != second["crypto"]["address"]
    assert node.pg is not None
    rows = await node.pg.fetch(
        "SELECT idx FROM deposit_addresses WHERE payment_id = ANY($1::text[]) ORDER BY idx",
        [first["id"], second["id"]],
    )
    assert rows[1]["idx"] > rows[0]["idx"]


async def test_a_fiat_price_is_due_at_the_locked_quote(shop: MerchantClient) -> None:
    waiting = await _open(shop, "100.00", "USD")
    fx, crypto = waiting["fx"], waiting["crypto"]
    assert waiting["status"] == "awaiting_payment", waiting
    assert fx is not None and fx["to_currency"] == crypto["asset"] == "ETH"
    assert crypto["amount"] == fx["converted_amount"]
    assert crypto["uri"].endswith(f"?value={fx['converted_amount'].replace('.', '').lstrip('0')}")


async def test_a_restarted_watcher_catches_up_and_counts_each_transfer_once(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "3.00", "USDT")
    address = waiting["crypto"]["address"]
    watcher = node.pool_processes()["chain"]
    watcher.kill()
    tx = await wallets.send_usdt(1, address, 3_000_000)
    await anvil.mine(DEPTH + 2)  # all mined while the watcher is down
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=30)
    assert node.pool_processes()["chain"].pid != watcher.pid
    assert node.pg is not None
    events = await node.pg.fetch(
        "SELECT * FROM chain_events WHERE address = $1 AND asset = 'USDT'", address
    )
    assert [(e["tx_hash"], int(e["amount"])) for e in events] == [(tx, 3_000_000)]

    # As after a crash between recording a block and keeping the progress: the watcher reads
    # the blocks again and reports the deposit again; nothing counts twice.
    block = events[0]["block_number"]
    await node.pg.execute("DELETE FROM chain_blocks WHERE number >= $1", block - 1)
    await node.pg.execute(
        "UPDATE deposit_addresses SET reported = NULL WHERE payment_id = $1", waiting["id"]
    )
    await anvil.mine(1)
    deadline = time.monotonic() + 20
    while await node.pg.fetchval("SELECT max(number) FROM chain_blocks") <= block:
        assert time.monotonic() < deadline, "the watcher did not read the blocks again"
        await asyncio.sleep(0.1)
    again = await node.pg.fetch(
        "SELECT * FROM chain_events WHERE address = $1 AND asset = 'USDT'", address
    )
    assert len(again) == 1
    assert await _entries(node, waiting["id"]) == 1
    await assert_ledger_invariants(node.pg)


async def test_a_reorg_before_confirmation_puts_the_payment_back_to_awaiting(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "0.5", "ETH")
    address = waiting["crypto"]["address"]
    await wallets.send_eth(3, address, 5 * 10**17)
    await _until(shop, waiting["id"], _processing)
    await anvil.rpc("anvil_reorg", 1, [])  # the payment's block replaced by one without it
    back = await _until(shop, waiting["id"], lambda b: b["crypto"]["state"] == "awaiting")
    assert back["crypto"]["amount_received"] == "0.000000000000000000"
    await anvil.mine(FINALITY + 1)
    head = int(str(await anvil.rpc("eth_blockNumber")), 16)
    assert node.pg is not None
    deadline = time.monotonic() + 20
    while await node.pg.fetchval("SELECT max(number) FROM chain_blocks") < head:
        assert time.monotonic() < deadline, "the watcher did not follow the new chain"
        await asyncio.sleep(0.1)
    status, still = await shop.get_payment(waiting["id"])
    assert status == 200 and still["status"] == "awaiting_payment"
    assert node.pg is not None
    orphaned = await node.pg.fetch("SELECT orphaned FROM chain_events WHERE address = $1", address)
    assert [r["orphaned"] for r in orphaned] == [True]


async def test_a_transfer_to_a_canceled_payments_address_is_kept_for_operations(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "4.00", "USDT")
    status, canceled = await shop.request("POST", f"/api/v1/payments/{waiting['id']}/cancel", {})
    assert status == 200, canceled
    await wait_status(shop, waiting["id"], {"canceled"})
    await wallets.send_usdt(1, waiting["crypto"]["address"], 4_000_000)
    await anvil.mine(DEPTH)
    assert node.pg is not None
    deadline = time.monotonic() + 20
    query = "SELECT * FROM recon_discrepancies WHERE juhe_id = $1 AND kind = 'paid_after_end'"
    while (found := await node.pg.fetchrow(query, waiting["id"])) is None:
        assert time.monotonic() < deadline, "the late transfer was not kept for operations"
        await asyncio.sleep(0.1)
    assert (found["channel"], found["reference"]) == ("eth", waiting["crypto"]["address"])
    status, after = await shop.get_payment(waiting["id"])
    assert status == 200 and after["status"] == "canceled"
    assert await _entries(node, waiting["id"]) == 0, "never posted by itself"


async def test_a_reorg_after_confirmation_reverses_the_credit(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient, receiver: Receiver
) -> None:
    waiting = await _open(shop, "7.25", "USDT")
    await wallets.send_usdt(2, waiting["crypto"]["address"], 7_250_000)
    await anvil.mine(DEPTH)
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert node.pg is not None
    block = await node.pg.fetchval(
        "SELECT block_number FROM chain_events WHERE address = $1 AND asset = 'USDT'",
        waiting["crypto"]["address"],
    )
    head = int(str(await anvil.rpc("eth_blockNumber")), 16)
    await anvil.rpc("anvil_reorg", head - block + 1, [])  # every block since the transfer
    reversed_ = await wait_status(shop, waiting["id"], {"reversed"}, timeout=20)
    assert reversed_["failure_code"] == "payment_reversed"
    await receiver.wait_for(
        shop.merchant_id,  # type: ignore[attr-defined]
        lambda e: e["type"] == "payment.reversed" and e["data"]["id"] == waiting["id"],
    )
    kinds = await node.pg.fetch(
        "SELECT kind FROM journal_entries WHERE ref = $1 ORDER BY id", waiting["id"]
    )
    assert [k["kind"] for k in kinds] == ["payment", "reversal"]
    net = await node.pg.fetch(
        """SELECT a.name, sum(p.amount) AS total FROM journal_entries e
           JOIN postings p ON p.entry_id = e.id JOIN ledger_accounts a ON a.id = p.account_id
           WHERE e.ref = $1 GROUP BY a.name HAVING sum(p.amount) <> 0""",
        waiting["id"],
    )
    assert net == [], "the reversal undoes every line of the credit"
    await assert_ledger_invariants(node.pg)


async def test_two_partial_transfers_add_up_and_an_extra_one_is_kept(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "10.00", "USDT")
    address = waiting["crypto"]["address"]
    await wallets.send_usdt(1, address, 4_000_000)
    await anvil.mine(DEPTH)
    part = await _until(shop, waiting["id"], lambda b: b["crypto"]["amount_received"] != "0.000000")
    assert part["status"] == "awaiting_payment", "deep enough, but short of what is due"
    assert (part["crypto"]["state"], part["crypto"]["amount_received"]) == (
        "processing",
        "4.000000",
    )
    await wallets.send_usdt(2, address, 6_500_000)  # the rest, and 0.50 more
    await anvil.mine(DEPTH)
    paid = await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert paid["amount"] == "10.000000" and paid["crypto"]["amount_received"] == "10.500000"
    assert node.pg is not None
    events = await node.pg.fetch(
        "SELECT amount FROM chain_events WHERE address = $1 AND asset = 'USDT'", address
    )
    assert sorted(int(e["amount"]) for e in events) == [4_000_000, 6_500_000]
    assert await _entries(node, waiting["id"]) == 1
    # 0.10 over is within the tolerance (1 %): the platform's; the other 0.40 is the payer's,
    # left to operations, and so is a transfer that comes after the payment was credited
    assert await _tolerance_line(node, waiting["id"]) == -100_000
    assert await _surpluses(node, waiting["id"]) == [400_000]
    await wallets.send_usdt(3, address, 1_250_000)
    await anvil.mine(DEPTH)
    deadline = time.monotonic() + 20
    while await _surpluses(node, waiting["id"]) != [400_000, 1_250_000]:
        assert time.monotonic() < deadline, "a transfer after the credit was lost"
        await asyncio.sleep(0.1)
    assert await _entries(node, waiting["id"]) == 1, "never credited by itself"
    await assert_ledger_invariants(node.pg)


async def _posted(
    node: Stack, refs: str | list[str], account: str, currency: str, kind: str = "%"
) -> int:
    """What entries of `kind` for `refs` moved on `account` in `currency`."""
    assert node.pg is not None
    return await node.pg.fetchval(
        """SELECT coalesce(sum(p.amount), 0) FROM journal_entries e
           JOIN postings p ON p.entry_id = e.id JOIN ledger_accounts a ON a.id = p.account_id
           WHERE e.ref = ANY($1::text[]) AND a.name = $2 AND a.currency = $3
             AND e.kind LIKE $4""",
        [refs] if isinstance(refs, str) else refs,
        account,
        currency,
        kind,
    )


async def _tolerance_line(node: Stack, payment_id: str) -> int:
    return await _posted(node, payment_id, "platform:crypto_tolerance", "USDT")


async def _surpluses(node: Stack, payment_id: str) -> list[int]:
    assert node.pg is not None
    rows = await node.pg.fetch(
        """SELECT channel_value FROM recon_discrepancies
           WHERE juhe_id = $1 AND kind = 'crypto_surplus' ORDER BY id""",
        payment_id,
    )
    return [int(r["channel_value"]) for r in rows]


async def test_a_deposit_short_within_the_tolerance_pays_and_the_platform_bears_it(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "5.00", "USDT")
    await wallets.send_usdt(1, waiting["crypto"]["address"], 4_960_000)  # 0.04 short of 0.05
    await anvil.mine(DEPTH)
    paid = await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert paid["amount"] == "5.000000", "the merchant is paid the price"
    assert await _tolerance_line(node, waiting["id"]) == 40_000
    assert await _surpluses(node, waiting["id"]) == []
    assert node.pg is not None
    await assert_ledger_invariants(node.pg)


async def _left_short(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient, due: str, paid: int
) -> tuple[dict[str, Any], Any]:
    """A USDT payment of `due` that received `paid` units, then canceled: the payment, and
    the `crypto_underpaid` discrepancy the watcher leaves to operations."""
    waiting = await _open(shop, due, "USDT")
    await wallets.send_usdt(2, waiting["crypto"]["address"], paid)
    await anvil.mine(DEPTH)
    seen = f"{paid / 10**6:.6f}"
    await _until(shop, waiting["id"], lambda b: b["crypto"]["amount_received"] == seen)
    status, _ = await shop.request("POST", f"/api/v1/payments/{waiting['id']}/cancel", {})
    assert status == 200
    assert node.pg is not None
    query = "SELECT * FROM recon_discrepancies WHERE juhe_id = $1 AND kind = 'crypto_underpaid'"
    deadline = time.monotonic() + 20
    while (found := await node.pg.fetchrow(query, waiting["id"])) is None:
        assert time.monotonic() < deadline, "the shortfall was not left to operations"
        await asyncio.sleep(0.1)
    return waiting, found


async def test_a_deposit_short_at_its_end_is_left_to_operations_who_may_accept_it(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient, http: aiohttp.ClientSession
) -> None:
    """3 of 6 USDT arrive and the payment is canceled: a `crypto_underpaid` discrepancy with
    what arrived. Returning it needs an address (refused without, nothing changes); accepting
    it credits the payment with what arrived, the rest the platform's."""
    waiting, found = await _left_short(node, anvil, wallets, shop, "6.00", 3_000_000)
    assert (found["channel_value"], found["juhe_value"]) == ("3000000", "6000000")
    admin: Portal = await make_user(node, http, Realm.PLATFORM, None, ["platform_admin"])
    path = f"/api/v1/admin/reconciliation/discrepancies/{found['id']}/resolve"
    status, refused = await admin.call("POST", path, {"action": "refund", "reason": "return it"})
    assert (status, refused["error"]["code"]) == (400, "destination_required"), refused
    status, resolved = await admin.call(
        "POST", path, {"action": "accept_channel", "reason": "the customer paid the rest by card"}
    )
    assert status == 200 and resolved["status"] == "resolved", resolved
    paid = await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert paid["amount"] == "6.000000"
    assert await _tolerance_line(node, waiting["id"]) == 3_000_000
    assert await _entries(node, waiting["id"]) == 1
    await assert_ledger_invariants(node.pg)


async def test_one_process_watches_a_channel_and_another_stands_by(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    """The test plays a second chain pool: while it holds the channel's watch, the node's
    restarted watcher stands by and a transfer is not followed; once it lets go, the watcher
    takes over and the payment is paid."""
    key = "juhe.chain.eth"
    lock = "SELECT pg_try_advisory_lock(hashtext($1))"
    other = await asyncpg.connect(node.settings.postgres.dsn)
    try:
        assert not await other.fetchval(lock, key), "the node's watcher holds the watch"
        node.pool_processes()["chain"].kill()  # the watch goes with its connection
        deadline = time.monotonic() + 20
        while not await other.fetchval(lock, key):
            assert time.monotonic() < deadline, "the watch was not let go"
            await asyncio.sleep(0.02)
        waiting = await _open(shop, "2.00", "USDT")
        await wallets.send_usdt(1, waiting["crypto"]["address"], 2_000_000)
        await anvil.mine(DEPTH)
        await asyncio.sleep(2.0)  # the restarted watcher polls the lock meanwhile
        _, standing = await shop.get_payment(waiting["id"])
        assert standing["crypto"]["state"] == "awaiting", "a standby follows no block"
        await other.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
        await wait_status(shop, waiting["id"], {"succeeded"}, timeout=30)
    finally:
        await other.close()


async def _refund(shop: MerchantClient, payment_id: str, **fields: Any) -> tuple[int, Any]:
    return await shop.request(
        "POST",
        "/api/v1/refunds",
        {"payment_id": payment_id, **fields},
        headers={"Idempotency-Key": f"r{time.time_ns()}"},
    )


async def _status_in(
    read: Callable[[], Awaitable[tuple[int, Any]]], want: set[str]
) -> dict[str, Any]:
    """Read an object until its status is one of `want` (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        status, body = await read()
        assert status == 200, body
        if body["status"] in want:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def _refund_status(shop: MerchantClient, refund_id: str, want: set[str]) -> dict[str, Any]:
    return await _status_in(lambda: shop.request("GET", f"/api/v1/refunds/{refund_id}"), want)


async def test_a_usdt_refund_is_sent_to_its_address_by_the_signer_and_its_gas_is_the_channels(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    """Paid, then refunded in part to the customer's own address: the hot wallet's transfer is
    signed by the signer, broadcast, watched to its depth, and only then the refund succeeds;
    a redelivered refund task broadcasts the same transaction, so the money goes once; the gas
    (ETH, while the refund is USDT) is the channel's cost out of what it holds."""
    waiting = await _open(shop, "8.00", "USDT")
    await wallets.send_usdt(1, waiting["crypto"]["address"], 8_000_000)
    await anvil.mine(DEPTH)
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    status, refused = await _refund(shop, waiting["id"], amount="1.00")
    assert (status, refused["error"]["code"]) == (400, "destination_required"), refused
    status, refused = await _refund(shop, waiting["id"], amount="1.00", destination="0x12")
    assert (status, refused["error"]["code"]) == (400, "invalid_destination"), refused
    customer = "0x" + secrets.token_hex(20)
    status, refund = await _refund(shop, waiting["id"], amount="3.50", destination=customer)
    assert status in (200, 201, 202), refund
    assert node.pg is not None
    deadline = time.monotonic() + 20
    while (
        sent := await node.pg.fetchrow("SELECT * FROM chain_sends WHERE id = $1", refund["id"])
    ) is None:
        assert time.monotonic() < deadline, "no transfer was signed"
        await asyncio.sleep(0.05)
    assert (sent["to_address"], int(sent["amount"])) == (customer, 3_500_000)
    assert sent["from_address"] == HOT_WALLET.address.lower()
    again = ChannelTask(kind="refund", id=refund["id"], channel="eth", request_id="again")
    assert node.redis is not None
    await node.redis.xadd(
        Keys(node.settings.redis.prefix).stream(TASKS_STREAM), {"d": encode(again)}
    )
    await asyncio.sleep(1.0)
    assert (await _refund_status(shop, refund["id"], {"processing", "succeeded"}))["status"] == (
        "processing"
    ), "mined, not yet deep enough"
    await anvil.mine(DEPTH)
    done = await _refund_status(shop, refund["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    balance = await wallets.usdt.functions.balanceOf(
        wallets.w3.to_checksum_address(customer)
    ).call()
    assert balance == 3_500_000, "sent once"
    assert (
        await node.pg.fetchval("SELECT count(*) FROM chain_sends WHERE id = $1", refund["id"]) == 1
    )
    receipt = await wallets.w3.eth.get_transaction_receipt(sent["tx_hash"])
    gas = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    cost = await _posted(node, refund["id"], "channel:eth:cost", "ETH", "refund")
    assert gas > 0 and cost == gas
    _, after = await shop.get_payment(waiting["id"])
    assert after["status"] == "partially_refunded"
    await assert_ledger_invariants(node.pg)


async def test_an_eth_refund_waits_for_the_finalized_block(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    waiting = await _open(shop, "0.25", "ETH")
    await wallets.send_eth(2, waiting["crypto"]["address"], 25 * 10**16)
    await anvil.mine(FINALITY + 1)
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    customer = "0x" + secrets.token_hex(20)
    status, refund = await _refund(shop, waiting["id"], destination=customer)
    assert status in (200, 201, 202), refund
    await anvil.mine(DEPTH)
    await asyncio.sleep(1.0)
    _, pending = await shop.request("GET", f"/api/v1/refunds/{refund['id']}")
    assert pending["status"] == "processing", "deep, not yet finalized"
    await anvil.mine(FINALITY)
    done = await _refund_status(shop, refund["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert await wallets.w3.eth.get_balance(wallets.w3.to_checksum_address(customer)) == 25 * 10**16
    _, after = await shop.get_payment(waiting["id"])
    assert after["status"] == "refunded"
    assert node.pg is not None
    await assert_ledger_invariants(node.pg)


async def test_a_usdt_withdrawal_is_paid_out_on_the_chain_and_its_gas_is_the_channels(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient, http: aiohttp.ClientSession
) -> None:
    """A merchant withdraws USDT to its own wallet: the payout goes through the `eth` channel
    (withdrawals.channels), signed by the signer, `sent` once broadcast and `succeeded` once
    deep enough, with the gas (ETH) as the channel's cost in the payout's entry."""
    mid = shop.merchant_id  # type: ignore[attr-defined]
    owner = await make_user(node, http, Realm.MERCHANT, mid, ["merchant_owner"])
    wallet = "0x" + secrets.token_hex(20)
    status, account = await owner.call(
        "POST",
        "/api/v1/payout-accounts",
        {"kind": "crypto_wallet", "number": wallet, "bank_name": f"eip155:{CHAIN_ID}"},
    )
    assert status == 201, account
    assert node.pg is not None
    funding = [
        Posting("test:funding", "USDT", 5_000_000),
        Posting(f"merchant:{mid}:available", "USDT", -5_000_000),
    ]
    async with node.pg.acquire() as conn, conn.transaction():
        await store.post_entries(conn, [("adjustment", f"fund:{secrets.token_hex(6)}", funding)])
    status, withdrawal = await owner.call(
        "POST",
        "/api/v1/withdrawals",
        {"amount": "2.50", "currency": "USDT", "payout_account_id": account["id"]},
        headers={"Idempotency-Key": secrets.token_hex(8)},
    )
    assert status == 201, withdrawal

    async def withdrawal_in(wanted: set[str]) -> dict[str, Any]:
        path = f"/api/v1/withdrawals/{withdrawal['id']}"
        return await _status_in(lambda: owner.call("GET", path), wanted)

    sent = await withdrawal_in({"sent", "succeeded", "failed"})
    assert sent["status"] == "sent", sent
    await anvil.mine(DEPTH)
    paid = await withdrawal_in({"succeeded", "failed"})
    assert paid["status"] == "succeeded", paid
    holder = wallets.w3.to_checksum_address(wallet)
    assert await wallets.usdt.functions.balanceOf(holder).call() == 2_500_000
    send = await node.pg.fetchrow("SELECT * FROM chain_sends WHERE id = $1", withdrawal["id"])
    assert (send["kind"], send["status"], send["to_address"]) == ("payout", "confirmed", wallet)
    cost = await _posted(node, withdrawal["id"], "channel:eth:cost", "ETH")
    assert cost == int(send["network_fee"]) > 0
    await assert_ledger_invariants(node.pg)


async def test_a_credited_usdt_deposit_is_swept_into_the_hot_wallet(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    """The deposit address holds tokens but no ETH: the hot wallet sends it the gas, and once
    that is final the signer signs the tokens' move with the deposit's own key; both gas
    costs are the channel's sweep-gas account's."""
    waiting = await _open(shop, "6.50", "USDT")
    address = waiting["crypto"]["address"]
    await wallets.send_usdt(3, address, 6_500_000)
    await anvil.mine(DEPTH)
    await wait_status(shop, waiting["id"], {"succeeded"}, timeout=20)
    assert node.pg is not None
    gas_id, sweep_id = f"gas:{waiting['id']}", f"sweep:{waiting['id']}"
    deadline = time.monotonic() + 20
    while await node.pg.fetchrow("SELECT 1 FROM chain_sends WHERE id = $1", gas_id) is None:
        assert time.monotonic() < deadline, "no gas was sent to the deposit"
        await asyncio.sleep(0.1)
    await anvil.mine(FINALITY + 1)
    while await node.pg.fetchrow("SELECT 1 FROM chain_sends WHERE id = $1", sweep_id) is None:
        assert time.monotonic() < deadline + 20, "the tokens were not swept"
        await asyncio.sleep(0.1)
    await anvil.mine(DEPTH)
    query = "SELECT swept_at FROM deposit_addresses WHERE payment_id = $1"
    while await node.pg.fetchval(query, waiting["id"]) is None:
        assert time.monotonic() < deadline + 40, "the sweep was not settled"
        await asyncio.sleep(0.1)
    holder = wallets.w3.to_checksum_address(address)
    assert await wallets.usdt.functions.balanceOf(holder).call() == 0
    sends = await node.pg.fetch(
        "SELECT * FROM chain_sends WHERE id = ANY($1) ORDER BY id", [gas_id, sweep_id]
    )
    assert [(r["kind"], r["status"]) for r in sends] == [
        ("sweep_gas", "confirmed"),
        ("sweep", "confirmed"),
    ]
    assert sends[1]["from_address"] == address and int(sends[1]["amount"]) == 6_500_000
    assert sends[1]["to_address"] == HOT_WALLET.address.lower()
    cost = await _posted(node, [gas_id, sweep_id], "channel:eth:sweep_gas", "ETH")
    assert cost == sum(int(r["network_fee"]) for r in sends) > 0
    await assert_ledger_invariants(node.pg)


async def test_operations_return_a_short_deposit_to_an_address(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient, http: aiohttp.ClientSession
) -> None:
    """The other way to settle a shortfall: what arrived goes back, from the hot wallet, to
    the address operations name; its gas is the channel's; the payment stays canceled."""
    waiting, found = await _left_short(node, anvil, wallets, shop, "9.00", 2_000_000)
    deadline = time.monotonic() + 20
    admin: Portal = await make_user(node, http, Realm.PLATFORM, None, ["platform_admin"])
    path = f"/api/v1/admin/reconciliation/discrepancies/{found['id']}/resolve"
    customer = "0x" + secrets.token_hex(20)
    status, resolved = await admin.call(
        "POST", path, {"action": "refund", "reason": "customer asked", "destination": customer}
    )
    assert status == 200 and resolved["status"] == "resolved", resolved
    await anvil.mine(DEPTH)
    holder = wallets.w3.to_checksum_address(customer)
    while await wallets.usdt.functions.balanceOf(holder).call() != 2_000_000:
        assert time.monotonic() < deadline + 20, "nothing came back"
        await asyncio.sleep(0.1)
    send = await node.pg.fetchrow("SELECT * FROM chain_sends WHERE id = $1", found["id"])
    while send["status"] != "confirmed":
        assert time.monotonic() < deadline + 20, send
        await asyncio.sleep(0.1)
        send = await node.pg.fetchrow("SELECT * FROM chain_sends WHERE id = $1", found["id"])
    assert send["kind"] == "return"
    gas = await _posted(node, found["id"], "channel:eth:cost", "ETH", "return_gas")
    assert gas == int(send["network_fee"]) > 0
    _, after = await shop.get_payment(waiting["id"])
    assert after["status"] == "canceled"
    assert await _entries(node, waiting["id"]) == 0
    await assert_ledger_invariants(node.pg)


async def test_a_transfer_after_expiry_is_kept_as_paid_late(
    node: Stack, anvil: Anvil, wallets: Wallets, shop: MerchantClient
) -> None:
    """Expired before the customer paid (its expiry moved into the past, as an hour's wait
    would): the transfer that comes after is recorded, raised and kept as `paid_after_end`,
    never credited by itself."""
    waiting = await _open(shop, "1.75", "USDT")
    assert node.pg is not None
    await node.pg.execute(
        "UPDATE payments SET expires_at = now() - interval '1 hour' WHERE id = $1", waiting["id"]
    )
    await wait_status(shop, waiting["id"], {"expired"}, timeout=20)
    await wallets.send_usdt(1, waiting["crypto"]["address"], 1_750_000)
    await anvil.mine(DEPTH)
    query = "SELECT * FROM recon_discrepancies WHERE juhe_id = $1 AND kind = 'paid_after_end'"
    deadline = time.monotonic() + 20
    while (found := await node.pg.fetchrow(query, waiting["id"])) is None:
        assert time.monotonic() < deadline, "the late transfer was lost"
        await asyncio.sleep(0.1)
    assert found["juhe_value"] == "expired"
    _, after = await shop.get_payment(waiting["id"])
    assert after["status"] == "expired"
    assert await _entries(node, waiting["id"]) == 0
