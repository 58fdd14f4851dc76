"""Smoke test for `benchmarks/locustfile.py`: every user class runs headless for a few seconds
against a real node, and not one request fails."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path

import pytest

from infra.merchants import create_merchant
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "benchmarks" / "locustfile.py"
ROUTES = [
    "/api/v1/payments",
    "/api/v1/payments/{id}",
    "/api/v1/payments/callback/sim",
    "/api/v1/refunds",
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def test_locust_mix_runs_without_failures(tmp_path: Path) -> None:
    stack = Stack("locust")
    try:
        await stack.start()
        assert stack.pg is not None
        sim = stack.settings.channels["sim"]
        merchant = await create_merchant(
            stack.pg,
            stack.box,
            name="locust",
            notify_url=sim.base_url + "/_sim/webhooks",
            currencies=["USD"],
            fee_bps=250,
        )
        env = {
            **os.environ,
            "JUHE_LOCUST_KEY_ID": merchant.key_id,
            "JUHE_LOCUST_SECRET": merchant.secret,
            "JUHE_LOCUST_CHANNEL_SECRET": sim.secret,
            "JUHE_LOCUST_CURRENCY": "USD",
        }
        csv_prefix = tmp_path / "run"
        locust = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            "6",
            "-r",
            "6",
            "-t",
            "8s",
            "--host",
            stack.url,
            "--csv",
            str(csv_prefix),
            "--only-summary",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output = (await asyncio.wait_for(locust.communicate(), 30))[0].decode(errors="replace")
        except TimeoutError:
            locust.kill()
            raise
        assert locust.returncode in (0, 1), output[-4000:]

        stats = {row["Name"]: row for row in read_csv(Path(f"{csv_prefix}_stats.csv"))}
        failures = read_csv(Path(f"{csv_prefix}_failures.csv"))
        assert int(stats["Aggregated"]["Failure Count"]) == 0, failures
        for route in ROUTES:
            assert int(stats.get(route, {}).get("Request Count", 0)) > 0, (route, list(stats))
    finally:
        await stack.stop()
