"""Which channels may take a payment, and in what order: a pure decision over the channels'
profiles, their health and the merchant's rules, made in-process in microseconds.

`route` returns every eligible channel, best first: the first takes the payment and the rest
are where it fails over to. Strategies:

- `pinned`: the rule's first channel only, no fallback;
- `priority`: the rule's channel list in order (or the channels' configured priority);
- `weighted`: one channel drawn by weight (a volume split), the others by priority after it;
- `least_cost`: cheapest for this amount first, by the channel's fee schedule;
- `success_rate`: best recent success rate first, except that a small share of payments
  (`explore`) goes to the weakest eligible channel so a recovering one is noticed.

A merchant's rules are tried in order; the first whose conditions (methods, currencies, amount
range, customer countries) all hold decides. Without a matching rule, `priority` over every
channel applies. Randomness comes in as `draw`, a number in [0, 1), so decisions are
reproducible in tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.channels import NO_FEES, ChannelSpec, FeeSchedule


class Strategy(StrEnum):
    PINNED = "pinned"
    PRIORITY = "priority"
    WEIGHTED = "weighted"
    LEAST_COST = "least_cost"
    SUCCESS_RATE = "success_rate"


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    code: str
    methods: frozenset[str] = frozenset()  # empty: any
    currencies: frozenset[str] = frozenset()  # empty: any
    min_amount: int = 0
    max_amount: int | None = None
    priority: int = 100  # lower goes first
    weight: int = 1
    fees: FeeSchedule = NO_FEES

    @classmethod
    def of(cls, spec: ChannelSpec) -> ChannelProfile:
        return cls(
            spec.code,
            methods=spec.methods,
            currencies=spec.currencies,
            min_amount=spec.min_amount_minor,
            max_amount=spec.max_amount_minor,
            priority=spec.priority,
            weight=spec.weight,
            fees=spec.fees,
        )

    def cost(self, request: RouteRequest) -> int:
        return self.fees.rate(request.method, request.currency).fee(request.amount)

    def takes(self, request: RouteRequest) -> bool:
        return (
            (not self.methods or request.method is None or request.method in self.methods)
            and (not self.currencies or request.currency in self.currencies)
            and self.min_amount <= request.amount
            and (self.max_amount is None or request.amount <= self.max_amount)
        )


@dataclass(frozen=True, slots=True)
class Health:
    available: bool = True  # the breaker lets traffic through
    success_rate: float = 1.0  # share of recent attempts that succeeded (a ratio, not money)


HEALTHY = Health()


@dataclass(frozen=True, slots=True)
class RouteRequest:
    amount: int
    currency: str
    method: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    strategy: Strategy
    channels: tuple[str, ...] = ()  # the channels the rule uses, in order; empty: all
    methods: frozenset[str] = frozenset()
    currencies: frozenset[str] = frozenset()
    min_amount: int | None = None
    max_amount: int | None = None
    countries: frozenset[str] = frozenset()

    def matches(self, request: RouteRequest) -> bool:
        return (
            (not self.methods or request.method in self.methods)
            and (not self.currencies or request.currency in self.currencies)
            and (self.min_amount is None or request.amount >= self.min_amount)
            and (self.max_amount is None or request.amount <= self.max_amount)
            and (not self.countries or request.country in self.countries)
        )


DEFAULT_RULE = Rule(Strategy.PRIORITY)


def route(
    request: RouteRequest,
    channels: Sequence[ChannelProfile],
    health: Mapping[str, Health],
    rules: Sequence[Rule] = (),
    *,
    draw: float = 0.0,
    explore: float = 0.05,
    switches: Mapping[str, str] | None = None,
) -> list[str]:
    rule = next((r for r in rules if r.matches(request)), DEFAULT_RULE)
    eligible = [c for c in channels if c.takes(request) and health.get(c.code, HEALTHY).available]
    if switches:
        usable = {c.code for c in eligible}
        return _switch_over(
            _ordered(request, eligible, health, rule, draw, explore), switches, usable
        )
    return _ordered(request, eligible, health, rule, draw, explore)


def _switch_over(order: list[str], switches: Mapping[str, str], usable: set[str]) -> list[str]:
    """An operator's switch-over puts its target where the switched channel stood (if the
    target can take this payment now) and takes the switched channel out."""
    switched: list[str] = []
    for code in order:
        target = switches.get(code, code)
        if target in usable and target not in switched:
            switched.append(target)
    return switched


def _ordered(
    request: RouteRequest,
    eligible: list[ChannelProfile],
    health: Mapping[str, Health],
    rule: Rule,
    draw: float,
    explore: float,
) -> list[str]:
    if rule.channels:
        listed = {code: n for n, code in enumerate(rule.channels)}
        eligible = sorted((c for c in eligible if c.code in listed), key=lambda c: listed[c.code])
    else:
        eligible.sort(key=lambda c: (c.priority, c.code))
    if not eligible:
        return []
    match rule.strategy:
        case Strategy.PINNED:
            first = eligible[0]
            return [first.code] if not rule.channels or first.code == rule.channels[0] else []
        case Strategy.PRIORITY:
            ordered = eligible
        case Strategy.WEIGHTED:
            ordered = _weighted_first(eligible, draw)
        case Strategy.LEAST_COST:
            ordered = sorted(eligible, key=lambda c: c.cost(request))
        case Strategy.SUCCESS_RATE:
            ordered = sorted(eligible, key=lambda c: -health.get(c.code, HEALTHY).success_rate)
            if draw < explore and len(ordered) > 1:
                ordered = [ordered[-1], *ordered[:-1]]  # exploration: the weakest goes first
    return [c.code for c in ordered]


def _weighted_first(eligible: list[ChannelProfile], draw: float) -> list[ChannelProfile]:
    total = sum(max(0, c.weight) for c in eligible)
    if total == 0:
        return eligible
    point, upto = draw * total, 0
    for n, channel in enumerate(eligible):
        upto += max(0, channel.weight)
        if point < upto:
            return [channel, *eligible[:n], *eligible[n + 1 :]]
    return eligible
