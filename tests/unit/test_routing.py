"""Routing decisions (routing/strategies.py): every strategy and rule condition, table-driven
and property-based."""

from __future__ import annotations

import timeit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.channels import FeeSchedule
from domain.fees import Rate
from routing.health import bucket, summarise
from routing.strategies import (
    ChannelProfile,
    Health,
    RouteRequest,
    Rule,
    Strategy,
    route,
)

CARD = ChannelProfile(
    "card", methods=frozenset({"card"}), priority=10, fees=FeeSchedule.flat(Rate(290, 30))
)
WALLET = ChannelProfile(
    "wallet",
    methods=frozenset({"ewallet"}),
    currencies=frozenset({"TWD", "USD"}),
    priority=20,
    fees=FeeSchedule.flat(Rate(150)),
)
BANK = ChannelProfile(
    "bank",
    methods=frozenset({"bank_transfer", "card"}),
    min_amount=1_000,
    priority=30,
    fees=FeeSchedule.flat(Rate(0, 200)),
    weight=3,
)
CHEAP = ChannelProfile(
    "cheap", priority=40, fees=FeeSchedule.flat(Rate(100)), max_amount=50_000, weight=1
)
ALL = [CARD, WALLET, BANK, CHEAP]
USD = RouteRequest(10_000, "USD")


@pytest.mark.parametrize(
    ("request_", "rules", "health", "draw", "expected"),
    [
        # No rule: priority over every channel that takes the payment.
        (USD, [], {}, 0.0, ["card", "wallet", "bank", "cheap"]),
        (RouteRequest(10_000, "USD", "ewallet"), [], {}, 0.0, ["wallet", "cheap"]),
        (RouteRequest(500, "EUR", "card"), [], {}, 0.0, ["card", "cheap"]),  # bank: min 1000
        (RouteRequest(90_000, "USD", "card"), [], {}, 0.0, ["card", "bank"]),  # cheap: max
        # An open breaker takes a channel out.
        (USD, [], {"card": Health(False)}, 0.0, ["wallet", "bank", "cheap"]),
        # Pinned: that channel or nothing.
        (USD, [Rule(Strategy.PINNED, ("bank",))], {}, 0.0, ["bank"]),
        (USD, [Rule(Strategy.PINNED, ("bank",))], {"bank": Health(False)}, 0.0, []),
        # Priority list with fallback, in the rule's order.
        (USD, [Rule(Strategy.PRIORITY, ("cheap", "card"))], {}, 0.0, ["cheap", "card"]),
        (
            USD,
            [Rule(Strategy.PRIORITY, ("cheap", "card"))],
            {"cheap": Health(False)},
            0.0,
            ["card"],
        ),
        # Least cost for the amount: 10000 → card 320, wallet 150, bank 200, cheap 100.
        (USD, [Rule(Strategy.LEAST_COST)], {}, 0.0, ["cheap", "wallet", "bank", "card"]),
        # ... and for a large one the fixed fee wins: 40000 → bank 200 < cheap 400.
        (
            RouteRequest(40_000, "USD"),
            [Rule(Strategy.LEAST_COST)],
            {},
            0.0,
            ["bank", "cheap", "wallet", "card"],
        ),
        # Success rate, best first; a small share explores the weakest.
        (
            USD,
            [Rule(Strategy.SUCCESS_RATE)],
            {"card": Health(True, 0.7), "wallet": Health(True, 0.99), "bank": Health(True, 0.5)},
            0.5,
            ["cheap", "wallet", "card", "bank"],  # cheap has no record yet: 1.0
        ),
        (
            USD,
            [Rule(Strategy.SUCCESS_RATE)],
            {"card": Health(True, 0.7), "wallet": Health(True, 0.99), "bank": Health(True, 0.5)},
            0.01,
            ["bank", "cheap", "wallet", "card"],
        ),
        # Weighted: card 1, wallet 1, bank 3, cheap 1 → draws over 6 parts.
        (USD, [Rule(Strategy.WEIGHTED)], {}, 0.0, ["card", "wallet", "bank", "cheap"]),
        (USD, [Rule(Strategy.WEIGHTED)], {}, 0.4, ["bank", "card", "wallet", "cheap"]),
        (USD, [Rule(Strategy.WEIGHTED)], {}, 0.99, ["cheap", "card", "wallet", "bank"]),
    ],
)
def test_strategies(request_, rules, health, draw, expected) -> None:
    assert route(request_, ALL, health, rules, draw=draw) == expected


