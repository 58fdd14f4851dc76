"""Payment and refund state machines (domain/states.py)."""

from __future__ import annotations

import itertools

import pytest

from domain.states import (
    FINAL,
    PAYMENT_TRANSITIONS,
    REFUND_TRANSITIONS,
    REFUNDABLE,
    UNPAID,
    PaymentStatus,
    RefundStatus,
    can_transition,
    refund_sources,
    sources,
    status_after_refund,
)

P = PaymentStatus
R = RefundStatus


def test_every_payment_status_has_transitions() -> None:
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)
    for targets in PAYMENT_TRANSITIONS.values():
        assert targets <= set(PaymentStatus)


def test_every_refund_status_has_transitions() -> None:
    assert set(REFUND_TRANSITIONS) == set(RefundStatus)


@pytest.mark.parametrize("status", sorted(FINAL))
def test_final_statuses_have_no_exits(status: PaymentStatus) -> None:
    assert PAYMENT_TRANSITIONS[status] == frozenset()
    assert not any(can_transition(status, t) for t in PaymentStatus)


def test_non_final_statuses_have_exits() -> None:
    for status in set(PaymentStatus) - FINAL:
        assert PAYMENT_TRANSITIONS[status], status


def test_status_groups() -> None:
    assert UNPAID == {P.PENDING, P.IN_REVIEW, P.PROCESSING, P.AWAITING_PAYMENT}
    assert REFUNDABLE == {P.SUCCEEDED, P.PARTIALLY_REFUNDED}
    assert not (UNPAID & FINAL)
    assert not (REFUNDABLE & FINAL)
    assert not (UNPAID & REFUNDABLE)
    assert UNPAID | REFUNDABLE | FINAL == set(PaymentStatus)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(PaymentStatus, repeat=2)))
def test_sources_consistent_with_can_transition(current: P, target: P) -> None:
    assert (current.value in sources(target)) == can_transition(current, target)


def test_sources_sorted_and_strings() -> None:
    for target in PaymentStatus:
        result = sources(target)
        assert result == sorted(result)
        assert all(isinstance(s, str) for s in result)
        assert len(set(result)) == len(result)


def test_sources_examples() -> None:
    assert sources(P.SUCCEEDED) == ["awaiting_payment", "processing"]
    assert sources(P.AWAITING_PAYMENT) == ["processing"]
    assert sources(P.FAILED) == ["awaiting_payment", "pending", "processing"]
    assert sources(P.REFUNDED) == ["partially_refunded", "succeeded"]
    assert sources(P.PARTIALLY_REFUNDED) == ["partially_refunded", "succeeded"]
    assert sources(P.PENDING) == ["in_review"]  # a review approved it: routed now


def test_unpaid_cannot_be_refunded_and_refunded_cannot_succeed() -> None:
    for status in UNPAID:
        assert not can_transition(status, P.REFUNDED)
        assert not can_transition(status, P.PARTIALLY_REFUNDED)
    for status in REFUNDABLE:
        assert not can_transition(status, P.SUCCEEDED)
        assert not can_transition(status, P.FAILED)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(RefundStatus, repeat=2)))
def test_refund_sources_consistent(current: R, target: R) -> None:
    assert (current.value in refund_sources(target)) == (target in REFUND_TRANSITIONS[current])


def test_refund_examples() -> None:
    assert refund_sources(R.SUCCEEDED) == ["processing"]
    assert refund_sources(R.FAILED) == ["pending", "processing"]
    assert refund_sources(R.PENDING) == []
    assert REFUND_TRANSITIONS[R.SUCCEEDED] == frozenset()
    assert REFUND_TRANSITIONS[R.FAILED] == frozenset()


@pytest.mark.parametrize(
    ("amount", "refunded", "expected"),
    [
        (100, 1, P.PARTIALLY_REFUNDED),
        (100, 99, P.PARTIALLY_REFUNDED),
        (100, 100, P.REFUNDED),
        (1, 1, P.REFUNDED),
    ],
)
def test_status_after_refund(amount: int, refunded: int, expected: P) -> None:
    assert status_after_refund(amount, refunded) is expected


@pytest.mark.parametrize(("amount", "refunded"), [(100, 0), (100, -1), (100, 101)])
def test_status_after_refund_rejects_out_of_range(amount: int, refunded: int) -> None:
    with pytest.raises(ValueError, match="within"):
        status_after_refund(amount, refunded)
