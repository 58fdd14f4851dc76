"""The risk group of `make bench` (a decision's cost, `POST /risk/evaluate`, one alternating
pair above saturation and one CPU step) for a moment, so it never rots; its figures are
there, never how fast they were."""

from __future__ import annotations

from pathlib import Path

from tests.benchrun import bench


def test_every_risk_scenario_produces_figures(tmp_path: Path) -> None:
    figures, _ = bench(tmp_path, "--smoke", "--only", "risk")
    decision = figures["risk_decision"]
    assert decision["rules"] == 50 and decision["counters"] == 10, decision
    assert decision["cpu_us_per_payment"] > 0 and decision["cpu_us_per_payment_no_rules"] > 0
    evaluate = figures["risk_evaluate"]
    assert evaluate["requests"] > 0 and evaluate["errors"] == 0, evaluate
    pair = figures["risk_saturated"]
    assert len(pair["rules_per_s"]) == len(pair["no_rules_per_s"]) == 1, pair
    assert pair["rules_per_s"][0] > 0 and pair["no_rules_per_s"][0] > 0, pair
    (step,) = figures["risk_lifecycle_cpu"]
    assert step["lifecycles"] > 0 and step["lost"] == 0 and step["errors"] == 0, step
    assert step["cpu_ms"]["risk"] > 0 and step["cpu_ms"]["postgresql"] > 0, step
    assert step["cpu_ms_total"] > step["cpu_ms"]["gateway"], step
