"""Plain-data builders for the lifecycle's inputs (domain.lifecycle): a payment's facts and a
channel's callback, each a USD card payment by default, changed per test by keyword."""

from __future__ import annotations

from dataclasses import replace

from domain.lifecycle import PaymentFacts
from domain.messages import ChannelCallback
from domain.states import PaymentStatus


def payment(status: PaymentStatus = PaymentStatus.PROCESSING, **changes: object) -> PaymentFacts:
    base = PaymentFacts(
        id="pay_1",
        merchant_id="mch_1",
        status=status,
        amount=10_000,
        currency="USD",
        channel="sim",
        fee_bps=250,
        fee_fixed=30,
        refund_reserved=0,
        refunded_amount=0,
        channel_order_id="ord_1",
    )
    return replace(base, **changes)


def callback(outcome: str = "paid", **changes: object) -> ChannelCallback:
    fields: dict[str, object] = {
        "channel": "sim",
        "event_id": "evt_1",
        "payment_id": "pay_1",
        "channel_order_id": "ord_1",
        "outcome": outcome,
        "amount": "10000",
        "currency": "USD",
    }
    fields.update(changes)
    return ChannelCallback(**fields)  # type: ignore[arg-type]
