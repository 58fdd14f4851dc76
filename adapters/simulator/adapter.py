"""`ChannelAdapter` for the simulator: translates our channel types to its wire protocol and back.

No retries here: the caller retries `ChannelTransientError` with the same idempotency keys
(payment_id as merchant_ref, refund_id as refund_ref), so a retry never pays or refunds twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date
from typing import ClassVar, Literal, TypeVar

import aiohttp
import msgspec
from yarl import URL

from adapters.base import (
    Answer,
    BankTransfer,
    CallbackAck,
    CallbackRejected,
    ChannelDeclined,
    ChannelOrder,
    ChannelTransientError,
    OrderRequest,
    OrderState,
    PayoutRequest,
    PayoutState,
    RefundRequest,
    RefundResult,
    Statement,
    exchange,
)
from adapters.simulator import wire
from domain.channels import ChannelSpec
from domain.messages import ChannelCallback
from domain.reconciliation import StatementError, parse_statement

T = TypeVar("T")

_STATUSES: dict[wire.OrderStatus, str] = {
    "PENDING": "pending",
    "PAID": "paid",
    "FAILED": "failed",
    "REFUNDED": "refunded",
    "PARTIALLY_REFUNDED": "paid",  # still a paid payment; refunds are tracked on our side
    "CANCELED": "failed",  # closed unpaid: it can no longer be paid
}
_OUTCOMES: dict[wire.EventKind, Literal["paid", "failed", "pending"]] = {
    "order.paid": "paid",
    "order.failed": "failed",
    "order.pending": "pending",
}
_PAYOUT_STATUSES: dict[wire.PayoutStatus, str] = {
    "PROCESSING": "processing",
    "PAID": "paid",
    "FAILED": "failed",
    "RETURNED": "returned",
}
_ACK = CallbackAck(status=200, body=b"success", content_type="text/plain")


class SimulatorAdapter:
    CREDENTIALS: ClassVar[tuple[str, ...]] = ("api_key", "secret")

    def __init__(self, spec: ChannelSpec, session: aiohttp.ClientSession) -> None:
        self.code = spec.code
        self._base = URL(spec.base_url)
        self._api_key = spec.credentials["api_key"]
        self._secret = spec.credentials["secret"]
        self._timeout = aiohttp.ClientTimeout(total=spec.timeout_ms / 1000)
        self._session = session

    async def create_order(self, request: OrderRequest) -> ChannelOrder:
        payload = wire.CreateOrder(
            merchant_ref=request.payment_id,
            amount_minor=str(request.amount),
            currency=request.currency,
            notify_url=request.callback_url,
            return_url=request.return_url,
            subject=request.description,
            expire_at=int(request.expires_at),
        )
        created = await self._call("POST", self._base / "v1" / "orders", payload, wire.OrderCreated)
        account = created.virtual_account
        return ChannelOrder(
            channel_order_id=created.order_no,
            pay_url=created.pay_url,
            qr_payload=created.qr_code,
            bank_transfer=BankTransfer(account.bank_code, account.account_no, account.reference)
            if account
            else None,
        )

    async def query_order(self, payment_id: str, channel_order_id: str | None) -> OrderState:
        orders = self._base / "v1" / "orders"
        url = (
            orders / channel_order_id
            if channel_order_id
            else orders.with_query(merchant_ref=payment_id)
        )
        view = await self._call("GET", url, None, wire.OrderView)
        if view.merchant_ref != payment_id:
            raise ChannelDeclined(
                "order_mismatch", f"{self.code}: order {view.order_no} belongs to another payment"
            )
        return OrderState(
            channel_order_id=view.order_no,
            status=_STATUSES[view.status],
            amount=int(view.amount_minor),
            currency=view.currency,
        )

    async def cancel_order(self, payment_id: str, channel_order_id: str) -> None:
        """Close the unpaid order; `ChannelDeclined` ("already_paid") if the customer paid."""
        url = self._base / "v1" / "orders" / channel_order_id / "cancel"
        view = await self._call("POST", url, None, wire.OrderView)
        if view.merchant_ref != payment_id:
            raise ChannelDeclined(
                "order_mismatch", f"{self.code}: order {view.order_no} belongs to another payment"
            )

    async def refund(self, request: RefundRequest) -> RefundResult:
        payload = wire.CreateRefund(
            order_no=request.channel_order_id,
            refund_ref=request.refund_id,
            amount_minor=str(request.amount),
        )
        created = await self._call(
            "POST", self._base / "v1" / "refunds", payload, wire.RefundCreated
        )
        return RefundResult(channel_refund_id=created.refund_no)

    async def payout(self, request: PayoutRequest) -> PayoutState:
        d = request.destination
        payload = wire.CreatePayout(
            payout_ref=request.withdrawal_id,
            amount_minor=str(request.amount),
            currency=request.currency,
            account=wire.PayoutAccount(
                kind=d.kind,  # type: ignore[arg-type]
                number=d.number,
                holder=d.holder,
                bank_name=d.bank_name,
            ),
            notify_url=request.callback_url,
        )
        view = await self._call("POST", self._base / "v1" / "payouts", payload, wire.PayoutView)
        return self._payout_state(view, request.withdrawal_id)

    async def query_payout(self, withdrawal_id: str) -> PayoutState:
        url = (self._base / "v1" / "payouts").with_query(payout_ref=withdrawal_id)
        return self._payout_state(
            await self._call("GET", url, None, wire.PayoutView), withdrawal_id
        )

    def _payout_state(self, view: wire.PayoutView, withdrawal_id: str) -> PayoutState:
        if view.payout_ref != withdrawal_id:
            raise ChannelDeclined("payout_mismatch", f"{self.code}: payout of another withdrawal")
        return PayoutState(view.payout_no, _PAYOUT_STATUSES[view.status], view.failure_code)

    def parse_payout_callback(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        try:
            wire.verify_callback(self._secret, headers, body, time.time())
        except wire.SignatureInvalid as exc:
            raise CallbackRejected("invalid_signature", str(exc)) from None
        try:
            event = msgspec.json.decode(body, type=wire.PayoutEvent)
        except msgspec.DecodeError as exc:
            raise CallbackRejected("invalid_payload", str(exc)) from None
        return event.event_id, event.payout_ref

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ChannelCallback:
        try:
            wire.verify_callback(self._secret, headers, body, time.time())
        except wire.SignatureInvalid as exc:
            raise CallbackRejected("invalid_signature", str(exc)) from None
        try:
            event = msgspec.json.decode(body, type=wire.CallbackEvent)
        except msgspec.DecodeError as exc:
            raise CallbackRejected("invalid_payload", str(exc)) from None
        return ChannelCallback(
            channel=self.code,
            event_id=event.event_id,
            payment_id=event.merchant_ref,
            channel_order_id=event.order_no,
            outcome=_OUTCOMES[event.event],
            amount=event.amount_minor,
            currency=event.currency,
        )

    async def statement(self, day: date) -> Statement:
        """The day's statement; a file we cannot read is `ChannelDeclined` ("bad_statement")."""
        got = await self._send("GET", self._base / "v1" / "statements" / day.isoformat(), None)
        try:
            return Statement(got.body, parse_statement(got.body.decode()))
        except (StatementError, UnicodeDecodeError) as exc:
            raise ChannelDeclined("bad_statement", f"{self.code}: {exc}") from None

    def callback_ack(self) -> CallbackAck:
        return _ACK

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

    async def _call(
        self, method: str, url: URL, payload: msgspec.Struct | None, answer: type[T]
    ) -> T:
        got = await self._send(method, url, payload)
        return got.decode(self.code, answer, f"{method} {url.path}")

    async def _send(self, method: str, url: URL, payload: msgspec.Struct | None) -> Answer:
        """One signed request; the channel's answer is mapped onto our error classes."""
        body = b"" if payload is None else msgspec.json.encode(payload)
        headers = wire.api_headers(
            self._api_key, self._secret, method, url.raw_path_qs, body, time.time()
        )
        if payload is not None:
            headers["Content-Type"] = "application/json"
        got = await exchange(
            self._session,
            self.code,
            method,
            url,
            body=body or None,
            headers=headers,
            deadline=self._timeout,
        )
        status = got.status
        if status >= 500:
            raise ChannelTransientError("channel_unavailable", f"{self.code}: HTTP {status}")
        if status >= 400:
            try:
                error = msgspec.json.decode(got.body, type=wire.Error)
            except msgspec.DecodeError:
                raise ChannelDeclined(f"http_{status}", f"{self.code}: HTTP {status}") from None
            raise ChannelDeclined(error.code.lower(), error.message)
        return got
