"""Cache invalidation across processes: a change to a merchant, an API key or the channel
configuration is announced on one Redis channel, and every process that caches them drops or
reloads its copy within moments instead of waiting out a TTL. A process that misses a message
(Redis restarting) still converges: merchants within their TTL, channels at the registry's
next version check."""

from __future__ import annotations

import asyncio
import logging

import orjson
from redis.asyncio import Redis

from infra.channels import RECHECK_S, ChannelRegistry
from infra.keys import Keys
from infra.merchants import MerchantDirectory

log = logging.getLogger("juhe.invalidation")


async def announce(
    redis: Redis,
    keys: Keys,
    directory: MerchantDirectory | None = None,
    *,
    merchant_id: str | None = None,
    key_id: str | None = None,
    channels: bool = False,
) -> None:
    if directory is not None:
        directory.forget(merchant_id=merchant_id, key_id=key_id)
    await redis.publish(
        keys.invalidations(),
        orjson.dumps({"merchant": merchant_id, "key": key_id, "channels": channels}),
    )


async def _reload(registry: ChannelRegistry) -> None:
    try:
        await registry.refresh()
    except Exception:
        log.warning("channel configuration not reloaded; trying again", exc_info=True)


async def follow(
    redis: Redis,
    keys: Keys,
    directory: MerchantDirectory | None = None,
    registry: ChannelRegistry | None = None,
) -> None:
    """Run for the life of the process, resubscribing after a lost connection. Between
    messages the channel registry checks its version every RECHECK_S."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(keys.invalidations())
                if registry is not None:
                    await _reload(registry)  # whatever changed while we were not listening
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=RECHECK_S
                    )
                    if message is None:
                        if registry is not None:
                            await _reload(registry)
                        continue
                    change = orjson.loads(message["data"])
                    if directory is not None:
                        directory.forget(
                            merchant_id=change.get("merchant"), key_id=change.get("key")
                        )
                    if registry is not None and change.get("channels"):
                        await _reload(registry)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("lost the invalidation channel; subscribing again", exc_info=True)
            await asyncio.sleep(1.0)
