"""The development chain `make run` starts beside the simulator (`juhe chain node`, when
`chain.local_node_port` is set, as config/dev.toml does): anvil from chain/node_modules, its
state kept across restarts in `chain.local_node_state`, the test USDT deployed on it, and the
`eth` channel pointed at both. Development only: its accounts are anvil's published test
mnemonic, so a production profile refuses to run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import orjson
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from web3 import AsyncHTTPProvider, AsyncWeb3

from config import Settings
from infra import channels, db, redisclient
from infra.invalidation import announce
from infra.keys import Keys
from infra.secretbox import SecretBox

log = logging.getLogger("juhe.localchain")

ROOT = Path(__file__).resolve().parent.parent
ANVIL = ROOT / "chain" / "node_modules" / ".bin" / "anvil"
ARTIFACT = ROOT / "chain" / "build" / "TestUSDT.json"
# anvil's default, published with it: its accounts hold test ETH on every local chain.
TEST_MNEMONIC = "test test test test test test test test test test test junk"
CHAIN_ID = 31337
CHANNEL = "eth"
MINTED = 1_000_000 * 10**6  # USDT units minted to each customer account at deployment


class NotDevelopment(RuntimeError):
    pass


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.chain.local_node_port}"


def deposit_xpub() -> str:
    """m/44'/60'/1'. Deposits use the second account of the seed, so that no deposit address
    is one of the funded accounts customers pay from; the gateway gets this xpub only."""
    seed = Bip39SeedGenerator(TEST_MNEMONIC).Generate()
    account = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(1)
    return account.PublicKey().ToExtended()


def signer_of(settings: Settings) -> dict[str, str]:
    """The channel's signer credentials, where `juhe up` runs one (config/dev.toml does)."""
    s = settings.signer
    return {"signer_url": f"http://127.0.0.1:{s.port}", "signer_token": s.token} if s.port else {}


def connect(settings: Settings) -> AsyncWeb3:
    if settings.node.profile != "development":
        raise NotDevelopment("the local chain is for a development node only")
    return AsyncWeb3(AsyncHTTPProvider(url(settings)))


async def _deploy_usdt(w3: AsyncWeb3) -> str:
    artifact = orjson.loads(ARTIFACT.read_bytes())
    accounts = await w3.eth.accounts
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = await w3.eth.wait_for_transaction_receipt(
        await factory.constructor().transact({"from": accounts[0]})
    )
    token = w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    for holder in accounts[1:]:
        await w3.eth.wait_for_transaction_receipt(
            await token.functions.mint(holder, MINTED).transact({"from": accounts[0]})
        )
    return str(receipt["contractAddress"]).lower()


async def prepare(settings: Settings) -> str:
    """The `eth` channel on this chain with a deployed test USDT: the token the channel names
    is kept while the chain still has its code (its state survived), else deployed anew."""
    w3 = connect(settings)
    box = SecretBox(settings.secrets.keys, settings.secrets.active)
    conn = await db.connect(settings.postgres.dsn)
    try:
        row = await channels.fetch(conn, CHANNEL)
        token = channels.credentials_of(row, box).get("usdt_contract") if row else None
        if not token or not await w3.eth.get_code(w3.to_checksum_address(token)):
            token = await _deploy_usdt(w3)
        fields = {
            "adapter": "ethereum",
            "base_url": url(settings),
            "credentials": {"xpub": deposit_xpub(), "usdt_contract": token, **signer_of(settings)},
            "methods": ["crypto"],
            "currencies": ["ETH", "USDT"],
            "fees": [{"bps": 100, "fixed_minor": 0, "method": None, "currency": None}],
            "priority": 50,
        }
        async with conn.transaction():
            if row is None:
                await channels.create(conn, box, CHANNEL, fields)
            else:
                await channels.update(conn, box, CHANNEL, fields)
    finally:
        await conn.close()
    redis = redisclient.connect(settings.redis.url)
    try:
        await announce(redis, Keys(settings.redis.prefix), channels=True)
    finally:
        await redis.aclose()
    return token


async def serve(settings: Settings) -> None:
    """Run anvil until SIGTERM or SIGINT, then stop it (it writes its state as it exits)."""
    connect(settings)
    state: list[str] = []
    if settings.chain.local_node_state:
        kept = ROOT / settings.chain.local_node_state
        kept.parent.mkdir(parents=True, exist_ok=True)
        state = ["--state", str(kept)]
    anvil = await asyncio.create_subprocess_exec(
        str(ANVIL),
        *("--host", "127.0.0.1", "--port", str(settings.chain.local_node_port)),
        *("--chain-id", str(CHAIN_ID), "--mnemonic", TEST_MNEMONIC, "--silent", *state),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        w3 = connect(settings)
        for _ in range(100):
            with contextlib.suppress(Exception):
                if await w3.eth.chain_id == CHAIN_ID:
                    break
            await asyncio.sleep(0.1)
        token = await prepare(settings)
        log.info(
            "local chain ready",
            extra={"rpc": url(settings), "usdt": token, "channel": CHANNEL},
        )
        ended = asyncio.create_task(anvil.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        if anvil.returncode is None:
            anvil.terminate()
            await anvil.wait()
