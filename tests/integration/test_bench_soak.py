"""`make soak` for three seconds: a whole node under steady load with every process's memory
sampled, so the soak never rots."""

from __future__ import annotations

from pathlib import Path

from tests.benchrun import bench


def test_soak_samples_memory_of_every_process(tmp_path: Path) -> None:
    figures, _ = bench(tmp_path, "--soak", "3", "--soak-rate", "20", timeout=120)
    soak = figures["soak"]
    assert soak["created"] > 0 and soak["errors"] == 0
    roles = set(soak["rss_mb"][-1]) - {"t"}
    assert {"gateway", "relay", "risk", "channel", "ledger", "notify", "scheduler"} <= roles
    assert all(soak["rss_mb"][-1][r] > 0 for r in roles)
