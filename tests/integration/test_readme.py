"""The README's curl walk-through runs as pasted: every `sh` block of "A payment with curl",
in order, in one bash, against a real node (only `JUHE` and the node's own settings come from
the environment, as they would for a reader who changed ports)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

import pytest

from benchmarks.node import ROOT
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def walk_through() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A payment with curl", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
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
