"""Ethereum's formats: BIP-44 deposit addresses from an account-level extended public key,
EIP-681 payment URIs, ERC-20 `Transfer` logs and `transfer` calls, and what an address is."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bip_utils import Bip32KeyError, Bip44, Bip44Changes, Bip44Coins, Bip44DepthError, Bip44Levels

# keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
ASSETS = ("ETH", "USDT")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)
MAX_GAS = 200_000  # an ETH transfer takes 21,000, an ERC-20 transfer about 35,000–65,000


def transfer_call(to: str, amount: int) -> str:
    """ERC-20 `transfer(to, amount)` calldata."""
    return "0x" + TRANSFER_SELECTOR + to[2:].lower().rjust(64, "0") + f"{amount:064x}"


def balance_call(holder: str) -> str:
    """ERC-20 `balanceOf(holder)` calldata."""
    return "0x70a08231" + holder[2:].lower().rjust(64, "0")


class KeyInvalid(ValueError):
    pass


class Deriver:
    """Receiving addresses `m/44'/60'/a'/0/i` from the account's xpub alone: whoever holds
    this can watch the deposits but never spend them."""

    def __init__(self, xpub: str) -> None:
        try:
            account = Bip44.FromExtendedKey(xpub, Bip44Coins.ETHEREUM)
        except (Bip32KeyError, Bip44DepthError, ValueError) as exc:
            raise KeyInvalid(f"not an Ethereum account extended public key: {exc}") from None
        if not account.IsPublicOnly():
            # A private key must never reach the gateway or the pools.
            raise KeyInvalid("an extended private key was given; give the xpub")
        if account.Level() != Bip44Levels.ACCOUNT:
            raise KeyInvalid("the key must be at the account level, m/44'/60'/a'")
        self._receiving = account.Change(Bip44Changes.CHAIN_EXT)

    def address(self, index: int) -> str:
        """Lower-case hex, as the chain's logs and blocks are compared."""
        return self._receiving.AddressIndex(index).PublicKey().ToAddress().lower()


def payment_uri(chain_id: int, address: str, asset: str, amount: int, token: str | None) -> str:
    """EIP-681: native ETH as `value` in wei; a token as its contract's `transfer` call."""
    if asset == "ETH":
        return f"ethereum:{address}@{chain_id}?value={amount}"
    if token is None:
        raise ValueError(f"{asset} needs its token contract")
    return f"ethereum:{token}@{chain_id}/transfer?address={address}&uint256={amount}"


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    tx_hash: str
    log_index: int
    block_hash: str
    block_number: int
    to: str
    amount: int


def token_transfer(log: dict) -> TokenTransfer | None:
    """A `Transfer(from, to, value)` log as web3 returns it; None for anything else (another
    event, or a non-standard one with `value` indexed)."""
    topics = [bytes(t) for t in log["topics"]]
    if len(topics) != 3 or "0x" + topics[0].hex() != TRANSFER_TOPIC or len(log["data"]) != 32:
        return None
    return TokenTransfer(
        tx_hash="0x" + bytes(log["transactionHash"]).hex(),
        log_index=int(log["logIndex"]),
        block_hash="0x" + bytes(log["blockHash"]).hex(),
        block_number=int(log["blockNumber"]),
        to="0x" + topics[2][-20:].hex(),
        amount=int.from_bytes(bytes(log["data"]), "big"),
    )
