"""A channel as every process sees it: plain data loaded from the `channels` table, with the
pure rules that read it (fee schedule lookup, daily volume caps).

Credentials are decrypted only in memory and wrapped so that no repr, log line or API answer
can show them by accident.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from domain.fees import Rate

FREE = Rate(0)
METHODS = ("card", "ewallet", "bank_transfer", "crypto")


class Credentials(Mapping[str, str]):
    """A channel's secrets (API keys, signing secrets); their repr names the keys only."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Credentials(<redacted: {', '.join(sorted(self._values))}>)"


@dataclass(frozen=True, slots=True)
class FeeLine:
    """What the channel charges us; `None` in method or currency matches any."""

    bps: int
    fixed_minor: int = 0
    method: str | None = None
    currency: str | None = None

    @property
    def rate(self) -> Rate:
        return Rate(self.bps, self.fixed_minor)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    lines: tuple[FeeLine, ...] = ()

    @classmethod
    def flat(cls, rate: Rate) -> FeeSchedule:
        return cls((FeeLine(rate.bps, rate.fixed),))

    def rate(self, method: str | None, currency: str) -> Rate:
        """The most specific line wins: method and currency, then method, then currency, then
        the catch-all line; a schedule with no matching line costs nothing."""
        best: tuple[int, Rate] | None = None
        for line in self.lines:
            if line.method is not None and line.method != method:
                continue
            if line.currency is not None and line.currency != currency:
                continue
            rank = 2 * (line.method is not None) + (line.currency is not None)
            if best is None or rank > best[0]:
                best = (rank, line.rate)
        return best[1] if best else FREE


NO_FEES = FeeSchedule()


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    code: str
    adapter: str
    base_url: str
    credentials: Credentials = field(default_factory=Credentials)
    timeout_ms: int = 3000
    retries: int = 3
    methods: frozenset[str] = frozenset()  # empty: any
    currencies: frozenset[str] = frozenset()  # empty: any
    min_amount_minor: int = 0
    max_amount_minor: int | None = None
    # per currency: the most the channel takes in one UTC day, counted when payments are routed
    daily_caps: Mapping[str, int] = field(default_factory=dict)
    fees: FeeSchedule = NO_FEES
    settlement_currency: str | None = None
    priority: int = 100  # lower is tried first
    weight: int = 1  # share of traffic under a weighted rule
    enabled: bool = True
    version: int = 1

    def cost(self, method: str | None, currency: str) -> Rate:
        return self.fees.rate(method, currency)
