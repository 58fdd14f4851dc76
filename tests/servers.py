"""Throwaway PostgreSQL, RabbitMQ and Redis servers that one test owns, so it can stop, kill and
restart them without touching the shared services every other test (and engineer) relies on.

Each server runs as its own process group on its own port, with its data in its own temporary
directory. `restart()` comes back on the same port and the same data directory, so what the
server had made durable survives, which is the point of an outage test. `close()` stops the
server and removes its directory; fixtures call it in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from aio_pika.exceptions import AMQPError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from benchmarks.node import free_port_block

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# The scripts themselves: /usr/sbin/rabbitmq-* re-run as the `rabbitmq` user when called by
# root, which would take that user's Erlang cookie and the system node's environment file.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def port() -> int:
    """A free port below the kernel's ephemeral range: while a server is down for a restart,
    no client's outgoing connection can take its port, so it always comes back on it."""
    return free_port_block(1)


class Server:
    """One server process (group) with a data directory that outlives its restarts."""

    name = "server"
    start_timeout_s = 60.0
    stop_timeout_s = 30.0

    def __init__(self) -> None:
        self.port = port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"juhe-{self.name}-"))
        self.log_path = self.dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    # What a subclass defines.
    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        return {}

    async def answers(self) -> bool:
        """One probe: does the server serve clients yet?"""
        raise NotImplementedError

    async def shut_down(self) -> None:
        """Ask for a clean stop (the process group is waited for by `stop`)."""
        self.signal(signal.SIGTERM)

    # The life cycle.
    @property
    def running(self) -> bool:
        if self.process is None:
            return False
        self.process.poll()  # reap the leader, so a dead group reads as dead
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    async def start(self) -> None:
        """Start and return once the server answers clients (not merely once it listens)."""
        assert not self.running, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.popen_options(),
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            if await self.answers():
                return
            await asyncio.sleep(0.1)
        self.signal(signal.SIGKILL)
        raise RuntimeError(f"{self.name} did not answer in time; see {self.log_path}")

    async def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.running:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        """A clean shutdown; a server that does not finish in time is killed."""
        if not self.running:
            return
        await self.shut_down()
        if not await self._wait_gone(self.stop_timeout_s):
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL the whole process group: a crash, with no chance to flush or say goodbye."""
        self.signal(signal.SIGKILL)
        await self._wait_gone(10)

    async def restart(self, *, kill: bool = False) -> None:
        await (self.kill() if kill else self.stop())
        await self.start()

    async def close(self) -> None:
        """Stop it for good and remove its data."""
        try:
            await self.stop()
        finally:
            if self.running:
                await self.kill()
            shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer(Server):
    """A cluster of its own, run by the `postgres` OS user (PostgreSQL refuses to run as root),
    trust auth on 127.0.0.1 and its unix socket in its own directory."""

    name = "postgres"

    def __init__(self, database: str = "juhe") -> None:
        super().__init__()
        self.database = database  # what `dsn` names; whoever uses it creates it
        self.data = self.dir / "data"
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)

    async def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():  # the first start makes the cluster
            initdb = await asyncio.create_subprocess_exec(
                PG_BIN / "initdb",
                *("-D", str(self.data), "-U", "postgres", "-A", "trust"),
                *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **self.popen_options(),
            )
            _, err = await initdb.communicate()
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed: {err.decode(errors='replace')}")
        await super().start()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def popen_options(self) -> dict[str, Any]:
        return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": self.dir}

    def command(self) -> list[str]:
        return [
            str(PG_BIN / "postgres"),
            *("-D", str(self.data), "-p", str(self.port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}"),
        ]

    async def shut_down(self) -> None:
        # SIGINT is the "fast" shutdown: roll back open transactions, close clients, checkpoint.
        # SIGTERM ("smart") would wait for the node's pools to disconnect, which they never do.
        self.signal(signal.SIGINT)

    async def answers(self) -> bool:
        try:
            conn = await asyncpg.connect(self.dsn.rsplit("/", 1)[0] + "/postgres", timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False  # not listening yet, or still "starting up" / recovering
        try:
            return await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()


class RabbitServer(Server):
    """A RabbitMQ node of its own next to the system's `rabbit@localhost`: own node name,
    AMQP and distribution ports, Mnesia and log directories, cookie (in its own HOME), config
    and environment files, so nothing of the system node's is read or touched. No plugins."""

    name = "rabbitmq"
    stop_timeout_s = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.node = f"juhe{self.port}@localhost"
        self.dist_port = port()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq's

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir),  # where the node and rabbitmqctl share an Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def popen_options(self) -> dict[str, Any]:
        return {"env": self.env(), "cwd": self.dir}

    def command(self) -> list[str]:
        return [str(RABBITMQ_BIN / "rabbitmq-server")]

    async def shut_down(self) -> None:
        # `rabbitmqctl stop` returns once the node has halted (the group is waited for after).
        ctl = await asyncio.create_subprocess_exec(
            RABBITMQ_BIN / "rabbitmqctl",
            *("-n", self.node, "stop"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self.popen_options(),
        )
        await ctl.wait()

    async def answers(self) -> bool:
        try:  # a bare TCP probe first: aio_pika logs every refused connect as an error
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        try:
            connection = await aio_pika.connect(self.url, timeout=2)
        except (OSError, AMQPError, TimeoutError):
            return False
        await connection.close()
        return True


class RedisServer(Server):
    """redis-server with no RDB snapshots; with `aof`, an append-only file fsynced every
    second, so a stop keeps everything and a kill loses at most about the last second."""

    name = "redis"

    def __init__(self, aof: bool) -> None:
        super().__init__()
        self.aof = aof

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else []
        return [
            "redis-server",
            *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)),
            *("--save", "", *(aof or ["--appendonly", "no"])),
        ]

    async def answers(self) -> bool:
        client = Redis.from_url(self.url, socket_connect_timeout=2)
        try:
            return bool(await client.ping())
        except RedisError:
            return False  # not listening yet, or still loading its append-only file
        finally:
            await client.aclose()
