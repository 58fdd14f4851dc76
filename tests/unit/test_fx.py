"""Currency conversion (domain/fx.py) and rate sources (infra/fx.py)."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.fx import (
    Conversion,
    RateError,
    convert,
    cross,
    format_rate,
    parse_rate,
    quote,
    with_spread,
)
from infra.fx import CachedRates, RateUnavailable, SimulatedFeed, StaticRates, usd_equivalent

RATES = {"EUR/USD": "1.0850", "USD/TWD": "32.150", "ETH/USD": "3480.00", "BTC/USD": "67250.00"}


def test_rates_are_exact_fractions_from_decimal_text() -> None:
    assert parse_rate("1.0850") == Fraction(217, 200)
    assert parse_rate("0.000015") == Fraction(3, 200_000)
    for bad in ("0", "-1.2", "abc", "NaN", "Infinity"):
        with pytest.raises(RateError):
            parse_rate(bad)
    assert format_rate(Fraction(217, 200)) == "1.085"
    assert format_rate(Fraction(1, 3), 4) == "0.3333"
    assert format_rate(Fraction(2, 3), 4) == "0.6667"


@pytest.mark.parametrize(
    ("amount", "source", "target", "rate", "expected"),
    [
        (10_000, "EUR", "USD", "1.085", 10_850),  # 100.00 EUR → 108.50 USD
        (1, "EUR", "USD", "1.005", 1),  # 0.01 × 1.005 = 0.01005 → 1 cent
        (1, "EUR", "USD", "1.5", 2),  # 0.015 → half up → 2 cents
        (10_000, "USD", "JPY", "151.2", 15_120),  # JPY has no minor unit
        (10**18, "ETH", "USD", "3480", 348_000),  # 1 ETH (18 decimals) → 3480.00 USD
        (100_000_000, "BTC", "USD", "67250", 6_725_000),  # 1 BTC (8 decimals)
        (348_000, "USD", "ETH", str(Fraction(1, 3480).limit_denominator()), 10**18),
    ],
)
def test_convert_across_exponents(amount, source, target, rate, expected) -> None:
    value = Fraction(rate) if "/" in rate else parse_rate(rate)
    assert convert(amount, source, target, value) == expected


def test_a_quote_adds_the_spread_in_the_platforms_favour() -> None:
    q = quote(10_000, "EUR", "USD", parse_rate("1.085"), 50, now=1000.0, ttl_s=600)
    assert q.rate == with_spread(parse_rate("1.085"), 50) == parse_rate("1.090425")
    assert (q.converted, q.at_mid) == (10_904, 10_850)  # 109.0425 → 109.04
    assert q.expires_at == 1600.0


@given(st.integers(0, 10**15), st.integers(0, 500))
def test_the_spread_never_lowers_what_is_charged(amount: int, spread: int) -> None:
    q = quote(amount, "EUR", "USD", parse_rate("1.085"), spread, 0.0, 60)
    assert q.converted >= q.at_mid >= 0


def test_cross_and_inverse_rates() -> None:
    table = {("EUR", "USD"): Fraction(217, 200), ("USD", "TWD"): parse_rate("32.15")}
    assert cross(table, "USD", "EUR") == Fraction(200, 217)
    assert cross(table, "EUR", "TWD") == Fraction(217, 200) * parse_rate("32.15")
    assert cross(table, "TWD", "EUR") == 1 / (Fraction(217, 200) * parse_rate("32.15"))
    assert cross(table, "EUR", "EUR") == 1
    assert cross(table, "EUR", "JPY") is None


def test_providers_and_the_cache_with_stale_fallback() -> None:
    async def go() -> None:
        static = StaticRates(RATES)
        assert await static.mid("USD", "EUR") == 1 / parse_rate("1.0850")
        with pytest.raises(RateUnavailable):
            await static.mid("EUR", "JPY")
        feed = SimulatedFeed(RATES, drift_bps=30)
        moved = await feed.mid("EUR", "USD")
        assert abs(moved / parse_rate("1.0850") - 1) <= Fraction(30, 10_000)
        assert await feed.mid("USD", "EUR") == 1 / await feed.mid("EUR", "USD")

        class Flaky:
            def __init__(self) -> None:
                self.down = False

            async def mid(self, source: str, target: str) -> Fraction:
                if self.down:
                    raise ConnectionError("feed down")
                return Fraction(2)

        flaky = Flaky()
        cache = CachedRates(flaky, ttl_s=0.0, stale_s=60.0)
        assert await cache.mid("A", "B") == 2
        flaky.down = True
        assert await cache.mid("A", "B") == 2, "stale while the provider errs"
        strict = CachedRates(flaky, ttl_s=0.0, stale_s=0.0)
        with pytest.raises(RateUnavailable):
            await strict.mid("A", "B")

    asyncio.run(go())


def test_the_usd_equivalent_risk_rules_read() -> None:
    """Payments, evaluations and withdrawals (automatic payouts of any currency included)."""

    async def go() -> None:
        static = StaticRates(RATES)
        assert await usd_equivalent(static, 12_345, "USD") == 12_345
        assert await usd_equivalent(static, 10_000, "EUR") == 10_850  # €100.00 → $108.50
        assert await usd_equivalent(static, 321_500, "TWD") == 10_000  # NT$3215 → $100.00
        assert await usd_equivalent(static, 100, "JPY") is None, "no rate: null, never a guess"

    asyncio.run(go())


def _conversion(converted: int) -> Conversion:
    return Conversion("USD", converted, Fraction(1), Fraction(1), 0, 0.0)


def test_two_half_refunds_return_exactly_what_was_charged() -> None:
    """Per refund, half of 10905 rounds up to 5453 twice: 10906, one more than was charged.
    By slices, the second half is what is left."""
    fx = _conversion(10_905)
    assert fx.refund_part(0, 5_000, 10_000) == 5_453
    assert fx.refund_part(5_000, 5_000, 10_000) == 5_452
    with pytest.raises(ValueError):
        fx.refund_part(5_000, 5_001, 10_000)


def test_a_refund_at_the_channel_by_slice_or_scaled_without_one() -> None:
    fx = _conversion(10_905)
    assert fx.refund_at_channel(5_000, 5_000, 10_000) == 5_452
    assert fx.refund_at_channel(None, 5_000, 10_000) == 5_453


@given(
    converted=st.integers(1, 10**12),
    whole=st.integers(1, 10**9),
    cuts=st.lists(st.floats(0, 1), max_size=8),
)
def test_refunds_by_slices_add_up_to_the_charged_amount(
    converted: int, whole: int, cuts: list[float]
) -> None:
    points = sorted({0, whole, *(int(c * whole) for c in cuts)})
    fx = _conversion(converted)
    parts = [fx.refund_part(a, b - a, whole) for a, b in itertools.pairwise(points)]
    assert all(p >= 0 for p in parts)
    assert sum(parts) == converted
