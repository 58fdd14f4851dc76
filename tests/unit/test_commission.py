"""Agent commission (domain/commission.py) and its place in the payment's journal entry."""

from __future__ import annotations

import timeit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ledger
from domain.commission import (
    AgentTerms,
    Mode,
    PricingError,
    Split,
    Terms,
    check_chain,
    split,
    terms_of,
)
from domain.fees import MAX_PRICE_BPS, MAX_PRICE_FIXED, Rate, rate_fee

amounts = st.integers(min_value=0, max_value=10**12)


@st.composite
def chains(draw: st.DrawFn, max_depth: int = 20) -> tuple[list[AgentTerms], Rate]:
    """A valid chain: rates never fall going down; any mix of modes."""
    depth = draw(st.integers(min_value=0, max_value=max_depth))
    bps, fixed = draw(st.integers(0, 300)), draw(st.integers(0, 50))
    chain = []
    for n in range(depth):
        bps += draw(st.integers(0, 40))
        fixed += draw(st.integers(0, 5))
        mode = draw(st.sampled_from(list(Mode)))
        chain.append(
            AgentTerms(
                f"agt_{n}",
                Rate(bps, fixed),
                mode,
                share_bps=draw(st.integers(0, 200)) if mode is Mode.PERCENTAGE else 0,
                share_fixed=draw(st.integers(0, 100)) if mode is Mode.FIXED else 0,
            )
        )
    merchant = Rate(bps + draw(st.integers(0, 100)), fixed + draw(st.integers(0, 10)))
    return chain, merchant


@given(chains(), amounts, st.integers(0, 400))
def test_the_fee_divides_exactly_and_nobody_earns_a_negative_amount(
    drawn: tuple[list[AgentTerms], Rate], amount: int, cost_bps: int
) -> None:
    chain, merchant = drawn
    check_chain(chain, merchant)
    fee = merchant.fee(amount)
    cost = rate_fee(amount, cost_bps, 0)
    result = split(amount, fee, cost, chain)
    assert fee == cost + sum(c for _, c in result.commissions) + result.platform
    assert all(c > 0 for _, c in result.commissions)
    assert result.platform >= 0 or fee < cost
    assert [a for a, _ in result.commissions] == [
        t.agent_id for t in chain if t.agent_id in dict(result.commissions)
    ], "in chain order"


@given(chains(), amounts)
def test_an_all_markup_chain_pays_each_agent_its_spread(
    drawn: tuple[list[AgentTerms], Rate], amount: int
) -> None:
    chain, merchant = drawn
    chain = [AgentTerms(t.agent_id, t.rate) for t in chain]
    fee = merchant.fee(amount)
    cost = rate_fee(amount, chain[0].rate.bps, 0) if chain else 0  # the platform covers cost
    result = dict(split(amount, fee, cost, chain).commissions)
    for n, terms in enumerate(chain):
        sells = chain[n + 1].rate.fee(amount) if n + 1 < len(chain) else fee
        assert result.get(terms.agent_id, 0) == sells - terms.rate.fee(amount)


def test_three_levels_by_hand() -> None:
    # Platform sells to A at 1.00 %, A to B at 1.50 %, B to C at 1.80 %, C to the merchant at
    # 2.50 %. 1000.00 USD: the merchant pays 25.00, the channel costs 6.00.
    chain = [
        AgentTerms("A", Rate(100)),
        AgentTerms("B", Rate(150)),
        AgentTerms("C", Rate(180)),
    ]
    result = split(100_000, 2_500, 600, chain)
    assert result.commissions == (("A", 500), ("B", 300), ("C", 700))
    assert result.platform == 400  # 10.00 from A, less the channel's 6.00


def test_mixed_modes_and_the_margin_cap() -> None:
    chain = [
        AgentTerms("A", Rate(100), Mode.PERCENTAGE, share_bps=50),  # 0.5 % of the amount
        AgentTerms("B", Rate(150), Mode.FIXED, share_fixed=30),
        AgentTerms("C", Rate(180)),
    ]
    assert split(100_000, 2_500, 600, chain).commissions == (("A", 500), ("B", 30), ("C", 700))
    # A margin of 6.00 pays A first, then B; C's spread finds nothing left.
    capped = split(100_000, 2_500, 1_900, chain)
    assert capped.commissions == (("A", 500), ("B", 30), ("C", 70))
    assert capped.platform == 0
    # A merchant priced below the channel's cost: no commission, the platform bears the loss.
    assert split(100_000, 500, 600, chain) == Split((), -100)


