"""Bitcoin: BIP-84 deposit addresses from an account's extended public key, BIP-21 payment
URIs (`wire.py`), and the adapter that follows a Bitcoin Core node for them (`adapter.py`)."""

from adapters.bitcoin.adapter import BitcoinAdapter

__all__ = ["BitcoinAdapter"]
