"""`juhe up`: every process of a node under one supervised foreground process.

Children are the gateway, each worker pool, the channel simulator and, where configured, the
local development chain and the hot-wallet signer, each its own `juhe` subcommand. A child
that exits is restarted after a short backoff (longer if it keeps dying); SIGINT/SIGTERM stop
all of them. All children share one Prometheus multiprocess directory, so the gateway's
/metrics shows the whole node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

from prometheus_client import multiprocess

from config import Settings

log = logging.getLogger("juhe.supervisor")

POOL_NAMES = ("relay", "risk", "channel", "ledger", "notify", "scheduler", "chain")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)


def children(settings: Settings, multiproc_dir: str, with_simulator: bool = True) -> list[Child]:
    base = [sys.executable, "-m", "cli.main"]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc_dir}
    found = [Child("gateway", [*base, "gateway"], env)]
    found += [Child(p, [*base, "worker", p], {**env, "JUHE_WORKER_INDEX": "0"}) for p in POOL_NAMES]
    if with_simulator:
        found.append(Child("simulator", [*base, "simulator"], env))
    if settings.chain.local_node_port:
        found.append(Child("chain-node", [*base, "chain", "node"], env))
    if settings.signer.port:
        found.append(Child("signer", [*base, "signer"], env))
    return found


class Supervisor:
    def __init__(self, settings: Settings, procs: list[Child]) -> None:
        self.settings = settings
        self.children = procs
        self.stopping = asyncio.Event()

    async def start(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(*child.argv, env=child.env)
        child.started_at = time.monotonic()

    async def watch(self, child: Child) -> None:
        backoff = self.settings.supervisor.restart_backoff_ms / 1000
        while not self.stopping.is_set():
            await self.start(child)
            assert child.process is not None
            code = await child.process.wait()
            # its live gauges (juhe_pool_started) go with it
            multiprocess.mark_process_dead(child.process.pid, child.env["PROMETHEUS_MULTIPROC_DIR"])
            if self.stopping.is_set():
                return
            quick = time.monotonic() - child.started_at < 5
            child.restarts = child.restarts + 1 if quick else 0
            delay = min(10.0, backoff * (2 ** min(child.restarts, 6))) if quick else backoff
            log.warning(
                "child exited; restarting", extra={"child": child.name, "code": code, "in_s": delay}
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        watchers = [asyncio.create_task(self.watch(c)) for c in self.children]
        await self.stopping.wait()
        for child in self.children:
            if child.process and child.process.returncode is None:
                child.process.terminate()
        for child in self.children:
            if child.process:
                try:
                    await asyncio.wait_for(child.process.wait(), 10)
                except TimeoutError:
                    log.warning("child did not stop in 10 s; killed", extra={"child": child.name})
                    child.process.kill()
        for watcher in watchers:
            watcher.cancel()


def multiproc_dir() -> str:
    return tempfile.mkdtemp(prefix="juhe-metrics-")
