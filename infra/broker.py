"""RabbitMQ topology and publishing.

One durable queue per pool (one per channel for the channel pool, so a slow channel cannot stall
the others), a dead-letter queue behind all of them, and one TTL queue per webhook retry delay
whose expired messages fall back into the notify queue. Publishing always waits for the broker's
confirm: a message is ours to forget only once RabbitMQ has it on disk.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from config import Settings
from domain.messages import Message, encode


@dataclass(frozen=True, slots=True)
class Queues:
    prefix: str

    @property
    def risk(self) -> str:
        return f"{self.prefix}.risk"

    @property
    def ledger(self) -> str:
        return f"{self.prefix}.ledger"

    @property
    def notify(self) -> str:
        return f"{self.prefix}.notify"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    def channel(self, code: str) -> str:
        return f"{self.prefix}.channel.{code}"

    def notify_retry(self, delay_s: float) -> str:
        return f"{self.prefix}.notify.retry.{int(delay_s * 1000)}ms"


async def connect(url: str) -> AbstractRobustConnection:
    """A connection that comes back by itself after a broker restart, trying every second
    (aio-pika's default of 5 s left pools idle for seconds after RabbitMQ was back)."""
    return await aio_pika.connect_robust(url, reconnect_interval=1)


def _to_dead(queues: Queues) -> dict[str, str]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queues.dead}


async def declare_channel_queues(
    connection: AbstractRobustConnection, queues: Queues, codes: Iterable[str]
) -> None:
    """Channels are data: a channel's queue is declared by whichever process first learns of
    the channel (idempotent), before any payment can be routed to it."""
    channel = await connection.channel()
    try:
        for code in codes:
            await channel.declare_queue(
                queues.channel(code), durable=True, arguments=_to_dead(queues)
            )
    finally:
        await channel.close()


async def declare_topology(channel: AbstractChannel, settings: Settings) -> None:
    queues = Queues(settings.rabbitmq.prefix)
    await channel.declare_queue(queues.dead, durable=True)
    for name in (queues.risk, queues.ledger, queues.notify):
        await channel.declare_queue(name, durable=True, arguments=_to_dead(queues))
    for delay in sorted(set(settings.notify.retry_schedule_s)):
        await channel.declare_queue(
            queues.notify_retry(delay),
            durable=True,
            arguments={
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queues.notify,
            },
        )


ENVELOPE_MAX = 100


class Publisher:
    """Confirmed, persistent publishing to a queue through the default exchange.

    A message is an envelope: a msgpack array of items of the queue's one message type. Items
    bound for the same queue travel together, so the broker and both clients pay their
    per-message cost once per envelope rather than once per payment.
    """

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel

    async def publish(
        self,
        queue: str,
        body: bytes,
        request_id: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Every message carries its publish time: how re-drive tells a message still queued
        from one that was lost (infra.progress)."""
        await self._channel.default_exchange.publish(
            aio_pika.Message(
                body,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/msgpack",
                correlation_id=request_id or None,
                timestamp=time.time(),
                headers=headers,
            ),
            routing_key=queue,
        )

    async def send(self, queue: str, items: Sequence[Message]) -> None:
        await self.send_many((queue, item) for item in items)

    async def send_many(self, items: Iterable[tuple[str, Message]]) -> None:
        """Group by queue, cut into envelopes of at most ENVELOPE_MAX, wait for every confirm."""
        by_queue: dict[str, list[Message]] = defaultdict(list)
        for queue, item in items:
            by_queue[queue].append(item)
        await asyncio.gather(
            *(
                self.publish(queue, encode(batch[i : i + ENVELOPE_MAX]), batch[i].request_id)
                for queue, batch in by_queue.items()
                for i in range(0, len(batch), ENVELOPE_MAX)
            )
        )


async def open_publisher(connection: AbstractRobustConnection) -> Publisher:
    channel = await connection.channel(publisher_confirms=True)
    return Publisher(channel)


async def queue_depths(channel: AbstractChannel, names: Iterable[str]) -> dict[str, int]:
    depths = {}
    for name in names:
        queue = await channel.declare_queue(name, passive=True)
        depths[name] = queue.declaration_result.message_count or 0
    return depths
