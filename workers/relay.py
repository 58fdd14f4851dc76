"""Intake relay: Redis streams → PostgreSQL (batched) → RabbitMQ (confirmed) → XACK.

Entries are acknowledged (and deleted) only after the rows are committed and the broker has
confirmed every publish, so a relay killed at any point leaves them pending; its successor
re-reads its own pending entries first, and entries of a consumer that never came back are
taken over with XAUTOCLAIM once idle long enough. Every step is idempotent (inserts ignore
existing ids, downstream transitions are guarded), so re-relaying is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import ResponseError

from domain.messages import (
    ChannelCallback,
    ChannelTask,
    LedgerCommand,
    Message,
    PaymentIntent,
    RefundIntent,
    decoder,
)
from infra import metrics, store
from infra.faults import Backoff, Fault, classify, describe
from infra.keys import (
    CALLBACKS_STREAM,
    PAYMENTS_STREAM,
    REFUNDS_STREAM,
    RELAY_GROUP,
    TASKS_STREAM,
)
from workers.context import Context
from workers.runtime import MAX_TRIES, supervise

log = logging.getLogger("juhe.relay")

Outgoing = list[tuple[str, Message]]
Relay = Callable[[Context, Sequence[bytes]], Awaitable[Outgoing]]

_payment = decoder(PaymentIntent)
_refund = decoder(RefundIntent)
_callback = decoder(ChannelCallback)
_task = decoder(ChannelTask)


async def relay_payments(ctx: Context, raw: Sequence[bytes]) -> Outgoing:
    intents = [_payment.decode(r) for r in raw]
    async with ctx.pg.acquire() as conn:
        stored, refused = await store.insert_payments(conn, intents)
    for payment_id in refused:
        # Redis lost the merchant-order guard (a flush or failover) and a duplicate got through;
        # the database kept the first one. Surface it rather than create a second payment.
        log.error("duplicate merchant order id refused", extra={"payment_id": payment_id})
    return [(ctx.queues.risk, i) for i in intents if i.id in stored]


async def relay_refunds(ctx: Context, raw: Sequence[bytes]) -> Outgoing:
    intents = [_refund.decode(r) for r in raw]
    async with ctx.pg.acquire() as conn:
        stored = await store.insert_refunds(conn, intents)
    return [
        (
            ctx.queues.channel(i.channel),
            ChannelTask(kind="refund", id=i.id, channel=i.channel, request_id=i.request_id),
        )
        for i in intents
        if i.id in stored
    ]


async def relay_callbacks(ctx: Context, raw: Sequence[bytes]) -> Outgoing:
    out: Outgoing = []
    for r in raw:
        callback = _callback.decode(r)
        command = LedgerCommand(callback=callback, request_id=callback.request_id)
        out.append((ctx.queues.ledger, command))
    return out


async def relay_tasks(ctx: Context, raw: Sequence[bytes]) -> Outgoing:
    """Customers' cards and cancellations go straight to their payment's channel; the channel
    pool checks the payment's status before it acts."""
    return [(ctx.queues.channel(t.channel), t) for t in map(_task.decode, raw)]


RELAYS: dict[str, Relay] = {
    PAYMENTS_STREAM: relay_payments,
    REFUNDS_STREAM: relay_refunds,
    CALLBACKS_STREAM: relay_callbacks,
    TASKS_STREAM: relay_tasks,
}


