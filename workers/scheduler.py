"""Scheduler: expires unpaid payments, re-publishes outbox events whose message was lost,
settles (releases what is due, closes ended statement periods), and samples backlogs (stream
length and lag, queue depth, outbox) for the dashboards."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from domain.messages import ChannelTask, Message
from domain.states import UNPAID, PaymentStatus, sources
from domain.views import payment_view
from infra import (
    broker,
    metrics,
    progress,
    reconciliation,
    reviews,
    settlement,
    store,
    withdrawals,
)
from infra.faults import Backoff, Fault, classify
from infra.keys import RELAY_GROUP, STREAMS
from routing.health import HealthBook
from workers.context import Context
from workers.outcomes import EXPIRED, publish_events
from workers.runtime import supervise

log = logging.getLogger("juhe.scheduler")


async def expire_due(ctx: Context) -> int:
    """Expire one batch of overdue unpaid payments; return how many. One awaiting payment at
    its channel is left to `check_due` until `check_for_s` has passed: the customer may have
    paid and the channel's callback been lost."""
    async with ctx.pg.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """WITH due AS (
                   SELECT id FROM payments
                   WHERE status = ANY($1::text[]) AND expires_at < now()
                     AND (status <> 'awaiting_payment' OR channel_order_id IS NULL
                          OR expires_at < now() - make_interval(secs => $4))
                   ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE payments p SET status = 'expired', version = p.version + 1,
                      updated_at = now(), failure_code = $5, failure_message = $6
               FROM due WHERE p.id = due.id AND p.status = ANY($3::text[]) RETURNING p.*""",
            sorted(s.value for s in UNPAID),
            ctx.settings.scheduler.expire_batch,
            sources(PaymentStatus.EXPIRED),
            float(ctx.settings.scheduler.check_for_s),
            EXPIRED["failure_code"],
            EXPIRED["failure_message"],
        )
        url = ctx.settings.gateway.public_url
        events = await store.add_events(
            conn, [("payment.expired", payment_view(r, url), r) for r in rows]
        )
    await ctx.hot.put_many(rows)
    await publish_events(ctx, events)
    return len(rows)


async def check_due(ctx: Context) -> int:
    """Ask the channel about overdue payments awaiting the customer there (one message each,
    at most every `check_every_s`): the channel pool applies what it says, or expires them."""
    s = ctx.settings.scheduler
    rows = await ctx.pg.fetch(
        """UPDATE payments SET updated_at = now()
           WHERE id IN (SELECT id FROM payments
                        WHERE status = 'awaiting_payment' AND expires_at < now()
                          AND channel_order_id IS NOT NULL
                          AND updated_at < now() - make_interval(secs => $1)
                        ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING id, channel, request_id""",
        float(s.check_every_s),
        s.expire_batch,
    )
    await ctx.publisher.send_many(
        [
            (
                ctx.queues.channel(r["channel"]),
                ChannelTask(
                    kind="check", id=r["id"], channel=r["channel"], request_id=r["request_id"] or ""
                ),
            )
            for r in rows
        ]
    )
    return len(rows)


async def sweep_outbox(ctx: Context) -> int:
    """Publish pending events nobody has touched for a while (lost after commit, or a retry
    message lost in RabbitMQ). Pushing next_attempt_at forward keeps us from re-sending them on
    every tick; a duplicate delivery is allowed, a lost one is not."""
    grace = ctx.settings.scheduler.outbox_grace_s
    rows = await ctx.pg.fetch(
        """UPDATE webhook_events SET next_attempt_at = now() + make_interval(secs => $1)
           WHERE id IN (SELECT id FROM webhook_events
                        WHERE status = 'pending'
                          AND next_attempt_at < now() - make_interval(secs => $1)
                        ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
           RETURNING id, request_id""",
        float(grace),
    )
    await publish_events(ctx, [(r["id"], r["request_id"] or "") for r in rows])
    return len(rows)


