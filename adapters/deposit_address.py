"""What every chain channel with deposit addresses shares (adapters/ethereum/, adapters/
bitcoin/): an account-level extended public key in its credentials, its orders kept in our
own database (`deposit_addresses`), and no callbacks, since the chain watcher reports its
payments. Each chain's own adapter adds how to derive, read and send."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol

import asyncpg

from adapters.base import (
    CallbackAck,
    CallbackRejected,
    ChannelDeclined,
    ChannelTransientError,
    OrderRequest,
    OrderState,
)
from domain.channels import ChannelSpec
from domain.messages import ChannelCallback
from infra import deposits


class Deriving(Protocol):
    """Receiving addresses from an account's extended public key, by index."""

    def address(self, index: int) -> str: ...


class DepositAddressAdapter:
    CREDENTIALS: ClassVar[tuple[str, ...]] = ("xpub",)

    def __init__(
        self, spec: ChannelSpec, pg: asyncpg.Pool | None, derive: Callable[[str], Deriving]
    ) -> None:
        if "xpub" not in spec.credentials:
            raise ValueError(f"channel {spec.code!r}: credentials lack xpub")
        self.code = spec.code
        self.deriver = derive(spec.credentials["xpub"])
        self._pg = pg
        self._chain: str | None = None

    async def chain(self) -> str:
        raise NotImplementedError

    async def issue(self, request: OrderRequest, asset: str) -> asyncpg.Record:
        """The payment's own deposit address at the chain's next index, and what it is due."""
        return await deposits.issue(
            self.pg,
            await self.chain(),
            self.code,
            request.payment_id,
            asset,
            request.amount,
            self.deriver.address,
        )

    @property
    def pg(self) -> asyncpg.Pool:
        if self._pg is None:
            raise ChannelTransientError("channel_unavailable", f"{self.code}: no database here")
        return self._pg

    async def query_order(self, payment_id: str, channel_order_id: str | None) -> OrderState:
        """What the watcher concluded: `paid` once it reported the deposit confirmed, with
        what it credited."""
        row = await deposits.of_payment(self.pg, payment_id)
        if row is None or (channel_order_id is not None and row["address"] != channel_order_id):
            raise ChannelDeclined("order_unknown", f"{self.code}: no deposit for {payment_id}")
        paid = row["reported"] == "paid"
        return OrderState(
            channel_order_id=row["address"],
            status="paid" if paid else "pending",
            amount=int(row["amount_due"]),
            currency=row["asset"],
            received=int(row["credited"]) if paid and row["credited"] is not None else None,
        )

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ChannelCallback | None:
        raise CallbackRejected(
            "invalid_payload", f"{self.code}: the chain watcher reports this channel's payments"
        )

    def callback_ack(self) -> CallbackAck:
        return CallbackAck(status=200, body=b"{}", content_type="application/json")

    async def close(self) -> None:
        """Nothing of its own to release: its sessions are the registry's or the process's."""
