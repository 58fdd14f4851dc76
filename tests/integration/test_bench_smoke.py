"""Every benchmark scenario of the payments group runs for a second or two so the suite
never rots. This asserts the scenarios ran and produced figures, never how fast they were.
The settlement and risk groups and the soak have files of their own, so the suite's two
workers share them."""

from __future__ import annotations

from pathlib import Path

from tests.benchrun import bench


def test_every_payments_scenario_produces_figures(tmp_path: Path) -> None:
    figures, printed = bench(tmp_path, "--smoke", "--only", "payments")
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
    assert "ratio" in printed and "result file" in printed
