"""Callback and refund effects (domain/lifecycle.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fees import Rate, rate_fee
from domain.fx import Conversion, parse_rate, quote
from domain.ledger import (
    PLATFORM_FEE_REVENUE,
    PLATFORM_FX,
    PLATFORM_ROUNDING,
    channel_clearing,
    channel_cost,
    ensure_balanced,
    merchant_pending,
    net,
    payment_succeeded,
)
from domain.lifecycle import (
    REFUSED,
    CallbackEffect,
    Confirmation,
    PaymentFacts,
    RefundEffect,
    on_callback,
    on_refund_outcome,
)
from domain.states import FINAL, PaymentStatus, RefundStatus
from tests.facts import callback as _callback
from tests.facts import payment as _payment

P = PaymentStatus
PRICE = Rate(120)


# ---------------------------------------------------------------------------- paid


@pytest.mark.parametrize("status", [P.PROCESSING, P.AWAITING_PAYMENT])
def test_paid_succeeds_with_balanced_postings(status: P) -> None:
    effect = on_callback(_payment(status), _callback("paid"), PRICE)
    assert effect.result == "applied"
    assert effect.status is P.SUCCEEDED
    assert effect.event_type == "payment.succeeded"
    assert effect.fee == rate_fee(10_000, 250, 30) == 280
    ensure_balanced(effect.postings)
    lines = {p.account: p.amount for p in effect.postings}
    assert lines == {
        channel_clearing("sim"): 10_000 - 120,
        channel_cost("sim"): 120,
        merchant_pending("mch_1"): -(10_000 - 280),
        PLATFORM_FEE_REVENUE: -280,
    }
    assert effect.failure_code is None
    assert isinstance(effect.postings, tuple)


def test_paid_without_amount_is_refused() -> None:
    """A paid callback that does not say what was paid is never taken for the whole amount."""
    effect = on_callback(_payment(), _callback("paid", amount=None, currency=None), PRICE)
    assert effect == CallbackEffect("amount_mismatch")


@settings(max_examples=200)
@given(
    amount=st.integers(min_value=1, max_value=10**30),
    fee_bps=st.integers(min_value=0, max_value=10_000),
    fee_fixed=st.integers(min_value=0, max_value=10_000),
    cost_bps=st.integers(min_value=0, max_value=10_000),
    cost_fixed=st.integers(min_value=0, max_value=10_000),
    status=st.sampled_from([P.PROCESSING, P.AWAITING_PAYMENT]),
)
def test_paid_postings_balance_for_any_price(
    amount: int, fee_bps: int, fee_fixed: int, cost_bps: int, cost_fixed: int, status: P
) -> None:
    payment = _payment(status, amount=amount, currency="ETH", fee_bps=fee_bps, fee_fixed=fee_fixed)
    effect = on_callback(
        payment,
        _callback("paid", amount=str(amount), currency="ETH"),
        Rate(cost_bps, cost_fixed),
    )
    assert effect.status is P.SUCCEEDED
    fee = rate_fee(amount, fee_bps, fee_fixed)
    cost = rate_fee(amount, cost_bps, cost_fixed)
    assert effect.fee == fee
    ensure_balanced(effect.postings)
    assert list(effect.postings) == payment_succeeded(
        merchant_id="mch_1",
        channel="sim",
        currency="ETH",
        amount=amount,
        fee=fee,
        channel_cost_amount=cost,
    )


@pytest.mark.parametrize("status", sorted(FINAL | {P.SUCCEEDED, P.PARTIALLY_REFUNDED, P.PENDING}))
def test_paid_from_other_statuses_is_stale(status: P) -> None:
    effect = on_callback(_payment(status), _callback("paid"), PRICE)
    assert effect == CallbackEffect("stale")
    assert effect.status is None
    assert effect.postings == ()


@pytest.mark.parametrize("status", sorted(FINAL | {P.SUCCEEDED, P.PARTIALLY_REFUNDED}))
def test_only_reconciliation_may_pay_a_payment_ended_without_its_money(status: P) -> None:
    effect = on_callback(_payment(status), _callback("paid", reconciled=True), PRICE)
    if status in (P.FAILED, P.EXPIRED, P.CANCELED):
        assert (effect.result, effect.status) == ("applied", P.SUCCEEDED)
        assert sum(p.amount for p in effect.postings) == 0 and effect.postings
    else:
        assert effect == CallbackEffect("stale"), "paid, refunded or rejected stay as they are"
    failed = on_callback(_payment(status), _callback("failed", reconciled=True), PRICE)
    assert failed == CallbackEffect("stale"), "its word never fails an ended payment"
    mismatch = on_callback(
        _payment(status), _callback("paid", reconciled=True, amount="9999"), PRICE
    )
    assert mismatch.status is None, "nor pays one for another amount"


def test_unknown_payment() -> None:
    for outcome in ("paid", "failed", "pending"):
        effect = on_callback(None, _callback(outcome), PRICE)
        assert effect == CallbackEffect("unknown_payment")
        assert effect.postings == ()


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("9999", "USD"), ("10001", "USD"), ("0", "USD"), ("10000", "EUR"), ("10000", None)],
)
def test_paid_amount_or_currency_mismatch(amount: str, currency: str | None) -> None:
    effect = on_callback(_payment(), _callback("paid", amount=amount, currency=currency), PRICE)
    assert effect == CallbackEffect("amount_mismatch")
    assert effect.status is None
    assert effect.postings == ()


@pytest.mark.parametrize("outcome", ["paid", "failed", "pending"])
@pytest.mark.parametrize("payment_channel", ["other", None])
def test_channel_mismatch(outcome: str, payment_channel: str | None) -> None:
    effect = on_callback(_payment(channel=payment_channel), _callback(outcome), PRICE)
    assert effect == CallbackEffect("channel_mismatch")
    assert effect.postings == ()


@pytest.mark.parametrize("outcome", ["paid", "failed", "pending"])
def test_another_payments_order_is_refused(outcome: str) -> None:
    """Signed by the channel's secret, naming this payment, but another payment's order."""
    effect = on_callback(_payment(), _callback(outcome, channel_order_id="ord_2"), PRICE)
    assert effect == CallbackEffect("order_mismatch")
    confirmed = on_callback(
        _payment(), _callback(outcome, channel_order_id="ord_2"), PRICE, (), Confirmation.CONFIRMED
    )
    assert confirmed == effect, "the recorded order decides, whatever the channel was asked"


def test_ownership_checked_before_stale_and_amount() -> None:
    ended = _payment(P.CANCELED)
    assert on_callback(ended, _callback("paid", channel="other"), PRICE).result == (
        "channel_mismatch"
    )
    assert on_callback(ended, _callback("paid", channel_order_id="x"), PRICE).result == (
        "order_mismatch"
    )
    wrong = _callback("paid", channel_order_id="x", amount="1")
    assert on_callback(_payment(), wrong, PRICE).result == "order_mismatch"
    assert on_callback(_payment(channel="other"), wrong, PRICE).result == "channel_mismatch"


def test_stale_checked_before_amount() -> None:
    effect = on_callback(_payment(P.SUCCEEDED), _callback("paid", amount="1"), PRICE)
    assert effect.result == "stale"


# ------------------------------------------------------- before the order is recorded


@pytest.mark.parametrize("outcome", ["paid", "failed", "pending"])
def test_early_callback_applies_once_the_channel_confirms_its_order(outcome: str) -> None:
    """The channel paid before its answer to the create was written: the payment is still
    processing without an order, and the channel, asked, says the order is this payment's."""
    early = _payment(P.PROCESSING, channel_order_id=None)
    effect = on_callback(early, _callback(outcome), PRICE, (), Confirmation.CONFIRMED)
    assert effect.result == "applied"
    assert effect == on_callback(_payment(P.PROCESSING), _callback(outcome), PRICE)


