"""Running `python -m benchmarks.run` from a test: a smoke run of some scenario groups, or a
short soak, and the figures it wrote. The suite runs two test files at once on one
PostgreSQL: the benchmarks' nodes get the test nodes' connection budget (tests/stack.py), not
production's ten per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from benchmarks.node import ROOT

SMALL_POOLS = {**os.environ, "JUHE_POSTGRES__POOL_MIN": "1", "JUHE_POSTGRES__POOL_MAX": "4"}


def bench(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[dict[str, Any], str]:
    """(figures, what it printed)."""
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args, "--out", str(out)],
        cwd=ROOT,
        env=SMALL_POOLS,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return orjson.loads(out.read_bytes())["figures"], run.stdout
