"""Streaming anomaly models (domain.risk.anomaly) as pure functions: the EWMA update and its
z-score, rules firing far above their usual share, the alerts they raise, and the facts."""

from __future__ import annotations

import pytest

from domain.risk import Outcome, Rule, Thresholds, compile_rules
from domain.risk.alerts import anomaly_alerts, surge_alerts
from domain.risk.anomaly import (
    MIN_SEEN,
    RULE_MIN_FIRES,
    Alphas,
    Rate,
    RuleWindow,
    rule_surges,
    score,
    update,
)
from domain.risk.engine import judge
from domain.risk.facts import Lookups, Transaction, facts_of

A = Alphas(fast=0.1, slow=0.01)
NEW = Rate()


def learn(xs: list[float], state: Rate = NEW) -> Rate:
    for x in xs:
        state = update(state, x, A)
    return state


def test_a_steady_rate_scores_near_zero_and_a_burst_of_declines_high() -> None:
    steady = learn([1.0 if n % 10 == 0 else 0.0 for n in range(500)])  # 10 % declines
    assert steady.mean == pytest.approx(0.1, abs=0.03) and abs(score(steady, A)) < 2
    burst = learn([1.0] * 8, steady)
    assert score(burst, A) > 4
    calmer = learn([0.0] * 20, steady)
    assert score(calmer, A) < 0, "fewer declines than usual scores below zero"


def test_young_models_score_zero_and_learn_as_a_running_mean() -> None:
    assert score(learn([0.0, 1.0] * ((MIN_SEEN - 1) // 2)), A) == 0.0, "too little history"
    assert score(learn([0.0] * 100), A) == 0.0, "a usual that never varied"
    new_merchant = learn([1.0] + [0.0] * 39)  # its first country is always new
    assert new_merchant.mean == pytest.approx(1 / 40), "the first observation does not linger"


def test_a_rule_firing_far_above_its_usual_share_surges() -> None:
    rules = frozenset({"r1", "r2"})
    usual: dict[str, RuleWindow] = {}
    for _ in range(MIN_SEEN):
        usual, surging = rule_surges(usual, {"r1": 2, "r2": 10}, 100, rules, 0.05, 4.0)
        assert surging == {}
    assert usual["r1"].mean == pytest.approx(0.02) and usual["r1"].var == pytest.approx(0.0)
    usual, surging = rule_surges(usual, {"r1": 30, "r2": 11}, 100, rules, 0.05, 4.0)
    assert list(surging) == ["r1"] and surging["r1"] == pytest.approx(28.0)
    _, quiet = rule_surges(usual, {"r1": RULE_MIN_FIRES - 1}, 10, rules, 0.05, 4.0)
    assert quiet == {}, "a handful of fires is never a surge"
    kept, none = rule_surges(usual, {}, 0, frozenset({"r2"}), 0.05, 4.0)
    assert none == {} and set(kept) == {"r2"} and kept["r2"] == usual["r2"]
    ((detail),) = surge_alerts(surging, 7)
    assert detail == {"rule": "r1", "version": 7, "z": 28.0}


def test_anomaly_alerts_at_or_above_the_limit_only() -> None:
    scores = [("decline", "mch_1", 4.0), ("channel_decline", "stripe", 3.9), ("x", "m", -9.0)]
    assert anomaly_alerts(scores, 4.0) == [
        ("risk.anomaly.decline", "mch_1", {"subject": "mch_1", "z": 4.0})
    ]


def test_the_scores_are_facts_rules_read() -> None:
    tx = Transaction("mch_1", 1_000, "USD", 1_780_000_000.0)
    f = facts_of(tx, Lookups(1_000, None, {}, decline_z=5.5, new_country_z=-1.0))
    assert f["merchant_decline_z"] == 5.5 and f["merchant_new_country_z"] == -1.0
    rules = compile_rules(
        1,
        [
            Rule("declining", "merchant_decline_z > 4.0", "review"),
            Rule("new_places", "merchant_new_country_z > 4.0", "reject"),
        ],
        Thresholds(),
    )
    verdict = judge(rules, f, [])
    assert verdict.outcome is Outcome.REVIEW and [r.rule for r in verdict.fired] == ["declining"]