@pytest.mark.parametrize(
    ("confirmation", "result"),
    [
        (Confirmation.NOT_ASKED, "unconfirmed"),
        (Confirmation.UNAVAILABLE, "unconfirmed"),
        (Confirmation.DENIED, "order_mismatch"),
    ],
)
def test_early_callback_is_not_applied_unless_confirmed(
    confirmation: Confirmation, result: str
) -> None:
    early = _payment(P.PROCESSING, channel_order_id=None)
    effect = on_callback(early, _callback("paid"), PRICE, (), confirmation)
    assert effect == CallbackEffect(result)
    assert (result in REFUSED) is (confirmation is Confirmation.DENIED)


def test_early_callback_for_an_ended_payment_is_stale_without_asking() -> None:
    """Canceled before its order was recorded: nothing could change, so nothing is asked."""
    ended = _payment(P.CANCELED, channel_order_id=None)
    assert on_callback(ended, _callback("paid"), PRICE) == CallbackEffect("stale")


def test_confirmed_early_paid_callback_still_checks_the_amount() -> None:
    early = _payment(P.PROCESSING, channel_order_id=None)
    effect = on_callback(early, _callback("paid", amount="5000"), PRICE, (), Confirmation.CONFIRMED)
    assert effect == CallbackEffect("amount_mismatch")


