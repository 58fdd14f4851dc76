"""Where FX rates come from: one small interface, two providers (a static table from the
config, and a simulated live feed that drifts around it), and a cache in front of either with a
time to live and a stale-while-error fallback: when the provider fails, a rate no older than
`stale_s` is still served, and past that the error is the caller's."""

from __future__ import annotations

import math
import time
import zlib
from fractions import Fraction
from typing import Protocol

from config.settings import Fx
from domain.fx import RateError, convert, cross, parse_rate


class RateUnavailable(Exception):
    pass


class RateProvider(Protocol):
    async def mid(self, source: str, target: str) -> Fraction: ...


def _table(rates: dict[str, str]) -> dict[tuple[str, str], Fraction]:
    table = {}
    for pair, text in rates.items():
        source, _, target = pair.partition("/")
        if not source or not target:
            raise RateError(f"a rate pair looks like 'EUR/USD', not {pair!r}")
        table[(source, target)] = parse_rate(text)
    return table


class StaticRates:
    """Rates from the config, `{"EUR/USD": "1.08", …}`; inverses and crosses via USD."""

    def __init__(self, rates: dict[str, str]) -> None:
        self._table = _table(rates)

    async def mid(self, source: str, target: str) -> Fraction:
        rate = cross(self._table, source, target)
        if rate is None:
            raise RateUnavailable(f"no rate for {source}/{target}")
        return rate


class SimulatedFeed:
    """A live-looking feed for demos and tests: each pair drifts around its configured rate by
    up to `drift_bps`, smoothly with time, the same in every process at the same moment."""

    def __init__(self, rates: dict[str, str], drift_bps: int, period_s: float = 300.0) -> None:
        self._base = StaticRates(rates)
        self._drift = drift_bps
        self._period = period_s

    async def mid(self, source: str, target: str) -> Fraction:
        if source > target:  # drift one direction of a pair; the other is its exact inverse
            return 1 / await self.mid(target, source)
        base = await self._base.mid(source, target)
        phase = zlib.crc32(f"{source}/{target}".encode()) % 1000 / 1000
        wave = math.sin(2 * math.pi * (time.time() / self._period + phase))
        # The wave is quantised to whole basis points, so the rate stays an exact fraction.
        return base * Fraction(10_000 + round(wave * self._drift), 10_000)


class CachedRates:
    def __init__(self, provider: RateProvider, ttl_s: float, stale_s: float) -> None:
        self._provider = provider
        self._ttl = ttl_s
        self._stale = stale_s
        self._cache: dict[tuple[str, str], tuple[float, Fraction]] = {}

    async def mid(self, source: str, target: str) -> Fraction:
        now = time.monotonic()
        hit = self._cache.get((source, target))
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        try:
            rate = await self._provider.mid(source, target)
        except Exception as exc:
            if hit and now - hit[0] < self._stale:
                return hit[1]
            raise RateUnavailable(f"no rate for {source}/{target}: {exc}") from exc
        self._cache[(source, target)] = (now, rate)
        return rate


def rate_source(settings: Fx) -> CachedRates:
    """The configured provider behind the cache."""
    provider: RateProvider = (
        SimulatedFeed(settings.rates, settings.drift_bps)
        if settings.provider == "simulated"
        else StaticRates(settings.rates)
    )
    return CachedRates(provider, settings.cache_ttl_s, settings.stale_s)


async def usd_equivalent(rates: RateProvider, amount: int, currency: str) -> int | None:
    """`amount` (minor units of `currency`) in US cents at the mid rate, as risk rules read
    it (`amount_usd`); None where no rate is known."""
    if currency == "USD":
        return amount
    try:
        return convert(amount, currency, "USD", await rates.mid(currency, "USD"))
    except (RateUnavailable, KeyError, ValueError):
        return None