def test_each_agent_keeps_its_level_and_the_rate_of_its_mode() -> None:
    chain = [
        AgentTerms("A", Rate(100, 5), Mode.PERCENTAGE, share_bps=50),
        AgentTerms("B", Rate(150), Mode.FIXED, share_fixed=30),
        AgentTerms("C", Rate(180, 10)),
    ]
    assert terms_of(chain) == {
        "A": Terms(1, Mode.PERCENTAGE, 50, 0),
        "B": Terms(2, Mode.FIXED, 0, 30),
        "C": Terms(3, Mode.MARKUP, 180, 10),
    }


def test_rates_must_not_fall_down_the_chain() -> None:
    with pytest.raises(PricingError, match="B's rate is below"):
        check_chain([AgentTerms("A", Rate(150)), AgentTerms("B", Rate(100))])
    with pytest.raises(PricingError, match="B's rate is below"):
        check_chain([AgentTerms("A", Rate(100, 30)), AgentTerms("B", Rate(120, 10))])
    with pytest.raises(PricingError, match="merchant"):
        check_chain([AgentTerms("A", Rate(300))], Rate(250))
    with pytest.raises(ValueError):
        Rate(-1)


def test_the_entry_carries_every_commission_and_balances() -> None:
    postings = ledger.payment_succeeded(
        merchant_id="m",
        channel="sim",
        currency="USD",
        amount=100_000,
        fee=2_500,
        channel_cost_amount=600,
        commissions=[("A", 500), ("B", 300), ("C", 700)],
    )
    lines = {p.account: p.amount for p in postings}
    assert lines["agent:A:commission"] == -500
    assert lines[ledger.PLATFORM_FEE_REVENUE] == -(2_500 - 1_500)
    ledger.ensure_balanced(postings)


@given(
    st.integers(min_value=1, max_value=10**9),
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=12),
)
def test_partial_refunds_never_reverse_more_than_was_posted(amount: int, parts: list[int]) -> None:
    original = ledger.payment_succeeded(
        merchant_id="m",
        channel="sim",
        currency="USD",
        amount=amount,
        fee=rate_fee(amount, 250, 0),
        channel_cost_amount=rate_fee(amount, 120, 0),
        commissions=[("A", rate_fee(amount, 50, 0)), ("B", rate_fee(amount, 30, 0))],
    )
    refunded, moved = 0, dict.fromkeys([p.account for p in original], 0)
    for part in parts:
        part = min(part, amount - refunded)
        if part <= 0:
            break
        for p in ledger.proportional_reversal(original, part, amount, already=refunded):
            moved[p.account] = moved.get(p.account, 0) + p.amount
        refunded += part
    for p in original:
        assert abs(moved[p.account]) <= abs(p.amount), p.account
        if refunded == amount:
            assert moved[p.account] == -p.amount, "a full refund in parts reverses exactly"


def test_twenty_levels_take_microseconds() -> None:
    chain = [AgentTerms(f"agt_{n}", Rate(100 + n)) for n in range(20)]
    runs = 2_000
    seconds = timeit.timeit(lambda: split(1_234_567, 30_000, 12_000, chain), number=runs)
    # Reported, not asserted against a clock: timing assertions are flaky by design.
    print(f"20-level split: {seconds / runs * 1e6:.1f} µs")
    assert len(split(1_234_567, 30_000, 12_000, chain).commissions) == 20


def test_within_the_bounds_no_commission_takes_more_than_a_fifth_and_a_fixed_part() -> None:
    """The issue's 10.00 USD payment that paid an agent 8.83: at the highest price allowed the
    merchant's fee, and so every commission, stays within 2.00 + 1.00."""
    amount, cost = 1_000, 12
    chain = [AgentTerms("agt_a", Rate(5))]
    highest = Rate(MAX_PRICE_BPS, MAX_PRICE_FIXED)
    result = split(amount, highest.fee(amount), cost, chain)
    assert sum(c for _, c in result.commissions) <= 300 - cost
