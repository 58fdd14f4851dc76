"""Currency conversion, exactly: rates are fractions (parsed from decimal strings, never
floats), amounts are integers in minor units, and a converted amount is rounded half up to the
target currency's minor unit, once, at the end.

A quote converts at the mid rate moved by the platform's spread in the platform's favour: the
customer pays `mid × (1 + spread)` of the target currency per unit, and the difference from the
mid conversion is the platform's FX revenue.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from domain.fees import BPS, scale_half_up
from domain.money import exponent


class RateError(ValueError):
    pass


def parse_rate(text: str) -> Fraction:
    """A positive decimal string ("31.4159", "0.000015") as an exact fraction."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RateError(f"not a decimal rate: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise RateError(f"a rate must be positive: {text!r}")
    return Fraction(value)


def format_rate(rate: Fraction, places: int = 10) -> str:
    """For display: rounded half up to `places` decimals, trailing zeros dropped."""
    scaled = rate * 10**places
    whole = int(scaled)
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    text = f"{Decimal(whole).scaleb(-places):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _round_half_up(value: Fraction) -> int:
    floor = value.numerator // value.denominator
    return floor + 1 if value - floor >= Fraction(1, 2) else floor


def convert(amount_minor: int, source: str, target: str, rate: Fraction) -> int:
    """`amount_minor` of `source` in `target` minor units, at `rate` target units per source
    unit, rounded half up."""
    if amount_minor < 0:
        raise ValueError("amounts are non-negative")
    shift = exponent(target) - exponent(source)
    return _round_half_up(amount_minor * rate * Fraction(10) ** shift)


def with_spread(mid: Fraction, spread_bps: int) -> Fraction:
    if not 0 <= spread_bps < BPS:
        raise ValueError("a spread is 0–9999 bps")
    return mid * Fraction(BPS + spread_bps, BPS)


@dataclass(frozen=True, slots=True)
class Quote:
    source: str
    target: str
    amount: int  # in source minor units
    mid: Fraction
    rate: Fraction  # the mid with the spread: what is charged
    spread_bps: int
    converted: int  # in target minor units, at `rate`
    at_mid: int  # in target minor units, at `mid`: converted - at_mid is the spread earned
    expires_at: float


def quote(
    amount: int, source: str, target: str, mid: Fraction, spread_bps: int, now: float, ttl_s: int
) -> Quote:
    rate = with_spread(mid, spread_bps)
    return Quote(
        source=source,
        target=target,
        amount=amount,
        mid=mid,
        rate=rate,
        spread_bps=spread_bps,
        converted=convert(amount, source, target, rate),
        at_mid=convert(amount, source, target, mid),
        expires_at=now + ttl_s,
    )


def cross(
    rates: dict[tuple[str, str], Fraction], source: str, target: str, via: str = "USD"
) -> Fraction | None:
    """A rate from a table of pairs: direct, inverted, or through `via`."""
    if source == target:
        return Fraction(1)
    if (source, target) in rates:
        return rates[(source, target)]
    if (target, source) in rates:
        return 1 / rates[(target, source)]
    if via not in (source, target):
        first, second = cross(rates, source, via, via), cross(rates, via, target, via)
        if first is not None and second is not None:
            return first * second
    return None


@dataclass(frozen=True, slots=True)
class Conversion:
    """A locked quote applied to a payment: the channel is charged `converted` in `target`."""

    target: str
    converted: int
    rate: Fraction
    mid: Fraction
    spread_bps: int
    expires_at: float

    @classmethod
    def of(cls, q: Quote) -> Conversion:
        return cls(q.target, q.converted, q.rate, q.mid, q.spread_bps, q.expires_at)

    def refund_part(self, before: int, part: int, whole: int) -> int:
        """What the channel returns, in `target`, for the slice (before, before + part] of a
        payment of `whole`: the difference of the slice's ends scaled to `converted`, each
        rounded half up, so refunds of consecutive slices add up to `converted` exactly."""
        if not 0 < part <= whole - before or before < 0:
            raise ValueError("the refunded slice must lie within the payment")
        end = scale_half_up(self.converted, before + part, whole)
        return end - scale_half_up(self.converted, before, whole)

    def refund_at_channel(self, before: int | None, part: int, whole: int) -> int:
        """What the channel returns for a refund: its slice (`refund_part`), or `part` scaled
        for a refund reserved before slices were recorded (`before` None)."""
        if before is None:
            return scale_half_up(self.converted, part, whole)
        return self.refund_part(before, part, whole)

    def to_doc(self) -> dict[str, object]:
        """As stored with the payment: fractions as "numerator/denominator", exactly."""
        return {
            "target": self.target,
            "converted": self.converted,
            "rate": f"{self.rate.numerator}/{self.rate.denominator}",
            "mid": f"{self.mid.numerator}/{self.mid.denominator}",
            "spread_bps": self.spread_bps,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, object]) -> Conversion:
        return cls(
            target=str(doc["target"]),
            converted=int(str(doc["converted"])),
            rate=Fraction(str(doc["rate"])),
            mid=Fraction(str(doc["mid"])),
            spread_bps=int(str(doc["spread_bps"])),
            expires_at=float(str(doc["expires_at"])),
        )
