"""The settlement group of `make bench` (reconciliation and the settlement close) for a
moment, so it never rots; its figures are there, never how fast they were."""

from __future__ import annotations

from pathlib import Path

from tests.benchrun import bench


def test_every_settlement_scenario_produces_figures(tmp_path: Path) -> None:
    figures, _ = bench(tmp_path, "--smoke", "--only", "settlement")
    recon = figures["reconciliation"]
    assert recon["lines"] == 500 and recon["discrepancies"] == 7 and recon["ratio"] > 0, recon
    close = figures["settlement_close"]
    assert 0 < close["small"]["lines"] < close["large"]["lines"], close
    assert close["small"]["statements"] > 0 and close["per_line_growth"] > 0, close
