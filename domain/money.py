"""Exact money: integers in the currency's minor unit, decimal strings at the edges."""

from __future__ import annotations

import re
from collections.abc import Mapping

# ISO 4217 exponents for fiat; the conventional smallest unit for crypto (satoshi, wei, USDT's 6).
CURRENCIES: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "TWD": 2,
    "HKD": 2,
    "CNY": 2,
    "SGD": 2,
    "JPY": 0,
    "KRW": 0,
    "BTC": 8,
    "ETH": 18,
    "USDT": 6,
}

_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,29})(?:\.([0-9]{1,18}))?")


class AmountError(ValueError):
    """A text that is not an amount the currency can hold; `code` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def exponent(currency: str) -> int:
    try:
        return CURRENCIES[currency]
    except KeyError:
        raise AmountError(
            "unsupported_currency", f"currency {currency!r} is not supported"
        ) from None


def parse_amount(text: str, currency: str) -> int:
    """Major-unit decimal text → minor units. More decimals than the currency has is an error,
    never a rounding: a merchant asking for 1.005 USD has a bug we should surface."""
    places = exponent(currency)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError("invalid_amount", 'amount must be a decimal string such as "12.34"')
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > places:
        raise AmountError(
            "invalid_amount", f"{currency} amounts have at most {places} decimal places"
        )
    return int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")


def format_amount(minor: int, currency: str) -> str:
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{places}d}"


def check_ceilings(ceilings: Mapping[str, str]) -> None:
    """The configured largest amount per currency (`payments.max_amount`): one for every
    supported currency, each an amount that currency can hold. A currency without one stops
    the process at start-up rather than take amounts without bound."""
    missing = sorted(set(CURRENCIES) - set(ceilings))
    if missing:
        raise ValueError(f"payments.max_amount has no maximum for {', '.join(missing)}")
    for currency, text in ceilings.items():
        try:
            ceiling = parse_amount(text, currency)
        except AmountError as exc:
            raise ValueError(f"payments.max_amount.{currency}: {exc}") from None
        if ceiling <= 0:
            raise ValueError(f"payments.max_amount.{currency} must be greater than zero")


def check_ceiling(minor: int, currency: str, ceilings: Mapping[str, str]) -> None:
    """AmountError `amount_too_large` above the currency's configured maximum (checked by
    `check_ceilings`, so every supported currency has one)."""
    ceiling = ceilings[currency]
    if minor > parse_amount(ceiling, currency):
        raise AmountError("amount_too_large", f"{currency} amounts are at most {ceiling}")