@pytest.mark.parametrize(
    ("rule", "request_", "applies"),
    [
        (Rule(Strategy.PINNED, ("bank",), methods=frozenset({"card"})), USD, False),
        (
            Rule(Strategy.PINNED, ("bank",), methods=frozenset({"card"})),
            RouteRequest(10_000, "USD", "card"),
            True,
        ),
        (Rule(Strategy.PINNED, ("bank",), currencies=frozenset({"TWD"})), USD, False),
        (Rule(Strategy.PINNED, ("bank",), min_amount=20_000), USD, False),
        (Rule(Strategy.PINNED, ("bank",), max_amount=20_000), USD, True),
        (Rule(Strategy.PINNED, ("bank",), countries=frozenset({"TW"})), USD, False),
        (
            Rule(Strategy.PINNED, ("bank",), countries=frozenset({"TW"})),
            RouteRequest(10_000, "USD", country="TW"),
            True,
        ),
    ],
)
def test_rule_conditions(rule: Rule, request_: RouteRequest, applies: bool) -> None:
    decided = route(request_, ALL, {}, [rule])
    assert (decided == ["bank"]) is applies


def test_first_matching_rule_decides() -> None:
    rules = [
        Rule(Strategy.PINNED, ("wallet",), methods=frozenset({"ewallet"})),
        Rule(Strategy.LEAST_COST),
    ]
    assert route(RouteRequest(10_000, "TWD", "ewallet"), ALL, {}, rules) == ["wallet"]
    assert route(USD, ALL, {}, rules)[0] == "cheap"


channels = st.lists(
    st.builds(
        ChannelProfile,
        code=st.text("abcdefgh", min_size=1, max_size=3),
        currencies=st.frozensets(st.sampled_from(["USD", "EUR", "TWD"]), max_size=2),
        priority=st.integers(0, 5),
        weight=st.integers(0, 5),
        fees=st.builds(FeeSchedule.flat, st.builds(Rate, st.integers(0, 500), st.integers(0, 100))),
    ),
    max_size=8,
    unique_by=lambda c: c.code,
)


@given(
    channels,
    st.sampled_from(list(Strategy)),
    st.integers(0, 10**7),
    st.sampled_from(["USD", "EUR", "TWD"]),
    st.floats(0, 1, exclude_max=True),
    st.sets(st.text("abcdefgh", min_size=1, max_size=3)),
)
def test_only_eligible_available_channels_each_once(
    profiles, strategy, amount, currency, draw, down
) -> None:
    request = RouteRequest(amount, currency)
    health = {code: Health(False) for code in down}
    decided = route(request, profiles, health, [Rule(strategy)], draw=draw)
    eligible = {p.code for p in profiles if p.takes(request) and p.code not in down}
    assert len(decided) == len(set(decided))
    assert set(decided) <= eligible
    if strategy is Strategy.PINNED:
        assert len(decided) <= 1
    else:
        assert set(decided) == eligible, "every eligible channel is there to fail over to"
    if strategy is Strategy.LEAST_COST:
        costs = [next(p for p in profiles if p.code == c).cost(request) for c in decided]
        assert costs == sorted(costs)


def test_a_decision_takes_microseconds() -> None:
    rules = [Rule(Strategy.LEAST_COST, methods=frozenset({"crypto"})), Rule(Strategy.WEIGHTED)]
    runs = 5_000
    seconds = timeit.timeit(lambda: route(USD, ALL * 3, {}, rules, draw=0.3), number=runs)
    # Reported, not asserted against a clock; the benchmark suite measures it too.
    print(f"routing decision over 12 channels: {seconds / runs * 1e6:.1f} µs")
    assert route(USD, ALL, {}, rules, draw=0.3)


def test_health_window_sums_slots_into_rate_and_percentiles() -> None:
    slots = [
        {"ok": 8, "lat:10": 6, "lat:50": 2},
        {"ok": 10, "err:transient": 2, "lat:10": 4, "lat:100": 6, "lat:inf": 2},
        {},
    ]
    window = summarise(slots)
    assert (window.attempts, window.successes) == (20, 18)
    assert window.errors == {"transient": 2}
    assert window.success_rate == 0.9
    assert window.p50_ms == 10.0  # 10 of 20 samples are ≤ 10 ms
    assert window.p95_ms == float("inf")
    assert summarise([]).success_rate is None and summarise([]).p50_ms is None


@pytest.mark.parametrize(
    ("latency", "label"),
    [(0.3, "lat:5"), (5, "lat:5"), (5.1, "lat:10"), (4999, "lat:5000"), (9e9, "lat:inf")],
)
def test_latency_buckets(latency: float, label: str) -> None:
    assert bucket(latency) == label
