"""`ChannelAdapter` for Stripe card payments (PaymentIntents), also spoken by localstripe.

An order is a PaymentIntent created without a card; the customer's card (a ``pm_…`` id made by
Stripe.js on our cashier page) arrives later through `confirm`. No retries here: the caller
retries `ChannelTransientError` with the same idempotency keys (payment_id on create, refund_id
on refund, intent and card on confirm), so a retry never opens, charges or refunds twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import ClassVar, TypeVar

import aiohttp
from yarl import URL

from adapters.base import (
    CallbackAck,
    CallbackRejected,
    ChannelDeclined,
    ChannelOrder,
    ChannelTransientError,
    OrderRequest,
    OrderState,
    RefundRequest,
    RefundResult,
    exchange,
)
from adapters.stripe import wire
from domain.channels import ChannelSpec
from domain.messages import ChannelCallback

T = TypeVar("T")

_ACK = CallbackAck(status=200, body=b'{"received": true}', content_type="application/json")
# 409: another request with the same idempotency key is still running at Stripe.
_TRANSIENT_STATUSES = frozenset({409, 429})
_FAILED_REFUNDS = frozenset({"failed", "canceled"})


class StripeAdapter:
    CREDENTIALS: ClassVar[tuple[str, ...]] = ("secret_key", "webhook_secret")

    def __init__(self, spec: ChannelSpec, session: aiohttp.ClientSession) -> None:
        missing = set(self.CREDENTIALS) - set(spec.credentials)
        if missing:
            lacking = ", ".join(sorted(missing))
            raise ValueError(f"channel {spec.code!r}: credentials lack {lacking}")
        self.code = spec.code
        self._base = URL(spec.base_url)
        self._secret_key = spec.credentials["secret_key"]
        self._webhook_secret = spec.credentials["webhook_secret"]
        self._timeout = aiohttp.ClientTimeout(total=spec.timeout_ms / 1000)
        self._session = session

    async def create_order(self, request: OrderRequest) -> ChannelOrder:
        params = wire.CreateIntent(
            amount=request.amount,
            currency=request.currency.lower(),
            metadata={wire.PAYMENT_ID_KEY: request.payment_id},
            description=request.description,
        )
        intent = await self._call(
            "POST", self._intents, wire.form(params), wire.PaymentIntent, request.payment_id
        )
        return ChannelOrder(channel_order_id=intent.id, pay_url=None, qr_payload=None)

    async def confirm(self, channel_order_id: str, payment_method: str) -> OrderState:
        """Charge the customer's card on the order. Two calls, because attaching the card while
        confirming is not accepted everywhere (localstripe refuses it); a decline raises
        `ChannelDeclined` with Stripe's code, e.g. ``card_declined``; 3-D Secure stays pending."""
        url = self._intents / channel_order_id
        attach_key, confirm_key = wire.confirm_keys(channel_order_id, payment_method)
        attach = wire.AttachPaymentMethod(payment_method=payment_method)
        await self._call("POST", url, wire.form(attach), wire.PaymentIntent, attach_key)
        intent = await self._call("POST", url / "confirm", b"", wire.PaymentIntent, confirm_key)
        return self._state(intent)

    async def query_order(self, payment_id: str, channel_order_id: str | None) -> OrderState:
        """By intent id, or by our payment id through Stripe's search when the create's answer
        was lost. Search is eventually consistent (about a minute behind at Stripe), so a fresh
        intent may still read as ``order_unknown``; localstripe has no search at all and answers
        404, which surfaces as a `ChannelDeclined`, never as a transient error."""
        if channel_order_id is None:
            intent = await self._search(payment_id)
        else:
            try:
                intent = await self._call(
                    "GET", self._intents / channel_order_id, None, wire.PaymentIntent
                )
            except ChannelDeclined as exc:
                if exc.code == "resource_missing":
                    raise ChannelDeclined(
                        "order_unknown", f"{self.code}: no payment intent {channel_order_id}"
                    ) from None
                raise
        if intent.metadata.get(wire.PAYMENT_ID_KEY) != payment_id:
            raise ChannelDeclined(
                "order_mismatch", f"{self.code}: intent {intent.id} belongs to another payment"
            )
        return self._state(intent)

    async def cancel_order(self, payment_id: str, channel_order_id: str) -> None:
        """Cancel the intent so it can no longer be confirmed. Stripe refuses to cancel a
        succeeded (or already canceled) intent, so a refusal is read back: canceled is done,
        paid is `ChannelDeclined("already_paid")`."""
        url = self._intents / channel_order_id / "cancel"
        try:
            await self._call("POST", url, b"", wire.PaymentIntent, f"cancel:{channel_order_id}")
        except ChannelDeclined:
            state = await self.query_order(payment_id, channel_order_id)
            if state.status == "paid":
                raise ChannelDeclined(
                    "already_paid", f"{self.code}: intent {channel_order_id} succeeded"
                ) from None
            if state.status != "failed":
                raise

    async def refund(self, request: RefundRequest) -> RefundResult:
        params = wire.CreateRefund(
            payment_intent=request.channel_order_id,
            amount=request.amount,
            metadata={
                wire.REFUND_ID_KEY: request.refund_id,
                wire.PAYMENT_ID_KEY: request.payment_id,
            },
        )
        refund = await self._call(
            "POST", self._base / "v1" / "refunds", wire.form(params), wire.Refund, request.refund_id
        )
        if refund.status in _FAILED_REFUNDS:
            raise ChannelDeclined(f"refund_{refund.status}", f"{self.code}: refund {refund.id}")
        return RefundResult(channel_refund_id=refund.id)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ChannelCallback | None:
        """None for a verified event that needs nothing from us (another event type, or an
        intent Juhe did not open): acknowledge it so that Stripe stops resending it."""
        try:
            wire.verify_signature(self._webhook_secret, headers, body, time.time())
        except wire.SignatureInvalid as exc:
            raise CallbackRejected("invalid_signature", str(exc)) from None
        try:
            event = wire.decode_event(body)
        except wire.PayloadInvalid as exc:
            raise CallbackRejected("invalid_payload", str(exc)) from None
        if event is None:
            return None
        intent = event.intent
        error = intent.last_payment_error if event.outcome == "failed" else None
        return ChannelCallback(
            channel=self.code,
            event_id=event.event_id,
            payment_id=event.payment_id,
            channel_order_id=intent.id,
            outcome=event.outcome,
            amount=str(intent.amount),
            currency=intent.currency.upper(),
            failure_code=(error.code or error.decline_code) if error else None,
            failure_message=error.message if error else None,
        )

    def callback_ack(self) -> CallbackAck:
        return _ACK

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

    @property
    def _intents(self) -> URL:
        return self._base / "v1" / "payment_intents"

    async def _search(self, payment_id: str) -> wire.PaymentIntent:
        url = (self._intents / "search").with_query(query=wire.search_query(payment_id))
        found = (await self._call("GET", url, None, wire.SearchResult)).data
        if not found:
            raise ChannelDeclined("order_unknown", f"{self.code}: no intent for {payment_id}")
        # Several only if a retry outlived Stripe's 24 h idempotency window; a paid one wins.
        return next((i for i in found if i.status == "succeeded"), found[0])

    def _state(self, intent: wire.PaymentIntent) -> OrderState:
        return OrderState(
            channel_order_id=intent.id,
            status=wire.order_status(intent.status),
            amount=intent.amount,
            currency=intent.currency.upper(),
        )

    async def _call(
        self,
        method: str,
        url: URL,
        body: bytes | None,
        answer: type[T],
        idempotency_key: str | None = None,
    ) -> T:
        """One authenticated request; Stripe's answer is mapped onto our error classes."""
        headers = {
            "Authorization": f"Bearer {self._secret_key}",
            "Stripe-Version": wire.API_VERSION,
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        got = await exchange(
            self._session,
            self.code,
            method,
            url,
            body=body,
            headers=headers,
            deadline=self._timeout,
        )
        status = got.status
        if (
            status >= 500
            or status in _TRANSIENT_STATUSES
            or (status >= 400 and got.headers.get("Stripe-Should-Retry") == "true")
        ):
            raise ChannelTransientError("channel_unavailable", f"{self.code}: HTTP {status}")
        if status >= 400:
            raise self._declined(status, got.body)
        return got.decode(self.code, answer, f"{method} {url.path}")

    def _declined(self, status: int, raw: bytes) -> ChannelDeclined:
        error = wire.decode_error(raw)
        if status in (401, 403):
            # Stripe echoes part of a rejected key in its message: never pass that on.
            fallback = "authentication_failed" if status == 401 else "permission_denied"
            code = error.code if error is not None and error.code else fallback
            refused = f"{self.code}: the channel refused our key (HTTP {status})"
            return ChannelDeclined(code, refused)
        if error is None:
            return ChannelDeclined(f"http_{status}", f"{self.code}: HTTP {status}")
        message = error.message or f"HTTP {status}"
        if error.decline_code:
            message = f"{message} ({error.decline_code})"
        return ChannelDeclined(error.code or error.type or f"http_{status}", message)
