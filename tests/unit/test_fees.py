"""Fee arithmetic (domain/fees.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fees import BPS, rate_fee, scale_half_up


def _reference(amount: int, numerator: int, denominator: int) -> int:
    """Round half away from zero using exact rationals."""
    exact = Fraction(amount * numerator, denominator)
    magnitude = abs(exact)
    floor = magnitude.numerator // magnitude.denominator
    rounded = floor + 1 if magnitude - floor >= Fraction(1, 2) else floor
    return rounded if exact >= 0 else -rounded


@pytest.mark.parametrize(
    ("amount", "numerator", "denominator", "expected"),
    [
        (5, 1, 10, 1),  # 0.5 → 1
        (4, 1, 10, 0),  # 0.4 → 0
        (15, 1, 10, 2),  # 1.5 → 2
        (25, 1, 10, 3),  # 2.5 → 3 (not banker's)
        (-5, 1, 10, -1),  # -0.5 → -1 (away from zero)
        (-4, 1, 10, 0),
        (-15, 1, 10, -2),
        (-25, 1, 10, -3),
        (5, -1, 10, -1),
        (-5, -1, 10, 1),
        (1, 1, 3, 0),
        (2, 1, 3, 1),
        (-2, 1, 3, -1),
        (0, 7, 9, 0),
        (10_000, 250, BPS, 250),
        (199, 250, BPS, 5),  # 4.975 → 5
        (20, 250, BPS, 1),  # 0.5 → 1
        (19, 250, BPS, 0),  # 0.475 → 0
        (10**30, 1, 3, 333333333333333333333333333333),
    ],
)
def test_scale_half_up_examples(
    amount: int, numerator: int, denominator: int, expected: int
) -> None:
    assert scale_half_up(amount, numerator, denominator) == expected


@settings(max_examples=300)
@given(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
)
def test_scale_half_up_matches_exact_reference(
    amount: int, numerator: int, denominator: int
) -> None:
    assert scale_half_up(amount, numerator, denominator) == _reference(
        amount, numerator, denominator
    )


@given(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=1, max_value=10**6),
)
def test_scale_half_up_is_symmetric(amount: int, numerator: int, denominator: int) -> None:
    assert scale_half_up(-amount, numerator, denominator) == -scale_half_up(
        amount, numerator, denominator
    )
    result = scale_half_up(amount, numerator, denominator)
    # within half a unit of the exact value
    assert abs(Fraction(amount * numerator, denominator) - result) <= Fraction(1, 2)


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=1, max_value=1000))
def test_scale_half_up_identity_when_numerator_equals_denominator(amount: int, d: int) -> None:
    assert scale_half_up(amount, d, d) == amount


@pytest.mark.parametrize("denominator", [0, -1, -10_000])
def test_scale_half_up_rejects_non_positive_denominator(denominator: int) -> None:
    with pytest.raises(ValueError, match="denominator"):
        scale_half_up(100, 1, denominator)


@pytest.mark.parametrize(
    ("amount", "bps", "fixed", "expected"),
    [
        (10_000, 250, 0, 250),
        (10_000, 250, 30, 280),
        (100, 0, 30, 30),
        (20, 0, 30, 20),  # capped at the amount
        (0, 250, 30, 0),
        (0, 0, 0, 0),
        (1000, BPS, 0, 1000),
        (1000, 2 * BPS, 0, 1000),  # capped
        (199, 250, 0, 5),
        (19, 250, 0, 0),
    ],
)
def test_rate_fee_examples(amount: int, bps: int, fixed: int, expected: int) -> None:
    assert rate_fee(amount, bps, fixed) == expected


@settings(max_examples=200)
@given(
    st.integers(min_value=0, max_value=10**30),
    st.integers(min_value=0, max_value=3 * BPS),
    st.integers(min_value=0, max_value=10**6),
)
def test_rate_fee_properties(amount: int, bps: int, fixed: int) -> None:
    fee = rate_fee(amount, bps, fixed)
    assert 0 <= fee <= amount
    if amount >= fixed:
        assert fee >= fixed
    assert fee == min(amount, scale_half_up(amount, bps, BPS) + fixed)


@given(
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=BPS),
    st.integers(min_value=0, max_value=1000),
)
def test_rate_fee_monotone_in_amount(a: int, b: int, bps: int, fixed: int) -> None:
    low, high = sorted((a, b))
    assert rate_fee(low, bps, fixed) <= rate_fee(high, bps, fixed)


@pytest.mark.parametrize(("amount", "bps", "fixed"), [(-1, 0, 0), (1, -1, 0), (1, 0, -1)])
def test_rate_fee_rejects_negative_inputs(amount: int, bps: int, fixed: int) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        rate_fee(amount, bps, fixed)
