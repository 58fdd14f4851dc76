"""The actor runtime: a mailbox per queue, a bounded number of actors draining it.

A pool consumes its RabbitMQ queue with a prefetch window (the mailbox bound). Each actor takes
one message, or a batch for batch handlers, runs the handler, and acknowledges only after the
handler returned, that is after its database commit: a crash at any point leaves the message
unacknowledged and RabbitMQ redelivers it. A message that keeps failing is dead-lettered after a
few tries instead of blocking the queue. Actors that die are restarted by `supervise`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgpack
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from infra import metrics
from infra.broker import Publisher
from infra.logs import request_id

log = logging.getLogger("juhe.runtime")

BatchHandler = Callable[[Sequence[AbstractIncomingMessage]], Awaitable[None]]
MAX_TRIES = 5


async def gather_all(steps: Iterable[Awaitable[object]]) -> None:
    """Run an envelope's items concurrently and wait for all of them; then raise the first
    failure, so the envelope is retried (every step is idempotent, done items are no-ops)."""
    for result in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


async def supervise(name: str, run: Callable[[], Awaitable[None]], backoff_s: float = 0.2) -> None:
    """Run `run` forever, restarting it when it fails; cancellation stops it."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("actor crashed; restarting", extra={"actor": name})
            await asyncio.sleep(backoff_s)


class Mailbox:
    def __init__(
        self,
        pool: str,
        connection: AbstractRobustConnection,
        publisher: Publisher,
        queue: str,
        handler: BatchHandler,
        *,
        prefetch: int,
        actors: int,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
    ) -> None:
        self.pool = pool
        self._connection = connection
        self._publisher = publisher
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._actors = actors
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._failures: OrderedDict[str, int] = OrderedDict()

    async def run(self) -> None:
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.get_queue(self._queue, ensure=True)
        tag = await queue.consume(self._inbox.put)
        try:
            async with asyncio.TaskGroup() as group:
                for n in range(self._actors):
                    group.create_task(supervise(f"{self.pool}-{n}", self._actor))
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)

    async def _take(self) -> list[AbstractIncomingMessage]:
        batch = [await self._inbox.get()]
        deadline = time.monotonic() + self._batch_wait_s
        while len(batch) < self._batch_size:
            if not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _actor(self) -> None:
        while True:
            batch = await self._take()
            # Redelivered after a channel was lost: acking it on the old channel would fail.
            batch = [m for m in batch if not m.channel.is_closed]
            if not batch:
                continue
            if not await self._handle(batch) and len(batch) > 1:
                # One bad message must not hold back the rest of its batch: retry them one by one.
                for message in batch:
                    await self._handle([message])

    async def _handle(self, batch: Sequence[AbstractIncomingMessage]) -> bool:
        request_id.set(batch[0].correlation_id or "")
        started = time.perf_counter()
        try:
            await self._handler(batch)
        except Exception:
            log.exception("handler failed", extra={"pool": self.pool, "batch": len(batch)})
            metrics.pool_messages.labels(self.pool, "failed").inc(len(batch))
            if len(batch) == 1:
                await self._after_failure(batch[0])
            return False
        metrics.pool_latency.labels(self.pool).observe(time.perf_counter() - started)
        metrics.pool_messages.labels(self.pool, "ok").inc(len(batch))
        for message in batch:
            await message.ack()
        return True

    async def _after_failure(self, message: AbstractIncomingMessage) -> None:
        """Split a failed envelope into one envelope per item, so one bad item cannot hold
        back the others; requeue a single item for another try, or dead-letter it once it has
        failed too often."""
        await asyncio.sleep(0.2)
        items = msgpack.unpackb(message.body)
        if isinstance(items, list) and len(items) > 1:
            rid = message.correlation_id or ""
            await asyncio.gather(
                *(self._publisher.publish(self._queue, msgpack.packb([i]), rid) for i in items)
            )
            await message.ack()
            return
        key = message.message_id or str(hash(message.body))
        tries = self._failures.pop(key, 0) + 1
        if tries >= MAX_TRIES:
            metrics.pool_messages.labels(self.pool, "dead").inc()
            await message.reject(requeue=False)
            return
        self._failures[key] = tries
        while len(self._failures) > 10_000:
            self._failures.popitem(last=False)
        await message.nack(requeue=True)
