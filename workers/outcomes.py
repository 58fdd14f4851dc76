"""Writing the end of a payment or refund: the guarded transition, its webhook event in the
outbox, then (after commit) the hot copy and the notify message. Shared by every pool that can
end a payment, so each ends it the same way."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from domain.messages import NotifyTask
from domain.risk.alerts import anomaly_alerts
from domain.states import PaymentStatus
from domain.views import payment_view
from infra import metrics, store
from infra.anomaly import CHANNEL_DECLINE, DECLINE, Anomalies
from workers.context import Context

log = logging.getLogger("juhe.outcomes")


async def publish_events(ctx: Context, events: Sequence[tuple[str, str]]) -> None:
    """After commit: hand new outbox events (id, the payment's request id) to the notify pool.
    If this never happens (a crash right here), the scheduler's outbox sweep publishes them."""
    await ctx.publisher.send(
        ctx.queues.notify, [NotifyTask(event_id=e, request_id=rid) for e, rid in events]
    )


# An unpaid payment's end when its time is up, whoever ends it.
EXPIRED = {"failure_code": "expired", "failure_message": "the customer did not pay in time"}


async def end_payment(
    ctx: Context, payment_id: str, target: PaymentStatus, event_type: str, **changes: Any
) -> asyncpg.Record | None:
    """Move a payment to a final status with its webhook; None if its status did not allow it."""
    async with ctx.pg.acquire() as conn, conn.transaction():
        row = await store.transition_payment(conn, payment_id, target, **changes)
        if row is None:
            return None
        events = await store.add_events(
            conn, [(event_type, payment_view(row, ctx.settings.gateway.public_url), row)]
        )
    await ctx.hot.put_payment(row)
    await publish_events(ctx, events)
    return row


async def learn_outcomes(
    ctx: Context, anomalies: Anomalies, payments: Sequence[asyncpg.Record]
) -> None:
    """After commit, the decline models (infra.anomaly) learn each payment a channel just
    ended: succeeded (the ledger pool) or failed (the ledger pool, or the channel pool when the
    channel refused the order). A rate far above its usual tells operations, once per window."""
    observations = [
        (model, subject, 1.0 if p["status"] == PaymentStatus.FAILED else 0.0)
        for p in payments
        if p["status"] in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED) and p["channel"]
        for model, subject in ((DECLINE, p["merchant_id"]), (CHANNEL_DECLINE, p["channel"]))
    ]
    if not observations:
        return
    risk = ctx.settings.risk
    scores = await anomalies.observe(observations)
    for model, subject, z in scores:
        if model == CHANNEL_DECLINE:
            metrics.risk_channel_anomaly.labels(subject).set(z)
    for kind, subject, detail in anomaly_alerts(scores, risk.anomaly_z):
        if await anomalies.first_in_window(f"{kind}:{subject}", risk.anomaly_alert_window_s):
            log.warning("risk anomaly", extra={"kind": kind, **detail})
            await ctx.alerts.send(kind, **detail)
