"""Forgetting a node: its database, its Redis keys, its RabbitMQ queues and its simulator's
kept state, all of them.

The test and benchmark nodes do it when they stop; `juhe dev reset` does it to a development
node, so the next `make run` starts from an empty database as on a new machine."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import aio_pika
import asyncpg

from config import Settings
from infra import redisclient
from infra.broker import Queues


async def channel_codes(settings: Settings) -> set[str]:
    """Every channel the node knows: configured, and created in its database since."""
    codes = set(settings.channels)
    try:
        conn = await asyncpg.connect(settings.postgres.dsn)
    except (OSError, asyncpg.InvalidCatalogNameError):
        return codes  # no database: nothing was created in it
    try:
        codes |= {r["code"] for r in await conn.fetch("SELECT code FROM channels")}
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await conn.close()
    return codes


async def wipe(settings: Settings, codes: Iterable[str]) -> dict[str, int]:
    """Drop the database, delete every key under the Redis prefix and every queue of the
    RabbitMQ prefix; what was removed, counted."""
    name = settings.postgres.dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(settings.postgres.dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        dropped = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = redisclient.connect(settings.redis.url)
    try:
        keys = [k async for k in redis.scan_iter(f"{settings.redis.prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
    finally:
        await redis.aclose()
    queues = Queues(settings.rabbitmq.prefix)
    names = [queues.risk, queues.ledger, queues.notify, queues.dead]
    names += [queues.channel(c) for c in sorted(codes)]
    names += [queues.notify_retry(d) for d in settings.notify.retry_schedule_s]
    connection = await aio_pika.connect(settings.rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        for queue in names:
            await channel.queue_delete(queue)
    kept = _forget(settings.simulator.state_file)
    return {
        "databases": dropped,
        "redis_keys": len(keys),
        "queues": len(names),
        "simulator_state": int(kept),
    }


def _forget(path: str) -> bool:
    """Remove the simulator's kept state, if it has any; whether there was some."""
    if not path or not Path(path).exists():
        return False
    Path(path).unlink()
    return True
