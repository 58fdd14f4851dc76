"""What a channel callback or a refund outcome does to a payment, decided without I/O.

The ledger pool loads the rows, calls these functions and writes what they return; the same
inputs always give the same effect, so redelivery and replays are provably harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain import ledger
from domain.commission import AgentTerms, split
from domain.fees import Rate, rate_fee
from domain.fx import Conversion, convert
from domain.messages import ChannelCallback
from domain.states import (
    ENDED_WITHOUT_MONEY,
    PaymentStatus,
    RefundStatus,
    sources,
    status_after_refund,
)


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
    channel_order_id: str | None = None  # None until the channel pool records the order

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
    "reversed": PaymentStatus.REVERSED,
}


class Confirmation(StrEnum):
    """What the channel said, when asked, of an order its payment has not recorded yet."""

    NOT_ASKED = "not_asked"
    CONFIRMED = "confirmed"  # the channel has that order, and it is this payment's
    DENIED = "denied"  # no such order there, or another payment's
    UNAVAILABLE = "unavailable"  # the channel could not be asked


# Results of callbacks that do not belong to the payment they name, or do not say it was paid
# in full: never applied, always raised to operations.
REFUSED = frozenset({"channel_mismatch", "order_mismatch", "amount_mismatch"})


def refusal(
    payment: PaymentFacts,
    callback: ChannelCallback,
    confirmation: Confirmation = Confirmation.NOT_ASKED,
) -> str | None:
    """Why a callback changes nothing (recorded as its result), or None when it applies.

    A callback belongs to its payment only if it comes from the payment's channel and names
    the payment's order. Both are checked first, whatever the payment's status, so a callback
    signed with a leaked secret but naming another payment's order is refused and raised even
    where it could change nothing. A callback may legitimately arrive before the channel pool
    has recorded the order (the channel paid before its answer to the create reached us): it
    applies only once the channel, asked about that order, says it is this payment's
    (`Confirmation.CONFIRMED`); `unconfirmed` while nobody asked or the channel could not
    answer, in which case the payment settles when the channel is asked at its expiry."""
    if callback.channel != payment.channel:
        return "channel_mismatch"
    recorded = payment.channel_order_id
    if recorded is not None and recorded != callback.channel_order_id:
        return "order_mismatch"
    target = _TARGET[callback.outcome]
    accepted = (
        callback.reconciled
        and target is PaymentStatus.SUCCEEDED
        and payment.status in ENDED_WITHOUT_MONEY
    )
    if payment.status.value not in sources(target) and not accepted:
        # Late, duplicate or out of order: the payment has moved on. A `paid` that arrives after
        # the payment ended otherwise is kept for reconciliation, never posted twice.
        return "stale"
    if recorded is None and confirmation is not Confirmation.CONFIRMED:
        return "order_mismatch" if confirmation is Confirmation.DENIED else "unconfirmed"
    if target is PaymentStatus.SUCCEEDED:
        # A paid callback must say what was paid, in what the channel was asked to charge: a
        # part payment (or one without an amount) is never taken for the whole.
        charged_currency, charged = payment.charged
        if (
            callback.amount is None
            or callback.currency != charged_currency
            or int(callback.amount) != charged
        ):
            return "amount_mismatch"
    return None


def on_callback(
    payment: PaymentFacts | None,
    callback: ChannelCallback,
    cost_rate: Rate,
    chain: Sequence[AgentTerms] = (),
    confirmation: Confirmation = Confirmation.NOT_ASKED,
    paid_entry: Sequence[ledger.Posting] = (),
) -> CallbackEffect:
    """What a channel's word does to a payment; `cost_rate` is what the channel charges for
    it (its fee schedule's line for the method and the charged currency); `chain` is the
    merchant's agents (top first) with the commission policies in force now; `confirmation`
    what the channel said of the callback's order if the payment has none recorded yet;
    `paid_entry` the postings that credited it, which a reversal undoes line by line."""
    if payment is None:
        return CallbackEffect("unknown_payment")
    refused = refusal(payment, callback, confirmation)
    if refused is not None:
        return CallbackEffect(refused)
    target = _TARGET[callback.outcome]
    if target is PaymentStatus.SUCCEEDED:
        charged = payment.charged[1]
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
            received=None if callback.received is None else int(callback.received),
        )
        return CallbackEffect(
            "applied",
            target,
            fee=fee,
            postings=tuple(postings),
            event_type="payment.succeeded",
            commissions=commissions,
        )
    if target is PaymentStatus.REVERSED:
        if not paid_entry:
            raise ValueError(f"payment {payment.id} has no entry to reverse")
        reversal = ledger.proportional_reversal(paid_entry, payment.amount, payment.amount)
        return CallbackEffect(
            "applied",
            target,
            failure_code="payment_reversed",
            failure_message=callback.failure_message or "the channel took the payment back",
            postings=tuple(reversal),
            event_type="payment.reversed",
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
    network_fee: tuple[str, int] | None = None,
) -> RefundEffect:
    """`network_fee` (currency, amount): what the channel's network charged to send it (a
    chain's gas, spent whether the transfer succeeded or not), the channel's cost out of
    what the channel holds."""
    if refund_status is not RefundStatus.PROCESSING:
        return RefundEffect(None)
    fee_lines = (
        ledger.sending_cost(payment.channel, *network_fee)
        if network_fee and payment.channel
        else []
    )
    if not succeeded:
        return RefundEffect(
            RefundStatus.FAILED,
            reserved_delta=-refund_amount,
            postings=tuple(fee_lines),
            event_type="refund.failed",
        )
    refunded = payment.refunded_amount + refund_amount
    postings = ledger.proportional_reversal(
        payment_postings, refund_amount, payment.amount, already=payment.refunded_amount
    )
    return RefundEffect(
        RefundStatus.SUCCEEDED,
        payment_status=status_after_refund(payment.amount, refunded),
        refunded_delta=refund_amount,
        postings=tuple(ledger.net([*postings, *fee_lines])),
        event_type="refund.succeeded",
    )
