"""Withdrawals' pure core: the rules, maker–checker, the state machine, and the entries; a
property test runs random requests and channel outcomes over a ledger and checks that the
available balance never goes below zero, every entry balances, nothing is posted twice and no
money appears or vanishes."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ledger import ensure_balanced
from domain.settlement import Entity
from domain.withdrawals import (
    HOLD,
    PLATFORM_WITHDRAWAL_FEES,
    TRANSITIONS,
    DecisionRefused,
    Refused,
    Rules,
    WithdrawalStatus,
    check,
    check_statement,
    decide,
    fee,
    postings,
    sources,
    step,
)

S = WithdrawalStatus
SHOP = Entity("merchant", "mch_1")


def test_rules_refuse_below_minimum_over_balance_and_over_the_daily_limit() -> None:
    rules = Rules(min_amount=1000, fee_fixed=50, fee_bps=100, daily_limit=50_000)
    assert fee(rules, 10_000) == 150
    assert check(rules, 10_000, 10_150, 0).fee == 150
    for amount, available, today, code in (
        (999, 10**9, 0, "amount_too_small"),
        (10_000, 10_149, 0, "insufficient_funds"),
        (10_000, 10**9, 40_001, "daily_limit_exceeded"),
    ):
        with pytest.raises(Refused) as refused:
            check(rules, amount, available, today)
        assert refused.value.code == code and refused.value.param == "amount"


def test_above_the_threshold_waits_for_approval() -> None:
    rules = Rules(approval_above=10_000)
    assert not check(rules, 10_000, 10**9, 0).needs_approval
    assert check(rules, 10_001, 10**9, 0).needs_approval
    assert not check(Rules(), 10**8, 10**9, 0).needs_approval


def test_rules_are_sane() -> None:
    for bad in ({"min_amount": 0}, {"fee_fixed": -1}, {"fee_bps": 10_001}, {"daily_limit": -1}):
        with pytest.raises(ValueError):
            Rules(**bad)  # type: ignore[arg-type]


def test_a_statement_is_paid_its_net_once_closed() -> None:
    check_statement("closed", "USD", 9_750, 9_750, "USD")
    for status, net, amount, currency, code in (
        ("carried", -100, 100, "USD", "settlement_not_payable"),
        ("paid", 9_750, 9_750, "USD", "settlement_not_payable"),
        ("closed", 9_750, 9_749, "USD", "amount_mismatch"),
        ("closed", 9_750, 9_750, "EUR", "amount_mismatch"),
    ):
        with pytest.raises(Refused) as refused:
            check_statement(status, "USD", net, amount, currency)
        assert refused.value.code == code


def test_maker_checker() -> None:
    decide("pending_approval", "usr_a", "usr_b", "checked the invoice")
    for status, maker, checker, reason, code in (
        ("pending_approval", "usr_a", "usr_a", "mine", "self_approval"),
        ("requested", "usr_a", "usr_b", "ok", "not_pending_approval"),
        ("pending_approval", "usr_a", "usr_b", "  ", "reason_required"),
    ):
        with pytest.raises(DecisionRefused) as refused:
            decide(status, maker, checker, reason)
        assert refused.value.code == code


def test_guards_name_every_source() -> None:
    assert sources(S.SENDING) == ["requested"]
    assert sources(S.FAILED) == ["sending", "sent"]
    assert sources(S.RETURNED) == ["succeeded"]
    for status, targets in TRANSITIONS.items():
        for target in targets:
            assert status.value in sources(target)


def test_the_channels_word() -> None:
    assert step(S.SENDING, "processing").target is S.SENT  # type: ignore[union-attr]
    assert step(S.SENT, "processing") is None
    paid = step(S.SENT, "paid")
    assert paid is not None and paid.entry == "withdrawal_paid"
    assert step(S.SUCCEEDED, "paid") is None  # a redelivered callback
    assert step(S.SUCCEEDED, "failed") is None  # stale: it was paid
    failed = step(S.SENDING, "failed")
    assert failed is not None and failed.entry == "withdrawal_release"
    assert step(S.SENT, "returned") == paid  # paid first, the return on the next step
    back = step(S.SUCCEEDED, "returned")
    assert back is not None and back.entry == "withdrawal_return"
    assert step(S.RETURNED, "returned") is None


def test_entries_balance_and_move_the_right_accounts() -> None:
    by_kind = {
        kind: postings(kind, SHOP, "USD", 10_000, 150)
        for kind in (HOLD, "withdrawal_paid", "withdrawal_release", "withdrawal_return")
    }
    for lines in by_kind.values():
        ensure_balanced(lines)
    assert {p.account: p.amount for p in by_kind[HOLD]} == {
        "merchant:mch_1:available": 10_150,
        "merchant:mch_1:reserve": -10_150,
    }
    assert {p.account: p.amount for p in by_kind["withdrawal_paid"]} == {
        "merchant:mch_1:paid_out": -10_000,
        "merchant:mch_1:reserve": 10_150,
        PLATFORM_WITHDRAWAL_FEES: -150,
    }
    assert postings("withdrawal_paid", SHOP, "USD", 10_000, 0)[-1].account.endswith("reserve")


OUTCOMES = st.sampled_from(["processing", "paid", "failed", "returned", "approve", "reject"])


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 100_000),
    rules=st.builds(
        Rules,
        min_amount=st.integers(1, 1_000),
        fee_fixed=st.integers(0, 500),
        fee_bps=st.integers(0, 500),
        daily_limit=st.none() | st.integers(0, 200_000),
        approval_above=st.none() | st.integers(0, 50_000),
    ),
    script=st.lists(
        st.one_of(
            st.tuples(st.just("request"), st.integers(-10, 60_000)),
            st.tuples(OUTCOMES, st.integers(0, 20)),
        ),
        max_size=40,
    ),
)
def test_random_withdrawals_never_overdraw_and_conserve_money(
    start: int, rules: Rules, script: list[tuple[str, int]]
) -> None:
    ledger: dict[str, int] = defaultdict(int)
    ledger[SHOP.account("available")] = -start  # owed: a credit balance
    ledger["funding"] = start
    posted: set[tuple[str, str]] = set()
    withdrawals: list[dict[str, object]] = []

    def post(kind: str, w: dict[str, object]) -> None:
        key = (kind, str(w["id"]))
        assert key not in posted, "an entry is posted once per withdrawal"
        posted.add(key)
        lines = postings(kind, SHOP, "USD", int(w["amount"]), int(w["fee"]))  # type: ignore[call-overload]
        ensure_balanced(lines)
        for p in lines:
            ledger[p.account] += p.amount

    for action, value in script:
        if action == "request":
            today = sum(
                int(w["amount"])  # type: ignore[call-overload]
                for w in withdrawals
                if w["status"] not in (S.FAILED, S.REJECTED, S.RETURNED)
            )
            try:
                decision = check(rules, value, -ledger[SHOP.account("available")], today)
            except Refused:
                continue
            w = {"id": f"wd_{len(withdrawals)}", "amount": value, "fee": decision.fee}
            w["status"] = S.PENDING_APPROVAL if decision.needs_approval else S.REQUESTED
            post(HOLD, w)
            withdrawals.append(w)
        elif withdrawals:
            w = withdrawals[value % len(withdrawals)]
            status = w["status"]
            if action in ("approve", "reject"):
                if status != S.PENDING_APPROVAL:
                    continue
                w["status"] = S.REQUESTED if action == "approve" else S.REJECTED
                if action == "reject":
                    post("withdrawal_release", w)
                continue
            if status == S.REQUESTED:
                w["status"] = status = S.SENDING
            while (move := step(status, action)) is not None:  # type: ignore[arg-type]
                if move.entry:
                    post(move.entry, w)
                w["status"] = status = move.target
        assert -ledger[SHOP.account("available")] >= 0, "the available balance never overdraws"
        assert sum(ledger.values()) == 0
    for w in withdrawals:
        if w["status"] in (S.FAILED, S.REJECTED):
            assert ("withdrawal_paid", w["id"]) not in posted
    held = sum(
        int(w["amount"]) + int(w["fee"])  # type: ignore[call-overload]
        for w in withdrawals
        if w["status"] in (S.PENDING_APPROVAL, S.REQUESTED, S.SENDING, S.SENT)
    )
    assert -ledger[SHOP.account("reserve")] == held
