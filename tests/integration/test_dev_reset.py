"""`juhe dev reset` empties a development node (its database, Redis keys and queues) and
refuses to touch a production one."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import aio_pika
import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from benchmarks.node import ROOT
from config import load_settings
from infra import db
from infra.broker import Queues, declare_topology

pytestmark = pytest.mark.asyncio(loop_scope="session")


def juhe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_reset_empties_a_development_node_and_only_that() -> None:
    tag = "treset" + secrets.token_hex(3)
    env = {
        "JUHE_POSTGRES__DSN": f"postgresql://postgres@127.0.0.1:5432/juhe_{tag}",
        "JUHE_REDIS__PREFIX": tag,
        "JUHE_RABBITMQ__PREFIX": tag,
    }
    settings = load_settings(env)
    await db.ensure_database(settings.postgres.dsn)
    await db.migrate(settings.postgres.dsn)
    redis = Redis.from_url(settings.redis.url)
    other = f"not{tag}:kept"
    await redis.set(f"{tag}:pay:x", "1")
    await redis.set(other, "1")
    connection = await aio_pika.connect(settings.rabbitmq.url)
    try:
        channel = await connection.channel()
        await declare_topology(channel, settings)

        refused = juhe({**env, "JUHE_NODE__PROFILE": "production"}, "dev", "reset", "--yes")
        assert refused.returncode != 0 and "only for a development node" in refused.stderr
        unconfirmed = juhe({**env, "JUHE_NODE__PROFILE": "development"}, "dev", "reset")
        assert unconfirmed.returncode != 0 and "--yes" in unconfirmed.stderr
        assert await redis.exists(f"{tag}:pay:x")

        done = juhe({**env, "JUHE_NODE__PROFILE": "development"}, "dev", "reset", "--yes")
        assert done.returncode == 0, done.stderr
        counted = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert counted["databases"] == 1 and counted["redis_keys"] >= 1
        assert not await redis.exists(f"{tag}:pay:x")
        assert await redis.exists(other)  # another prefix is left alone
        with pytest.raises(asyncpg.InvalidCatalogNameError):
            await asyncpg.connect(settings.postgres.dsn)
        probe = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await probe.declare_queue(Queues(tag).risk, passive=True)
    finally:
        await redis.delete(other)
        await redis.aclose()
        await connection.close()
