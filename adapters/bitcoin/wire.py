"""Bitcoin's formats: native SegWit (BIP-84, P2WPKH) deposit addresses derived from an
account-level extended public key alone (zpub on mainnet, vpub on testnet and regtest), and
BIP-21 payment URIs. Amounts are integers in satoshis (8 decimals)."""

from __future__ import annotations

from urllib.parse import quote

from bip_utils import (
    Bip32KeyError,
    Bip44Changes,
    Bip44DepthError,
    Bip44Levels,
    Bip84,
    Bip84Coins,
)

NETWORKS = {
    "mainnet": Bip84Coins.BITCOIN,
    "testnet": Bip84Coins.BITCOIN_TESTNET,
    "regtest": Bip84Coins.BITCOIN_REGTEST,
}
SATOSHIS = 100_000_000


class KeyInvalid(ValueError):
    pass


class Deriver:
    """Receiving addresses `m/84'/c'/a'/0/i` (c: 0 on mainnet, 1 on testnet and regtest) from
    the account's extended public key: whoever holds it can watch deposits, never spend them."""

    def __init__(self, extended_public_key: str, network: str = "mainnet") -> None:
        if network not in NETWORKS:
            raise KeyInvalid(f"network is one of {', '.join(NETWORKS)}, not {network!r}")
        try:
            account = Bip84.FromExtendedKey(extended_public_key, NETWORKS[network])
        except (Bip32KeyError, Bip44DepthError, ValueError) as exc:
            raise KeyInvalid(f"not a BIP-84 account extended public key: {exc}") from None
        if not account.IsPublicOnly():
            raise KeyInvalid("an extended private key was given; give the public one")
        if account.Level() != Bip44Levels.ACCOUNT:
            raise KeyInvalid("the key must be at the account level, m/84'/c'/a'")
        self._receiving = account.Change(Bip44Changes.CHAIN_EXT)

    def address(self, index: int) -> str:
        """The bech32 address (bc1…, tb1…, bcrt1…), lower-case as the chain writes it."""
        return self._receiving.AddressIndex(index).PublicKey().ToAddress()


def btc(satoshis: int) -> str:
    """Satoshis as BIP-21 writes an amount: decimal bitcoins, no trailing zeros, no exponent."""
    if satoshis <= 0:
        raise ValueError("a payment URI asks for a positive amount")
    whole, fraction = divmod(satoshis, SATOSHIS)
    return f"{whole}.{fraction:08d}".rstrip("0").rstrip(".")


def payment_uri(address: str, satoshis: int, label: str | None = None) -> str:
    """BIP-21: `bitcoin:<address>?amount=<BTC>` (and a label, percent-encoded)."""
    uri = f"bitcoin:{address}?amount={btc(satoshis)}"
    if label:
        uri += f"&label={quote(label, safe='')}"
    return uri
