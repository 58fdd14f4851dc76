"""A merchant's own limits (domain/risk/limits.py), which reject before any rule is read."""

from __future__ import annotations

import pytest

from domain.risk import EMPTY, Lookups, MerchantLimits, Outcome, Transaction, facts_of, judge
from domain.risk.limits import outside

LIMITS = MerchantLimits(
    currencies=frozenset({"USD", "JPY"}),
    min_amount={"USD": 100},
    max_amount={"USD": 1_000_000, "JPY": 50_000},
)


def test_inside() -> None:
    assert outside("USD", 5_000, LIMITS) is None


@pytest.mark.parametrize("amount", [100, 1_000_000])
def test_limits_are_inclusive(amount: int) -> None:
    assert outside("USD", amount, LIMITS) is None


@pytest.mark.parametrize(
    ("currency", "amount", "code"),
    [
        ("EUR", 5_000, "currency_not_allowed"),
        ("USD", 99, "amount_too_small"),
        ("USD", 1_000_001, "amount_too_large"),
        ("JPY", 50_001, "amount_too_large"),
    ],
)
def test_outside(currency: str, amount: int, code: str) -> None:
    fault = outside(currency, amount, LIMITS)
    assert fault is not None and fault[0] == code and fault[1]


def test_limits_reject_before_rules() -> None:
    facts = facts_of(Transaction("mch_1", 99, "USD", 0.0), Lookups())
    verdict = judge(EMPTY, facts, [], LIMITS)
    assert verdict.outcome is Outcome.REJECT and verdict.code == "amount_too_small"
