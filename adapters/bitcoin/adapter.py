"""`ChannelAdapter` and `ChainWatching` for BTC deposits, spoken to a Bitcoin Core node over
its JSON-RPC (`getblockcount`, `getblockhash`, `getblock` at verbosity 2).

As on Ethereum, the order is a deposit address of the payment's own, derived from the
channel's account zpub or vpub (BIP-84) at an index counted in PostgreSQL, and the chain
watcher reports `paid` once the outputs to it are deep enough. A transfer is one output of a
transaction (`log_index` is its `vout`). Bitcoin has no finality: its `finalized` block is the
one six confirmations deep, the usual convention. Refunds and payouts would sign PSBTs in the
signer: not built, so they answer `refund_unsupported`. Never run against a real node here
(none can be installed on the development machines): the tests speak to a node we control.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg

from adapters.base import (
    ChainBlock,
    ChannelDeclined,
    ChannelOrder,
    ChannelTransientError,
    CryptoDeposit,
    OrderRequest,
    Receipt,
    RefundRequest,
    RefundResult,
)
from adapters.bitcoin.wire import SATOSHIS, Deriver, payment_uri
from adapters.deposit_address import DepositAddressAdapter
from domain.chain import Transfer
from domain.channels import ChannelSpec

FINAL_DEPTH = 6


class BitcoinAdapter(DepositAddressAdapter):
    """Credentials: `xpub` (the account's zpub or vpub); optional `network` (mainnet, testnet,
    regtest; default mainnet), `rpc_user` and `rpc_password`."""

    native = "BTC"

    def __init__(
        self, spec: ChannelSpec, session: aiohttp.ClientSession, pg: asyncpg.Pool | None = None
    ) -> None:
        network = spec.credentials.get("network", "mainnet")
        super().__init__(spec, pg, lambda xpub: Deriver(xpub, network))
        self.url = spec.base_url
        user = spec.credentials.get("rpc_user")
        self.auth = (
            aiohttp.BasicAuth(user, spec.credentials.get("rpc_password", "")) if user else None
        )
        self.timeout = aiohttp.ClientTimeout(total=spec.timeout_ms / 1000)
        self.session = session

    async def rpc(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call; amounts come back as exact decimals, never floats."""
        body = {"jsonrpc": "1.0", "id": "juhe", "method": method, "params": list(params)}
        try:
            async with self.session.post(
                self.url, json=body, auth=self.auth, timeout=self.timeout
            ) as response:
                answer = json.loads(await response.text(), parse_float=Decimal)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise ChannelTransientError(
                "channel_unavailable", f"{self.code}: node RPC failed ({type(exc).__name__})"
            ) from exc
        if answer.get("error"):
            raise ChannelTransientError(
                "channel_unavailable", f"{self.code}: {method}: {answer['error'].get('message')}"
            )
        return answer["result"]

    async def chain(self) -> str:
        """CAIP-2 for Bitcoin: `bip122:` and the first 32 hex digits of the genesis block's
        hash, asked once."""
        if self._chain is None:
            self._chain = "bip122:" + str(await self.rpc("getblockhash", 0))[:32]
        return self._chain

    async def head(self) -> int:
        return int(await self.rpc("getblockcount"))

    async def finalized(self) -> int:
        return max(0, await self.head() - FINAL_DEPTH + 1)

    async def block_hash(self, number: int) -> str:
        return str(await self.rpc("getblockhash", number))

    async def block(self, number: int) -> ChainBlock:
        """Every output paying an address, as a transfer of BTC in satoshis."""
        block_hash = await self.block_hash(number)
        block = await self.rpc("getblock", block_hash, 2)
        found = [
            Transfer(
                tx_hash=str(tx["txid"]),
                log_index=int(out["n"]),
                block_hash=block_hash,
                block_number=number,
                address=str(out["scriptPubKey"]["address"]).lower(),
                asset="BTC",
                amount=int(Decimal(out["value"]) * SATOSHIS),
            )
            for tx in block["tx"]
            for out in tx["vout"]
            if out.get("scriptPubKey", {}).get("address") and Decimal(out["value"]) > 0
        ]
        return ChainBlock(number, block_hash, str(block.get("previousblockhash", "")), tuple(found))

    async def receipt(self, tx_hash: str) -> Receipt | None:
        return None  # nothing is sent out on this chain yet

    async def broadcast(self, raw: str, tx_hash: str) -> None:
        raise ChannelDeclined("refund_unsupported", f"{self.code}: sends nothing on Bitcoin yet")

    async def create_order(self, request: OrderRequest) -> ChannelOrder:
        if request.currency != "BTC":
            raise ChannelDeclined("currency_unsupported", f"{self.code}: takes BTC only")
        row = await self.issue(request, "BTC")
        chain = row["chain"]
        amount, address = int(row["amount_due"]), row["address"]
        uri = payment_uri(address, amount)
        return ChannelOrder(
            channel_order_id=address,
            pay_url=uri,
            qr_payload=uri,
            crypto=CryptoDeposit(
                network=chain, asset="BTC", address=address, amount=amount, uri=uri
            ),
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise ChannelDeclined("refund_unsupported", f"{self.code}: BTC refunds are not built")
