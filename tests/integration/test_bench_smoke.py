"""Every benchmark scenario runs for a second or two so the suite never rots. This asserts the
scenarios ran and produced figures, never how fast they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from benchmarks.node import ROOT

# The suite runs two test files at once on one PostgreSQL: the benchmarks' nodes get the test
# nodes' connection budget (tests/stack.py), not production's ten per process.
SMALL_POOLS = {**os.environ, "JUHE_POSTGRES__POOL_MIN": "1", "JUHE_POSTGRES__POOL_MAX": "4"}


def test_every_scenario_produces_figures(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=SMALL_POOLS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    figures = orjson.loads(out.read_bytes())["figures"]
    assert figures["baseline"]["rps"] > 0 and all(r > 0 for r in figures["baseline"]["runs"])
    for name in ("create_stream", "create_replicated", "create_database", "callbacks"):
        assert figures[name]["requests"] > 0 and figures[name]["ratio"] > 0, name
        assert len(figures[name]["baseline_rps"]) == len(figures[name]["round_ratios"]) + 1
        assert figures[name]["errors"] == 0, (name, figures[name])
    assert figures["create_latency_at_half_peak"]["requests"] > 0
    e2e = figures["end_to_end"]
    assert e2e["trials"] and e2e["trials"][0]["created"] > 0
    assert e2e["trials"][0]["lost"] == 0, e2e
    assert figures["ledger"]["batched_entries_per_s"] > 0
    assert set(figures["routing"]) == {
        "pinned_us",
        "priority_us",
        "weighted_us",
        "least_cost_us",
        "success_rate_us",
    }
    assert all(us > 0 for us in figures["routing"].values())
    assert figures["ledger"]["single_entries_per_s"] > 0
    recon = figures["reconciliation"]
    assert recon["lines"] == 500 and recon["discrepancies"] == 7 and recon["ratio"] > 0, recon
    close = figures["settlement_close"]
    assert 0 < close["small"]["lines"] < close["large"]["lines"], close
    assert close["small"]["statements"] > 0 and close["per_line_growth"] > 0, close
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
    assert "ratio" in run.stdout and "result file" in run.stdout


def test_soak_samples_memory_of_every_process(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--soak",
            "3",
            "--soak-rate",
            "20",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=SMALL_POOLS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    soak = orjson.loads(out.read_bytes())["figures"]["soak"]
    assert soak["created"] > 0 and soak["errors"] == 0
    roles = set(soak["rss_mb"][-1]) - {"t"}
    assert {"gateway", "relay", "risk", "channel", "ledger", "notify", "scheduler"} <= roles
    assert all(soak["rss_mb"][-1][r] > 0 for r in roles)
