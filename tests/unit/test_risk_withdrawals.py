"""Withdrawals' facts (domain.risk.facts.withdrawal_facts): the payments' shape, so every
published rule type-checks on them, with the withdrawal's own facts filled in."""

from __future__ import annotations

from domain.risk import FACTS, Outcome, Rule, Thresholds, compile_rules, judge
from domain.risk.facts import WithdrawalRequest, withdrawal_facts
from domain.risk.velocity import Feature

NOON = 1_780_056_000.0  # a Friday, 12:00 UTC
REQUEST = WithdrawalRequest(
    entity_kind="agent",
    entity_id="agt_2",
    agents=("agt_2", "agt_1"),
    amount=50_000,
    currency="EUR",
    at=NOON,
    payout_account_kind="crypto_wallet",
    withdrawn_today=120_000,
    withdrawals_today=3,
)


def test_a_withdrawals_facts_have_every_fact_and_blank_customer_ones() -> None:
    f = withdrawal_facts(REQUEST, 54_000, [Feature("ip", "count", "1h")])
    assert set(f) == set(FACTS)
    assert (
        f["kind"] == "withdrawal" and f["merchant"] == "agt_2" and f["agents"] == ["agt_2", "agt_1"]
    )
    assert (f["amount"], f["amount_usd"], f["currency"]) == (50_000, 54_000, "EUR")
    assert f["payout_account_kind"] == "crypto_wallet" and f["withdrawals_today"] == 3
    assert f["email"] == "" and f["ip"] == "" and f["merchant_decline_z"] == 0.0
    assert f["velocity"]["ip"] == {"count_1h": 0} and f["hour"] == 12


def test_the_rules_judge_a_withdrawal_by_its_facts_and_scope() -> None:
    rules = compile_rules(
        3,
        [
            Rule("big", 'kind == "withdrawal" && amount_usd >= 50000', "reject"),
            Rule("busy", "withdrawals_today >= 3", "review", scope="agent:agt_1"),
            Rule("pay_only", 'kind == "payment"', "reject"),
            Rule("other", "amount > 0", "reject", scope="merchant:mch_9"),
        ],
        Thresholds(),
    )
    small = withdrawal_facts(REQUEST, 5_400, rules.features)
    verdict = judge(rules, small, [])
    assert verdict.outcome is Outcome.REVIEW and [r.rule for r in verdict.fired] == ["busy"]
    assert verdict.fired[0].values == {"withdrawals_today": 3} and verdict.version == 3
    big = judge(rules, withdrawal_facts(REQUEST, 54_000, rules.features), [])
    assert big.outcome is Outcome.REJECT and big.reason == "rule big"
