"""Payouts, a task kind of the channel pool: a withdrawal is paid by the channel its payout
goes through, with that channel's mailbox, breaker and health, so a slow channel's payouts
queue behind nobody else's and no second pool has to know channels.

A payout is sent at most once per withdrawal, whatever crashes:

- it is sent only by whoever moves it `requested → sending` (a guarded UPDATE), with the
  withdrawal id as the channel's idempotency key;
- a withdrawal found `sending` (a crash after the claim, a timeout, a redelivery) is asked
  about first, and sent only if the channel says it never received it, by whoever then takes
  its lease (`infra.withdrawals.lease`), so two deliveries at once never both send it;
- a transient failure is never retried here: the message goes back to the queue, and its next
  delivery asks first.

Every task, whether the first send, a callback or the scheduler's re-drive, ends the same way:
the channel's state of the payout moves the withdrawal (`domain.withdrawals.step`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncpg

from adapters.base import (
    ChannelDeclined,
    ChannelTransientError,
    PayoutDestination,
    PayoutRequest,
    PayoutSending,
    PayoutState,
)
from domain.messages import ChannelTask
from domain.withdrawals import OPEN, WithdrawalStatus, step
from infra import store, withdrawals
from workers.outcomes import publish_events

if TYPE_CHECKING:
    from workers.channel import ChannelActor

log = logging.getLogger("juhe.payouts")
UNSUPPORTED = PayoutState("", "failed", "payouts_unsupported", "the channel cannot pay out")


async def pay_out(actor: ChannelActor, task: ChannelTask) -> None:
    ctx = actor.ctx
    row = await withdrawals.fetch(ctx.pg, task.id)
    if row is None or row["status"] not in OPEN:
        return
    adapter = actor.adapter
    state: PayoutState | None = None
    if row["status"] == WithdrawalStatus.REQUESTED:
        claimed = await store.transition_withdrawal(
            ctx.pg, row["id"], WithdrawalStatus.SENDING, channel=actor.code
        )
        if claimed is not None:
            state = await _send(actor, claimed)
        row = claimed or await withdrawals.fetch(ctx.pg, task.id)
        if row is None:
            return
    if state is None:
        if not isinstance(adapter, PayoutSending):
            state = UNSUPPORTED
        else:
            try:
                state = await actor.call("payout_query", adapter.query_payout, row["id"])
            except ChannelDeclined as exc:
                if exc.code != "not_found" or row["status"] != WithdrawalStatus.SENDING:
                    raise
                # Claimed, then a crash or a timeout before the channel received it; or
                # another delivery's send is still on its way.
                leased = await withdrawals.lease(ctx.pg, row["id"], _lease_s(actor))
                if leased is None:
                    raise ChannelTransientError(
                        "payout_in_flight", "the payout is being sent; asked again later"
                    ) from None
                state = await _send(actor, leased)
    await _apply(actor, row, state)


def _lease_s(actor: ChannelActor) -> float:
    """Twice the channel's timeout: longer than any send still in flight can last."""
    spec = actor.ctx.channels.specs.get(actor.code)
    return 2 * (spec.timeout_ms if spec else 30_000) / 1000


async def _send(actor: ChannelActor, row: asyncpg.Record) -> PayoutState:
    """The one send. A refusal is the channel's final word; a transient failure propagates
    (the message is retried, and its next delivery asks before anything is sent again)."""
    adapter = actor.adapter
    if not isinstance(adapter, PayoutSending):
        return UNSUPPORTED
    ctx = actor.ctx
    account = await ctx.pg.fetchrow(
        "SELECT * FROM payout_accounts WHERE id = $1", row["payout_account_id"]
    )
    details = withdrawals.account_details(ctx.box, account)
    request = PayoutRequest(
        withdrawal_id=row["id"],
        amount=row["amount"],
        currency=row["currency"],
        destination=PayoutDestination(
            account["kind"], details["number"], details.get("holder"), details.get("bank_name")
        ),
        callback_url=f"{ctx.settings.gateway.callback_base_url}"
        f"/api/v1/payouts/callback/{actor.code}",
    )
    try:
        return await actor.call("payout", adapter.payout, request, retries=False)
    except ChannelDeclined as exc:
        return PayoutState("", "failed", exc.code, exc.message)


async def _apply(actor: ChannelActor, row: asyncpg.Record, state: PayoutState) -> None:
    """Move the withdrawal as far as the channel's state says (a return seen before the
    payment was takes both steps), each with its entry and webhook."""
    ctx = actor.ctx
    current: asyncpg.Record | None = row
    fee = state.network_fee  # posted with the first move that posts an entry, once
    while current is not None:
        move = step(WithdrawalStatus(current["status"]), state.status)
        if move is None:
            return
        changes: dict[str, Any] = {}
        if state.channel_payout_id:
            changes["channel_payout_id"] = state.channel_payout_id
        if move.target in (WithdrawalStatus.FAILED, WithdrawalStatus.RETURNED):
            changes["failure_code"] = state.failure_code or f"payout_{state.status}"
            changes["failure_message"] = state.failure_message
        async with ctx.pg.acquire() as conn, conn.transaction():
            current, events = await withdrawals.move(
                conn, current["id"], move, network_fee=fee, **changes
            )
        if current is not None and move.entry is not None:
            fee = None
        await publish_events(ctx, events)
        if current is not None:
            log.info(
                "withdrawal moved",
                extra={"withdrawal_id": current["id"], "status": current["status"]},
            )
