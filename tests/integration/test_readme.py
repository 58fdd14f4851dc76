"""The README's curl walk-through runs as pasted: every `sh` block of "A payment with curl",
in order, in one bash, against a real node (only `JUHE` and the node's own settings come from
the environment, as they would for a reader who changed ports)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import pytest
import pytest_asyncio

from benchmarks.node import ROOT
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def sh_blocks(heading: str) -> list[str]:
    """The `sh` blocks of the README section under `heading`, up to the next `###`."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def walk_through() -> str:
    blocks = sh_blocks("## A payment with curl")
    assert len(blocks) >= 6, "the walk-through lost its blocks"
    return "\n".join(blocks)


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_curl_walk_through_runs_as_pasted(stack: Stack) -> None:
    env = {**os.environ, **stack.env, "JUHE": stack.url}
    done = await asyncio.to_thread(run, walk_through(), env)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status":"pending"' in out  # the create's answer
    assert '"status":"succeeded"' in out  # the read, two seconds later
    assert '"object":"refund"' in out and '"status":"partially_refunded"' in out
    assert '"status":"canceled"' in out
    assert '"code":"invalid_amount"' in out
    assert '"key_id":"key_' in out  # juhe merchants create
    assert '"blocked_emails":1' in out  # juhe risk block


SETTLEMENT = "### A walk-through: paid, available, settled, withdrawn, reconciled"


def settlement_walk_through() -> str:
    """The payment walk-through's first block (its definitions), then every `sh` block of the
    settlement walk-through."""
    blocks = sh_blocks(SETTLEMENT)
    assert len(blocks) >= 5, "the settlement walk-through lost its blocks"
    return "\n".join([sh_blocks("## A payment with curl")[0], *blocks])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_node():
    """A node of its own: the walk-through reconciles the simulator's whole day, which holds
    every other test's payments on the shared node."""
    node = Stack("readme")
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


async def test_the_settlement_walk_through_runs_as_pasted(own_node: Stack, tmp_path: Path) -> None:
    sim = own_node.settings.simulator
    env = {**os.environ, **own_node.env, "JUHE": own_node.url, "TMPDIR": str(tmp_path)}
    env["SIM"] = f"http://{sim.host}:{sim.port}"
    done = await asyncio.to_thread(run, settlement_walk_through(), env)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"pending":"195.00","available":"0.00"' in out, out
    assert '"pending":"0.00","available":"195.00"' in out, out
    assert '"status":"closed"' in out and '"net":"195.00"' in out, out
    assert '"status":"pending_approval"' in out and '"code":"permission_denied"' in out, out
    assert '"status":"succeeded"' in out, out
    assert '"available":"44.00","reserved":"0.00","paid_out":"150.00"' in out, out
    assert '"status":"matched"' in out, out
    assert '"kind":"amount_mismatch"' in out and '"kind":"missing_in_juhe"' in out, out
    assert '"status":"ignored"' in out, out
    assert (tmp_path / "statement.pdf").read_bytes().startswith(b"%PDF")
