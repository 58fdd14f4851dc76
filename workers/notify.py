"""Notify pool: signed webhooks to merchants, at least once, with the same event id each time.

A failed attempt is recorded and the event parked in the TTL queue of its next delay, from
which RabbitMQ returns it to this pool when the delay is over. After the last delay the event
is marked dead and copied to the dead-letter queue; `POST /api/v1/events/{id}/resend` revives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from domain.messages import Message, NotifyTask, envelope_decoder
from domain.signing import webhook_signature
from domain.targets import UnsafeTarget, delivery_target
from infra import metrics
from infra.egress import RefusedTarget, webhook_session
from infra.sealing import WEBHOOK
from workers.context import Context
from workers.runtime import Mailbox

log = logging.getLogger("juhe.notify")
_tasks = envelope_decoder(NotifyTask)


class NotifyActor:
    def __init__(self, ctx: Context, http: aiohttp.ClientSession) -> None:
        self.ctx = ctx
        self.http = http  # `infra.egress.webhook_session`: public addresses only
        self.allow_private = ctx.settings.notify.allow_private_targets
        self.schedule = ctx.settings.notify.retry_schedule_s
        self.timeout = aiohttp.ClientTimeout(total=ctx.settings.notify.timeout_ms / 1000)

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """An envelope at a time: one read of its events, the POSTs concurrently, one write of
        every attempt and outcome, then the retries parked in their delay queues."""
        ctx = self.ctx
        tasks = {t.event_id: t for message in batch for t in _tasks.decode(message.body)}
        events = await ctx.pg.fetch(
            """SELECT e.id, e.url, e.payload, e.attempts, e.merchant_id, m.webhook_secret
               FROM webhook_events e JOIN merchants m ON m.id = e.merchant_id
               WHERE e.id = ANY($1::text[]) AND e.status = 'pending'""",
            list(tasks),
        )
        if not events:
            return
        attempts = await asyncio.gather(*(self.post(e, tasks[e["id"]].request_id) for e in events))
        outcomes = [self.outcome(e, a) for e, a in zip(events, attempts, strict=True)]
        async with ctx.pg.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO webhook_attempts (event_id, attempt, status_code, error, duration_ms)
                   SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::int[])""",
                [e["id"] for e in events],
                [e["attempts"] + 1 for e in events],
                [a.status_code for a in attempts],
                [a.error for a in attempts],
                [a.elapsed_ms for a in attempts],
            )
            await conn.execute(
                """UPDATE webhook_events e SET attempts = u.n,
                          status = CASE u.o WHEN 'retry' THEN 'pending' ELSE u.o END,
                          delivered_at = CASE u.o WHEN 'delivered' THEN now() END,
                          next_attempt_at = now() + make_interval(secs => u.delay)
                   FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[])
                        AS u(id, n, o, delay)
                   WHERE e.id = u.id AND e.status = 'pending'""",
                [e["id"] for e in events],
                [e["attempts"] + 1 for e in events],
                [o for o, _ in outcomes],
                [d or 0.0 for _, d in outcomes],
            )
        parked: list[tuple[str, Message]] = []
        for event, (outcome, delay) in zip(events, outcomes, strict=True):
            metrics.webhook_deliveries.labels(outcome).inc()
            task = tasks[event["id"]]
            if outcome == "retry" and delay is not None:
                retry = NotifyTask(
                    event_id=task.event_id,
                    attempt=event["attempts"] + 1,
                    request_id=task.request_id,
                )
                parked.append((ctx.queues.notify_retry(delay), retry))
            elif outcome == "dead":
                log.warning("webhook dead-lettered", extra={"event_id": task.event_id})
                parked.append((ctx.queues.dead, task))
        await ctx.publisher.send_many(parked)

    def outcome(self, event: asyncpg.Record, attempt: Attempt) -> tuple[str, float | None]:
        """delivered, retry after a delay from the schedule, or dead once it is used up."""
        if attempt.status_code is not None and 200 <= attempt.status_code < 300:
            return "delivered", None
        number = event["attempts"] + 1
        if number <= len(self.schedule):
            return "retry", self.schedule[number - 1]
        return "dead", None

    async def post(self, event: asyncpg.Record, request_id: str) -> Attempt:
        """One delivery attempt. A target webhooks may not go to is a failed attempt like any
        other (retried, then dead-lettered), so the merchant can fix the URL meanwhile."""
        try:
            delivery_target(event["url"], allow_private=self.allow_private)
        except UnsafeTarget as exc:
            return _refused(event, str(exc))
        body: bytes = event["payload"]
        secret = WEBHOOK.open(self.ctx.box, event["merchant_id"], event["webhook_secret"])
        signature = webhook_signature(secret.encode(), int(time.time()), body)
        started = time.perf_counter()
        try:
            async with self.http.post(
                event["url"],
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Juhe-Signature": signature,
                    # The id the merchant's create request had: one id across every hop.
                    "X-Request-Id": request_id,
                },
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                await response.read()
                return Attempt(response.status, None, _ms_since(started))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedTarget):
                return _refused(event, str(exc.os_error))
            return Attempt(None, type(exc).__name__, _ms_since(started))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Attempt(None, type(exc).__name__, _ms_since(started))


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    error: str | None
    elapsed_ms: int


def _refused(event: asyncpg.Record, reason: str) -> Attempt:
    """Not connected to: the attempt records why (the merchant's own URL, no personal data)."""
    log.warning(
        "webhook target refused",
        extra={"event_id": event["id"], "merchant_id": event["merchant_id"], "reason": reason},
    )
    return Attempt(None, f"unsafe_target: {reason}", 0)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def run(ctx: Context) -> None:
    s = ctx.settings.notify
    async with webhook_session(s.allow_private_targets) as http:
        actor = NotifyActor(ctx, http)
        await Mailbox(
            ctx,
            "notify",
            ctx.queues.notify,
            actor.handle,
            prefetch=s.prefetch,
            actors=s.concurrency,
        ).run()
