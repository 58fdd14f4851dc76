"""Risk rules (domain/risk.py)."""

from __future__ import annotations

import pytest

from domain.risk import APPROVE, Decision, MerchantLimits, RiskInput, assess

LIMITS = MerchantLimits(
    currencies=frozenset({"USD", "JPY"}),
    min_amount={"USD": 100},
    max_amount={"USD": 1_000_000, "JPY": 50_000},
)


def _input(currency: str = "USD", amount: int = 5_000) -> RiskInput:
    return RiskInput(
        currency=currency, amount=amount, customer_ip="203.0.113.7", customer_email="a@b.example"
    )


def test_approve() -> None:
    decision = assess(_input(), LIMITS, ip_blocked=False, email_blocked=False)
    assert decision == APPROVE
    assert decision.approved is True
    assert decision.code is None


@pytest.mark.parametrize("amount", [100, 1_000_000])
def test_limits_are_inclusive(amount: int) -> None:
    assert assess(_input(amount=amount), LIMITS, False, False).approved


def test_currency_not_allowed() -> None:
    decision = assess(_input("EUR"), LIMITS, False, False)
    assert decision.approved is False
    assert decision.code == "currency_not_allowed"
    assert decision.reason


def test_below_min() -> None:
    decision = assess(_input(amount=99), LIMITS, False, False)
    assert (decision.approved, decision.code) == (False, "amount_too_small")


def test_above_max() -> None:
    decision = assess(_input(amount=1_000_001), LIMITS, False, False)
    assert (decision.approved, decision.code) == (False, "amount_too_large")


def test_limits_are_per_currency() -> None:
    # JPY has no minimum; its maximum is its own
    assert assess(_input("JPY", 1), LIMITS, False, False).approved
    assert assess(_input("JPY", 50_001), LIMITS, False, False).code == "amount_too_large"
    unlimited = MerchantLimits(currencies=frozenset({"USD"}))
    assert assess(_input(amount=10**30), unlimited, False, False).approved
    assert assess(_input(amount=0), unlimited, False, False).approved


def test_blocked_ip() -> None:
    decision = assess(_input(), LIMITS, ip_blocked=True, email_blocked=False)
    assert (decision.approved, decision.code) == (False, "blocked_ip")


def test_blocked_email() -> None:
    decision = assess(_input(), LIMITS, ip_blocked=False, email_blocked=True)
    assert (decision.approved, decision.code) == (False, "blocked_email")


@pytest.mark.parametrize(
    ("currency", "amount", "ip", "email", "code"),
    [
        ("EUR", 1, True, True, "currency_not_allowed"),  # currency beats everything
        ("USD", 1, True, True, "amount_too_small"),  # min beats blocks
        ("USD", 10**7, True, True, "amount_too_large"),  # max beats blocks
        ("USD", 5_000, True, True, "blocked_ip"),  # ip beats e-mail
        ("USD", 5_000, False, True, "blocked_email"),
    ],
)
def test_precedence(currency: str, amount: int, ip: bool, email: bool, code: str) -> None:
    decision = assess(_input(currency, amount), LIMITS, ip, email)
    assert decision == Decision(False, code, decision.reason)
    assert decision.reason


def test_min_checked_before_max_when_inconsistent() -> None:
    odd = MerchantLimits(
        currencies=frozenset({"USD"}), min_amount={"USD": 500}, max_amount={"USD": 100}
    )
    assert assess(_input(amount=300), odd, False, False).code == "amount_too_small"
    assert assess(_input(amount=600), odd, False, False).code == "amount_too_large"
