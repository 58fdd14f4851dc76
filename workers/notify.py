"""Notify pool: signed webhooks to merchants, at least once, with the same event id each time.

A failed attempt is recorded and the event parked in the TTL queue of its next delay, from
which RabbitMQ returns it to this pool when the delay is over. After the last delay the event
is marked dead and copied to the dead-letter queue; `POST /api/v1/events/{id}/resend` revives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import aiohttp
from aio_pika.abc import AbstractIncomingMessage

from domain.messages import NotifyTask, envelope_decoder
from domain.signing import webhook_signature
from infra import metrics
from workers.context import Context
from workers.runtime import Mailbox, gather_all

log = logging.getLogger("juhe.notify")
_tasks = envelope_decoder(NotifyTask)


class NotifyActor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.schedule = ctx.settings.notify.retry_schedule_s
        self.timeout = aiohttp.ClientTimeout(total=ctx.settings.notify.timeout_ms / 1000)

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        tasks = [t for message in batch for t in _tasks.decode(message.body)]
        await gather_all(self.deliver(t) for t in tasks)

    async def deliver(self, task: NotifyTask) -> None:
        ctx = self.ctx
        event = await ctx.pg.fetchrow(
            """SELECT e.id, e.url, e.payload, e.status, e.attempts, m.webhook_secret
               FROM webhook_events e JOIN merchants m ON m.id = e.merchant_id WHERE e.id = $1""",
            task.event_id,
        )
        if event is None or event["status"] != "pending":
            return
        body: bytes = event["payload"]
        signature = webhook_signature(event["webhook_secret"].encode(), int(time.time()), body)
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            async with ctx.http.post(
                event["url"],
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Juhe-Signature": signature,
                    # The id the merchant's create request had: one id across every hop.
                    "X-Request-Id": task.request_id,
                },
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                status_code = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        delivered = status_code is not None and 200 <= status_code < 300
        attempt = event["attempts"] + 1
        if delivered:
            outcome, delay = "delivered", None
        elif attempt <= len(self.schedule):
            outcome, delay = "retry", self.schedule[attempt - 1]
        else:
            outcome, delay = "dead", None
        async with ctx.pg.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO webhook_attempts (event_id, attempt, status_code, error, duration_ms)
                   VALUES ($1, $2, $3, $4, $5)""",
                event["id"],
                attempt,
                status_code,
                error,
                elapsed_ms,
            )
            await conn.execute(
                """UPDATE webhook_events SET attempts = $2,
                          status = CASE $3 WHEN 'retry' THEN 'pending' ELSE $3 END,
                          delivered_at = CASE $3 WHEN 'delivered' THEN now() END,
                          next_attempt_at = now() + make_interval(secs => $4)
                   WHERE id = $1 AND status = 'pending'""",
                event["id"],
                attempt,
                outcome,
                delay or 0.0,
            )
        metrics.webhook_deliveries.labels(outcome).inc()
        if outcome == "retry":
            retry = NotifyTask(event_id=task.event_id, attempt=attempt, request_id=task.request_id)
            await ctx.publisher.send(ctx.queues.notify_retry(delay), [retry])
        elif outcome == "dead":
            log.warning("webhook dead-lettered", extra={"event_id": task.event_id})
            await ctx.publisher.send(ctx.queues.dead, [task])


async def run(ctx: Context) -> None:
    s = ctx.settings.notify
    actor = NotifyActor(ctx)
    await Mailbox(
        "notify",
        ctx.amqp,
        ctx.publisher,
        ctx.queues.notify,
        actor.handle,
        prefetch=s.prefetch,
        actors=s.concurrency,
    ).run()
