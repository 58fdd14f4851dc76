"""The one small interface every channel adapter implements, and the types it speaks.

Adapters translate between these types and their channel's wire format; nothing outside an
adapter's folder knows a channel's field names, signatures or status codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypeVar, runtime_checkable

import aiohttp
import msgspec
from multidict import CIMultiDictProxy
from yarl import URL

from domain.chain import Transfer
from domain.messages import ChannelCallback
from domain.reconciliation import Line


class ChannelError(Exception):
    """Base of adapter failures; `code` is stable and safe to store on the payment."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ChannelDeclined(ChannelError):
    """The channel said no. Final: retrying the same request cannot succeed."""


class ChannelTransientError(ChannelError):
    """Timeout, connection failure or 5xx: the request may be retried with the same key."""


class CallbackRejected(ChannelError):
    """A callback that fails verification or cannot be parsed; answered 4xx, never enqueued."""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    def decode(self, code: str, kind: type[T], what: str) -> T:
        """A success answer we cannot read is transient: the channel may have acted, and the
        retry (same idempotency key) or a query will tell."""
        try:
            return msgspec.json.decode(self.body, type=kind)
        except msgspec.DecodeError:
            raise ChannelTransientError(
                "channel_unavailable", f"{code}: malformed answer to {what}"
            ) from None


async def exchange(
    session: aiohttp.ClientSession,
    code: str,
    method: str,
    url: URL,
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    deadline: aiohttp.ClientTimeout,
) -> Answer:
    """One HTTP exchange with a channel. No answer (a timeout, a refused or dropped connection)
    is transient: the request may or may not have arrived, which the caller's retry with the
    same idempotency key settles."""
    try:
        async with session.request(
            method, url, data=body, headers=headers, timeout=deadline
        ) as resp:
            return Answer(resp.status, await resp.read(), resp.headers)
    except TimeoutError as exc:
        raise ChannelTransientError(
            "channel_timeout", f"{code}: no answer within {deadline.total} s"
        ) from exc
    except aiohttp.ClientError as exc:
        raise ChannelTransientError("channel_unavailable", f"{code}: {type(exc).__name__}") from exc


@dataclass(frozen=True, slots=True)
class OrderRequest:
    payment_id: str  # also the idempotency key at the channel: retries never open a second order
    amount: int
    currency: str
    description: str | None
    callback_url: str
    return_url: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class BankTransfer:
    """Where the customer sends a bank transfer (a virtual account for this one payment)."""

    bank_code: str
    account_number: str
    reference: str


@dataclass(frozen=True, slots=True)
class CryptoDeposit:
    """Where the customer sends a crypto payment: this payment's own address on `network`
    (CAIP-2), `amount` of `asset` in its minor unit, and the wallet URI (EIP-681) for both."""

    network: str
    asset: str
    address: str
    amount: int
    uri: str
    token: str | None = None  # the asset's contract, for a token


@dataclass(frozen=True, slots=True)
class ChannelOrder:
    channel_order_id: str
    pay_url: str | None
    qr_payload: str | None
    bank_transfer: BankTransfer | None = None
    crypto: CryptoDeposit | None = None


@dataclass(frozen=True, slots=True)
class OrderState:
    channel_order_id: str
    status: str  # "pending" | "paid" | "failed" | "refunded"
    amount: int
    currency: str
    received: int | None = None  # what the channel took, where it differs from `amount`


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  # idempotency key at the channel
    payment_id: str
    channel_order_id: str
    amount: int
    currency: str
    destination: str | None = None  # where an address-refunding channel sends it


@dataclass(frozen=True, slots=True)
class RefundResult:
    channel_refund_id: str
    # sent, not yet done: the channel's own watcher reports the outcome (a chain transfer
    # waiting for its confirmations)
    pending: bool = False


@dataclass(frozen=True, slots=True)
class CallbackAck:
    """What the channel expects back once we have safely taken its callback."""

    status: int
    body: bytes
    content_type: str


class ChannelAdapter(Protocol):
    code: str

    async def create_order(self, request: OrderRequest) -> ChannelOrder: ...

    async def query_order(self, payment_id: str, channel_order_id: str | None) -> OrderState: ...

    async def refund(self, request: RefundRequest) -> RefundResult: ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ChannelCallback | None:
        """Verify the channel's signature and translate; raise `CallbackRejected` otherwise.
        None: a genuine event that says nothing about a payment's outcome (acknowledged only)."""
        ...

    def callback_ack(self) -> CallbackAck: ...

    async def close(self) -> None: ...


