"""Ethereum deposits (ETH and the ERC-20 USDT): addresses derived from an extended public key,
payments found on the chain by the watcher pool (workers/chain.py)."""

from adapters.ethereum.adapter import EthereumAdapter

__all__ = ["EthereumAdapter"]
