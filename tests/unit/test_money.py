"""Exact money parsing and formatting (domain/money.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.money import (
    CURRENCIES,
    AmountError,
    check_ceiling,
    check_ceilings,
    exponent,
    format_amount,
    parse_amount,
)

# The whole part of an amount may have at most 30 digits.
MAX_MINOR = {c: 10 ** (30 + places) - 1 for c, places in CURRENCIES.items()}


@st.composite
def currency_and_minor(draw: st.DrawFn) -> tuple[str, int]:
    currency = draw(st.sampled_from(sorted(CURRENCIES)))
    upper = min(MAX_MINOR[currency], 10**30)
    minor = draw(
        st.one_of(
            st.integers(min_value=0, max_value=10**6),
            st.integers(min_value=0, max_value=2**64 + 10),
            st.integers(min_value=0, max_value=upper),
        )
    )
    return currency, minor


@settings(max_examples=300)
@given(currency_and_minor())
def test_format_parse_round_trip(pair: tuple[str, int]) -> None:
    currency, minor = pair
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor


@given(st.integers(min_value=0, max_value=10**30))
def test_eth_round_trip_beyond_64_bits(wei: int) -> None:
    assert parse_amount(format_amount(wei, "ETH"), "ETH") == wei


@pytest.mark.parametrize("wei", [2**64, 2**64 + 1, 10**30 - 1, 10**30])
def test_eth_large_values_exact(wei: int) -> None:
    text = format_amount(wei, "ETH")
    assert parse_amount(text, "ETH") == wei
    assert text == f"{wei // 10**18}.{wei % 10**18:018d}"


@settings(max_examples=200)
@given(st.sampled_from(sorted(CURRENCIES)), st.integers(min_value=0, max_value=10**25))
def test_format_has_exactly_exponent_decimals(currency: str, minor: int) -> None:
    text = format_amount(minor, currency)
    places = CURRENCIES[currency]
    if places == 0:
        assert "." not in text
        assert text == str(minor)
    else:
        whole, fraction = text.split(".")
        assert len(fraction) == places
        assert whole == str(minor // 10**places)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (0, "USD", "0.00"),
        (1, "USD", "0.01"),
        (1234, "USD", "12.34"),
        (100, "EUR", "1.00"),
        (1500, "JPY", "1500"),
        (0, "KRW", "0"),
        (1, "BTC", "0.00000001"),
        (100_000_000, "BTC", "1.00000000"),
        (1, "ETH", "0.000000000000000001"),
        (1_500_000, "USDT", "1.500000"),
        (-1234, "USD", "-12.34"),
    ],
)
def test_format_examples(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("0", "USD", 0),
        ("0.01", "USD", 1),
        ("1500", "JPY", 1500),
        ("0.00000001", "BTC", 1),
        ("0.000000000000000001", "ETH", 1),
        ("1", "ETH", 10**18),
        ("1.5", "USDT", 1_500_000),
    ],
)
def test_parse_examples(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1.005", "USD"),
        ("0.001", "EUR"),
        ("1.0", "JPY"),
        ("1.5", "KRW"),
        ("0.000000001", "BTC"),
        ("0.0000001", "USDT"),
        ("0.0000000000000000001", "ETH"),
    ],
)
def test_too_many_decimals_is_invalid_amount(text: str, currency: str) -> None:
    with pytest.raises(AmountError) as info:
        parse_amount(text, currency)
    assert info.value.code == "invalid_amount"


@pytest.mark.parametrize(
    "text",
    [
        "1e5",
        "-1",
        " 1",
        "1 ",
        "1.",
        ".5",
        "01",
        "00",
        "1,00",
        "",
        "１",
        "1.2.3",
        "+1",
        "0x10",
        "1\n",
        "1_000",
        "٣",
    ],
)
@pytest.mark.parametrize("currency", ["USD", "JPY", "ETH"])
def test_malformed_amounts_rejected(text: str, currency: str) -> None:
    with pytest.raises(AmountError) as info:
        parse_amount(text, currency)
    assert info.value.code == "invalid_amount"
    assert isinstance(info.value, ValueError)


def test_whole_part_longer_than_thirty_digits_rejected() -> None:
    assert parse_amount("9" * 30, "JPY") == 10**30 - 1
    with pytest.raises(AmountError) as info:
        parse_amount("1" + "0" * 30, "JPY")
    assert info.value.code == "invalid_amount"


@pytest.mark.parametrize("currency", ["XXX", "usd", "", "BTC "])
def test_unsupported_currency(currency: str) -> None:
    with pytest.raises(AmountError) as info:
        parse_amount("1", currency)
    assert info.value.code == "unsupported_currency"
    with pytest.raises(AmountError) as info:
        format_amount(1, currency)
    assert info.value.code == "unsupported_currency"
    with pytest.raises(AmountError) as info:
        exponent(currency)
    assert info.value.code == "unsupported_currency"


def test_unsupported_currency_checked_before_amount_syntax() -> None:
    with pytest.raises(AmountError) as info:
        parse_amount("not a number", "XXX")
    assert info.value.code == "unsupported_currency"


def test_exponents() -> None:
    assert exponent("USD") == 2
    assert exponent("JPY") == 0
    assert exponent("BTC") == 8
    assert exponent("ETH") == 18
    assert exponent("USDT") == 6


CEILINGS = {c: "1000" for c in CURRENCIES} | {"USD": "1000000.00"}


def test_an_amount_up_to_its_currencys_maximum_is_taken_and_one_minor_unit_more_is_not() -> None:
    check_ceiling(parse_amount("1000000.00", "USD"), "USD", CEILINGS)
    with pytest.raises(AmountError) as info:
        check_ceiling(parse_amount("1000000.01", "USD"), "USD", CEILINGS)
    assert info.value.code == "amount_too_large"
    assert str(info.value) == "USD amounts are at most 1000000.00"
    with pytest.raises(AmountError):
        check_ceiling(10**30 * 100, "USD", CEILINGS)
    check_ceiling(1000 * 10**18, "ETH", CEILINGS)
    with pytest.raises(AmountError):
        check_ceiling(1000 * 10**18 + 1, "ETH", CEILINGS)


def test_every_supported_currency_needs_a_maximum() -> None:
    check_ceilings(CEILINGS)
    with pytest.raises(ValueError, match="no maximum for KRW"):
        check_ceilings({c: v for c, v in CEILINGS.items() if c != "KRW"})


@pytest.mark.parametrize(
    ("currency", "text", "why"),
    [("USD", "1.001", "decimal places"), ("XYZ", "1", "not supported"), ("JPY", "0", "zero")],
)
def test_a_maximum_must_be_an_amount_its_currency_holds(currency: str, text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_ceilings({**CEILINGS, currency: text})
