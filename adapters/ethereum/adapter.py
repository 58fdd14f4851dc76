"""`ChannelAdapter` for deposits on an Ethereum chain, spoken to over JSON-RPC.

There is no provider to open an order with: the order is a deposit address of this payment's
own, derived from the channel's account xpub at an index counted in PostgreSQL, and the amount
due in wei or USDT units (already converted at the payment's locked quote when priced in
fiat). Nothing calls back: the chain watcher (workers/chain.py) finds transfers, counts
confirmations and reports `paid` to the ledger; `query_order` reads what it concluded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TypeVar

import aiohttp
import asyncpg
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TransactionNotFound, Web3Exception

from adapters.base import (
    CallbackRejected,
    ChainBlock,
    ChannelDeclined,
    ChannelOrder,
    ChannelTransientError,
    CryptoDeposit,
    OrderRequest,
    PayoutRequest,
    PayoutState,
    Receipt,
    RefundRequest,
    RefundResult,
)
from adapters.deposit_address import DepositAddressAdapter
from adapters.ethereum.signer import SignerClient, SignerRefused
from adapters.ethereum.wire import (
    ADDRESS,
    ASSETS,
    MAX_GAS,
    TRANSFER_TOPIC,
    Deriver,
    balance_call,
    payment_uri,
    token_transfer,
    transfer_call,
)
from domain.chain import NATIVE_LOG_INDEX, Transfer
from domain.channels import ChannelSpec
from infra import chain_sends

T = TypeVar("T")


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class EthereumAdapter(DepositAddressAdapter):
    """Credentials: `xpub`; optional `usdt_contract`, and `signer_url` and `signer_token` for
    transfers out of the hot wallet (refunds, payouts, sweeps)."""

    native = "ETH"

    def __init__(
        self, spec: ChannelSpec, session: aiohttp.ClientSession, pg: asyncpg.Pool | None = None
    ) -> None:
        super().__init__(spec, pg, Deriver)
        token = spec.credentials.get("usdt_contract")
        self.token = token.lower() if token else None
        self.rpc = AsyncWeb3(
            AsyncHTTPProvider(spec.base_url, request_kwargs={"timeout": spec.timeout_ms / 1000})
        )
        url = spec.credentials.get("signer_url")
        self.signer = (
            SignerClient(url, spec.credentials.get("signer_token", ""), session) if url else None
        )

    async def chain(self) -> str:
        """The chain's CAIP-2 id (eip155:<chain id>), asked once: addresses are counted per
        chain, so two channels on one chain never issue the same index."""
        if self._chain is None:
            self._chain = f"eip155:{await self.call(self.rpc.eth.chain_id)}"
        return self._chain

    async def head(self) -> int:
        return int(await self.call(self.rpc.eth.block_number))

    async def finalized(self) -> int:
        return int((await self.call(self.rpc.eth.get_block("finalized")))["number"])

    async def block_hash(self, number: int) -> str:
        return _hex((await self.call(self.rpc.eth.get_block(number)))["hash"])

    async def block(self, number: int) -> ChainBlock:
        """Its native ETH transfers (a transaction's value to an address) and, with a token
        contract, that token's `Transfer` logs."""
        block = await self.call(self.rpc.eth.get_block(number, full_transactions=True))
        block_hash = _hex(block["hash"])
        found = [
            Transfer(
                tx_hash=_hex(tx["hash"]),
                log_index=NATIVE_LOG_INDEX,
                block_hash=block_hash,
                block_number=number,
                address=str(tx["to"]).lower(),
                asset="ETH",
                amount=int(tx["value"]),
            )
            for tx in block["transactions"]
            if tx.get("to") and int(tx["value"]) > 0
        ]
        if self.token is not None:
            logs = await self.call(
                self.rpc.eth.get_logs(
                    {
                        "blockHash": HexBytes(block_hash),
                        "address": self.rpc.to_checksum_address(self.token),
                        "topics": [TRANSFER_TOPIC],
                    }
                )
            )
            for entry in logs:
                t = token_transfer(entry)
                if t is not None and t.amount > 0:
                    found.append(
                        Transfer(t.tx_hash, t.log_index, block_hash, number, t.to, "USDT", t.amount)
                    )
        return ChainBlock(number, block_hash, _hex(block["parentHash"]), tuple(found))

    async def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            mined = await self.call(self.rpc.eth.get_transaction_receipt(tx_hash))
        except ChannelTransientError as exc:
            if isinstance(exc.__cause__, TransactionNotFound):
                return None
            raise
        return Receipt(
            block_number=int(mined["blockNumber"]),
            succeeded=int(mined["status"]) == 1,
            fee=int(mined["gasUsed"]) * int(mined["effectiveGasPrice"]),
        )

    async def call(self, awaitable: Awaitable[T]) -> T:
        """One RPC; no answer, or an error from the node, is transient."""
        try:
            return await awaitable
        except (Web3Exception, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelTransientError(
                "channel_unavailable", f"{self.code}: node RPC failed ({type(exc).__name__})"
            ) from exc

    async def create_order(self, request: OrderRequest) -> ChannelOrder:
        asset = request.currency
        if asset not in ASSETS:
            raise ChannelDeclined(
                "currency_unsupported", f"{self.code}: takes {', '.join(ASSETS)}, not {asset}"
            )
        if asset == "USDT" and self.token is None:
            raise ChannelDeclined("currency_unsupported", f"{self.code}: no USDT contract set")
        row = await self.issue(request, asset)
        chain = row["chain"]
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

    def destination_error(self, destination: str | None) -> str | None:
        if destination is None:
            return "a crypto refund names the address to send it to (destination)"
        if not ADDRESS.match(destination):
            return "destination is an Ethereum address, 0x and 40 hex digits"
        return None

    async def refund(self, request: RefundRequest) -> RefundResult:
        """A transfer from the hot wallet to the refund's destination, left to the chain
        watcher, which reports the outcome once it is deep enough."""
        problem = self.destination_error(request.destination)
        if problem is not None:
            raise ChannelDeclined("invalid_destination", problem)
        assert request.destination is not None
        sent = await self.send_out(
            request.refund_id, "refund", request.currency, request.destination, request.amount
        )
        return RefundResult(channel_refund_id=sent["tx_hash"], pending=True)

    async def payout(self, request: PayoutRequest) -> PayoutState:
        """A withdrawal to a crypto wallet, as a refund is sent; `processing` until the
        watcher finds it deep enough and hands the withdrawal back to the channel pool."""
        to = request.destination.number
        if request.destination.kind != "crypto_wallet" or not ADDRESS.match(to):
            raise ChannelDeclined(
                "invalid_destination", f"{self.code}: pays out to an Ethereum address only"
            )
        sent = await self.send_out(
            request.withdrawal_id, "payout", request.currency, to, request.amount
        )
        return PayoutState(sent["tx_hash"], "processing")

    async def query_payout(self, withdrawal_id: str) -> PayoutState:
        sent = await chain_sends.of(self.pg, withdrawal_id)
        if sent is None:
            raise ChannelDeclined("not_found", f"{self.code}: sent nothing for {withdrawal_id}")
        if sent["status"] == "sent":
            return PayoutState(sent["tx_hash"], "processing")
        fee = ("ETH", int(sent["network_fee"] or 0))
        if sent["status"] == "confirmed":
            return PayoutState(sent["tx_hash"], "paid", network_fee=fee)
        return PayoutState(
            sent["tx_hash"],
            "failed",
            "transfer_reverted",
            "the chain reverted the transfer",
            network_fee=fee,
        )

    def parse_payout_callback(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        raise CallbackRejected(
            "invalid_payload", f"{self.code}: the chain watcher reports this channel's payouts"
        )

    async def send_out(
        self, send_id: str, kind: str, asset: str, to: str, amount: int
    ) -> asyncpg.Record:
        """Signed by the signer at the wallet's next nonce, kept, and broadcast; a retry
        broadcasts the same transfer."""
        if self.signer is None:
            raise ChannelDeclined(f"{kind}_unsupported", f"{self.code}: no signer is configured")
        if asset not in ASSETS or (asset == "USDT" and self.token is None):
            raise ChannelDeclined("currency_unsupported", f"{self.code}: cannot send {asset}")
        to = to.lower()
        chain = await self.chain()
        held = await chain_sends.of(self.pg, send_id)
        if held is None:
            signer = self.signer
            wallet = await signer.wallet()
            on_chain = await self.call(self.rpc.eth.get_transaction_count(wallet, "pending"))
            gas, max_fee, tip = await self.fees(asset, wallet, to, amount)

            async def sign(nonce: int) -> tuple[str, str]:
                return await self.signer_call(
                    {
                        "chain_id": int(chain.split(":")[1]),
                        "asset": asset,
                        "to": to,
                        "amount": amount,
                        "nonce": nonce,
                        "gas": gas,
                        "max_fee_per_gas": max_fee,
                        "max_priority_fee_per_gas": tip,
                    }
                )

            held = await chain_sends.record(
                self.pg,
                send_id,
                kind,
                self.code,
                chain,
                wallet.lower(),
                on_chain,
                asset,
                to,
                amount,
                sign,
            )
        await self.broadcast(held["raw_tx"], held["tx_hash"])
        return held

    async def sweep_out(self, send_id: str, deposit: asyncpg.Record) -> asyncpg.Record | None:
        """A credited USDT deposit's tokens into the hot wallet, signed with the deposit's own
        key at its own nonce, paid for with the ETH it was topped up with. None when there is
        nothing left to sweep, or not yet enough ETH on it for the gas (topped up by
        `send_out`, at the fees of the moment)."""
        assert self.signer is not None and self.token is not None
        held = await chain_sends.of(self.pg, send_id)
        if held is None:
            address = deposit["address"]
            tokens = await self.token_balance(address)
            if tokens == 0:
                return None
            wallet = await self.signer.wallet()
            gas, max_fee, tip = await self.fees("USDT", address, wallet.lower(), tokens)
            ether = await self.call(self.rpc.eth.get_balance(self.rpc.to_checksum_address(address)))
            if ether < gas * max_fee:
                return None
            on_chain = await self.call(
                self.rpc.eth.get_transaction_count(self.rpc.to_checksum_address(address), "pending")
            )
            chain = await self.chain()

            async def sign(nonce: int) -> tuple[str, str]:
                assert self.signer is not None
                return await self.signer_call(
                    {
                        "chain_id": int(chain.split(":")[1]),
                        "index": int(deposit["idx"]),
                        "asset": "USDT",
                        "amount": tokens,
                        "nonce": nonce,
                        "gas": gas,
                        "max_fee_per_gas": max_fee,
                        "max_priority_fee_per_gas": tip,
                    },
                    sweep=True,
                )

            held = await chain_sends.record(
                self.pg,
                send_id,
                "sweep",
                self.code,
                chain,
                address,
                on_chain,
                "USDT",
                wallet.lower(),
                tokens,
                sign,
            )
        await self.broadcast(held["raw_tx"], held["tx_hash"])
        return held

    async def sweep_gas(self, deposit_address: str) -> int:
        """The ETH a deposit address lacks to pay for sweeping its tokens, at today's fees."""
        assert self.signer is not None
        tokens = await self.token_balance(deposit_address)
        if tokens == 0:
            return 0
        wallet = await self.signer.wallet()
        gas, max_fee, _ = await self.fees("USDT", deposit_address, wallet.lower(), tokens)
        ether = await self.call(
            self.rpc.eth.get_balance(self.rpc.to_checksum_address(deposit_address))
        )
        return max(0, gas * max_fee - int(ether))

    async def token_balance(self, address: str) -> int:
        assert self.token is not None
        answer = await self.call(
            self.rpc.eth.call(
                {"to": self.rpc.to_checksum_address(self.token), "data": balance_call(address)}
            )
        )
        return int.from_bytes(bytes(answer), "big")

    async def signer_call(self, body: dict, sweep: bool = False) -> tuple[str, str]:
        assert self.signer is not None
        try:
            return await (self.signer.sweep(body) if sweep else self.signer.sign(body))
        except SignerRefused as exc:
            raise ChannelDeclined(exc.code, f"{self.code}: the signer refused: {exc}") from None

    async def fees(self, asset: str, wallet: str, to: str, amount: int) -> tuple[int, int, int]:
        """(gas, max fee per gas, priority fee): an ETH transfer's 21,000 gas, a token
        transfer's estimate with a fifth more; twice the latest base fee plus the tip."""
        if asset == "ETH":
            gas = 21_000
        else:
            assert self.token is not None
            estimate = await self.call(
                self.rpc.eth.estimate_gas(
                    {
                        "from": self.rpc.to_checksum_address(wallet),
                        "to": self.rpc.to_checksum_address(self.token),
                        "data": transfer_call(to, amount),
                    }
                )
            )
            gas = min(MAX_GAS, estimate * 6 // 5)
        latest = await self.call(self.rpc.eth.get_block("latest"))
        tip = await self.call(self.rpc.eth.max_priority_fee)
        return gas, 2 * int(latest["baseFeePerGas"]) + int(tip), int(tip)

    async def broadcast(self, raw: str, tx_hash: str) -> None:
        """Send the signed transfer; one the node has already (a retry) is not sent twice."""
        try:
            await self.rpc.eth.send_raw_transaction(raw)
        except (Web3Exception, ValueError) as exc:
            if await self.known(tx_hash):
                return
            raise ChannelTransientError(
                "channel_unavailable", f"{self.code}: broadcast failed ({type(exc).__name__})"
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelTransientError(
                "channel_unavailable", f"{self.code}: node RPC failed ({type(exc).__name__})"
            ) from exc

    async def known(self, tx_hash: str) -> bool:
        try:
            await self.call(self.rpc.eth.get_transaction(tx_hash))
        except ChannelTransientError as exc:
            if isinstance(exc.__cause__, TransactionNotFound):
                return False
            raise
        return True
