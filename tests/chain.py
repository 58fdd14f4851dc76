"""A throwaway local Ethereum chain for tests: anvil (npm `@foundry-rs/anvil`, installed by
`make chain`) on a free port, in its own process group, with the test USDT (chain/TestUSDT.sol,
compiled offline by `make chain`) deployed on it.

anvil's accounts come from the well-known test mnemonic: account 0 deploys and mints, the
others play customers. Deposit addresses come from account 1' of the same seed (m/44'/60'/1'),
whose xpub is all the node under test is given, so none of them is a funded account.
"""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import orjson
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from web3 import AsyncHTTPProvider, AsyncWeb3

from tests.servers import Server

ROOT = Path(__file__).resolve().parent.parent
ANVIL = ROOT / "chain" / "node_modules" / ".bin" / "anvil"
USDT_ARTIFACT = ROOT / "chain" / "build" / "TestUSDT.json"
MNEMONIC = "test test test test test test test test test test test junk"
CHAIN_ID = 31337


def account_xpub(account: int) -> str:
    """The extended public key of m/44'/60'/<account>' of the test mnemonic."""
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    node = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(account)
    return node.PublicKey().ToExtended()


DEPOSIT_XPUB = account_xpub(1)


class Anvil(Server):
    """anvil mining a block per transaction (and on `mine`), chain id 31337."""

    name = "anvil"
    start_timeout_s = 30.0
    stop_timeout_s = 10.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if not ANVIL.exists():
            raise RuntimeError(f"{ANVIL} is missing: run `make chain` (npm ci in chain/)")
        return [
            str(ANVIL),
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--chain-id", str(CHAIN_ID), "--mnemonic", MNEMONIC, "--silent"),
        ]

    async def shut_down(self) -> None:
        self.signal(signal.SIGINT)

    async def rpc(self, method: str, *params: object) -> object:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
            ) as response,
        ):
            answer = orjson.loads(await response.read())
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def answers(self) -> bool:
        try:
            return await self.rpc("eth_chainId") == hex(CHAIN_ID)
        except (aiohttp.ClientError, OSError):
            return False

    async def mine(self, blocks: int = 1) -> None:
        await self.rpc("anvil_mine", hex(blocks))

    def web3(self) -> AsyncWeb3:
        return AsyncWeb3(AsyncHTTPProvider(self.url))


class Wallets:
    """anvil's unlocked accounts, and the test USDT: what the tests' customers pay with."""

    def __init__(self, w3: AsyncWeb3, accounts: list[str], usdt: str) -> None:
        self.w3 = w3
        self.accounts = accounts
        self.usdt = w3.eth.contract(address=w3.to_checksum_address(usdt), abi=_artifact()["abi"])

    @property
    def usdt_address(self) -> str:
        return str(self.usdt.address).lower()

    @classmethod
    async def deploy(cls, anvil: Anvil) -> Wallets:
        """Deploy the test USDT from account 0 and mint 1,000,000 USDT to each other account."""
        w3 = anvil.web3()
        accounts = list(await w3.eth.accounts)
        artifact = _artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx = await factory.constructor().transact({"from": accounts[0]})
        receipt = await w3.eth.wait_for_transaction_receipt(tx)
        wallets = cls(w3, accounts, receipt["contractAddress"])
        for holder in accounts[1:]:
            mint = wallets.usdt.functions.mint(holder, 1_000_000 * 10**6)
            await w3.eth.wait_for_transaction_receipt(await mint.transact({"from": accounts[0]}))
        return wallets

    async def send_eth(self, payer: int, to: str, wei: int) -> str:
        tx = await self.w3.eth.send_transaction(
            {"from": self.accounts[payer], "to": self.w3.to_checksum_address(to), "value": wei}
        )
        await self.w3.eth.wait_for_transaction_receipt(tx)
        return "0x" + bytes(tx).hex()

    async def send_usdt(self, payer: int, to: str, units: int) -> str:
        call = self.usdt.functions.transfer(self.w3.to_checksum_address(to), units)
        tx = await call.transact({"from": self.accounts[payer]})
        await self.w3.eth.wait_for_transaction_receipt(tx)
        return "0x" + bytes(tx).hex()


def _artifact() -> dict:
    if not USDT_ARTIFACT.exists():
        raise RuntimeError(f"{USDT_ARTIFACT} is missing: run `make chain` (compiles it offline)")
    return orjson.loads(USDT_ARTIFACT.read_bytes())
