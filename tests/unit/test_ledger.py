"""Double-entry postings (domain/ledger.py)."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.fees import scale_half_up
from domain.ledger import (
    PLATFORM_FEE_REVENUE,
    PLATFORM_ROUNDING,
    Posting,
    UnbalancedEntry,
    channel_clearing,
    channel_cost,
    ensure_balanced,
    merchant_pending,
    net,
    payment_succeeded,
    proportional_reversal,
)

CLEARING = channel_clearing("sim")
COST = channel_cost("sim")
PENDING = merchant_pending("mch_1")


def _succeeded(amount: int, fee: int, cost: int, currency: str = "USD") -> list[Posting]:
    return payment_succeeded(
        merchant_id="mch_1",
        channel="sim",
        currency=currency,
        amount=amount,
        fee=fee,
        channel_cost_amount=cost,
    )


def _totals(postings: list[Posting]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for p in postings:
        totals[p.currency] += p.amount
    return dict(totals)


def _by_account(postings: list[Posting]) -> dict[str, int]:
    return {p.account: p.amount for p in postings}


@st.composite
def amount_fee_cost(draw: st.DrawFn) -> tuple[int, int, int]:
    amount = draw(st.integers(min_value=0, max_value=10**30))
    fee = draw(st.integers(min_value=0, max_value=amount))
    cost = draw(st.integers(min_value=0, max_value=amount))
    return amount, fee, cost


def test_account_names() -> None:
    assert CLEARING == "channel:sim:clearing"
    assert COST == "channel:sim:cost"
    assert PENDING == "merchant:mch_1:pending"
    assert PLATFORM_FEE_REVENUE == "platform:fee_revenue"


def test_payment_succeeded_example() -> None:
    postings = _succeeded(10_000, 250, 120)
    assert postings == [
        Posting(CLEARING, "USD", 9_880),
        Posting(COST, "USD", 120),
        Posting(PENDING, "USD", -9_750),
        Posting(PLATFORM_FEE_REVENUE, "USD", -250),
    ]
    assert sum(p.amount for p in postings) == 0


@settings(max_examples=200)
@given(amount_fee_cost())
def test_payment_succeeded_balances_with_right_signs(afc: tuple[int, int, int]) -> None:
    amount, fee, cost = afc
    postings = _succeeded(amount, fee, cost)
    ensure_balanced(postings)
    assert _totals(postings) in ({}, {"USD": 0})
    assert all(p.currency == "USD" for p in postings)
    assert all(p.amount != 0 for p in postings)
    lines = _by_account(postings)
    assert len(lines) == len(postings)  # one line per account
    assert lines.get(CLEARING, 0) == amount - cost
    assert lines.get(COST, 0) == cost
    assert lines.get(PENDING, 0) == -(amount - fee)
    assert lines.get(PLATFORM_FEE_REVENUE, 0) == -fee
    # debits positive, credits negative
    assert all(lines[a] > 0 for a in (CLEARING, COST) if a in lines)
    assert all(lines[a] < 0 for a in (PENDING, PLATFORM_FEE_REVENUE) if a in lines)
    assert postings == sorted(postings, key=lambda p: (p.account, p.currency))


def test_payment_succeeded_drops_zero_lines() -> None:
    postings = _succeeded(1000, 0, 0)
    assert postings == [Posting(CLEARING, "USD", 1000), Posting(PENDING, "USD", -1000)]
    full_fee = _succeeded(1000, 1000, 1000)
    assert full_fee == [Posting(COST, "USD", 1000), Posting(PLATFORM_FEE_REVENUE, "USD", -1000)]
    assert _succeeded(0, 0, 0) == []


@pytest.mark.parametrize(("amount", "fee", "cost"), [(100, 101, 0), (100, 0, 101), (100, -1, 0)])
def test_payment_succeeded_rejects_fee_or_cost_outside_amount(
    amount: int, fee: int, cost: int
) -> None:
    with pytest.raises(ValueError, match="within the amount"):
        _succeeded(amount, fee, cost)


def test_net_merges_drops_zero_and_orders() -> None:
    postings = [
        Posting("b", "USD", 5),
        Posting("a", "USD", 3),
        Posting("b", "USD", -5),
        Posting("a", "EUR", 1),
        Posting("c", "USD", 0),
        Posting("a", "USD", 4),
    ]
    assert net(postings) == [Posting("a", "EUR", 1), Posting("a", "USD", 7)]
    assert net([]) == []


@given(
    st.lists(
        st.builds(
            Posting,
            st.sampled_from(["a", "b", "platform:x", "merchant:m:pending"]),
            st.sampled_from(["USD", "EUR", "ETH"]),
            st.integers(min_value=-1000, max_value=1000),
        ),
        max_size=20,
    ),
    st.randoms(use_true_random=False),
)
def test_net_is_deterministic_and_order_independent(
    postings: list[Posting], rnd: random.Random
) -> None:
    result = net(postings)
    shuffled = list(postings)
    rnd.shuffle(shuffled)
    assert net(shuffled) == result
    keys = [(p.account, p.currency) for p in result]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert all(p.amount != 0 for p in result)
    nonzero = lambda totals: {c: t for c, t in totals.items() if t}  # noqa: E731
    assert nonzero(_totals(result)) == nonzero(_totals(postings))
    assert net(result) == result


def test_ensure_balanced() -> None:
    ensure_balanced([])
    ensure_balanced([Posting("a", "USD", 5), Posting("b", "USD", -5)])
    ensure_balanced([Posting("a", "USD", 5), Posting("b", "USD", -5), Posting("a", "EUR", 0)])
    with pytest.raises(UnbalancedEntry, match="does not balance"):
        ensure_balanced([Posting("a", "USD", 5), Posting("b", "USD", -4)])
    # balancing across currencies is not balancing
    with pytest.raises(UnbalancedEntry):
        ensure_balanced([Posting("a", "USD", 5), Posting("b", "EUR", -5)])
    assert issubclass(UnbalancedEntry, ValueError)


@settings(max_examples=200)
@given(amount_fee_cost())
def test_full_reversal_is_exact_negation(afc: tuple[int, int, int]) -> None:
    amount, fee, cost = afc
    assume(amount > 0)
    original = _succeeded(amount, fee, cost)
    reversed_ = proportional_reversal(original, amount, amount)
    assert reversed_ == [Posting(p.account, p.currency, -p.amount) for p in original]
    assert all(p.account != PLATFORM_ROUNDING for p in reversed_)
    ensure_balanced(reversed_ + original)
    assert net(reversed_ + original) == []


@st.composite
def partial_case(draw: st.DrawFn) -> tuple[list[Posting], int, int]:
    amount, fee, cost = draw(amount_fee_cost().filter(lambda t: t[0] > 0))
    part = draw(st.integers(min_value=1, max_value=amount))
    return _succeeded(amount, fee, cost), part, amount


@settings(max_examples=300)
@given(partial_case())
def test_partial_reversal_balances(case: tuple[list[Posting], int, int]) -> None:
    original, part, whole = case
    result = proportional_reversal(original, part, whole)
    ensure_balanced(result)
    assert all(p.amount != 0 for p in result)
    keys = [(p.account, p.currency) for p in result]
    assert keys == sorted(keys)
    scaled = {p.account: -scale_half_up(p.amount, part, whole) for p in original}
    leftover = sum(scaled.values())
    lines = _by_account(result)
    for account, value in scaled.items():
        assert lines.get(account, 0) == value
    if part == whole or leftover == 0:
        assert PLATFORM_ROUNDING not in lines
    else:
        assert lines[PLATFORM_ROUNDING] == -leftover
        assert abs(leftover) <= len(original)  # at most half a unit per line, rounded


def test_partial_reversal_example_without_rounding() -> None:
    original = _succeeded(10_000, 250, 120)
    assert proportional_reversal(original, 5_000, 10_000) == [
        Posting(CLEARING, "USD", -4_940),
        Posting(COST, "USD", -60),
        Posting(PENDING, "USD", 4_875),
        Posting(PLATFORM_FEE_REVENUE, "USD", 125),
    ]


def test_partial_reversal_example_needing_rounding() -> None:
    # half of (3, -2, -1) is (1.5, -1, -0.5) → rounded (2, -1, -1): balances, no rounding line
    original = [
        Posting(CLEARING, "USD", 3),
        Posting(PENDING, "USD", -2),
        Posting(PLATFORM_FEE_REVENUE, "USD", -1),
    ]
    result = proportional_reversal(original, 1, 2)
    ensure_balanced(result)
    assert _by_account(result) == {
        CLEARING: -2,
        PENDING: 1,
        PLATFORM_FEE_REVENUE: 1,
    }
    # half of (1, 1, -2) is (0.5, 0.5, -1) → rounded (1, 1, -1): one unit left to rounding
    original = [
        Posting(CLEARING, "USD", 1),
        Posting(COST, "USD", 1),
        Posting(PENDING, "USD", -2),
    ]
    result = proportional_reversal(original, 1, 2)
    ensure_balanced(result)
    assert _by_account(result) == {CLEARING: -1, COST: -1, PENDING: 1, PLATFORM_ROUNDING: 1}


@settings(max_examples=200)
@given(
    st.integers(min_value=2, max_value=10**9).flatmap(
        lambda amount: st.tuples(
            st.just(amount),
            st.integers(min_value=0, max_value=amount),
            st.integers(min_value=0, max_value=amount),
            st.lists(st.integers(min_value=1, max_value=amount), min_size=1, max_size=6),
        )
    )
)
def test_sequence_of_partial_reversals_each_balances(
    case: tuple[int, int, int, list[int]],
) -> None:
    amount, fee, cost, cuts = case
    original = _succeeded(amount, fee, cost)
    # split `amount` into parts that add up to the whole
    points = sorted({c for c in cuts if c < amount})
    parts = [b - a for a, b in zip([0, *points], [*points, amount], strict=True)]
    assert sum(parts) == amount
    combined: list[Posting] = []
    for part in parts:
        reversal = proportional_reversal(original, part, amount)
        ensure_balanced(reversal)
        scaled_total = sum(-scale_half_up(p.amount, part, amount) for p in original)
        has_rounding = any(p.account == PLATFORM_ROUNDING for p in reversal)
        assert has_rounding == (part != amount and scaled_total != 0)
        combined += reversal
    # the combined effect balances; everything except rounding is within a unit per refund
    ensure_balanced(combined)
    ensure_balanced(combined + original)
    residual = _by_account(net(combined + original))
    for account, value in residual.items():
        if account != PLATFORM_ROUNDING:
            assert abs(value) <= len(parts)


@pytest.mark.parametrize(("part", "whole"), [(0, 10), (-1, 10), (11, 10), (0, 0)])
def test_proportional_reversal_rejects_bad_part(part: int, whole: int) -> None:
    with pytest.raises(ValueError, match="within"):
        proportional_reversal([Posting("a", "USD", 1), Posting("b", "USD", -1)], part, whole)


def test_reversal_of_multi_currency_entry_balances_per_currency() -> None:
    original = [
        Posting("a", "USD", 3),
        Posting("b", "USD", -3),
        Posting("a", "EUR", 1),
        Posting("c", "EUR", 1),
        Posting("b", "EUR", -2),
    ]
    result = proportional_reversal(original, 1, 2)
    ensure_balanced(result)
    rounding = {p.currency: p.amount for p in result if p.account == PLATFORM_ROUNDING}
    # USD: -1.5→-2, 1.5→2 balances; EUR: -0.5→-1, -0.5→-1, 1 → leftover -1
    assert rounding == {"EUR": 1}
