"""`ChannelAdapter` for deposits on an Ethereum chain, spoken to over JSON-RPC.

There is no provider to open an order with: the order is a deposit address of this payment's
own, derived from the channel's account xpub at an index counted in PostgreSQL, and the amount
due in wei or USDT units (already converted at the payment's locked quote when priced in
fiat). Nothing calls back: the chain watcher (workers/chain.py) finds transfers, counts
confirmations and reports `paid` to the ledger; `query_order` reads what it concluded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import ClassVar, TypeVar

import aiohttp
import asyncpg
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import Web3Exception

from adapters.base import (
    CallbackAck,
    CallbackRejected,
    ChannelDeclined,
    ChannelOrder,
    ChannelTransientError,
    CryptoDeposit,
    OrderRequest,
    OrderState,
    RefundRequest,
    RefundResult,
)
from adapters.ethereum.wire import ASSETS, Deriver, payment_uri
from domain.channels import ChannelSpec
from domain.messages import ChannelCallback
from infra import deposits

T = TypeVar("T")


class EthereumAdapter:
    CREDENTIALS: ClassVar[tuple[str, ...]] = ("xpub",)  # optional: usdt_contract

    def __init__(
        self, spec: ChannelSpec, session: aiohttp.ClientSession, pg: asyncpg.Pool | None = None
    ) -> None:
        if "xpub" not in spec.credentials:
            raise ValueError(f"channel {spec.code!r}: credentials lack xpub")
        self.code = spec.code
        self.deriver = Deriver(spec.credentials["xpub"])
        token = spec.credentials.get("usdt_contract")
        self.token = token.lower() if token else None
        self.rpc = AsyncWeb3(
            AsyncHTTPProvider(spec.base_url, request_kwargs={"timeout": spec.timeout_ms / 1000})
        )
        self._pg = pg
        self._chain: str | None = None

    async def chain(self) -> str:
        """The chain's CAIP-2 id (eip155:<chain id>), asked once: addresses are counted per
        chain, so two channels on one chain never issue the same index."""
        if self._chain is None:
            self._chain = f"eip155:{await self.call(self.rpc.eth.chain_id)}"
        return self._chain

    async def call(self, awaitable: Awaitable[T]) -> T:
        """One RPC; no answer, or an error from the node, is transient."""
        try:
            return await awaitable
        except (Web3Exception, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelTransientError(
                "channel_unavailable", f"{self.code}: node RPC failed ({type(exc).__name__})"
            ) from exc

    @property
    def pg(self) -> asyncpg.Pool:
        if self._pg is None:
            raise ChannelTransientError("channel_unavailable", f"{self.code}: no database here")
        return self._pg

    async def create_order(self, request: OrderRequest) -> ChannelOrder:
        asset = request.currency
        if asset not in ASSETS:
            raise ChannelDeclined(
                "currency_unsupported", f"{self.code}: takes {', '.join(ASSETS)}, not {asset}"
            )
        if asset == "USDT" and self.token is None:
            raise ChannelDeclined("currency_unsupported", f"{self.code}: no USDT contract set")
        chain = await self.chain()
        row = await deposits.issue(
            self.pg,
            chain,
            self.code,
            request.payment_id,
            asset,
            request.amount,
            self.deriver.address,
        )
        amount, address = int(row["amount_due"]), row["address"]
        token = self.token if asset == "USDT" else None
        uri = payment_uri(int(chain.split(":")[1]), address, asset, amount, token)
        return ChannelOrder(
            channel_order_id=address,
            pay_url=uri,
            qr_payload=uri,
            crypto=CryptoDeposit(
                network=chain, asset=asset, address=address, amount=amount, uri=uri, token=token
            ),
        )

    async def query_order(self, payment_id: str, channel_order_id: str | None) -> OrderState:
        """What the watcher concluded: `paid` once it reported the deposit confirmed."""
        row = await deposits.of_payment(self.pg, payment_id)
        if row is None or (channel_order_id is not None and row["address"] != channel_order_id):
            raise ChannelDeclined("order_unknown", f"{self.code}: no deposit for {payment_id}")
        paid = row["reported"] == "paid"
        due, credited = int(row["amount_due"]), row["credited"]
        return OrderState(
            channel_order_id=row["address"],
            status="paid" if paid else "pending",
            amount=due,
            currency=row["asset"],
            received=int(credited) if paid and credited is not None else None,
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise ChannelDeclined("refund_unsupported", f"{self.code}: crypto refunds are not built")

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ChannelCallback | None:
        raise CallbackRejected(
            "invalid_payload", f"{self.code}: the chain watcher reports this channel's payments"
        )

    def callback_ack(self) -> CallbackAck:
        return CallbackAck(status=200, body=b"{}", content_type="application/json")

    async def close(self) -> None:
        """Nothing to release: the provider's sessions close with the process."""
