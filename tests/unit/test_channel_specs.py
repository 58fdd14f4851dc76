"""Channels as plain data: fee schedules, credentials that never print, and operators'
switch-overs in routing decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.channels import ChannelSpec, Credentials, FeeLine, FeeSchedule
from domain.fees import Rate
from routing.strategies import ChannelProfile, Health, RouteRequest, Rule, Strategy, route

SCHEDULE = FeeSchedule(
    (
        FeeLine(100),
        FeeLine(200, currency="EUR"),
        FeeLine(290, 30, method="card"),
        FeeLine(340, 25, method="card", currency="EUR"),
    )
)


@pytest.mark.parametrize(
    ("method", "currency", "rate"),
    [
        ("card", "EUR", Rate(340, 25)),  # method and currency
        ("card", "USD", Rate(290, 30)),  # method beats currency
        ("ewallet", "EUR", Rate(200)),  # currency
        (None, "EUR", Rate(200)),
        ("ewallet", "USD", Rate(100)),  # the catch-all line
        (None, "JPY", Rate(100)),
    ],
)
def test_the_most_specific_fee_line_prices_a_payment(
    method: str | None, currency: str, rate: Rate
) -> None:
    assert SCHEDULE.rate(method, currency) == rate


def test_a_schedule_without_a_matching_line_costs_nothing() -> None:
    assert FeeSchedule((FeeLine(100, currency="EUR"),)).rate("card", "USD") == Rate(0)
    assert FeeSchedule().rate(None, "USD") == Rate(0)


def test_credentials_never_print_their_values() -> None:
    creds = Credentials({"secret_key": "sk_live_123", "webhook_secret": "whsec_456"})
    spec = ChannelSpec(code="c", adapter="stripe", base_url="http://x", credentials=creds)
    for text in (repr(creds), str(creds), repr(spec), f"{spec}"):
        assert "sk_live_123" not in text and "whsec_456" not in text
    assert "secret_key" in repr(creds), "the names are shown, to say what is stored"
    assert creds["secret_key"] == "sk_live_123" and dict(creds)["webhook_secret"] == "whsec_456"


A = ChannelProfile("a", priority=1)
B = ChannelProfile("b", priority=2)
C = ChannelProfile("c", priority=3)
EUR_ONLY = ChannelProfile("eur", priority=4, currencies=frozenset({"EUR"}))
USD = RouteRequest(1000, "USD")


@pytest.mark.parametrize(
    ("switches", "health", "rules", "order"),
    [
        ({}, {}, (), ["a", "b", "c"]),
        ({"a": "c"}, {}, (), ["c", "b"]),  # c takes a's place; it is not tried twice
        ({"b": "a"}, {}, (), ["a", "c"]),
        ({"a": "eur"}, {}, (), ["b", "c"]),  # the target cannot take USD: a is only left out
        ({"a": "b"}, {"b": Health(False)}, (), ["c"]),  # the target is down
        ({"a": "c"}, {}, (Rule(Strategy.PINNED, ("a",)),), ["c"]),  # a pinned channel too
        ({"x": "b"}, {}, (), ["a", "b", "c"]),  # a channel this payment never goes to
    ],
)
def test_a_switch_over_replaces_its_channel(
    switches: dict[str, str], health: dict[str, Health], rules: tuple[Rule, ...], order: list[str]
) -> None:
    channels = [A, B, C, EUR_ONLY]
    assert route(USD, channels, health, rules, switches=switches) == order


codes = st.sampled_from(["a", "b", "c", "eur"])


@given(
    switches=st.dictionaries(codes, codes).map(lambda d: {k: v for k, v in d.items() if k != v}),
    down=st.sets(codes),
    strategy=st.sampled_from(list(Strategy)),
    draw=st.floats(0, 0.999),
)
def test_switch_overs_never_send_a_payment_where_it_cannot_go(
    switches: dict[str, str], down: set[str], strategy: Strategy, draw: float
) -> None:
    channels = [A, B, C, EUR_ONLY]
    health = {code: Health(False) for code in down}
    decided = route(USD, channels, health, [Rule(strategy)], draw=draw, switches=switches)
    usable = {c.code for c in channels if c.takes(USD) and c.code not in down}
    assert len(decided) == len(set(decided)), "no channel twice"
    assert set(decided) <= usable
    assert not set(decided) & (set(switches) - set(switches.values())), (
        "a switched-over channel gets nothing unless it is itself a target"
    )
