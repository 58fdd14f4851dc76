"""The actor runtime: a mailbox per queue, a bounded number of actors draining it.

A pool consumes its RabbitMQ queue with a prefetch window (the mailbox bound). Each actor takes
one message, or a batch for batch handlers, runs the handler, and acknowledges only after the
handler returned, that is after its database commit: a crash at any point leaves the message
unacknowledged and RabbitMQ redelivers it. Actors that die are restarted by `supervise`.

A failure is classified (infra.faults). A service that is down (a connection, a timeout) keeps
the work: the actor backs off and the messages go back to the queue, however long it takes. An
item the database refuses is isolated from its envelope and dead-lettered at once with its
error, and an alert; an unknown failure is isolated and given a few tries first. Either way one
bad item never holds back the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgpack
from aio_pika.abc import AbstractIncomingMessage

from infra import metrics, progress
from infra.faults import Backoff, Fault, classify, describe
from infra.logs import request_id
from workers.context import Context

log = logging.getLogger("juhe.runtime")

BatchHandler = Callable[[Sequence[AbstractIncomingMessage]], Awaitable[None]]
MAX_TRIES = 5
REPORT_EVERY_S = 1.0


async def gather_all(steps: Iterable[Awaitable[object]]) -> None:
    """Run an envelope's items concurrently and wait for all of them; then raise a failure, so
    the envelope is retried (every step is idempotent, done items are no-ops). An item's own
    fault is raised before a service's, so the bad item is isolated rather than retried whole."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        own = [f for f in failures if classify(f) is not Fault.TRANSIENT]
        raise (own or failures)[0]


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
        ctx: Context,
        pool: str,
        queue: str,
        handler: BatchHandler,
        *,
        prefetch: int,
        actors: int,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
    ) -> None:
        self._ctx = ctx
        self.pool = pool
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._actors = actors
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._backoff = Backoff()
        # publish times of what this mailbox holds unfinished, and of the newest it was given
        self._open: dict[int, float] = {}
        self._delivered = 0.0
        self._consumer = f"{pool}-{id(self):x}"

    async def run(self) -> None:
        channel = await self._ctx.amqp.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await channel.get_queue(self._queue, ensure=True)
        tag = await queue.consume(self._deliver)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(supervise(f"{self.pool}-progress", self._report))
                for n in range(self._actors):
                    group.create_task(supervise(f"{self.pool}-{n}", self._actor))
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        sent = message.timestamp.timestamp() if message.timestamp else time.time()
        self._open[id(message)] = sent
        self._delivered = max(self._delivered, sent)
        await self._inbox.put(message)

    def _done(self, message: AbstractIncomingMessage) -> None:
        self._open.pop(id(message), None)

    async def _report(self) -> None:
        """Tell re-drive how far this consumer has got (infra.progress)."""
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            report = progress.Report(
                self._delivered, min(self._open.values(), default=None), time.time()
            )
            await progress.report(
                self._ctx.redis, self._ctx.keys, self._queue, self._consumer, report
            )

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
            for message in batch:
                if message.channel.is_closed:
                    self._done(message)
            batch = [m for m in batch if not m.channel.is_closed]
            if batch:
                await self._handle(batch)

    async def _handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        request_id.set(batch[0].correlation_id or "")
        started = time.perf_counter()
        try:
            await self._handler(batch)
        except Exception as exc:
            metrics.pool_messages.labels(self.pool, "failed").inc(len(batch))
            await self._failed(batch, exc)
            return
        self._backoff.reset()
        metrics.pool_latency.labels(self.pool).observe(time.perf_counter() - started)
        metrics.pool_messages.labels(self.pool, "ok").inc(len(batch))
        for message in batch:
            await message.ack()
            self._done(message)

    async def _failed(self, batch: Sequence[AbstractIncomingMessage], exc: Exception) -> None:
        fault = classify(exc)
        if fault is Fault.TRANSIENT:
            # Not the items' fault: keep them all, in one piece, and wait for the service.
            await self._backoff.wait(self.pool, exc)
            for message in batch:
                await message.nack(requeue=True)
                self._done(message)
            return
        log.error(
            "handler failed",
            exc_info=exc,
            extra={"pool": self.pool, "batch": len(batch), "fault": fault.value},
        )
        if len(batch) > 1:
            # One bad message must not hold back the rest of its batch: retry them one by one.
            for message in batch:
                await self._handle([message])
            return
        await self._isolate(batch[0], fault, exc)

    async def _isolate(
        self, message: AbstractIncomingMessage, fault: Fault, exc: Exception
    ) -> None:
        """Split a failed envelope into one envelope per item, so one bad item cannot hold
        back the others; dead-letter a single item the database refuses, or one that has failed
        too often; requeue any other for another try."""
        try:
            items = msgpack.unpackb(message.body)
        except ValueError:
            items = None  # not an envelope at all: nothing to split
        if isinstance(items, list) and len(items) > 1:
            rid = message.correlation_id or ""
            await asyncio.gather(
                *(self._ctx.publisher.publish(self._queue, msgpack.packb([i]), rid) for i in items)
            )
            await message.ack()
            self._done(message)
            return
        key = message.message_id or str(hash(message.body))
        tries = self._failures.pop(key, 0) + 1
        if fault is Fault.DATA or tries >= MAX_TRIES:
            await self._dead_letter(message, exc)
            return
        self._failures[key] = tries
        while len(self._failures) > 10_000:
            self._failures.popitem(last=False)
        await asyncio.sleep(0.2)
        await message.nack(requeue=True)
        self._done(message)

    async def _dead_letter(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        """Set the item aside, with its error, where an operator can read and replay it."""
        error = describe(exc)
        await self._ctx.publisher.publish(
            self._ctx.queues.dead,
            message.body,
            message.correlation_id or "",
            headers={"x-juhe-queue": self._queue, "x-juhe-error": error},
        )
        await message.ack()
        self._done(message)
        metrics.pool_messages.labels(self.pool, "dead").inc()
        metrics.dead_items.labels(f"queue.{self.pool}").inc()
        log.error("item dead-lettered", extra={"pool": self.pool, "error": error})
        await self._ctx.alerts.send("item.dead_lettered", pool=self.pool, error=error)
