"""Cache invalidation across processes: a change to a merchant, an API key, the channel
configuration or risk control (lists, the live rule version) is announced on one Redis
channel, and every process that caches them drops or reloads its copy within moments instead
of waiting out a TTL. A process that misses a message (Redis restarting) still converges:
merchants within their TTL, channels at the registry's next version check, and the risk book
at its own."""

from __future__ import annotations

import asyncio
import logging

import orjson
from redis.asyncio import Redis

from infra.channels import RECHECK_S, ChannelRegistry
from infra.keys import Keys
from infra.merchants import MerchantDirectory
from infra.risk import RiskBook

log = logging.getLogger("juhe.invalidation")


async def announce(
    redis: Redis,
    keys: Keys,
    directory: MerchantDirectory | None = None,
    *,
    merchant_id: str | None = None,
    key_id: str | None = None,
    channels: bool = False,
    risk: bool = False,
) -> None:
    if directory is not None:
        directory.forget(merchant_id=merchant_id, key_id=key_id)
    await redis.publish(
        keys.invalidations(),
        orjson.dumps({"merchant": merchant_id, "key": key_id, "channels": channels, "risk": risk}),
    )


async def _reload(registry: ChannelRegistry | RiskBook | None) -> None:
    if registry is None:
        return
    try:
        await registry.refresh()
    except Exception:
        log.warning("%s not reloaded; trying again", type(registry).__name__, exc_info=True)


async def follow(
    redis: Redis,
    keys: Keys,
    directory: MerchantDirectory | None = None,
    registry: ChannelRegistry | None = None,
    book: RiskBook | None = None,
) -> None:
    """Run for the life of the process, resubscribing after a lost connection. Between
    messages the channel registry and the risk book check their versions every RECHECK_S."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(keys.invalidations())
                # whatever changed while we were not listening
                await _reload(registry)
                await _reload(book)
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=RECHECK_S
                    )
                    if message is None:
                        await _reload(registry)
                        await _reload(book)
                        continue
                    change = orjson.loads(message["data"])
                    if directory is not None:
                        directory.forget(
                            merchant_id=change.get("merchant"), key_id=change.get("key")
                        )
                    if change.get("channels"):
                        await _reload(registry)
                    if change.get("risk"):
                        await _reload(book)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("lost the invalidation channel; subscribing again", exc_info=True)
            await asyncio.sleep(1.0)