async def redrive_stuck(ctx: Context) -> int:
    """Hand work that is really lost back to its pool: a payment still pending whose message
    is gone, one stuck processing whose channel message is gone, a refund not yet settled.
    Work that is only waiting in a backlog, however long, is left alone: a row is re-driven only
    once it has not moved for `redrive_after_s` AND the consumers of every queue its message
    can be in have got at least `redrive_after_s` past it (infra.progress), so the message can
    no longer be queued or in hand. A pending payment's message is in the risk queue or, routed,
    in a channel queue (the channel pool claims it): it waits on all of them. Every pool step is
    idempotent, so a rare second copy is harmless. Touching updated_at spaces the re-drives
    out."""
    after = float(ctx.settings.scheduler.redrive_after_s)
    codes = sorted(ctx.channels.specs)
    queues = [ctx.queues.risk, *(ctx.queues.channel(c) for c in codes)]
    channel = await ctx.amqp.channel()
    try:
        depths = await broker.queue_depths(channel, queues)
    finally:
        await channel.close()
    now = time.time()
    horizons = await progress.horizons(ctx.redis, ctx.keys, depths, now)
    cutoff = {q: datetime.fromtimestamp(min(now, h) - after, UTC) for q, h in horizons.items()}
    channel_cutoffs = [cutoff[ctx.queues.channel(c)] for c in codes]
    async with ctx.pg.acquire() as conn, conn.transaction():
        payments = await conn.fetch(
            """UPDATE payments SET updated_at = now()
               WHERE id IN (SELECT p.id FROM payments p
                            LEFT JOIN unnest($2::text[], $3::timestamptz[]) AS c(code, cutoff)
                                   ON c.code = p.channel
                            WHERE (p.status = 'pending' AND p.updated_at < $1)
                               OR (p.status = 'processing' AND p.updated_at < c.cutoff)
                            ORDER BY p.updated_at LIMIT 200 FOR UPDATE OF p SKIP LOCKED)
               RETURNING *""",
            min(cutoff.values()),
            codes,
            channel_cutoffs,
        )
        refunds = await conn.fetch(
            """UPDATE refunds r SET updated_at = now() FROM payments p
               WHERE p.id = r.payment_id AND r.id IN (
                   SELECT rf.id FROM refunds rf
                   JOIN payments pp ON pp.id = rf.payment_id
                   JOIN unnest($1::text[], $2::timestamptz[]) AS c(code, cutoff)
                     ON c.code = pp.channel
                   WHERE rf.status IN ('pending', 'processing') AND rf.updated_at < c.cutoff
                   ORDER BY rf.updated_at LIMIT 200 FOR UPDATE OF rf SKIP LOCKED)
               RETURNING r.id, r.request_id, p.channel""",
            codes,
            channel_cutoffs,
        )
    outgoing: list[tuple[str, Message]] = []
    for row in payments:
        rid = row["request_id"] or ""
        if row["status"] == PaymentStatus.PENDING:
            outgoing.append((ctx.queues.risk, store.intent_of(row)))
        else:
            task = ChannelTask(
                kind="create",
                id=row["id"],
                channel=row["channel"],
                fallbacks=store.split_codes(row["fallbacks"]),
                request_id=rid,
            )
            outgoing.append((ctx.queues.channel(row["channel"]), task))
    for row in refunds:
        rid = row["request_id"] or ""
        task = ChannelTask(kind="refund", id=row["id"], channel=row["channel"], request_id=rid)
        outgoing.append((ctx.queues.channel(row["channel"]), task))
    if outgoing:
        log.warning(
            "re-driving lost work",
            extra={
                "payments": len(payments),
                "refunds": len(refunds),
                "horizon_age_s": {q: round(now - h, 1) for q, h in horizons.items()},
                "depths": depths,
            },
        )
        metrics.redriven.inc(len(outgoing))
    await ctx.publisher.send_many(outgoing)
    return len(outgoing)


async def expire_reviews(ctx: Context) -> int:
    """Reviews nobody decided in time take the configured default (`risk.review_default`);
    an approved payment goes on to the risk pool, which routes it. Their events are due at
    once, so the next outbox sweep sends them."""
    approve = ctx.settings.risk.review_default == "approve"
    url = ctx.settings.gateway.public_url
    async with ctx.pg.acquire() as conn, conn.transaction():
        decided = [
            await reviews.decide(
                conn,
                payment_id,
                approve,
                "system:review_timeout",
                "not decided in time",
                url,
                by_default=True,
            )
            for payment_id in await reviews.due(conn)
        ]
    rows = [d.payment for d in decided if d is not None and d.payment is not None]
    await ctx.hot.put_many(rows)
    if approve:
        await ctx.publisher.send_many([(ctx.queues.risk, store.intent_of(r)) for r in rows])
    return len(rows)


async def settle(ctx: Context) -> None:
    """The settlement job at the wall clock (`infra.settlement.run`: locked, so one scheduler
    at a time, and a no-op when re-run); auto-settlement's payouts go to the channel pool."""
    result = await settlement.run(ctx.pg, ctx.settings, datetime.now(UTC))
    if result is not None and result.to_pay:
        rows = await ctx.pg.fetch(
            "SELECT id, currency FROM withdrawals WHERE id = ANY($1::text[])", list(result.to_pay)
        )
        w = ctx.settings.withdrawals
        await ctx.publisher.send_many(
            [
                (
                    ctx.queues.channel(w.channel_for(r["currency"])),
                    ChannelTask(kind="payout", id=r["id"], channel=w.channel_for(r["currency"])),
                )
                for r in rows
            ]
        )


