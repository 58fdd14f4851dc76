"""Connections a pool process holds for its whole life, opened once and closed once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import asyncpg
from aio_pika.abc import AbstractRobustConnection
from redis.asyncio import Redis

from config import Settings
from domain.channels import ChannelSpec
from infra import broker, db, redisclient
from infra.alerts import OpsAlerts
from infra.broker import Publisher, Queues
from infra.channels import ChannelRegistry
from infra.hotstore import HotStore
from infra.httpserver import OUTGOING_HEADERS
from infra.keys import Keys
from infra.secretbox import SecretBox


@dataclass
class Context:
    settings: Settings
    pg: asyncpg.Pool
    redis: Redis
    keys: Keys
    hot: HotStore
    amqp: AbstractRobustConnection
    publisher: Publisher
    queues: Queues
    http: aiohttp.ClientSession
    channels: ChannelRegistry
    box: SecretBox  # the one per process: channel credentials, merchants' keys and webhooks
    alerts: OpsAlerts

    @classmethod
    async def open(cls, settings: Settings) -> Context:
        pg = await db.create_pool(
            settings.postgres.dsn, settings.postgres.pool_min, settings.postgres.pool_max
        )
        redis = redisclient.connect(settings.redis.url, settings.redis.max_connections)
        keys = Keys(settings.redis.prefix)
        amqp = await broker.connect(settings.rabbitmq.url)
        setup = await amqp.channel()
        await broker.declare_topology(setup, settings)
        await setup.close()
        queues = Queues(settings.rabbitmq.prefix)
        http = aiohttp.ClientSession(headers=OUTGOING_HEADERS)
        box = SecretBox(settings.secrets.keys, settings.secrets.active)
        channels = ChannelRegistry(pg, box, http)

        async def declare(specs: Mapping[str, ChannelSpec]) -> None:
            await broker.declare_channel_queues(amqp, queues, specs)

        channels.listen(declare)
        await channels.refresh()
        return cls(
            settings=settings,
            pg=pg,
            redis=redis,
            keys=keys,
            hot=HotStore(redis, keys, settings.gateway.public_url, settings.gateway.hot_ttl_s),
            amqp=amqp,
            publisher=await broker.open_publisher(amqp),
            queues=queues,
            http=http,
            channels=channels,
            box=box,
            alerts=OpsAlerts(http, settings.alerts.ops_webhook_url, settings.alerts.timeout_ms),
        )

    async def close(self) -> None:
        await self.http.close()
        await self.amqp.close()
        await self.redis.aclose()
        await self.pg.close()
