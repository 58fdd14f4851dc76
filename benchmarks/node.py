"""A whole Juhe node on this machine in a private namespace: real processes (`juhe up`, or one
process such as `juhe gateway`) on free ports, with its own database, Redis prefix and RabbitMQ
queue prefix, so runs never collide and leave nothing behind. Shared by the benchmarks and the
integration tests."""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from config import Settings, load_settings
from infra import db, redisclient, reset
from infra.channels import seed_from_config
from infra.secretbox import SecretBox
from workers.supervisor import POOL_NAMES

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports below the kernel's ephemeral range, where an
    outgoing connection cannot take one of them between this check and the bind."""
    while True:
        base = random.randrange(20_000, 32_000 - count)
        try:
            with ExitStack() as held:
                for port in range(base, base + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def node_env(name: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings for a private node: its own database, prefixes and free ports, in the
    development profile (it runs with the published demo secrets). In `overrides`,
    `{simulator_url}` stands for this node's simulator (for extra simulated channels)."""
    tag = f"t{name}{secrets.token_hex(3)}"
    gateway, simulator, metrics = free_port(), free_port(), free_port_block(len(POOL_NAMES))
    simulator_url = f"http://127.0.0.1:{simulator}"
    return {
        "JUHE_NODE__PROFILE": "development",
        "JUHE_POSTGRES__DSN": f"postgresql://postgres@127.0.0.1:5432/juhe_{tag}",
        "JUHE_REDIS__PREFIX": tag,
        "JUHE_RABBITMQ__PREFIX": tag,
        "JUHE_GATEWAY__PORT": str(gateway),
        "JUHE_GATEWAY__PUBLIC_URL": f"http://127.0.0.1:{gateway}",
        "JUHE_GATEWAY__CALLBACK_BASE_URL": f"http://127.0.0.1:{gateway}",
        "JUHE_SIMULATOR__PORT": str(simulator),
        "JUHE_SIMULATOR__STATE_FILE": f"/tmp/juhe-{tag}-simulator.json",
        "JUHE_CHANNELS__SIM__BASE_URL": simulator_url,
        "JUHE_SUPERVISOR__METRICS_PORT_BASE": str(metrics),
        "JUHE_LOGGING__LEVEL": "WARNING",
        # its merchants' webhook receivers listen on loopback, as in local development
        "JUHE_NOTIFY__ALLOW_PRIVATE_TARGETS": "true",
        **{k: v.replace("{simulator_url}", simulator_url) for k, v in (overrides or {}).items()},
    }


class LocalNode:
    def __init__(self, name: str, overrides: Mapping[str, str] | None = None) -> None:
        self.env = node_env(name, overrides)
        self.settings: Settings = load_settings(self.env)
        self.box = SecretBox(self.settings.secrets.keys, self.settings.secrets.active)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(f"/tmp/juhe-{self.settings.redis.prefix}.log")
        self.pg: asyncpg.Pool | None = None
        self.redis: Redis | None = None
        self.whole = True
        self._command: tuple[str, ...] = ("up",)

    @property
    def url(self) -> str:
        return self.settings.gateway.public_url

    async def start(self, *command: str) -> None:
        """Run `juhe up` (the default) or another subcommand, e.g. `gateway` alone."""
        await db.ensure_database(self.settings.postgres.dsn)
        await db.migrate(self.settings.postgres.dsn)
        await seed_from_config(self.settings.postgres.dsn, self.settings.channels, self.box)
        self._command = command or ("up",)
        self._spawn()
        self.pg = await db.create_pool(self.settings.postgres.dsn, 1, 4)
        self.redis = redisclient.connect(self.settings.redis.url)
        await self._wait_ready()

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        self.whole = self._command == ("up",)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *self._command],
            env={**os.environ, **self.env},
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    async def restart(self, down_s: float = 0.0) -> None:
        """Stop every process as an operator would (SIGTERM), stay down for `down_s`, and start
        them again on the same database, keys and queues."""
        self._terminate()
        await asyncio.sleep(down_s)
        self._spawn()
        await self._wait_ready()

    def _terminate(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    async def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        sim = self.settings.channels["sim"].base_url
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(self.url + "/readyz") as ready:
                        if ready.status == 200 and not self.whole:
                            return
                    async with http.get(sim + "/_sim/health") as health:
                        if health.status == 200 and await self._pools_started(http):
                            await asyncio.sleep(1.0)  # consumers attach to their queues
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"node did not become ready; see {self.log_path}")

    async def _pools_started(self, http: aiohttp.ClientSession) -> bool:
        """Every pool has a process that opened its services (the node's juhe_pool_started)."""
        async with http.get(self.url + "/metrics") as response:
            text = await response.text()
        started = set(re.findall(r'^juhe_pool_started\{pool="(\w+)"\} 1\.0$', text, re.M))
        return started == set(POOL_NAMES)

    def pool_processes(self) -> dict[str, psutil.Process]:
        """The live worker-pool processes by pool name."""
        assert self.process is not None
        found = {}
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if "worker" in cmd:
                found[cmd[cmd.index("worker") + 1]] = child
        return found

    def pools_running(self) -> bool:
        return set(self.pool_processes()) == set(POOL_NAMES)

    async def stop(self) -> None:
        self._terminate()
        if self.pg:
            await self.pg.close()
        if self.redis:
            await self.redis.aclose()
        await reset.wipe(self.settings, await reset.channel_codes(self.settings))


@asynccontextmanager
async def scratch_database(name: str) -> AsyncIterator[tuple[LocalNode, asyncpg.Pool]]:
    """A private node's database, migrated and holding its configured channels, with no process
    running: for scenarios that call Juhe's code in-process. Dropped afterwards."""
    node = LocalNode(name)
    dsn = node.settings.postgres.dsn
    try:
        await db.ensure_database(dsn)
        await db.migrate(dsn)
        await seed_from_config(dsn, node.settings.channels, node.box)
        pool = await db.create_pool(dsn, 1, 2)
        try:
            yield node, pool
        finally:
            await pool.close()
    finally:
        await node.stop()


class RedisPair:
    """A throwaway Redis primary and its replica on free ports, nothing kept on disk: what the
    `replicated` durability mode needs to be exercised on a single machine."""

    def __init__(self) -> None:
        self.primary_port, self.replica_port = free_port(), free_port()
        self.servers: list[subprocess.Popen[bytes]] = []

    @property
    def primary_url(self) -> str:
        return f"redis://127.0.0.1:{self.primary_port}/0"

    async def start(self) -> Redis:
        """Start both; return a client of the replica once it is linked."""
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "/tmp"]
        self.servers = [
            subprocess.Popen(
                ["redis-server", "--port", str(self.primary_port), *common],
                stdout=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.replica_port),
                    "--replicaof",
                    "127.0.0.1",
                    str(self.primary_port),
                    *common,
                ],
                stdout=subprocess.DEVNULL,
            ),
        ]
        replica = Redis(port=self.replica_port)
        for _ in range(100):
            try:
                if (await replica.info("replication")).get("master_link_status") == "up":
                    return replica
            except RedisConnectionError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the replica never linked to its primary")

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
            server.wait(10)