async def reconcile(ctx: Context) -> None:
    """Each channel's daily statement once it is due (`infra.reconciliation.reconcile_due`;
    the same file reconciled twice is one run)."""
    r = ctx.settings.reconciliation
    await reconciliation.reconcile_due(
        ctx.pg, ctx.channels, datetime.now(UTC), r.due_after_s, r.lookback_days
    )


async def redrive_withdrawals(ctx: Context) -> None:
    """Withdrawals left requested, sending or sent (a message lost before the relay, a
    callback lost): handed to their channel's pool again, which asks the channel first."""
    w = ctx.settings.withdrawals
    rows = await withdrawals.stale(ctx.pg, w.redrive_after_s)
    by_channel: dict[str, list[ChannelTask]] = defaultdict(list)
    for r in rows:
        channel = r["channel"] or w.channel_for(r["currency"])
        by_channel[channel].append(ChannelTask(kind="payout", id=r["id"], channel=channel))
    for channel, tasks in by_channel.items():
        await ctx.publisher.send(ctx.queues.channel(channel), tasks)


async def sample_backlogs(ctx: Context) -> None:
    for name in STREAMS:
        key = ctx.keys.stream(name)
        if not await ctx.redis.exists(key):
            continue  # the relay creates its streams when it starts
        metrics.stream_length.labels(name).set(await ctx.redis.xlen(key))
        for group in await ctx.redis.xinfo_groups(key):
            if group["name"] == RELAY_GROUP.encode() or group["name"] == RELAY_GROUP:
                metrics.stream_lag.labels(name).set(group.get("lag") or 0)
                metrics.stream_pending.labels(name).set(group.get("pending") or 0)
    queues = [ctx.queues.risk, ctx.queues.ledger, ctx.queues.notify, ctx.queues.dead]
    queues += [ctx.queues.channel(code) for code in ctx.channels.specs]
    channel = await ctx.amqp.channel()
    try:
        for name, depth in (await broker.queue_depths(channel, queues)).items():
            metrics.queue_depth.labels(name).set(depth)
    finally:
        await channel.close()
    windows = await HealthBook(ctx.redis, ctx.keys, ctx.settings.routing.health_window_s).windows(
        ctx.channels.specs
    )
    for code, window in windows.items():
        if window.success_rate is not None:
            metrics.channel_success_rate.labels(code).set(window.success_rate)
        for quantile, value in (("0.5", window.p50_ms), ("0.95", window.p95_ms)):
            if value is not None and value != float("inf"):
                metrics.channel_latency.labels(code, quantile).set(value)
    metrics.outbox_backlog.set(
        await ctx.pg.fetchval("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
    )
    waiting = await ctx.pg.fetchrow(
        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age "
        "FROM risk_reviews WHERE status IN ('open', 'claimed')"
    )
    metrics.review_queue.set(waiting["n"])
    metrics.review_oldest.set(float(waiting["age"]))
    limit = ctx.settings.risk.alert_review_queue
    if waiting["n"] >= limit and await ctx.redis.set(
        ctx.keys.alerted("risk.review_queue"), 1, nx=True, ex=600
    ):
        await ctx.alerts.send(
            "risk.review_queue", waiting=waiting["n"], oldest_s=int(waiting["age"]), limit=limit
        )


async def every(
    interval_s: float, job: Callable[[Context], Awaitable[object]], ctx: Context
) -> None:
    """Run `job` every `interval_s`; while a service it needs is down, wait with growing pauses
    and one warning each, rather than crash and log a traceback five times a second."""
    backoff = Backoff()
    while True:
        try:
            await job(ctx)
        except Exception as exc:
            if classify(exc) is not Fault.TRANSIENT:
                raise
            await backoff.wait(f"scheduler-{job.__name__}", exc)
            continue
        backoff.reset()
        await asyncio.sleep(interval_s)


async def run(ctx: Context) -> None:
    interval = ctx.settings.scheduler.interval_ms / 1000
    async with asyncio.TaskGroup() as group:
        jobs = (
            expire_due,
            check_due,
            sweep_outbox,
            redrive_stuck,
            redrive_withdrawals,
            sample_backlogs,
            expire_reviews,
        )
        for job in jobs:
            group.create_task(
                supervise(f"scheduler-{job.__name__}", lambda j=job: every(interval, j, ctx))
            )
        every_s = ctx.settings.settlement.interval_s
        group.create_task(supervise("scheduler-settle", lambda: every(every_s, settle, ctx)))
        recon_s = ctx.settings.reconciliation.interval_s
        group.create_task(supervise("scheduler-reconcile", lambda: every(recon_s, reconcile, ctx)))