@runtime_checkable
class CardConfirming(Protocol):
    """A card channel whose orders wait for the customer's card: the card, tokenised in the
    customer's browser by the channel's own library, is charged on the order by `confirm`."""

    async def confirm(self, channel_order_id: str, payment_method: str) -> OrderState: ...


@runtime_checkable
class AddressRefunding(Protocol):
    """A channel that returns money to an address the refund names (a crypto chain): the
    customer's wallet, not the one that paid, which may be an exchange's."""

    def destination_error(self, destination: str | None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ChainBlock:
    number: int
    hash: str
    parent_hash: str
    transfers: tuple[Transfer, ...]  # every payment in it of an asset the channel takes


@dataclass(frozen=True, slots=True)
class Receipt:
    """A transfer out, as mined: whether it did what it was for, and what it cost in the
    chain's own asset (its gas)."""

    block_number: int
    succeeded: bool
    fee: int


@runtime_checkable
class ChainWatching(Protocol):
    """A crypto channel whose deposits the chain watcher (workers/chain.py) follows block by
    block: the chain's blocks and their transfers, its depth, and what became of transfers
    out. One implementation per chain protocol; the watcher knows none of them."""

    native: str  # the asset its fees are paid in

    async def chain(self) -> str: ...

    async def head(self) -> int: ...

    async def finalized(self) -> int: ...

    async def block(self, number: int) -> ChainBlock: ...

    async def block_hash(self, number: int) -> str: ...

    async def receipt(self, tx_hash: str) -> Receipt | None:
        """None while it is in no block (pending, dropped, or its block reorganised away)."""
        ...

    async def broadcast(self, raw: str, tx_hash: str) -> None: ...


@runtime_checkable
class ChainSending(Protocol):
    """A chain channel that sends from its hot wallet (through the signer): `send_id` is the
    transfer's idempotency key, `kind` what it is for (refund, payout, return, sweep_gas)."""

    async def send_out(
        self, send_id: str, kind: str, asset: str, to: str, amount: int
    ) -> Mapping[str, Any]: ...


@runtime_checkable
class DepositSweeping(ChainSending, Protocol):
    """A chain channel that moves credited token deposits into its hot wallet: the gas a
    deposit lacks, then its tokens (signed with the deposit's own key by the signer)."""

    async def sweep_gas(self, deposit_address: str) -> int: ...

    async def sweep_out(
        self, send_id: str, deposit: Mapping[str, Any]
    ) -> Mapping[str, Any] | None: ...

    async def token_balance(self, address: str) -> int: ...


@runtime_checkable
class OrderCanceling(Protocol):
    """A channel that can close an unpaid order, so a payment that ended (canceled by the
    merchant, or expired) cannot be paid late. `ChannelDeclined` when it was paid already."""

    async def cancel_order(self, payment_id: str, channel_order_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PayoutDestination:
    """Where a payout goes: a bank account (`number`, `holder`, `bank_name`) or a crypto wallet
    (`number` is the address, `bank_name` the network)."""

    kind: str  # "bank_account" | "crypto_wallet"
    number: str
    holder: str | None = None
    bank_name: str | None = None


@dataclass(frozen=True, slots=True)
class PayoutRequest:
    withdrawal_id: str  # the idempotency key at the channel: a resend never pays twice
    amount: int
    currency: str
    destination: PayoutDestination
    callback_url: str


@dataclass(frozen=True, slots=True)
class PayoutState:
    channel_payout_id: str
    status: str  # "processing" | "paid" | "failed" | "returned"
    failure_code: str | None = None
    failure_message: str | None = None
    # what the channel's network charged to send it (currency, minor units): a chain's gas,
    # the channel's cost, posted with the payout's outcome
    network_fee: tuple[str, int] | None = None


@runtime_checkable
class PayoutSending(Protocol):
    """A channel that pays money out. `payout` answers the channel's state of the payout (a
    refused destination is `ChannelDeclined`); `query_payout` is `ChannelDeclined`
    ("not_found") when the channel never received it, so it may be sent; a payout callback
    only names the withdrawal, whose state is then asked for."""

    async def payout(self, request: PayoutRequest) -> PayoutState: ...

    async def query_payout(self, withdrawal_id: str) -> PayoutState: ...

    def parse_payout_callback(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        """(event id, withdrawal id) once the signature is verified; else `CallbackRejected`."""
        ...


@dataclass(frozen=True, slots=True)
class Statement:
    content: bytes  # the file as the channel published it: its hash names the run
    lines: tuple[Line, ...]  # in Juhe's words (types, statuses), as `domain.reconciliation` reads


@runtime_checkable
class StatementPublishing(Protocol):
    """A channel that publishes a daily statement of its merchant account (UTC days)."""

    async def statement(self, day: date) -> Statement: ...
