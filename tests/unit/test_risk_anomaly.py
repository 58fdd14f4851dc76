"""Streaming anomaly models (domain.risk.anomaly) as pure functions: the EWMA update and its
z-score, rules firing far above their usual share, the alerts they raise, and the facts."""

from __future__ import annotations

import pytest

from domain.risk import Outcome, Rule, Thresholds, compile_rules
from domain.risk.alerts import anomaly_alerts, surge_alerts
from domain.risk.anomaly import (
    MIN_SEEN,
    RULE_MIN_FIRES,
    VOLUME_MAX_GAP,
    Alphas,
    Rate,
    RuleWindow,
    Volume,
    rule_surges,
    score,
    update,
    volume_score,
    volume_step,
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


NO_VOLUME = Volume()


def payments_in(windows: list[int], state: Volume = NO_VOLUME, alpha: float = 0.01) -> Volume:
    """One payment per entry, dated in that window."""
    for window in windows:
        state = volume_step(state, window, alpha)
    return state


def test_volume_learns_each_closed_window_and_the_empty_ones_between() -> None:
    state = payments_in([10, 10, 10, 12])  # window 10: three payments; 11: none; 12: one so far
    assert (state.window, state.count, state.seen) == (12, 1, 2)
    assert state.mean == pytest.approx(1.5) and state.var == pytest.approx(2.25)
    late = volume_step(state, 11, 0.01)
    assert (late.window, late.count, late.seen) == (12, 2, 2), "a late payment counts now"
    quiet = payments_in([12 + 10 * VOLUME_MAX_GAP], state)
    assert quiet.seen == state.seen + 1 + VOLUME_MAX_GAP, "a quiet spell is learned, bounded"


def test_a_burst_far_above_the_usual_volume_scores_high_and_steady_traffic_low() -> None:
    steady = payments_in([w for w in range(200) for _ in range(5)])  # five a window
    assert steady.mean == pytest.approx(5.0, abs=0.5)
    assert abs(volume_score(steady)) < 2, "a window as usual"
    burst = payments_in([200] * 40, steady)
    assert volume_score(burst) > 10
    assert volume_score(payments_in([5] * 50)) == 0.0, "no usual before MIN_SEEN windows"
    sparse = payments_in(list(range(0, 400, 10)))  # one payment every ten windows
    assert volume_score(payments_in([400, 400], sparse)) < 2, "counting noise is not a surge"
