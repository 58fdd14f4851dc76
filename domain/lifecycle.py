"""What a channel callback or a refund outcome does to a payment, decided without I/O.

The ledger pool loads the rows, calls these functions and writes what they return; the same
inputs always give the same effect, so redelivery and replays are provably harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain import ledger
from domain.commission import AgentTerms, split
from domain.fees import Rate, rate_fee
from domain.fx import Conversion, convert
from domain.messages import ChannelCallback
from domain.states import PaymentStatus, RefundStatus, sources, status_after_refund


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    id: str
    merchant_id: str
    status: PaymentStatus
    amount: int
    currency: str
    channel: str | None
    fee_bps: int
    fee_fixed: int
    refund_reserved: int
    refunded_amount: int
    conversion: Conversion | None = None  # charged at the channel in another currency

    @property
    def charged(self) -> tuple[str, int]:
        """What the channel charges: (currency, amount)."""
        if self.conversion is None:
            return self.currency, self.amount
        return self.conversion.target, self.conversion.converted


@dataclass(frozen=True, slots=True)
class CallbackEffect:
    """`result` is recorded with the channel event; `status` is None when nothing changes."""

    result: str
    status: PaymentStatus | None = None
    fee: int | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    postings: tuple[ledger.Posting, ...] = ()
    event_type: str | None = None
    commissions: tuple[tuple[str, int], ...] = ()


_TARGET = {
    "paid": PaymentStatus.SUCCEEDED,
    "failed": PaymentStatus.FAILED,
    "pending": PaymentStatus.AWAITING_PAYMENT,
}


def on_callback(
    payment: PaymentFacts | None,
    callback: ChannelCallback,
    cost_rate: Rate,
    chain: Sequence[AgentTerms] = (),
) -> CallbackEffect:
    """What a channel's word does to a payment; `cost_rate` is what the channel charges for
    it (its fee schedule's line for the method and the charged currency); `chain` is the
    merchant's agents (top first) with the commission policies in force now."""
    if payment is None:
        return CallbackEffect("unknown_payment")
    target = _TARGET[callback.outcome]
    if payment.status.value not in sources(target):
        # Late, duplicate or out of order: the payment has moved on. A `paid` that arrives after
        # the payment ended otherwise is kept for reconciliation, never posted twice.
        return CallbackEffect("stale")
    if target is PaymentStatus.SUCCEEDED:
        if callback.channel != payment.channel:
            return CallbackEffect("channel_mismatch")
        # An amount is only meaningful with its currency; a currency alone must still match.
        charged_currency, charged = payment.charged
        wrong_amount = callback.amount is not None and (
            int(callback.amount) != charged or callback.currency != charged_currency
        )
        wrong_currency = callback.currency is not None and callback.currency != charged_currency
        if wrong_amount or wrong_currency:
            return CallbackEffect("amount_mismatch")
        fee = rate_fee(payment.amount, payment.fee_bps, payment.fee_fixed)
        cost = cost_rate.fee(charged)
        conversion = payment.conversion
        # Commission is split in the payment's currency: the cost comes back at the quote's rate.
        cost_here = (
            cost
            if conversion is None
            else convert(cost, conversion.target, payment.currency, 1 / conversion.rate)
        )
        commissions = split(payment.amount, fee, cost_here, chain).commissions
        postings = ledger.payment_succeeded(
            merchant_id=payment.merchant_id,
            channel=callback.channel,
            currency=payment.currency,
            amount=payment.amount,
            fee=fee,
            channel_cost_amount=cost,
            commissions=commissions,
            charge=payment.charged if conversion is not None else None,
        )
        return CallbackEffect(
            "applied",
            target,
            fee=fee,
            postings=tuple(postings),
            event_type="payment.succeeded",
            commissions=commissions,
        )
    if target is PaymentStatus.FAILED:
        return CallbackEffect(
            "applied",
            target,
            failure_code=callback.failure_code or "payment_failed",
            failure_message=callback.failure_message or "the channel reported the payment failed",
            event_type="payment.failed",
        )
    return CallbackEffect("applied", target)


@dataclass(frozen=True, slots=True)
class RefundEffect:
    refund_status: RefundStatus | None
    payment_status: PaymentStatus | None = None
    refunded_delta: int = 0
    reserved_delta: int = 0
    postings: tuple[ledger.Posting, ...] = ()
    event_type: str | None = None


def on_refund_outcome(
    refund_status: RefundStatus,
    refund_amount: int,
    payment: PaymentFacts,
    payment_postings: Sequence[ledger.Posting],
    succeeded: bool,
) -> RefundEffect:
    if refund_status is not RefundStatus.PROCESSING:
        return RefundEffect(None)
    if not succeeded:
        return RefundEffect(
            RefundStatus.FAILED, reserved_delta=-refund_amount, event_type="refund.failed"
        )
    refunded = payment.refunded_amount + refund_amount
    postings = ledger.proportional_reversal(
        payment_postings, refund_amount, payment.amount, already=payment.refunded_amount
    )
    return RefundEffect(
        RefundStatus.SUCCEEDED,
        payment_status=status_after_refund(payment.amount, refunded),
        refunded_delta=refund_amount,
        postings=tuple(postings),
        event_type="refund.succeeded",
    )
