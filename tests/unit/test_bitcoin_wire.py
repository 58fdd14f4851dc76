"""Bitcoin deposit addresses and payment URIs against the published BIP-84 and BIP-21 test
vectors (no Bitcoin node runs here: these are what the chain backend would watch)."""

from __future__ import annotations

import pytest
from bip_utils import Bip39SeedGenerator, Bip44Changes, Bip84, Bip84Coins

from adapters.bitcoin.wire import Deriver, KeyInvalid, btc, payment_uri

# BIP-84's test vectors: the mnemonic "abandon … about", account 0
MNEMONIC = " ".join(["abandon"] * 11 + ["about"])
ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUk"
    "gDKf31mGDtKsAYz2oz2AGutZYs"
)
FIRST = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
SECOND = "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"


def test_the_bip84_vectors() -> None:
    deriver = Deriver(ZPUB)
    assert [deriver.address(0), deriver.address(1)] == [FIRST, SECOND]


def test_the_xpub_is_the_mnemonics_account_zero() -> None:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    account = Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(0)
    assert account.PublicKey().ToExtended() == ZPUB
    assert account.Change(Bip44Changes.CHAIN_EXT).AddressIndex(0).PublicKey().ToAddress() == FIRST


def test_regtest_addresses_from_the_same_seed() -> None:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    account = Bip84.FromSeed(seed, Bip84Coins.BITCOIN_REGTEST).Purpose().Coin().Account(0)
    address = Deriver(account.PublicKey().ToExtended(), "regtest").address(0)
    assert address.startswith("bcrt1q") and address != FIRST


def test_private_or_wrong_level_keys_are_refused() -> None:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    account = Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(0)
    with pytest.raises(KeyInvalid, match="private"):
        Deriver(account.PrivateKey().ToExtended())
    with pytest.raises(KeyInvalid, match="account level"):
        Deriver(account.Change(Bip44Changes.CHAIN_EXT).PublicKey().ToExtended())
    with pytest.raises(KeyInvalid):
        Deriver("zpub-not-a-key")
    with pytest.raises(KeyInvalid, match="network"):
        Deriver(ZPUB, "signet")


def test_bip21_amounts_are_decimal_bitcoins() -> None:
    assert btc(100_000_000) == "1" and btc(50_000_000) == "0.5" and btc(1) == "0.00000001"
    assert btc(2_100_000_000_000_000) == "21000000"
    # BIP-21's own example: 20.3 BTC with a label
    assert payment_uri("175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W", 2_030_000_000, "Luke-Jr") == (
        "bitcoin:175tWpb8K1S7NmH4Zx6rewF9WQrcZv245W?amount=20.3&label=Luke-Jr"
    )
    with pytest.raises(ValueError):
        payment_uri(FIRST, 0)