# ---------------------------------------------------------------------------- failed


@pytest.mark.parametrize("status", [P.PENDING, P.PROCESSING, P.AWAITING_PAYMENT])
def test_failed_defaults(status: P) -> None:
    effect = on_callback(_payment(status), _callback("failed", amount=None), PRICE)
    assert effect.result == "applied"
    assert effect.status is P.FAILED
    assert effect.failure_code == "payment_failed"
    assert effect.failure_message
    assert effect.event_type == "payment.failed"
    assert effect.postings == ()
    assert effect.fee is None


def test_failed_keeps_channel_failure_code() -> None:
    effect = on_callback(
        _payment(),
        _callback("failed", failure_code="card_declined", failure_message="declined by issuer"),
        PRICE,
    )
    assert effect.status is P.FAILED
    assert effect.failure_code == "card_declined"
    assert effect.failure_message == "declined by issuer"


@pytest.mark.parametrize("status", sorted(FINAL | {P.SUCCEEDED, P.PARTIALLY_REFUNDED}))
def test_failed_from_later_statuses_is_stale(status: P) -> None:
    effect = on_callback(_payment(status), _callback("failed"), PRICE)
    assert effect == CallbackEffect("stale")


# ---------------------------------------------------------------------------- pending


def test_pending_from_processing_awaits_payment() -> None:
    effect = on_callback(_payment(P.PROCESSING), _callback("pending"), PRICE)
    assert effect == CallbackEffect("applied", P.AWAITING_PAYMENT)
    assert effect.postings == ()
    assert effect.event_type is None


@pytest.mark.parametrize("status", [s for s in PaymentStatus if s is not P.PROCESSING])
def test_pending_from_anything_else_is_stale(status: P) -> None:
    effect = on_callback(_payment(status), _callback("pending"), PRICE)
    assert effect == CallbackEffect("stale")


def test_on_callback_is_deterministic() -> None:
    payment, callback = _payment(), _callback("paid")
    assert on_callback(payment, callback, PRICE) == on_callback(payment, callback, PRICE)


# ---------------------------------------------------------------------------- refunds


def _paid_postings(amount: int = 10_000) -> list:
    return payment_succeeded(
        merchant_id="mch_1",
        channel="sim",
        currency="USD",
        amount=amount,
        fee=rate_fee(amount, 250, 30),
        channel_cost_amount=rate_fee(amount, 120, 0),
    )


@pytest.mark.parametrize(
    "refund_status", [s for s in RefundStatus if s is not RefundStatus.PROCESSING]
)
@pytest.mark.parametrize("succeeded", [True, False])
def test_refund_outcome_ignored_unless_processing(
    refund_status: RefundStatus, succeeded: bool
) -> None:
    effect = on_refund_outcome(
        refund_status, 1_000, _payment(P.SUCCEEDED), _paid_postings(), succeeded
    )
    assert effect == RefundEffect(None)
    assert effect.reserved_delta == 0
    assert effect.refunded_delta == 0
    assert effect.postings == ()


def test_refund_failure_releases_reservation() -> None:
    payment = _payment(P.SUCCEEDED, refund_reserved=3_000)
    effect = on_refund_outcome(RefundStatus.PROCESSING, 3_000, payment, _paid_postings(), False)
    assert effect.refund_status is RefundStatus.FAILED
    assert effect.reserved_delta == -3_000
    assert effect.refunded_delta == 0
    assert effect.payment_status is None
    assert effect.postings == ()
    assert effect.event_type == "refund.failed"


def test_partial_refund_success() -> None:
    payment = _payment(P.SUCCEEDED, refund_reserved=4_000)
    postings = _paid_postings()
    effect = on_refund_outcome(RefundStatus.PROCESSING, 4_000, payment, postings, True)
    assert effect.refund_status is RefundStatus.SUCCEEDED
    assert effect.payment_status is P.PARTIALLY_REFUNDED
    assert effect.refunded_delta == 4_000
    assert effect.reserved_delta == 0  # refund_reserved already counts it
    assert effect.event_type == "refund.succeeded"
    ensure_balanced(effect.postings)
    lines = {p.account: p.amount for p in effect.postings}
    assert lines[merchant_pending("mch_1")] > 0  # the merchant's pending credit is debited back
    assert lines[channel_clearing("sim")] < 0


