"""Writing the end of a payment or refund: the guarded transition, its webhook event in the
outbox, then (after commit) the hot copy and the notify message. Shared by every pool that can
end a payment, so each ends it the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from domain.messages import NotifyTask
from domain.states import PaymentStatus
from domain.views import payment_view
from infra import store
from workers.context import Context


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
