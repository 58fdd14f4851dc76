"""Payment and refund state machines.

The database enforces them: a transition is `UPDATE … WHERE status = ANY(sources(target))`, so a
duplicate or out-of-order message finds the row already elsewhere and changes nothing.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "pending"
    IN_REVIEW = "in_review"  # held by risk for a person's decision, before any channel
    PROCESSING = "processing"
    AWAITING_PAYMENT = "awaiting_payment"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"
    REJECTED = "rejected"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    # credited, then its money was taken back by the channel's network (a chain reorganisation
    # that dropped the crypto transfer): the credit is reversed by its own entry
    REVERSED = "reversed"


class RefundStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


P = PaymentStatus
UNPAID = frozenset({P.PENDING, P.IN_REVIEW, P.PROCESSING, P.AWAITING_PAYMENT})
# Ended before the customer paid: an order still open at the channel is to be closed.
ENDED_UNPAID = frozenset({P.CANCELED, P.EXPIRED})
# Ended without the customer's money: a channel that says it was paid is a reconciliation
# discrepancy (`paid_after_end`), and only reconciliation may take the channel's word for it.
ENDED_WITHOUT_MONEY = frozenset({P.FAILED, P.EXPIRED, P.CANCELED})
REFUNDABLE = frozenset({P.SUCCEEDED, P.PARTIALLY_REFUNDED})
FINAL = frozenset({P.FAILED, P.EXPIRED, P.CANCELED, P.REJECTED, P.REFUNDED, P.REVERSED})

PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.PENDING: frozenset({P.PROCESSING, P.REJECTED, P.CANCELED, P.EXPIRED, P.FAILED, P.IN_REVIEW}),
    # approved: back to pending, to be routed (its stored decision says it was approved)
    P.IN_REVIEW: frozenset({P.PENDING, P.REJECTED, P.CANCELED, P.EXPIRED}),
    P.PROCESSING: frozenset({P.AWAITING_PAYMENT, P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED}),
    P.AWAITING_PAYMENT: frozenset({P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED}),
    P.SUCCEEDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED, P.REVERSED}),
    P.PARTIALLY_REFUNDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.FAILED: frozenset(),
    P.EXPIRED: frozenset(),
    P.CANCELED: frozenset(),
    P.REJECTED: frozenset(),
    P.REFUNDED: frozenset(),
    P.REVERSED: frozenset(),
}

R = RefundStatus
REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    R.PENDING: frozenset({R.PROCESSING, R.FAILED}),
    R.PROCESSING: frozenset({R.SUCCEEDED, R.FAILED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
}


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in PAYMENT_TRANSITIONS[current]


def sources(target: PaymentStatus) -> list[str]:
    """Statuses a payment may be in for `target` to apply: the guard of the SQL update."""
    return sorted(s.value for s, targets in PAYMENT_TRANSITIONS.items() if target in targets)


def refund_sources(target: RefundStatus) -> list[str]:
    return sorted(s.value for s, targets in REFUND_TRANSITIONS.items() if target in targets)


def status_after_refund(amount: int, refunded: int) -> PaymentStatus:
    if refunded <= 0 or refunded > amount:
        raise ValueError("refunded total must be within (0, amount]")
    return P.REFUNDED if refunded == amount else P.PARTIALLY_REFUNDED