class StreamRelay:
    def __init__(self, ctx: Context, stream: str, consumer: str) -> None:
        self.ctx = ctx
        self.stream = stream
        self.key = ctx.keys.stream(stream)
        self.consumer = consumer
        self.relay = RELAYS[stream]
        self._last_claim = 0.0

    async def ensure_group(self) -> None:
        try:
            await self.ctx.redis.xgroup_create(self.key, RELAY_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        await self.ensure_group()
        settings = self.ctx.settings.relay
        # Our own pending entries first: what a previous life of this consumer left unfinished.
        while entries := await self._read("0", block=None):
            await self.process(entries)
        while True:
            if time.monotonic() - self._last_claim > settings.claim_idle_ms / 2000:
                self._last_claim = time.monotonic()
                _, claimed, _ = await self.ctx.redis.xautoclaim(
                    self.key,
                    RELAY_GROUP,
                    self.consumer,
                    settings.claim_idle_ms,
                    start_id="0-0",
                    count=settings.batch,
                )
                if claimed:
                    log.warning(
                        "claimed idle entries", extra={"stream": self.stream, "count": len(claimed)}
                    )
                    await self.process(claimed)
            entries = await self._read(">", block=settings.block_ms)
            if entries:
                await self.process(entries)

    async def _read(self, start: str, block: int | None) -> list[tuple[bytes, dict]]:
        reply = await self.ctx.redis.xreadgroup(
            RELAY_GROUP,
            self.consumer,
            {self.key: start},
            count=self.ctx.settings.relay.batch,
            block=block,
        )
        return reply[0][1] if reply else []

    async def process(self, entries: list[tuple[bytes, dict]]) -> None:
        ids = [entry_id for entry_id, _ in entries]
        raws: list[bytes] = []
        for entry_id, fields in entries:
            if fields and b"d" in fields:
                raws.append(fields[b"d"])
            else:
                await self._set_aside(repr(fields).encode(), f"malformed entry {entry_id!r}")
        outgoing = await self._relay(raws)
        backoff = Backoff()
        while True:
            try:
                await self.ctx.publisher.send_many(outgoing)
                break
            except Exception as exc:
                if classify(exc) is not Fault.TRANSIENT:
                    raise
                await backoff.wait(f"relay-{self.stream} publish", exc)
        async with self.ctx.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.key, RELAY_GROUP, *ids)
            pipe.xdel(self.key, *ids)
            await pipe.execute()
        metrics.relay_entries.labels(self.stream).inc(len(ids))

    async def _relay(self, raws: list[bytes]) -> Outgoing:
        """Relay a batch. While a service is down, wait and try again; a batch refused for its
        contents is relayed entry by entry, and an entry refused on its own is set aside, so
        one bad entry never stops the stream behind it."""
        backoff = Backoff()
        tries = 0
        while raws:
            try:
                return await self.relay(self.ctx, raws)
            except Exception as exc:
                fault = classify(exc)
                if fault is Fault.TRANSIENT:
                    await backoff.wait(f"relay-{self.stream}", exc)
                    continue
                if len(raws) > 1:
                    log.warning(
                        "batch refused; relaying entry by entry",
                        extra={"stream": self.stream, "error": describe(exc)},
                    )
                    outgoing: Outgoing = []
                    for raw in raws:
                        outgoing += await self._relay([raw])
                    return outgoing
                tries += 1
                if fault is Fault.DATA or tries >= MAX_TRIES:
                    await self._set_aside(raws[0], describe(exc))
                    return []
                log.exception("entry failed; trying again", extra={"stream": self.stream})
                await asyncio.sleep(0.2)
        return []

    async def _set_aside(self, raw: bytes, error: str) -> None:
        """Kept, not dropped: the dead stream holds the entry and its error for an operator to
        inspect and replay."""
        await self.ctx.redis.xadd(
            self.ctx.keys.stream("dead"), {"d": raw, "from": self.stream, "error": error}
        )
        metrics.dead_items.labels(f"stream.{self.stream}").inc()
        log.error("stream entry set aside", extra={"stream": self.stream, "error": error})
        await self.ctx.alerts.send("item.dead_lettered", stream=self.stream, error=error)


async def run(ctx: Context) -> None:
    consumer = f"relay-{os.environ.get('JUHE_WORKER_INDEX', '0')}"
    async with asyncio.TaskGroup() as group:
        for stream in RELAYS:
            relay = StreamRelay(ctx, stream, consumer)
            group.create_task(supervise(f"relay-{stream}", relay.run))
