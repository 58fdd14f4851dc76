"""Real-browser checks: a script under `portal/e2e/` drives Debian's chromium through
playwright-core and prints one JSON answer, which the test reads."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from benchmarks.node import ROOT

E2E = ROOT / "portal" / "e2e"


async def run(script: str, *args: str, timeout: float = 90.0) -> Any:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(E2E / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, err.decode()
    return orjson.loads(out.splitlines()[-1])
