"""Cache invalidation across processes: a change to a merchant or an API key is announced on a
Redis channel, and every process that caches them (gateway, risk pool) drops its copy within
moments instead of waiting out the cache TTL. A process that misses a message (Redis
restarting) still converges within the TTL."""

from __future__ import annotations

import asyncio
import logging

import orjson
from redis.asyncio import Redis

from infra.keys import Keys
from infra.merchants import MerchantDirectory

log = logging.getLogger("juhe.invalidation")


async def announce(
    redis: Redis,
    keys: Keys,
    directory: MerchantDirectory,
    *,
    merchant_id: str | None = None,
    key_id: str | None = None,
) -> None:
    directory.forget(merchant_id=merchant_id, key_id=key_id)
    await redis.publish(
        keys.invalidations(), orjson.dumps({"merchant": merchant_id, "key": key_id})
    )


async def follow(redis: Redis, keys: Keys, directory: MerchantDirectory) -> None:
    """Run for the life of the process, resubscribing after a lost connection."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(keys.invalidations())
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    change = orjson.loads(message["data"])
                    directory.forget(merchant_id=change.get("merchant"), key_id=change.get("key"))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("lost the invalidation channel; subscribing again", exc_info=True)
            await asyncio.sleep(1.0)