def test_final_partial_refund_makes_payment_refunded() -> None:
    payment = _payment(P.PARTIALLY_REFUNDED, refund_reserved=10_000, refunded_amount=6_000)
    effect = on_refund_outcome(RefundStatus.PROCESSING, 4_000, payment, _paid_postings(), True)
    assert effect.payment_status is P.REFUNDED
    assert effect.refunded_delta == 4_000
    ensure_balanced(effect.postings)


def test_full_refund_success_negates_payment() -> None:
    postings = _paid_postings()
    payment = _payment(P.SUCCEEDED, refund_reserved=10_000)
    effect = on_refund_outcome(RefundStatus.PROCESSING, 10_000, payment, postings, True)
    assert effect.refund_status is RefundStatus.SUCCEEDED
    assert effect.payment_status is P.REFUNDED
    assert effect.refunded_delta == 10_000
    ensure_balanced(effect.postings)
    assert net([*postings, *effect.postings]) == []
    assert all(p.account != PLATFORM_ROUNDING for p in effect.postings)


def test_refund_beyond_amount_is_rejected() -> None:
    payment = _payment(P.PARTIALLY_REFUNDED, refunded_amount=9_000)
    with pytest.raises(ValueError):
        on_refund_outcome(RefundStatus.PROCESSING, 2_000, payment, _paid_postings(), True)


@settings(max_examples=200)
@given(
    st.integers(min_value=1, max_value=10**12).flatmap(
        lambda amount: st.tuples(st.just(amount), st.integers(min_value=1, max_value=amount))
    )
)
def test_refund_success_postings_always_balance(case: tuple[int, int]) -> None:
    amount, refund = case
    payment = _payment(P.SUCCEEDED, amount=amount, refund_reserved=refund)
    effect = on_refund_outcome(
        RefundStatus.PROCESSING, refund, payment, _paid_postings(amount), True
    )
    ensure_balanced(effect.postings)
    assert effect.payment_status is (P.REFUNDED if refund == amount else P.PARTIALLY_REFUNDED)
    assert effect.refunded_delta == refund


def test_paid_currency_mismatch_without_amount() -> None:
    effect = on_callback(_payment(), _callback("paid", amount=None, currency="EUR"), PRICE)
    assert effect == CallbackEffect("amount_mismatch")


# ---------------------------------------------------------------------------- FX


def _converted(**changes: object) -> PaymentFacts:
    q = quote(10_000, "EUR", "USD", parse_rate("1.085"), 50, 0.0, 600)
    return _payment(currency="EUR", conversion=Conversion.of(q), **changes)


def test_a_converted_payment_is_checked_and_posted_in_both_currencies() -> None:
    payment = _converted()
    assert payment.charged == ("USD", 10_904)
    stale = on_callback(payment, _callback(amount="10000", currency="EUR"), PRICE)
    assert stale.result == "amount_mismatch", "the channel charged USD, not the payment's EUR"
    effect = on_callback(payment, _callback(amount="10904", currency="USD"), PRICE)
    assert effect.result == "applied" and effect.status is P.SUCCEEDED
    lines = {(p.account, p.currency): p.amount for p in effect.postings}
    cost = rate_fee(10_904, 120, 0)  # the channel's cost, in what it charged
    fee = rate_fee(10_000, 250, 30)  # the merchant's fee, in its own currency
    assert lines[(channel_clearing("sim"), "USD")] == 10_904 - cost
    assert lines[(channel_cost("sim"), "USD")] == cost
    assert lines[(PLATFORM_FX, "USD")] == -10_904
    assert lines[(PLATFORM_FX, "EUR")] == 10_000
    assert lines[(merchant_pending("mch_1"), "EUR")] == -(10_000 - fee)
    assert lines[(PLATFORM_FEE_REVENUE, "EUR")] == -fee
    ensure_balanced(effect.postings)


@given(st.integers(1, 10**12), st.integers(0, 300))
def test_converted_entries_balance_in_every_currency(amount: int, spread: int) -> None:
    q = quote(amount, "TWD", "USD", 1 / parse_rate("32.15"), spread, 0.0, 600)
    payment = _payment(amount=amount, currency="TWD", conversion=Conversion.of(q))
    callback = _callback(amount=str(q.converted), currency="USD")
    effect = on_callback(payment, callback, PRICE)
    if q.converted == 0:
        return
    assert effect.status is P.SUCCEEDED
    ensure_balanced(effect.postings)
    fx = {p.currency: p.amount for p in effect.postings if p.account == PLATFORM_FX}
    assert fx == {"USD": -q.converted, "TWD": amount}


def test_conversion_round_trips_exactly_through_its_stored_form() -> None:
    conversion = _converted().conversion
    assert conversion is not None
    assert Conversion.from_doc(conversion.to_doc()) == conversion
